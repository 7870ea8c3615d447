#include "iea/http/server.hpp"

#include <algorithm>
#include <array>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <nlohmann/json.hpp>

#include "iea/logging/log.hpp"

namespace iea::http {
namespace {

namespace bhttp = beast::http;
constexpr auto kAsTuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t kHeaderLimit = 16 * 1024;

const logging::Logger& log() {
    static const logging::Logger logger("http");
    return logger;
}

std::string_view method_name(Method method) {
    return bhttp::to_string(method);
}

}  // namespace

Response json_response(Status status, const nlohmann::json& body) {
    Response response{status, 11};
    response.set(bhttp::field::content_type, "application/json");
    response.body() = body.dump();
    return response;
}

Response error_response(Status status, std::string_view reason) {
    return json_response(status, {{"status", "failed"}, {"error", reason}});
}

std::string_view path_of(const Request& request) {
    const std::string_view target = request.target();
    return target.substr(0, target.find('?'));
}

void Router::add(Method method, std::string path, Handler handler) {
    routes_.push_back({method, std::move(path), false, std::move(handler)});
}

void Router::add_prefix(Method method, std::string prefix, Handler handler) {
    routes_.push_back({method, std::move(prefix), true, std::move(handler)});
}

namespace {

bool serves(std::string_view route_path, bool prefix, std::string_view path) {
    return prefix ? path.starts_with(route_path) && path.size() > route_path.size()
                  : path == route_path;
}

}  // namespace

asio::awaitable<Response> Router::route(const Request& request) const {
    const auto path = path_of(request);
    const auto matches = [&](const Route& route) { return serves(route.path, route.prefix, path); };

    std::string allowed;
    for (const auto& route : routes_) {
        if (!matches(route)) continue;
        if (route.method == request.method()) co_return co_await route.handler(request);
        if (!allowed.empty()) allowed += ", ";
        allowed += method_name(route.method);
    }
    if (allowed.empty()) co_return error_response(Status::not_found, "no such endpoint");

    auto response = error_response(Status::method_not_allowed, "method not allowed");
    response.set(bhttp::field::allow, allowed);
    co_return response;
}

std::string_view Router::matched_route(const Request& request) const {
    const auto path = path_of(request);
    for (const auto& route : routes_) {
        if (serves(route.path, route.prefix, path)) return route.path;
    }
    return {};
}

std::vector<std::string> Router::describe() const {
    std::vector<std::string> out;
    for (const auto& route : routes_) {
        out.push_back(std::string(method_name(route.method)) + " " + route.path +
                      (route.prefix ? "*" : ""));
    }
    return out;
}

struct Server::Connection {
    explicit Connection(asio::ip::tcp::socket socket) : stream(std::move(socket)) {}
    beast::tcp_stream stream;
    bool busy = false;  // between the first byte of a request and the end of its response
};

Server::Server(asio::io_context& io, ServerOptions options, Router router)
    : io_(io), options_(std::move(options)), router_(std::move(router)), acceptor_(io) {}

Server::~Server() = default;

void Server::start() {
    const asio::ip::tcp::endpoint endpoint(asio::ip::make_address(options_.address),
                                           options_.port);
    acceptor_.open(endpoint.protocol());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind(endpoint);
    acceptor_.listen(asio::socket_base::max_listen_connections);
    asio::co_spawn(io_, accept_loop(), asio::detached);
}

unsigned short Server::port() const { return acceptor_.local_endpoint().port(); }

void Server::observe_answers(AnswerObserver observer) { answer_observer_ = std::move(observer); }

std::size_t Server::active_connections() const {
    return static_cast<std::size_t>(
        std::count_if(connections_.begin(), connections_.end(),
                      [](const auto& weak) { return !weak.expired(); }));
}

void Server::stop() {
    stopping_ = true;
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    // Idle connections are closed now; busy ones close after their response.
    for (const auto& weak : connections_) {
        if (const auto connection = weak.lock(); connection && !connection->busy) {
            connection->stream.socket().close(ignored);
        }
    }
}

asio::awaitable<bool> Server::drain(std::chrono::milliseconds grace) {
    const auto deadline = std::chrono::steady_clock::now() + grace;
    asio::steady_timer timer(io_);
    while (active_connections() > 0 && std::chrono::steady_clock::now() < deadline) {
        timer.expires_after(std::chrono::milliseconds(10));
        co_await timer.async_wait(kAsTuple);
    }
    const bool all_done = active_connections() == 0;
    boost::system::error_code ignored;
    for (const auto& weak : connections_) {
        if (const auto connection = weak.lock()) connection->stream.socket().close(ignored);
    }
    co_return all_done;
}

asio::awaitable<void> Server::accept_loop() {
    asio::steady_timer backoff(io_);
    while (acceptor_.is_open()) {
        auto [ec, socket] = co_await acceptor_.async_accept(kAsTuple);
        if (ec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
        if (ec) {
            // Out of file descriptors and the like: pause instead of spinning on the error.
            log().warning("Accept failed", {{"error", ec.message()}});
            backoff.expires_after(std::chrono::milliseconds(100));
            co_await backoff.async_wait(kAsTuple);
            continue;
        }
        std::erase_if(connections_, [](const auto& weak) { return weak.expired(); });
        if (connections_.size() >= options_.max_connections) {
            // Closing at once is cheaper than queueing a client we cannot serve.
            boost::system::error_code ignored;
            socket.close(ignored);
            continue;
        }
        socket.set_option(asio::ip::tcp::no_delay(true), ec);
        auto connection = std::make_shared<Connection>(std::move(socket));
        connections_.push_back(connection);
        asio::co_spawn(io_, serve(std::move(connection)), asio::detached);
    }
}

namespace {

// Closing a socket with unread input makes the kernel send a reset, which can destroy the
// answer (a 413, a 400) before the client reads it. So: stop sending, read and drop what the
// client still sends for a short while, then close.
asio::awaitable<void> discard_rest(beast::tcp_stream& stream) {
    constexpr auto kLinger = std::chrono::seconds(2);
    constexpr std::size_t kMaxDiscard = 8U << 20U;
    boost::system::error_code ignored;
    stream.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
    stream.expires_after(kLinger);
    std::array<char, 16384> scratch{};
    for (std::size_t total = 0; total < kMaxDiscard;) {
        auto [ec, bytes] = co_await stream.async_read_some(asio::buffer(scratch), kAsTuple);
        if (ec) break;
        total += bytes;
    }
}

}  // namespace

asio::awaitable<void> Server::serve(std::shared_ptr<Connection> connection) {
    auto& stream = connection->stream;
    beast::flat_buffer buffer;

    while (!stopping_) {
        // 1. Wait, at most the idle timeout, for the first byte of the next request.
        connection->busy = false;
        if (buffer.size() == 0) {
            stream.expires_after(options_.idle_timeout);
            auto [ec, bytes] = co_await stream.async_read_some(buffer.prepare(4096), kAsTuple);
            // Closed by the client, silent past the idle timeout, or closed by stop().
            if (ec) break;
            buffer.commit(bytes);
        }

        // 2. The whole request must arrive within the request timeout.
        connection->busy = true;
        stream.expires_after(options_.request_timeout);
        bhttp::request_parser<bhttp::string_body> parser;
        parser.header_limit(kHeaderLimit);
        parser.body_limit(options_.max_body_bytes);
        auto [read_ec, read_bytes] = co_await bhttp::async_read(stream, buffer, parser, kAsTuple);

        const auto read_done = std::chrono::steady_clock::now();
        std::string_view route;  // stays empty for a request that could not be read
        Response response;
        bool keep_alive = false;
        bool linger = true;  // an unread request body is left: drain it before closing
        if (read_ec == bhttp::error::body_limit) {
            response = error_response(Status::payload_too_large, "request body too large");
        } else if (read_ec == bhttp::error::header_limit) {
            response = error_response(Status::request_header_fields_too_large,
                                      "request headers too large");
        } else if (read_ec && read_ec != bhttp::error::end_of_stream &&
                   read_ec != bhttp::error::partial_message &&
                   read_ec.category() == bhttp::make_error_code(bhttp::error::bad_target).category()) {
            // Anything else the parser refused.
            response = error_response(Status::bad_request, "malformed HTTP request");
        } else if (read_ec) {
            // Timed out (the stream is already closed) or reset: nobody to answer.
            break;
        } else {
            const Request& request = parser.get();
            route = router_.matched_route(request);
            bool failed = false;
            try {
                response = co_await router_.route(request);
            } catch (const std::exception& e) {
                log().error("Request handler failed",
                            {{"path", path_of(request)}, {"error", e.what()}});
                failed = true;
            }
            if (failed) response = error_response(Status::internal_server_error, "internal error");
            response.version(request.version());
            keep_alive = request.keep_alive() && !stopping_;
            linger = false;
        }

        // 3. Answer; a connection whose request could not be read is closed after it.
        response.keep_alive(keep_alive);
        response.prepare_payload();
        stream.expires_after(options_.request_timeout);
        auto [write_ec, written] = co_await bhttp::async_write(stream, response, kAsTuple);
        if (answer_observer_ && !route.empty()) {
            const auto elapsed = std::chrono::steady_clock::now() - read_done;
            answer_observer_(route, response.result_int(), elapsed);
        }
        if (!write_ec && linger) co_await discard_rest(stream);
        if (write_ec || !keep_alive) break;
    }

    connection->busy = false;
    boost::system::error_code ignored;
    stream.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
    stream.socket().close(ignored);
}

}  // namespace iea::http
