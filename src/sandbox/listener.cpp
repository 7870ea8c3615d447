// The sandbox's own session loop. The service's http::Server always answers with a whole,
// well-formed response, which is right for the product but not for a fake that must drop
// connections and cut bodies short; so the sandbox keeps the Router and owns the I/O here.

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include "sandbox/sandbox.hpp"

namespace iea::sandbox {
namespace {

namespace beast = boost::beast;
namespace bhttp = beast::http;
constexpr auto kAsTuple = asio::as_tuple(asio::use_awaitable);
constexpr std::uint64_t kMaxBodyBytes = 64ull * 1024 * 1024;
constexpr auto kIdleTimeout = std::chrono::seconds(60);

std::string service_of(std::string_view path) {
    for (const char* name : {"clickup", "openrouter", "wavespeed", "files", "admin"}) {
        const std::string prefix = std::string("/") + name + "/";
        if (path.starts_with(prefix)) return name;
    }
    return {};
}

std::string fault_name(FaultKind kind) {
    switch (kind) {
        case FaultKind::kFailedPrediction:
            return "failed_prediction";
        case FaultKind::kOutput404:
            return "output_404";
        case FaultKind::kFinishLength:
            return "finish_length";
        case FaultKind::kContentNull:
            return "content_null";
        default:
            return "other";
    }
}

std::string default_message(int status) {
    switch (status) {
        case 400:
            return "Bad request";
        case 401:
            return "Unauthorized";
        case 402:
            return "Insufficient credits";
        case 403:
            return "Forbidden";
        case 404:
            return "Not found";
        case 408:
            return "Request timed out";
        case 429:
            return "Rate limit exceeded";
        case 502:
            return "Upstream provider error";
        case 503:
            return "Service unavailable";
        default:
            return "Sandbox fault";
    }
}

// An error written the way the named provider writes its errors (contracts 1.9, 2.3, 3.1).
Response provider_error(const std::string& service, const FaultRule& rule) {
    const auto message = rule.message.empty() ? default_message(rule.status) : rule.message;
    const auto status = static_cast<http::Status>(rule.status);
    Response response;
    if (service == "clickup") {
        const auto ecode =
            rule.source.value("ecode",
                              rule.status == 401 ? std::string("OAUTH_019")
                                                 : "SANDBOX_" + std::to_string(rule.status));
        response = http::json_response(status, {{"err", message}, {"ECODE", ecode}});
    } else if (service == "openrouter") {
        response = http::json_response(
            status,
            {{"error",
              {{"code", rule.status}, {"message", message}, {"metadata", json::object()}}}});
    } else if (service == "wavespeed") {
        response = http::json_response(
            status, {{"code", rule.status}, {"message", message}, {"data", nullptr}});
    } else {
        response = Response{status, 11};
        response.set(bhttp::field::content_type, "text/plain");
        response.body() = message;
    }
    if (rule.retry_after)
        response.set(bhttp::field::retry_after, std::to_string(*rule.retry_after));
    if (rule.ratelimit_reset) {
        response.set("X-RateLimit-Limit", "100");
        response.set("X-RateLimit-Remaining", "0");
        response.set("X-RateLimit-Reset", std::to_string(*rule.ratelimit_reset));
    }
    return response;
}

Response error_in_200(const std::string& service, const FaultRule& rule) {
    const auto message = rule.message.empty() ? default_message(rule.status) : rule.message;
    if (service == "wavespeed") {
        return http::json_response(
            http::Status::ok, {{"code", rule.status}, {"message", message}, {"data", nullptr}});
    }
    return http::json_response(http::Status::ok,
                               {{"error", {{"code", rule.status}, {"message", message}}}});
}

Response html_404() {
    Response response{http::Status::not_found, 11};
    response.set(bhttp::field::content_type, "text/html; charset=utf-8");
    response.body() =
        "<!DOCTYPE html><html><head><title>Error</title></head>"
        "<body><pre>Cannot find the requested route</pre></body></html>";
    return response;
}

// The status line and header fields, exactly as they would go on the wire.
std::string header_text(const Response& response) {
    std::string out = "HTTP/1.1 " + std::to_string(response.result_int()) + " " +
                      std::string(response.reason()) + "\r\n";
    for (const auto& field : response) {
        out += std::string(field.name_string()) + ": " + std::string(field.value()) + "\r\n";
    }
    return out + "\r\n";
}

json body_summary(const Request& request) {
    const std::string content_type(request[bhttp::field::content_type]);
    if (content_type.find("json") != std::string::npos) {
        const auto parsed = json::parse(request.body(), nullptr, false);
        if (!parsed.is_discarded()) return summarize_json(parsed);
    }
    if (content_type.starts_with("multipart/")) {
        if (const auto parts = parse_multipart(content_type, request.body())) {
            json out = json::array();
            for (const auto& part : *parts) {
                out.push_back({{"name", part.name},
                               {"filename", part.filename},
                               {"content_type", part.content_type},
                               {"size", part.data.size()}});
            }
            return {{"parts", out}};
        }
    }
    return {{"bytes", request.body().size()}};
}

}  // namespace

struct Sandbox::Exchange {
    int seq = 0;
    std::string service;
    std::int64_t started = 0;
    std::int64_t finished = 0;
    int status = 0;
    bool dropped = false;
    bool truncated = false;
    std::optional<int> fault_id;
};

void Sandbox::start() {
    const asio::ip::tcp::endpoint endpoint(asio::ip::make_address(options_.bind), options_.port);
    acceptor_.open(endpoint.protocol());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind(endpoint);
    acceptor_.listen(asio::socket_base::max_listen_connections);
    port_ = acceptor_.local_endpoint().port();
    reset();
    asio::co_spawn(io_, accept_loop(), asio::detached);
}

void Sandbox::stop() {
    stopping_ = true;
    boost::system::error_code ignored;
    acceptor_.close(ignored);
}

asio::awaitable<void> Sandbox::accept_loop() {
    while (acceptor_.is_open()) {
        auto [ec, socket] = co_await acceptor_.async_accept(kAsTuple);
        if (ec) {
            if (!acceptor_.is_open()) co_return;
            continue;
        }
        asio::co_spawn(io_, session(std::move(socket)), asio::detached);
    }
}

asio::awaitable<void> Sandbox::session(asio::ip::tcp::socket socket) {
    beast::tcp_stream stream(std::move(socket));
    beast::flat_buffer buffer;
    while (!stopping_) {
        stream.expires_after(kIdleTimeout);
        bhttp::request_parser<bhttp::string_body> parser;
        parser.header_limit(64 * 1024);
        parser.body_limit(kMaxBodyBytes);
        auto [read_ec, read_bytes] = co_await bhttp::async_read(stream, buffer, parser, kAsTuple);
        // Closed, idle too long or unparsable: a fake owes no explanation.
        if (read_ec) break;

        Request request = parser.release();
        Exchange exchange;
        exchange.seq = next_request_seq_++;
        exchange.started = now_ms();
        exchange.service = service_of(http::path_of(request));
        std::optional<Response> response;
        try {
            response = co_await answer(request, exchange);
        } catch (const std::exception& e) {
            log_.error("Sandbox handler failed",
                       {{"path", http::path_of(request)}, {"error", e.what()}});
            response = http::error_response(http::Status::internal_server_error, "sandbox error");
        }
        exchange.finished = now_ms();
        exchange.dropped = !response;
        exchange.status = response ? static_cast<int>(response->result_int()) : 0;
        record(request, exchange);
        if (!response) break;

        const bool keep_alive = request.keep_alive() && !exchange.truncated && !stopping_;
        response->version(11);
        response->keep_alive(keep_alive);
        response->prepare_payload();
        stream.expires_after(kIdleTimeout);
        if (exchange.truncated) {
            // Promise the whole body, send half of it, hang up.
            const auto& body = response->body();
            const std::string wire = header_text(*response) + body.substr(0, body.size() / 2);
            co_await asio::async_write(stream, asio::buffer(wire), kAsTuple);
            break;
        }
        auto [write_ec, written] = co_await bhttp::async_write(stream, *response, kAsTuple);
        if (write_ec || !keep_alive) break;
    }
    boost::system::error_code ignored;
    stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    stream.socket().close(ignored);
}

std::optional<FaultRule> Sandbox::match_fault(std::string_view service, const Request& request) {
    const auto path = std::string(http::path_of(request));
    for (auto& rule : faults_) {
        if (rule.times == 0) continue;
        if (!rule.service.empty() && rule.service != service) continue;
        if (!rule.method.empty() && rule.method != request.method_string()) continue;
        if (!rule.path.empty() && !std::regex_search(path, rule.path_regex)) continue;
        if (rule.times > 0) --rule.times;
        ++rule.hits;
        return rule;
    }
    return std::nullopt;
}

asio::awaitable<std::optional<Response>> Sandbox::answer(Request& request, Exchange& exchange) {
    // Only the session may say which fault applies; a client cannot ask for one.
    request.erase("X-Sandbox-Fault");
    if (exchange.service.empty() || exchange.service == "admin") {
        co_return co_await router_.route(request);
    }

    const auto rule = match_fault(exchange.service, request);
    const int delay = scenario_.latency_ms + (rule ? rule->latency_ms : 0);
    if (delay > 0) {
        asio::steady_timer timer(io_, std::chrono::milliseconds(delay));
        co_await timer.async_wait(kAsTuple);
    }
    if (!rule) co_return co_await router_.route(request);

    exchange.fault_id = rule->id;
    log_.info(
        "Fault applied",
        {{"fault_id", rule->id}, {"service", exchange.service}, {"path", http::path_of(request)}});
    switch (rule->kind) {
        case FaultKind::kDrop:
            co_return std::nullopt;
        case FaultKind::kStatus:
            co_return provider_error(exchange.service, *rule);
        case FaultKind::kHtml404:
            co_return html_404();
        case FaultKind::kErrorIn200:
            co_return error_in_200(exchange.service, *rule);
        case FaultKind::kLatency:
            co_return co_await router_.route(request);
        case FaultKind::kTruncate: {
            exchange.truncated = true;
            co_return co_await router_.route(request);
        }
        case FaultKind::kMalformedJson: {
            Response response{http::Status::ok, 11};
            response.set(bhttp::field::content_type, "application/json");
            response.body() =
                R"({"id":"gen-sandbox","choices":[{"message":{"content":"unterminated)";
            co_return response;
        }
        default: {
            // Faults that only the handler can carry out (prediction fate, answer shape).
            request.set("X-Sandbox-Fault", fault_name(rule->kind));
            co_return co_await router_.route(request);
        }
    }
}

void Sandbox::record(const Request& request, const Exchange& exchange) {
    if (exchange.service.empty() || exchange.service == "admin") return;
    const std::string_view target = request.target();
    const auto query_at = target.find('?');
    json entry = {
        {"seq", exchange.seq},
        {"service", exchange.service},
        {"method", std::string(request.method_string())},
        {"path", std::string(http::path_of(request))},
        {"query",
         query_at == std::string_view::npos ? "" : std::string(target.substr(query_at + 1))},
        {"started_ms", exchange.started},
        {"finished_ms", exchange.finished},
        {"latency_ms", exchange.finished - exchange.started},
        {"status", exchange.status},
        {"dropped", exchange.dropped},
        {"truncated", exchange.truncated},
        {"authorization", request.find(bhttp::field::authorization) != request.end()},
        {"content_type", std::string(request[bhttp::field::content_type])},
        {"body", body_summary(request)},
        {"fault_id", exchange.fault_id ? json(*exchange.fault_id) : json(nullptr)},
    };
    requests_.push_back(std::move(entry));
}

}  // namespace iea::sandbox
