#include "iea/providers/wavespeed.hpp"

#include <algorithm>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "support.hpp"

namespace iea::providers {
namespace {

namespace bhttp = boost::beast::http;
constexpr std::string_view kProvider = "wavespeed";

std::string string_or_empty(const nlohmann::json& object, std::string_view key) {
    const auto it = object.find(key);
    return it != object.end() && it->is_string() ? it->get<std::string>() : std::string{};
}

[[noreturn]] void fail_malformed(std::string_view operation, std::string message) {
    auto details = support::details(kProvider, operation);
    details.kind = ErrorKind::kMalformedResponse;
    details.status = 200;
    details.message = std::move(message);
    throw ProviderError(std::move(details));
}

// TODO: Sync mode (enable_sync_mode) and its data code 5004 "Sync mode timed out" are not
// handled; the client always submits asynchronously and polls.
// {"code": 200, ...}: any other code is an error, classified like the HTTP status it names.
void check_envelope(std::string_view operation, const nlohmann::json& body) {
    if (!body.is_object()) fail_malformed(operation, "answer is not a JSON object");
    const auto code = body.find("code");
    if (code == body.end() || !code->is_number_integer()) return;
    const int value = code->get<int>();
    if (value == 200) return;
    http::ClientResponse as_status;
    as_status.status = value >= 400 && value < 600 ? static_cast<unsigned>(value) : 500;
    auto details = support::from_status(
        kProvider,
        operation,
        as_status,
        "code " + std::to_string(value) + ": " + scrub(string_or_empty(body, "message"), {}, 300));
    details.status = 200;
    // Only codes that mean "try later" stay transient; the rest end a wait (lesson 25).
    details.transient = value == 429 || value == 502 || value == 503 || value == 504;
    throw ProviderError(std::move(details));
}

std::string error_message(const http::ClientResponse& response, const config::Secret& key) {
    const auto json = nlohmann::json::parse(response.body, nullptr, false);
    std::string message;
    if (json.is_object()) {
        message = string_or_empty(json, "message");
        if (message.empty()) message = string_or_empty(json, "error");
    }
    if (message.empty()) message = response.body;
    return scrub(message, key.reveal(), 300);
}

}  // namespace

std::string_view to_string(PredictionStatus status) {
    switch (status) {
        case PredictionStatus::kCreated:
            return "created";
        case PredictionStatus::kProcessing:
            return "processing";
        case PredictionStatus::kCompleted:
            return "completed";
        case PredictionStatus::kFailed:
            return "failed";
    }
    return "unknown";
}

Prediction parse_prediction(std::string_view operation, const nlohmann::json& body) {
    check_envelope(operation, body);
    const auto data = body.find("data");
    if (data == body.end() || !data->is_object()) fail_malformed(operation, "answer without data");

    Prediction prediction;
    prediction.id = string_or_empty(*data, "id");
    if (prediction.id.empty()) fail_malformed(operation, "answer without data.id");
    const auto status = string_or_empty(*data, "status");
    if (status == "completed") {
        prediction.status = PredictionStatus::kCompleted;
    } else if (status == "failed") {
        prediction.status = PredictionStatus::kFailed;
    } else if (status == "created" || status.empty()) {
        prediction.status = PredictionStatus::kCreated;
    } else {
        // "processing", or a state newer than this client: keep waiting.
        prediction.status = PredictionStatus::kProcessing;
    }
    if (const auto outputs = data->find("outputs"); outputs != data->end() && outputs->is_array()) {
        for (const auto& output : *outputs) {
            if (output.is_string()) prediction.outputs.push_back(output.get<std::string>());
        }
    }
    prediction.error = string_or_empty(*data, "error");
    if (prediction.status == PredictionStatus::kCompleted && prediction.outputs.empty()) {
        fail_malformed(operation, "completed prediction without outputs");
    }
    return prediction;
}

WaveSpeedOptions WaveSpeedOptions::from(const config::Settings& settings) {
    WaveSpeedOptions options;
    if (!settings.wavespeed_api_base_url.empty())
        options.base_url = settings.wavespeed_api_base_url;
    options.key = settings.wavespeed_api_key;
    if (settings.timeout_wavespeed.count() > 0) options.timeout = settings.timeout_wavespeed;
    if (settings.wavespeed_poll_interval.count() > 0) {
        options.poll_interval = settings.wavespeed_poll_interval;
    }
    if (settings.timeout_wavespeed_polling.count() > 0) {
        options.polling_timeout = settings.timeout_wavespeed_polling;
    }
    options.retry = RetryPolicy::from(settings);
    return options;
}

WaveSpeedClient::WaveSpeedClient(http::HttpClient& http, WaveSpeedOptions options)
    : http_(http), options_(std::move(options)) {}

boost::asio::awaitable<nlohmann::json> WaveSpeedClient::call_api(std::string_view operation,
                                                                 http::ClientRequest request,
                                                                 Idempotency idempotency) {
    request.headers.emplace_back("Authorization", "Bearer " + options_.key.reveal());
    request.max_response_bytes = options_.max_json_bytes;
    request.idempotent = idempotency == Idempotency::kIdempotent;

    co_return co_await with_retries<nlohmann::json>(
        options_.retry,
        {kProvider, operation, idempotency},
        [&](int attempt) -> boost::asio::awaitable<nlohmann::json> {
            const auto started = std::chrono::steady_clock::now();
            http::ClientResponse response;
            try {
                response = co_await http_.send(request);
            } catch (const http::ClientError& error) {
                throw support::from_transport(kProvider, operation, error);
            }
            if (response.status / 100 != 2) {
                throw ProviderError(support::from_status(
                    kProvider, operation, response, error_message(response, options_.key)));
            }
            auto json = support::parse_json(kProvider, operation, response);
            check_envelope(operation, json);
            support::log_success(kProvider, operation, attempt, response.status, started);
            co_return json;
        });
}

boost::asio::awaitable<std::string> WaveSpeedClient::submit(std::string model_path,
                                                            nlohmann::json input) {
    // Model paths are "owner/model/variant": plain segments, no dot-segments or queries.
    const bool clean_path = !model_path.empty() && model_path.find("..") == std::string::npos &&
                            std::all_of(model_path.begin(), model_path.end(), [](char c) {
                                return std::isalnum(static_cast<unsigned char>(c)) != 0 ||
                                       c == '/' || c == '-' || c == '_' || c == '.';
                            });
    if (!clean_path) {
        auto details = support::details(kProvider, "submit");
        details.kind = ErrorKind::kBadRequest;
        details.message = "model path is not a plain path";
        throw ProviderError(std::move(details));
    }

    http::ClientRequest request;
    request.method = bhttp::verb::post;
    request.url = support::join_url(options_.base_url, "/" + model_path);
    request.headers.emplace_back("Content-Type", "application/json");
    request.body = input.dump();
    request.timeout = options_.timeout;
    const auto json = co_await call_api("submit", std::move(request), Idempotency::kNonIdempotent);
    co_return parse_prediction("submit", json).id;
}

boost::asio::awaitable<Prediction> WaveSpeedClient::poll(std::string prediction_id) {
    http::ClientRequest request;
    request.url = support::join_url(
        options_.base_url, "/predictions/" + http::encode_path_segment(prediction_id) + "/result");
    request.timeout = options_.poll_timeout;
    const auto json = co_await call_api("poll", std::move(request), Idempotency::kIdempotent);
    co_return parse_prediction("poll", json);
}

boost::asio::awaitable<Prediction> WaveSpeedClient::wait_for(std::string prediction_id,
                                                             std::chrono::milliseconds interval,
                                                             std::chrono::milliseconds timeout) {
    const auto executor = co_await boost::asio::this_coro::executor;
    const auto started = std::chrono::steady_clock::now();
    const auto deadline = started + timeout;
    for (int round = 1;; ++round) {
        // 1. One poll. A passing failure is not the prediction's failure: poll again.
        try {
            auto prediction = co_await poll(prediction_id);
            if (prediction.status == PredictionStatus::kCompleted ||
                prediction.status == PredictionStatus::kFailed) {
                detail::provider_log().debug("Prediction finished",
                                             {{"provider", kProvider},
                                              {"operation", "wait_for"},
                                              {"status", to_string(prediction.status)},
                                              {"attempt", round},
                                              {"latency_ms", support::elapsed_ms(started)}});
                co_return prediction;
            }
        } catch (const ProviderError& error) {
            if (!error.transient()) throw;
            detail::provider_log().warning("Prediction poll failed, polling again",
                                           {{"provider", kProvider},
                                            {"operation", "wait_for"},
                                            {"attempt", round},
                                            {"status", error.status()},
                                            {"kind", to_string(error.kind())}});
        }

        // 2. Out of time: the prediction may still finish; the caller keeps its id.
        if (std::chrono::steady_clock::now() + interval > deadline) {
            auto details = support::details(kProvider, "wait_for");
            details.kind = ErrorKind::kTimeout;
            details.message = "prediction " + prediction_id + " not finished after " +
                              std::to_string(timeout.count()) + " ms";
            throw ProviderError(std::move(details));
        }
        boost::asio::steady_timer timer(executor, interval);
        co_await timer.async_wait(boost::asio::use_awaitable);
    }
}

boost::asio::awaitable<std::string> WaveSpeedClient::download_output(std::string url,
                                                                     std::size_t max_bytes) {
    // The output CDN gets no Authorization (lesson 15).
    http::ClientRequest request;
    request.url = std::move(url);
    request.timeout = options_.download_timeout;
    request.max_response_bytes = max_bytes;
    request.max_redirects = options_.max_download_redirects;
    co_return co_await support::download(http_,
                                         {kProvider, "download_output", Idempotency::kIdempotent},
                                         options_.retry,
                                         std::move(request));
}

boost::asio::awaitable<std::string> WaveSpeedClient::upload_media(std::string bytes,
                                                                  std::string file_name,
                                                                  std::string content_type) {
    auto multipart = support::multipart_file("file", file_name, content_type, bytes);
    http::ClientRequest request;
    request.method = bhttp::verb::post;
    request.url = support::join_url(options_.base_url, "/media/upload/binary");
    request.headers.emplace_back("Content-Type", multipart.content_type);
    request.body = std::move(multipart.body);
    request.timeout = options_.timeout;
    const auto json =
        co_await call_api("upload_media", std::move(request), Idempotency::kIdempotent);
    const auto data = json.find("data");
    const auto url = data != json.end() && data->is_object()
                         ? string_or_empty(*data, "download_url")
                         : std::string{};
    if (url.empty()) fail_malformed("upload_media", "answer without data.download_url");
    co_return url;
}

}  // namespace iea::providers
