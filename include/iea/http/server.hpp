#pragma once

/// The HTTP/1.1 server: listener, per-connection session loop and router.
///
/// Runs on one Asio io_context (single thread). Handlers are coroutines that turn a parsed
/// request into a response; the session loop owns all I/O, deadlines and limits. Knows
/// nothing of ClickUp.

#include <chrono>
#include <cstddef>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <nlohmann/json_fwd.hpp>

namespace iea::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
using Request = beast::http::request<beast::http::string_body>;
using Response = beast::http::response<beast::http::string_body>;
using Status = beast::http::status;
using Method = beast::http::verb;
using Handler = std::function<asio::awaitable<Response>(const Request&)>;

/// A response with a JSON body and the matching content type.
[[nodiscard]] Response json_response(Status status, const nlohmann::json& body);

/// A JSON error body `{"status":"failed","error":reason}`.
[[nodiscard]] Response error_response(Status status, std::string_view reason);

/// The request target without its query string.
[[nodiscard]] std::string_view path_of(const Request& request);

/// Maps method and path to a handler. Unknown path: 404; known path, other method: 405
/// with an Allow header. Both with JSON bodies.
class Router final {
public:
    /// Serves exactly `path`.
    void add(Method method, std::string path, Handler handler);
    /// Serves every path that starts with `prefix` (e.g. "/tasks/").
    void add_prefix(Method method, std::string prefix, Handler handler);

    [[nodiscard]] asio::awaitable<Response> route(const Request& request) const;

    /// The path of the route that serves `request`'s path, whatever the method ("/tasks/"
    /// for a prefix route); empty when none does. Names a request in metrics.
    [[nodiscard]] std::string_view matched_route(const Request& request) const;

    /// Every route, as "METHOD path" (prefix routes end in '*'), for documentation checks.
    [[nodiscard]] std::vector<std::string> describe() const;

private:
    struct Route {
        Method method;
        std::string path;
        bool prefix;
        Handler handler;
    };
    std::vector<Route> routes_;
};

/// Told about every routed request once its answer is sent (or failed to send): the matched
/// route's path, the status, and the time from the whole request read to the answer sent.
using AnswerObserver = std::function<void(
    std::string_view route, unsigned status, std::chrono::steady_clock::duration elapsed)>;

struct ServerOptions {
    std::string address = "127.0.0.1";
    unsigned short port = 0;
    std::size_t max_body_bytes = 1 << 20;
    std::chrono::milliseconds request_timeout{10000};  ///< To read one whole request.
    std::chrono::milliseconds idle_timeout{30000};     ///< Silence allowed between requests.
    std::size_t max_connections = 1024;
};

/// Accepts connections and serves them with the router until shut down.
class Server final {
public:
    Server(asio::io_context& io, ServerOptions options, Router router);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    /// Binds and starts accepting. Throws std::system_error when the port cannot be bound.
    void start();

    /// The port actually bound (useful with port 0).
    [[nodiscard]] unsigned short port() const;

    /// Stops accepting, closes idle connections, and lets requests in progress finish;
    /// their connections close after the response. Returns at once.
    void stop();

    /// Waits until every connection has closed, or until `grace` has passed, whichever
    /// comes first; then closes whatever is left. Returns true when all had finished.
    [[nodiscard]] asio::awaitable<bool> drain(std::chrono::milliseconds grace);

    [[nodiscard]] std::size_t active_connections() const;

    /// Sets the observer of answers (one; a later call replaces it). Runs on the I/O thread.
    void observe_answers(AnswerObserver observer);

private:
    struct Connection;
    asio::awaitable<void> accept_loop();
    asio::awaitable<void> serve(std::shared_ptr<Connection> connection);

    asio::io_context& io_;
    ServerOptions options_;
    Router router_;
    asio::ip::tcp::acceptor acceptor_;
    std::list<std::weak_ptr<Connection>> connections_;
    bool stopping_ = false;
    AnswerObserver answer_observer_;
};

}  // namespace iea::http
