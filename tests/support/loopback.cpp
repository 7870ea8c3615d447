#include "support/loopback.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <cctype>
#include <cstdlib>

#include "support/harness.hpp"

namespace iea::testing {
namespace {

namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
constexpr auto kAsTuple = asio::as_tuple(asio::use_awaitable);

std::string lower(std::string text) {
    for (auto& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return text;
}

template <typename Message>
Recorded record(const Message& message) {
    Recorded out;
    out.method = std::string(message.method_string());
    out.target = std::string(message.target());
    for (const auto& field : message) {
        out.headers[lower(std::string(field.name_string()))] = std::string(field.value());
    }
    out.body = message.body();
    out.at = std::chrono::steady_clock::now();
    return out;
}

std::string route_of(const Recorded& request) {
    return request.method + " " + request.target.substr(0, request.target.find('?'));
}

template <typename Stream>
asio::awaitable<void> serve_raw(Stream& stream,
                                beast::tcp_stream& lowest,
                                std::shared_ptr<RawServer::State> state,
                                int connection) {
    beast::flat_buffer buffer;
    for (;;) {
        bhttp::request_parser<bhttp::string_body> parser;
        parser.body_limit(64U << 20U);
        auto [read_error, read] = co_await bhttp::async_read(stream, buffer, parser, kAsTuple);
        if (read_error) co_return;
        auto request = record(parser.get());
        request.connection = connection;
        state->requests.push_back(request);
        const auto action = state->script(request);

        if (action.kind == RawAction::Kind::kStall) {
            asio::steady_timer forever(lowest.get_executor(), std::chrono::hours(1));
            co_await forever.async_wait(kAsTuple);
            co_return;
        }
        if (action.kind == RawAction::Kind::kClose) co_return;
        auto [write_error, written] =
            co_await asio::async_write(stream, asio::buffer(action.bytes), kAsTuple);
        if (write_error || action.kind == RawAction::Kind::kWriteAndClose) co_return;
    }
}

asio::awaitable<void> raw_session(tcp::socket socket, std::shared_ptr<RawServer::State> state) {
    const int connection = ++state->connections;
    beast::tcp_stream plain(std::move(socket));
    if (state->tls == nullptr) {
        co_await serve_raw(plain, plain, state, connection);
        boost::system::error_code ignored;
        plain.socket().shutdown(tcp::socket::shutdown_both, ignored);
        co_return;
    }
    beast::ssl_stream<beast::tcp_stream> tls(std::move(plain), *state->tls);
    auto [handshake_error] = co_await tls.async_handshake(asio::ssl::stream_base::server, kAsTuple);
    if (handshake_error) co_return;  // the client refused us: expected in TLS tests
    co_await serve_raw(tls, beast::get_lowest_layer(tls), state, connection);
}

asio::awaitable<void> raw_accept(std::shared_ptr<tcp::acceptor> acceptor,
                                 std::shared_ptr<RawServer::State> state) {
    for (;;) {
        auto [error, socket] = co_await acceptor->async_accept(kAsTuple);
        if (error) co_return;
        asio::co_spawn(
            acceptor->get_executor(), raw_session(std::move(socket), state), asio::detached);
    }
}

}  // namespace

void run_task(asio::io_context& io, asio::awaitable<void> task, std::chrono::milliseconds limit) {
    std::exception_ptr error;
    bool done = false;
    asio::co_spawn(io, std::move(task), [&](std::exception_ptr e) {
        error = e;
        done = true;
        io.stop();
    });
    io.restart();
    io.run_for(limit);
    if (!done) throw std::runtime_error("test task did not finish in time");
    if (error) std::rethrow_exception(error);
}

Step json_step(unsigned status, const std::string& body) {
    return Step{status, body, {{"Content-Type", "application/json"}}, {}};
}

ScriptedServer::ScriptedServer(asio::io_context& io)
    : scripts_(std::make_shared<std::map<std::string, std::deque<Step>>>()),
      requests_(std::make_shared<std::vector<Recorded>>()) {
    auto scripts = scripts_;
    auto requests = requests_;
    http::Handler handler =
        [scripts, requests](const http::Request& request) -> asio::awaitable<http::Response> {
        auto recorded = record(request);
        requests->push_back(recorded);
        const auto it = scripts->find(route_of(recorded));
        if (it == scripts->end() || it->second.empty()) {
            co_return http::error_response(http::Status::not_found, "not scripted");
        }
        const Step step = it->second.front();
        if (it->second.size() > 1) it->second.pop_front();
        if (step.delay.count() > 0) {
            asio::steady_timer timer(co_await asio::this_coro::executor, step.delay);
            co_await timer.async_wait(kAsTuple);
        }
        http::Response response{static_cast<http::Status>(step.status), 11};
        for (const auto& [name, value] : step.headers) response.set(name, value);
        response.body() = step.body;
        co_return response;
    };

    http::Router router;
    for (const auto method :
         {http::Method::get, http::Method::post, http::Method::put, http::Method::delete_}) {
        router.add_prefix(method, "/", handler);
    }
    http::ServerOptions options;
    options.max_body_bytes = 64U << 20U;
    server_ = std::make_unique<http::Server>(io, options, std::move(router));
    server_->start();
}

ScriptedServer::~ScriptedServer() = default;

void ScriptedServer::script(const std::string& route, std::vector<Step> steps) {
    (*scripts_)[route] = std::deque<Step>(steps.begin(), steps.end());
}

unsigned short ScriptedServer::port() const { return server_->port(); }

std::string ScriptedServer::base_url() const {
    return "http://127.0.0.1:" + std::to_string(port());
}

std::vector<Recorded> ScriptedServer::requests_for(const std::string& route) const {
    std::vector<Recorded> out;
    for (const auto& request : *requests_) {
        if (route_of(request) == route) out.push_back(request);
    }
    return out;
}

std::string raw_response(unsigned status,
                         const std::string& body,
                         const std::string& extra_headers) {
    return "HTTP/1.1 " + std::to_string(status) +
           " Scripted\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" + extra_headers +
           "\r\n" + body;
}

RawServer::RawServer(asio::io_context& io, Script script, asio::ssl::context* tls)
    : state_(std::make_shared<State>()), acceptor_(std::make_shared<tcp::acceptor>(io)) {
    state_->script = std::move(script);
    state_->tls = tls;
    const tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), 0);
    acceptor_->open(endpoint.protocol());
    acceptor_->bind(endpoint);
    acceptor_->listen();
    asio::co_spawn(io, raw_accept(acceptor_, state_), asio::detached);
}

RawServer::~RawServer() {
    boost::system::error_code ignored;
    acceptor_->close(ignored);
}

unsigned short RawServer::port() const { return acceptor_->local_endpoint().port(); }

std::string RawServer::base_url() const {
    return std::string(state_->tls ? "https" : "http") + "://127.0.0.1:" + std::to_string(port());
}

TestCertificate make_self_signed_certificate(const std::string& san) {
    const auto dir = scratch_dir("tls");
    TestCertificate out{dir / "cert.pem", dir / "key.pem"};
    const std::string command =
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1"
        " -subj /CN=iea-test -addext subjectAltName=" +
        san + " -keyout " + out.key.string() + " -out " + out.cert.string() + " >/dev/null 2>&1";
    if (std::system(command.c_str()) != 0) throw std::runtime_error("openssl req failed");
    return out;
}

}  // namespace iea::testing
