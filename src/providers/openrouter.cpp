#include "iea/providers/openrouter.hpp"

#include "support.hpp"

namespace iea::providers {
namespace {

namespace bhttp = boost::beast::http;
constexpr std::string_view kProvider = "openrouter";
constexpr std::string_view kOperation = "chat";

std::string string_or_empty(const nlohmann::json& object, std::string_view key) {
    const auto it = object.find(key);
    return it != object.end() && it->is_string() ? it->get<std::string>() : std::string{};
}

// Content arrives as a string, or (unconfirmed for Claude) as parts whose text we join.
std::string content_text(const nlohmann::json& content) {
    if (content.is_string()) return content.get<std::string>();
    std::string out;
    if (!content.is_array()) return out;
    for (const auto& part : content) {
        if (part.is_object()) out += string_or_empty(part, "text");
    }
    return out;
}

[[noreturn]] void fail(ErrorKind kind, std::string message, bool transient = false) {
    auto details = support::details(kProvider, kOperation);
    details.kind = kind;
    details.status = 200;
    details.message = std::move(message);
    details.transient = transient;
    throw ProviderError(std::move(details));
}

// An error object found in a 200 body: its code says what kind it is.
[[noreturn]] void fail_with_error_object(const nlohmann::json& error) {
    const auto message = error.is_object() ? string_or_empty(error, "message") : error.dump();
    const int code = error.is_object() ? error.value("code", 0) : 0;
    http::ClientResponse as_status;
    as_status.status = code >= 400 && code < 600 ? static_cast<unsigned>(code) : 502;
    auto details = support::from_status(kProvider, kOperation, as_status, scrub(message, {}, 300));
    details.status = 200;
    throw ProviderError(std::move(details));
}

// TODO: A 402 (out of credits) is reported as a bad request; operators would benefit from a
// kind of its own so the pipeline can say "top up OpenRouter" instead of a generic failure.
std::string error_message(const http::ClientResponse& response, const config::Secret& key) {
    const auto json = nlohmann::json::parse(response.body, nullptr, false);
    std::string message;
    if (json.is_object() && json.contains("error")) {
        const auto& error = json.at("error");
        message = error.is_object() ? string_or_empty(error, "message") : error.dump();
    }
    if (message.empty()) message = response.body;
    return scrub(message, key.reveal(), 300);
}

}  // namespace

OpenRouterOptions OpenRouterOptions::from(const config::Settings& settings) {
    OpenRouterOptions options;
    if (!settings.openrouter_api_base_url.empty()) {
        options.base_url = settings.openrouter_api_base_url;
    }
    options.key = settings.openrouter_api_key;
    if (!settings.openrouter_model.empty()) options.model = settings.openrouter_model;
    if (settings.openrouter_max_tokens > 0) options.max_tokens = settings.openrouter_max_tokens;
    options.reasoning_effort = settings.openrouter_reasoning_effort;
    if (settings.timeout_openrouter.count() > 0) options.timeout = settings.timeout_openrouter;
    options.retry = RetryPolicy::from(settings);
    return options;
}

nlohmann::json build_chat_body(const OpenRouterOptions& options, const ChatRequest& request) {
    // Text first, then the images as data URLs: the order OpenRouter recommends.
    auto parts = nlohmann::json::array();
    parts.push_back({{"type", "text"}, {"text", request.user}});
    for (const auto& image : request.images) {
        const auto url = "data:" + image.mime_type + ";base64," + support::base64(image.bytes);
        parts.push_back({{"type", "image_url"}, {"image_url", {{"url", url}}}});
    }

    auto messages = nlohmann::json::array();
    if (!request.system.empty()) {
        messages.push_back({{"role", "system"}, {"content", request.system}});
    }
    messages.push_back({{"role", "user"}, {"content", std::move(parts)}});

    nlohmann::json body = {{"model", options.model},
                           {"messages", std::move(messages)},
                           {"max_tokens", request.max_tokens.value_or(options.max_tokens)}};
    if (!options.reasoning_effort.empty() && options.reasoning_effort != "none") {
        body["reasoning"] = {{"effort", options.reasoning_effort}};
    }
    if (request.temperature) body["temperature"] = *request.temperature;
    if (!options.provider_routing.is_null()) body["provider"] = options.provider_routing;
    return body;
}

ChatAnswer parse_chat_answer(const nlohmann::json& body) {
    // Errors after the model started are delivered with HTTP 200 (contracts 2.3).
    if (!body.is_object()) fail(ErrorKind::kMalformedResponse, "answer is not a JSON object");
    if (const auto error = body.find("error"); error != body.end() && !error->is_null()) {
        fail_with_error_object(*error);
    }
    const auto choices = body.find("choices");
    if (choices == body.end() || !choices->is_array() || choices->empty() ||
        !choices->front().is_object()) {
        fail(ErrorKind::kMalformedResponse, "answer without choices");
    }
    const auto& choice = choices->front();
    if (const auto error = choice.find("error"); error != choice.end() && !error->is_null()) {
        fail_with_error_object(*error);
    }

    ChatAnswer answer;
    answer.model = string_or_empty(body, "model");
    answer.finish_reason = string_or_empty(choice, "finish_reason");
    if (const auto message = choice.find("message");
        message != choice.end() && message->is_object()) {
        answer.text = content_text(message->value("content", nlohmann::json()));
    }
    if (const auto usage = body.find("usage"); usage != body.end() && usage->is_object()) {
        answer.prompt_tokens = usage->value("prompt_tokens", 0);
        answer.completion_tokens = usage->value("completion_tokens", 0);
    }

    if (answer.finish_reason == "error") {
        fail(ErrorKind::kProviderError, "the model stopped with an error", true);
    }
    if (answer.finish_reason == "length") {
        fail(ErrorKind::kTruncatedAnswer,
             "the answer hit max_tokens (" + std::to_string(answer.completion_tokens) +
                 " completion tokens)");
    }
    if (answer.finish_reason == "content_filter") {
        fail(ErrorKind::kBadRequest, "the answer was withheld by a content filter");
    }
    if (answer.text.empty()) fail(ErrorKind::kTruncatedAnswer, "the answer has no content");
    return answer;
}

OpenRouterClient::OpenRouterClient(http::HttpClient& http, OpenRouterOptions options)
    : http_(http), options_(std::move(options)) {}

boost::asio::awaitable<ChatAnswer> OpenRouterClient::chat(ChatRequest chat_request) {
    http::ClientRequest request;
    request.method = bhttp::verb::post;
    request.url = support::join_url(options_.base_url, "/chat/completions");
    request.headers = {{"Authorization", "Bearer " + options_.key.reveal()},
                       {"Content-Type", "application/json"},
                       {"X-Title", options_.app_title}};
    request.body = build_chat_body(options_, chat_request).dump();
    request.timeout = options_.timeout;
    request.max_response_bytes = options_.max_response_bytes;
    request.idempotent = true;

    co_return co_await with_retries<ChatAnswer>(
        options_.retry,
        {kProvider, kOperation, Idempotency::kIdempotent},
        [&](int attempt) -> boost::asio::awaitable<ChatAnswer> {
            const auto started = std::chrono::steady_clock::now();
            http::ClientResponse response;
            try {
                response = co_await http_.send(request);
            } catch (const http::ClientError& error) {
                throw support::from_transport(kProvider, kOperation, error);
            }
            if (response.status / 100 != 2) {
                throw ProviderError(support::from_status(
                    kProvider, kOperation, response, error_message(response, options_.key)));
            }
            auto answer = parse_chat_answer(support::parse_json(kProvider, kOperation, response));
            support::log_success(kProvider, kOperation, attempt, response.status, started);
            detail::provider_log().debug("Chat usage",
                                         {{"provider", kProvider},
                                          {"model", answer.model},
                                          {"finish_reason", answer.finish_reason},
                                          {"prompt_tokens", answer.prompt_tokens},
                                          {"completion_tokens", answer.completion_tokens}});
            co_return answer;
        });
}

}  // namespace iea::providers
