// The ClickUp side of webhooks: signed taskUpdated/taskStatusUpdated/taskCommentPosted
// deliveries to the service, duplicated and redelivered the way ClickUp does (contract 1.2).

#include <tuple>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include "iea/webhook/signature.hpp"
#include "sandbox/sandbox.hpp"

namespace iea::sandbox {
namespace {

namespace beast = boost::beast;
namespace bhttp = beast::http;
constexpr auto kAsTuple = asio::as_tuple(asio::use_awaitable);

}  // namespace

ServiceUrl parse_service_url(const std::string& url) {
    constexpr std::string_view kScheme = "http://";
    if (!url.starts_with(kScheme))
        throw std::invalid_argument("service URL must start with http://");
    const auto rest = std::string_view(url).substr(kScheme.size());
    const auto slash = rest.find('/');
    const auto authority = rest.substr(0, slash);
    ServiceUrl out;
    out.target = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
    if (out.target == "/") out.target = "/webhook/clickup";
    const auto colon = authority.rfind(':');
    const auto host = authority.substr(0, colon);
    // The sandbox talks to loopback only: a test must never post webhooks anywhere else.
    if (host != "127.0.0.1" && host != "localhost") {
        throw std::invalid_argument("service URL must point at 127.0.0.1 or localhost");
    }
    const int port =
        colon == std::string_view::npos ? 80 : std::stoi(std::string(authority.substr(colon + 1)));
    if (port <= 0 || port > 65535) throw std::invalid_argument("service URL has a bad port");
    out.port = static_cast<unsigned short>(port);
    return out;
}

std::vector<ServiceUrl> parse_service_urls(const std::string& urls) {
    std::vector<ServiceUrl> out;
    std::size_t start = 0;
    for (;;) {
        const auto comma = urls.find(',', start);
        out.push_back(parse_service_url(urls.substr(start, comma - start)));
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    return out;
}

json Sandbox::history_item(const std::string& field, json before, json after, bool by_service) {
    json user = by_service ? json{{"id", 99000001},
                                  {"username", "image-edit-agent"},
                                  {"email", "agent@example.invalid"},
                                  {"color", "#000000"},
                                  {"initials", "IA"},
                                  {"profilePicture", nullptr}}
                           : json{{"id", 81234567},
                                  {"username", "Sandbox Designer"},
                                  {"email", "designer@example.invalid"},
                                  {"color", "#7b68ee"},
                                  {"initials", "SD"},
                                  {"profilePicture", nullptr}};
    json item = {{"id", next_history_id()},
                 {"type", 1},
                 {"date", std::to_string(now_ms())},
                 {"field", field},
                 {"parent_id", "901200000001"},
                 {"data", json::object()},
                 {"source", nullptr},
                 {"user", user},
                 {"before", before},
                 {"after", after}};
    if (field == "custom_field") {
        item["custom_field"] = {{"id", options_.field_id},
                                {"name", "AI edit"},
                                {"type", "checkbox"},
                                {"type_config", json::object()},
                                {"date_created", "1733142000000"},
                                {"hide_from_guests", false},
                                {"required", false}};
    }
    return item;
}

std::string Sandbox::emit_webhook(const Task& task,
                                  const std::string& event,
                                  json item,
                                  const WebhookOptions& options) {
    const json payload = {{"event", event},
                          {"history_items", json::array({item})},
                          {"task_id", task.id},
                          {"webhook_id", webhook_id_}};
    Delivery base;
    base.task_id = task.id;
    base.event = event;
    base.field = item.value("field", "");
    base.history_item_id = item.value("id", "");
    base.signature_mode = options.signature;
    const auto body = payload.dump();
    for (int copy = 1; copy <= std::max(1, options.deliveries); ++copy) {
        base.copy = copy;
        asio::co_spawn(
            io_,
            deliver(body, base, std::chrono::milliseconds((copy - 1) * options.spacing_ms)),
            asio::detached);
    }
    return base.history_item_id;
}

asio::awaitable<void> Sandbox::deliver(std::string body,
                                       Delivery base,
                                       std::chrono::milliseconds wait) {
    asio::steady_timer timer(io_);
    if (wait.count() > 0) {
        timer.expires_after(wait);
        co_await timer.async_wait(kAsTuple);
    }
    // ClickUp: the first send plus up to five redeliveries while the answer is non-2xx or late.
    for (int attempt = 1; attempt <= 1 + scenario_.webhook_max_retries && !stopping_; ++attempt) {
        base.attempt = attempt;
        const auto sent = co_await send_once(body, base);
        deliveries_.push_back(sent);
        log_.info("Webhook sent",
                  {{"task_id", sent.task_id},
                   {"attempt", attempt},
                   {"status", sent.status},
                   {"latency_ms", sent.latency_ms}});
        if (sent.status >= 200 && sent.status < 300 && !sent.timed_out) co_return;
        timer.expires_after(std::chrono::milliseconds(scenario_.webhook_retry_ms));
        co_await timer.async_wait(kAsTuple);
    }
}

asio::awaitable<Delivery> Sandbox::send_once(const std::string& body, Delivery record) {
    record.seq = next_delivery_seq_++;
    // Round-robin over the instances, as a load balancer in front of them would; like one, an
    // instance that refuses the connection is skipped for the next in turn.
    const auto urls = parse_service_urls(options_.service_url);
    const auto first = static_cast<std::size_t>(record.seq) % urls.size();

    // Sign exactly the bytes that go out, unless a test asked for a broken signature.
    std::string wire = body;
    std::optional<std::string> signature = iea::webhook::sign(options_.webhook_secret, body);
    if (record.signature_mode == "wrong_secret")
        signature = iea::webhook::sign("wrong-" + options_.webhook_secret, body);
    if (record.signature_mode == "missing") signature.reset();
    if (record.signature_mode == "altered") wire = body.substr(0, body.size() - 1) + " }";

    bhttp::request<bhttp::string_body> request{bhttp::verb::post, urls[first].target, 11};
    request.set(bhttp::field::content_type, "application/json");
    request.set(bhttp::field::user_agent, "ClickUp-Sandbox");
    if (signature) request.set("X-Signature", *signature);
    request.body() = wire;
    request.prepare_payload();

    beast::tcp_stream stream(io_);
    const auto timeout = std::chrono::milliseconds(scenario_.webhook_timeout_ms);
    stream.expires_after(timeout);
    record.sent_ms = now_ms();
    const auto started = std::chrono::steady_clock::now();
    const auto finish = [&](std::string error) {
        record.latency_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::steady_clock::now() - started)
                                .count();
        record.error = std::move(error);
    };

    boost::system::error_code connect_ec;
    for (std::size_t tried = 0; tried < urls.size(); ++tried) {
        const auto& url = urls[(first + tried) % urls.size()];
        request.target(url.target);
        request.set(bhttp::field::host, "127.0.0.1:" + std::to_string(url.port));
        const asio::ip::tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), url.port);
        std::tie(connect_ec) = co_await stream.async_connect(endpoint, kAsTuple);
        if (connect_ec != asio::error::connection_refused) break;
        stream.close();
    }
    if (!connect_ec) {
        auto [write_ec, written] = co_await bhttp::async_write(stream, request, kAsTuple);
        connect_ec = write_ec;
    }
    if (connect_ec) {
        record.timed_out = connect_ec == beast::error::timeout;
        finish(connect_ec.message());
        co_return record;
    }
    beast::flat_buffer buffer;
    bhttp::response<bhttp::string_body> response;
    auto [read_ec, read] = co_await bhttp::async_read(stream, buffer, response, kAsTuple);
    if (read_ec) {
        record.timed_out = read_ec == beast::error::timeout;
        finish(read_ec.message());
        co_return record;
    }
    record.status = static_cast<int>(response.result_int());
    record.answer = response.body().substr(0, 1024);
    finish("");
    boost::system::error_code ignored;
    stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    co_return record;
}

}  // namespace iea::sandbox
