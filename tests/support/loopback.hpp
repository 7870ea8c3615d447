#pragma once

// Loopback fakes for client tests: a scripted HTTP server on our own iea::http::Server, a
// raw socket server that can misbehave (drop, stall, truncate, serve TLS), a helper that
// runs one coroutine to completion, and a throwaway self-signed certificate. Everything
// listens on 127.0.0.1 only.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <chrono>
#include <deque>
#include <exception>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "iea/http/server.hpp"

namespace iea::testing {

namespace asio = boost::asio;

/// Runs `task` on `io` until it finishes; returns its value or rethrows its exception.
/// Throws std::runtime_error when it has not finished after `limit`.
template <typename T>
T run_task(asio::io_context& io,
           asio::awaitable<T> task,
           std::chrono::milliseconds limit = std::chrono::seconds(20)) {
    std::optional<T> result;
    std::exception_ptr error;
    bool done = false;
    asio::co_spawn(io, std::move(task), [&](std::exception_ptr e, T value) {
        error = e;
        if (!e) result.emplace(std::move(value));
        done = true;
        io.stop();
    });
    io.restart();
    io.run_for(limit);
    if (!done) throw std::runtime_error("test task did not finish in time");
    if (error) std::rethrow_exception(error);
    return std::move(*result);
}

void run_task(asio::io_context& io,
              asio::awaitable<void> task,
              std::chrono::milliseconds limit = std::chrono::seconds(20));

/// One request as a fake received it.
struct Recorded {
    std::string method;
    std::string target;                          ///< With the query string.
    std::map<std::string, std::string> headers;  ///< Lower-case names.
    std::string body;
    std::chrono::steady_clock::time_point at;
    int connection = 0;  ///< Which accepted connection carried it (RawServer only), from 1.

    [[nodiscard]] bool has_header(const std::string& name) const {
        return headers.count(name) != 0;
    }
    [[nodiscard]] std::string header(const std::string& name) const {
        const auto it = headers.find(name);
        return it == headers.end() ? std::string{} : it->second;
    }
};

/// One scripted answer.
struct Step {
    unsigned status = 200;
    std::string body;
    std::map<std::string, std::string> headers;
    std::chrono::milliseconds delay{0};  ///< Wait before answering.
};

/// Shorthands for steps.
Step json_step(unsigned status, const std::string& body);

/// An HTTP fake on iea::http::Server. Script answers per "METHOD /path" (no query); they are
/// used in order and the last one repeats. Unscripted requests get 404. Every request is
/// recorded.
class ScriptedServer final {
  public:
    explicit ScriptedServer(asio::io_context& io);
    ~ScriptedServer();

    void script(const std::string& route, std::vector<Step> steps);
    [[nodiscard]] unsigned short port() const;
    [[nodiscard]] std::string base_url() const;
    [[nodiscard]] const std::vector<Recorded>& requests() const { return *requests_; }
    /// Requests for one "METHOD /path".
    [[nodiscard]] std::vector<Recorded> requests_for(const std::string& route) const;

  private:
    std::shared_ptr<std::map<std::string, std::deque<Step>>> scripts_;
    std::shared_ptr<std::vector<Recorded>> requests_;
    std::unique_ptr<http::Server> server_;
};

/// What RawServer does with one request.
struct RawAction {
    enum class Kind {
        kWrite,          ///< Write `bytes`, keep the connection for the next request.
        kWriteAndClose,  ///< Write `bytes`, then close.
        kClose,          ///< Close without answering.
        kStall,          ///< Never answer (until the server is destroyed).
    };
    Kind kind = Kind::kWrite;
    std::string bytes;
};

/// A full raw response with Content-Length, e.g. raw_response(200, "hi").
std::string raw_response(unsigned status,
                         const std::string& body,
                         const std::string& extra_headers = {});

/// A socket-level fake: parses each request with Beast, then does what `script` says.
/// With a TLS context it serves TLS (the handshake may fail: that is the point).
class RawServer final {
  public:
    using Script = std::function<RawAction(const Recorded&)>;
    RawServer(asio::io_context& io, Script script, asio::ssl::context* tls = nullptr);
    ~RawServer();

    [[nodiscard]] unsigned short port() const;
    [[nodiscard]] std::string base_url() const;
    [[nodiscard]] int connections() const { return state_->connections; }
    [[nodiscard]] const std::vector<Recorded>& requests() const { return state_->requests; }

    struct State {
        Script script;
        asio::ssl::context* tls = nullptr;
        int connections = 0;
        std::vector<Recorded> requests;
    };

  private:
    std::shared_ptr<State> state_;
    std::shared_ptr<asio::ip::tcp::acceptor> acceptor_;
};

/// A fresh self-signed certificate for 127.0.0.1 (made with the openssl CLI): cert.pem and
/// key.pem in a scratch directory. `san` is the subjectAltName, e.g. "IP:127.0.0.1".
struct TestCertificate {
    std::filesystem::path cert;
    std::filesystem::path key;
};
TestCertificate make_self_signed_certificate(const std::string& san = "IP:127.0.0.1");

}  // namespace iea::testing
