#include "iea/http/client.hpp"

#include <openssl/ssl.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <cctype>
#include <charconv>
#include <deque>

namespace iea::http {
namespace {

namespace bhttp = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using Message = bhttp::request<bhttp::string_body>;
using ErrorCode = boost::system::error_code;
constexpr auto kAsTuple = asio::as_tuple(asio::use_awaitable);

std::string lower(std::string_view text) {
    std::string out(text);
    for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

bool has_bad_chars(std::string_view text) {
    return std::any_of(text.begin(), text.end(), [](char c) {
        const auto byte = static_cast<unsigned char>(c);
        return byte <= 0x20 || byte == 0x7f;
    });
}

bool is_unreserved(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '.' || c == '_' ||
           c == '~';
}

bool is_redirect(unsigned status) {
    return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

bool idempotent_by_default(bhttp::verb method) {
    using bhttp::verb;
    return method == verb::get || method == verb::head || method == verb::put ||
           method == verb::delete_ || method == verb::options;
}

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && lower(a) == lower(b);
}

// The outcome of one request/response exchange on one connection.
struct Attempt {
    std::optional<ClientResponse> response;
    bool keep_alive = false;
    ErrorCode error;
    bool got_some = false;  // at least one byte of a response arrived
};

FailureKind classify(const ErrorCode& error, bool got_some) {
    if (error == beast::error::timeout) return FailureKind::kTimeout;
    if (error == bhttp::error::body_limit || error == bhttp::error::header_limit) {
        return FailureKind::kTooLarge;
    }
    if (error == bhttp::error::partial_message) return FailureKind::kTruncated;
    if (error == bhttp::error::end_of_stream || error == asio::error::eof ||
        error == asio::error::connection_reset || error == asio::error::broken_pipe ||
        error == ssl::error::stream_truncated) {
        return got_some ? FailureKind::kTruncated : FailureKind::kConnectionLost;
    }
    if (error.category() == bhttp::make_error_code(bhttp::error::bad_version).category()) {
        return FailureKind::kProtocol;
    }
    return got_some ? FailureKind::kTruncated : FailureKind::kConnectionLost;
}

// Writes the request and reads one response, every step under `deadline`.
template <typename Stream>
asio::awaitable<Attempt> exchange_on(Stream& stream,
                                     beast::tcp_stream& lowest,
                                     beast::flat_buffer& buffer,
                                     Message& message,
                                     Clock::time_point deadline,
                                     std::size_t max_body,
                                     std::size_t header_limit) {
    Attempt attempt;
    buffer.consume(buffer.size());

    lowest.expires_at(deadline);
    auto [write_error, written] = co_await bhttp::async_write(stream, message, kAsTuple);
    if (write_error) {
        attempt.error = write_error;
        co_return attempt;
    }

    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(max_body);
    parser.header_limit(static_cast<std::uint32_t>(header_limit));
    lowest.expires_at(deadline);
    auto [read_error, read] = co_await bhttp::async_read(stream, buffer, parser, kAsTuple);
    if (read_error) {
        attempt.error = read_error;
        attempt.got_some = parser.got_some();
        co_return attempt;
    }
    lowest.expires_never();

    auto& answer = parser.get();
    ClientResponse response;
    response.status = answer.result_int();
    response.headers = static_cast<const bhttp::fields&>(answer);
    response.body = std::move(answer.body());
    attempt.keep_alive = answer.keep_alive();
    attempt.response = std::move(response);
    co_return attempt;
}

struct Connection {
    std::string origin;
    std::optional<beast::tcp_stream> plain;
    std::optional<beast::ssl_stream<beast::tcp_stream>> tls;
    beast::flat_buffer buffer;
    Clock::time_point idle_since{};

    beast::tcp_stream& lowest() { return tls ? beast::get_lowest_layer(*tls) : *plain; }
};

// A pooled socket the server has closed (or written to) since is not worth a request.
bool looks_alive(Connection& connection) {
    auto& socket = connection.lowest().socket();
    ErrorCode error;
    socket.non_blocking(true, error);
    if (error) return false;
    char byte = 0;
    socket.receive(asio::buffer(&byte, 1), tcp::socket::message_peek, error);
    ErrorCode ignored;
    socket.non_blocking(false, ignored);
    return error == asio::error::would_block;
}

}  // namespace

std::string Url::origin() const {
    const bool v6 = host.find(':') != std::string::npos;
    return scheme + "://" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::string Url::host_header() const {
    std::string out = host.find(':') != std::string::npos ? "[" + host + "]" : host;
    const unsigned short default_port = tls() ? 443 : 80;
    if (port != default_port) out += ":" + std::to_string(port);
    return out;
}

std::optional<Url> parse_url(std::string_view text) {
    if (text.empty() || has_bad_chars(text)) return std::nullopt;
    const auto scheme_end = text.find("://");
    if (scheme_end == std::string_view::npos) return std::nullopt;

    Url url;
    url.scheme = lower(text.substr(0, scheme_end));
    if (url.scheme != "http" && url.scheme != "https") return std::nullopt;
    auto rest = text.substr(scheme_end + 3);
    rest = rest.substr(0, rest.find('#'));

    // Authority: host, optional port; user info is refused (never needed, often a trick).
    const auto authority_end = rest.find_first_of("/?");
    const auto authority = rest.substr(0, authority_end);
    if (authority.find('@') != std::string_view::npos) return std::nullopt;
    std::string_view host;
    std::optional<std::string_view> port_text;
    if (authority.starts_with('[')) {
        const auto close = authority.find(']');
        if (close == std::string_view::npos) return std::nullopt;
        host = authority.substr(1, close - 1);
        const auto after = authority.substr(close + 1);
        if (!after.empty()) {
            if (after.front() != ':') return std::nullopt;
            port_text = after.substr(1);
        }
    } else {
        const auto colon = authority.find(':');
        host = authority.substr(0, colon);
        if (colon != std::string_view::npos) port_text = authority.substr(colon + 1);
    }
    if (host.empty()) return std::nullopt;
    url.host = lower(host);

    url.port = url.tls() ? 443 : 80;
    if (port_text) {
        unsigned value = 0;
        const auto* end = port_text->data() + port_text->size();
        const auto [ptr, ec] = std::from_chars(port_text->data(), end, value);
        if (ec != std::errc{} || ptr != end || value == 0 || value > 65535) return std::nullopt;
        url.port = static_cast<unsigned short>(value);
    }

    const auto target =
        authority_end == std::string_view::npos ? std::string_view{} : rest.substr(authority_end);
    url.target = target.empty() ? "/" : (target.front() == '?' ? "/" : "") + std::string(target);
    return url;
}

std::optional<Url> resolve_location(const Url& base, std::string_view location) {
    if (location.empty() || has_bad_chars(location)) return std::nullopt;
    const auto first_special = location.find_first_of(":/?#");
    if (first_special != std::string_view::npos && location[first_special] == ':') {
        return parse_url(location);
    }
    if (location.starts_with("//")) return parse_url(base.scheme + ":" + std::string(location));

    Url next = base;
    location = location.substr(0, location.find('#'));
    if (location.starts_with('/')) {
        next.target = std::string(location);
    } else {
        const auto path = std::string_view(base.target).substr(0, base.target.find('?'));
        next.target = std::string(path.substr(0, path.rfind('/') + 1)) + std::string(location);
    }
    return next;
}

std::string encode_path_segment(std::string_view segment) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    std::string out;
    for (const char c : segment) {
        if (is_unreserved(c)) {
            out += c;
            continue;
        }
        const auto byte = static_cast<unsigned char>(c);
        out += '%';
        out += kHex[byte >> 4U];
        out += kHex[byte & 0x0FU];
    }
    return out;
}

std::string_view to_string(FailureKind kind) {
    switch (kind) {
        case FailureKind::kInvalidUrl:
            return "invalid URL";
        case FailureKind::kResolve:
            return "name resolution failed";
        case FailureKind::kConnect:
            return "connection failed";
        case FailureKind::kTls:
            return "TLS failed";
        case FailureKind::kTimeout:
            return "timed out";
        case FailureKind::kConnectionLost:
            return "connection lost";
        case FailureKind::kTruncated:
            return "response truncated";
        case FailureKind::kTooLarge:
            return "response too large";
        case FailureKind::kProtocol:
            return "protocol error";
        case FailureKind::kTooManyRedirects:
            return "too many redirects";
    }
    return "unknown";
}

ClientError::ClientError(FailureKind kind, bool request_sent, const std::string& message)
    : std::runtime_error(message), kind_(kind), request_sent_(request_sent) {}

std::string_view ClientResponse::header(std::string_view name) const {
    const auto it = headers.find(name);
    if (it == headers.end()) return {};
    const auto value = it->value();
    return {value.data(), value.size()};
}

struct HttpClient::Impl {
    Impl(asio::any_io_executor ex, ClientOptions opts)
        : executor(std::move(ex)), options(std::move(opts)) {
        // Trust the system store (plus an optional private CA), verify every peer, TLS 1.2+.
        tls_context.set_default_verify_paths();
        if (!options.extra_ca_file.empty()) {
            tls_context.load_verify_file(options.extra_ca_file.string());
        }
        tls_context.set_verify_mode(ssl::verify_peer);
        SSL_CTX_set_min_proto_version(tls_context.native_handle(), TLS1_2_VERSION);
    }

    std::unique_ptr<Connection> take_idle(const std::string& origin);
    void keep_or_close(std::unique_ptr<Connection> connection, bool keep_alive);
    asio::awaitable<std::unique_ptr<Connection>> connect(const Url& url,
                                                         Clock::time_point deadline);
    asio::awaitable<Attempt> run(Connection& connection,
                                 Message& message,
                                 Clock::time_point deadline,
                                 std::size_t max_body);
    asio::awaitable<ClientResponse> exchange(const Url& url,
                                             Message& message,
                                             Clock::time_point deadline,
                                             bool idempotent,
                                             std::size_t max_body);

    asio::any_io_executor executor;
    ClientOptions options;
    ssl::context tls_context{ssl::context::tls_client};
    std::map<std::string, std::deque<std::unique_ptr<Connection>>> idle;
    std::size_t opened = 0;
};

std::unique_ptr<Connection> HttpClient::Impl::take_idle(const std::string& origin) {
    const auto it = idle.find(origin);
    if (it == idle.end()) return nullptr;
    auto& queue = it->second;
    const auto now = Clock::now();
    while (!queue.empty()) {
        auto connection = std::move(queue.back());
        queue.pop_back();
        if (now - connection->idle_since < options.idle_ttl && looks_alive(*connection)) {
            return connection;
        }
    }
    return nullptr;
}

// TODO: TLS connections are dropped without sending close_notify; servers see an abrupt close,
// which is harmless for HTTP/1.1 with framed bodies but shows up in their logs.
void HttpClient::Impl::keep_or_close(std::unique_ptr<Connection> connection, bool keep_alive) {
    auto& queue = idle[connection->origin];
    if (!keep_alive || queue.size() >= options.max_idle_per_origin) return;
    connection->idle_since = Clock::now();
    connection->lowest().expires_never();
    queue.push_back(std::move(connection));
}

asio::awaitable<std::unique_ptr<Connection>> HttpClient::Impl::connect(const Url& url,
                                                                       Clock::time_point deadline) {
    const auto connect_deadline = std::min(deadline, Clock::now() + options.connect_timeout);

    // 1. Endpoints: IP literals as they are, names through the resolver under the deadline.
    // TODO: Proxy settings (HTTPS_PROXY) are ignored, so a deployment that can reach the
    // providers only through a proxy cannot use this client yet.
    std::vector<tcp::endpoint> endpoints;
    ErrorCode parse_error;
    const auto address = asio::ip::make_address(url.host, parse_error);
    if (!parse_error) {
        endpoints.emplace_back(address, url.port);
    } else {
        auto resolver = std::make_shared<tcp::resolver>(executor);
        asio::steady_timer timer(executor, connect_deadline);
        timer.async_wait([resolver](const ErrorCode& error) {
            if (!error) resolver->cancel();
        });
        auto [error, results] =
            co_await resolver->async_resolve(url.host, std::to_string(url.port), kAsTuple);
        timer.cancel();
        if (error == asio::error::operation_aborted) {
            throw ClientError(FailureKind::kTimeout, false, url.origin() + ": resolving timed out");
        }
        if (error) {
            throw ClientError(FailureKind::kResolve,
                              false,
                              url.origin() + ": cannot resolve host: " + error.message());
        }
        for (const auto& entry : results) endpoints.push_back(entry.endpoint());
    }

    // 2. TCP connect.
    beast::tcp_stream stream(executor);
    stream.expires_at(connect_deadline);
    auto [connect_error, endpoint] = co_await stream.async_connect(endpoints, kAsTuple);
    if (connect_error == beast::error::timeout) {
        throw ClientError(FailureKind::kTimeout, false, url.origin() + ": connect timed out");
    }
    if (connect_error) {
        throw ClientError(FailureKind::kConnect,
                          false,
                          url.origin() + ": cannot connect: " + connect_error.message());
    }
    ErrorCode ignored;
    stream.socket().set_option(tcp::no_delay(true), ignored);
    auto connection = std::make_unique<Connection>();
    connection->origin = url.origin();
    ++opened;
    if (!url.tls()) {
        connection->plain.emplace(std::move(stream));
        co_return connection;
    }

    // 3. TLS: SNI for names (never for IP literals), chain and name (or IP) verification.
    auto& tls = connection->tls.emplace(std::move(stream), tls_context);
    if (parse_error) SSL_set_tlsext_host_name(tls.native_handle(), url.host.c_str());
    tls.set_verify_callback(ssl::host_name_verification(url.host));
    beast::get_lowest_layer(tls).expires_at(deadline);
    auto [handshake_error] = co_await tls.async_handshake(ssl::stream_base::client, kAsTuple);
    if (handshake_error == beast::error::timeout) {
        throw ClientError(FailureKind::kTimeout, false, url.origin() + ": TLS handshake timed out");
    }
    if (handshake_error) {
        throw ClientError(FailureKind::kTls,
                          false,
                          url.origin() + ": TLS handshake failed: " + handshake_error.message());
    }
    co_return connection;
}

asio::awaitable<Attempt> HttpClient::Impl::run(Connection& connection,
                                               Message& message,
                                               Clock::time_point deadline,
                                               std::size_t max_body) {
    if (connection.tls) {
        co_return co_await exchange_on(*connection.tls,
                                       connection.lowest(),
                                       connection.buffer,
                                       message,
                                       deadline,
                                       max_body,
                                       options.header_limit);
    }
    co_return co_await exchange_on(*connection.plain,
                                   connection.lowest(),
                                   connection.buffer,
                                   message,
                                   deadline,
                                   max_body,
                                   options.header_limit);
}

asio::awaitable<ClientResponse> HttpClient::Impl::exchange(const Url& url,
                                                           Message& message,
                                                           Clock::time_point deadline,
                                                           bool idempotent,
                                                           std::size_t max_body) {
    const auto fail = [&url](const Attempt& attempt) {
        const auto kind = classify(attempt.error, attempt.got_some);
        return ClientError(
            kind,
            true,
            url.origin() + ": " + std::string(to_string(kind)) + ": " + attempt.error.message());
    };

    // 1. Reuse an idle connection. The server may have closed it meanwhile: when nothing
    // at all came back, an idempotent request is sent once more on a fresh connection.
    if (auto pooled = take_idle(url.origin())) {
        auto attempt = co_await run(*pooled, message, deadline, max_body);
        if (attempt.response) {
            keep_or_close(std::move(pooled), attempt.keep_alive);
            co_return std::move(*attempt.response);
        }
        // TODO: A non-idempotent request on a connection the server closed just after the
        // liveness check fails instead of being resent; the caller sees a connection error.
        const bool stale = !attempt.got_some && attempt.error != beast::error::timeout;
        if (!stale || !idempotent) throw fail(attempt);
    }

    // 2. A fresh connection.
    auto connection = co_await connect(url, deadline);
    auto attempt = co_await run(*connection, message, deadline, max_body);
    if (!attempt.response) throw fail(attempt);
    keep_or_close(std::move(connection), attempt.keep_alive);
    co_return std::move(*attempt.response);
}

HttpClient::HttpClient(asio::any_io_executor executor, ClientOptions options)
    : impl_(std::make_unique<Impl>(std::move(executor), std::move(options))) {}

HttpClient::~HttpClient() = default;

std::size_t HttpClient::idle_connections() const {
    std::size_t count = 0;
    for (const auto& [origin, queue] : impl_->idle) count += queue.size();
    return count;
}

std::size_t HttpClient::connections_opened() const { return impl_->opened; }

asio::awaitable<ClientResponse> HttpClient::send(ClientRequest request) {
    const auto deadline = Clock::now() + request.timeout;
    auto url = parse_url(request.url);
    if (!url) throw ClientError(FailureKind::kInvalidUrl, false, "not an absolute http(s) URL");
    for (const auto& [name, value] : request.headers) {
        if (has_bad_chars(name) || value.find_first_of("\r\n") != std::string::npos) {
            throw ClientError(FailureKind::kInvalidUrl, false, "header with control characters");
        }
    }
    const bool idempotent = request.idempotent.value_or(idempotent_by_default(request.method));
    auto method = request.method;
    auto headers = std::move(request.headers);

    for (int redirects = 0;; ++redirects) {
        // 1. Build and exchange.
        Message message{method, url->target, 11};
        message.set(bhttp::field::host, url->host_header());
        message.set(bhttp::field::user_agent, "image-edit-agent/" IEA_VERSION);
        for (const auto& [name, value] : headers) message.set(name, value);
        message.body() = request.body;
        if (!request.body.empty() || method == bhttp::verb::post || method == bhttp::verb::put) {
            message.prepare_payload();
        }
        message.keep_alive(true);
        auto response = co_await impl_->exchange(
            *url, message, deadline, idempotent, request.max_response_bytes);
        response.url = url->scheme + "://" + url->host_header() + url->target;
        if (!is_redirect(response.status) || request.max_redirects == 0) co_return response;

        // 2. Follow a redirect: bounded, never from https down to http, and credentials
        // stay with the origin they were meant for.
        if (redirects >= request.max_redirects) {
            throw ClientError(FailureKind::kTooManyRedirects,
                              true,
                              url->origin() + ": more than " +
                                  std::to_string(request.max_redirects) + " redirects");
        }
        auto next = resolve_location(*url, response.header("Location"));
        if (!next || (url->tls() && !next->tls())) {
            throw ClientError(
                FailureKind::kProtocol, true, url->origin() + ": redirect to an unusable location");
        }
        if (next->origin() != url->origin()) {
            std::erase_if(headers, [](const auto& header) {
                return iequals(header.first, "authorization") ||
                       iequals(header.first, "proxy-authorization") ||
                       iequals(header.first, "cookie");
            });
        }
        if (response.status == 303 ||
            ((response.status == 301 || response.status == 302) && method == bhttp::verb::post)) {
            method = bhttp::verb::get;
            request.body.clear();
        }
        url = std::move(next);
    }
}

}  // namespace iea::http
