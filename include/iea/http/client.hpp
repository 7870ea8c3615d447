#pragma once

/// The outgoing HTTP/1.1 client shared by every provider client.
///
/// Runs as coroutines on one executor (the service's single-threaded io_context); an
/// HttpClient must only be used from that executor. It speaks plain HTTP and HTTPS; TLS
/// always verifies the peer's certificate chain against the system trust store and the
/// host name (or IP address) in the URL, and sends SNI. Idle keep-alive connections are
/// pooled per scheme/host/port. Every network step runs against the request's deadline.
/// It knows nothing of ClickUp, OpenRouter or WaveSpeed: retries and error meaning live in
/// `providers`.

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/verb.hpp>
#include <chrono>
#include <cstddef>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace iea::http {

namespace asio = boost::asio;
namespace beast = boost::beast;

/// A parsed absolute http or https URL.
struct Url {
    std::string scheme;  ///< "http" or "https", lower case.
    std::string host;    ///< Lower case; an IPv6 literal without its brackets.
    unsigned short port = 0;
    std::string target;  ///< Path and query, at least "/"; the fragment is dropped.

    [[nodiscard]] bool tls() const { return scheme == "https"; }
    /// "scheme://host:port", the key of the connection pool and of credential decisions.
    [[nodiscard]] std::string origin() const;
    /// The Host header value: the port only when it is not the scheme's default.
    [[nodiscard]] std::string host_header() const;
};

/// Parses an absolute URL. Rejects other schemes, user info, empty hosts, bad ports and
/// control characters or spaces anywhere. Returns nothing when the URL is unusable.
[[nodiscard]] std::optional<Url> parse_url(std::string_view text);

/// Resolves a Location header value against the URL it came from: absolute URLs,
/// scheme-relative ("//host/x"), absolute paths ("/x") and relative paths ("x").
[[nodiscard]] std::optional<Url> resolve_location(const Url& base, std::string_view location);

/// Percent-encodes one path segment (everything but unreserved characters).
[[nodiscard]] std::string encode_path_segment(std::string_view segment);

/// What went wrong with an exchange, as far as the transport can tell.
enum class FailureKind {
    kInvalidUrl,        ///< The URL could not be parsed or uses another scheme.
    kResolve,           ///< The host name did not resolve.
    kConnect,           ///< TCP connect refused or unreachable.
    kTls,               ///< TLS handshake or certificate verification failed.
    kTimeout,           ///< The deadline passed during some step.
    kConnectionLost,    ///< Reset or closed before a complete response arrived.
    kTruncated,         ///< The response ended in the middle of its body.
    kTooLarge,          ///< The response body exceeded the caller's cap.
    kProtocol,          ///< The peer sent something that is not HTTP/1.1.
    kTooManyRedirects,  ///< More redirects than the request allowed.
};

[[nodiscard]] std::string_view to_string(FailureKind kind);

/// A transport failure. `request_sent()` is false only when no byte of the request can have
/// reached the server (resolve, connect, TLS handshake, or a connect/handshake timeout):
/// such a failure proves the server processed nothing.
class ClientError final : public std::runtime_error {
  public:
    ClientError(FailureKind kind, bool request_sent, const std::string& message);

    [[nodiscard]] FailureKind kind() const { return kind_; }
    [[nodiscard]] bool request_sent() const { return request_sent_; }

  private:
    FailureKind kind_;
    bool request_sent_;
};

/// One request. Bodies are held in memory whole.
/// TODO: Request and response bodies are not streamed, so a file of hundreds of megabytes
/// costs that much memory; fine for images under the configured caps.
///
/// Header names are sent as given; Host, Content-Length and User-Agent are set
/// by the client.
struct ClientRequest {
    beast::http::verb method = beast::http::verb::get;
    std::string url;  ///< Absolute http or https URL.
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
    /// Deadline of the whole exchange: connect, handshake, write and read, redirects included.
    std::chrono::milliseconds timeout{30000};
    /// Larger bodies fail with FailureKind::kTooLarge.
    std::size_t max_response_bytes = 8U << 20U;
    /// Redirects followed (downloads only); 0 returns a 3xx as is. An Authorization header
    /// is dropped when a redirect leaves the original scheme/host/port.
    int max_redirects = 0;
    /// Whether repeating the request is harmless. Default: true for GET, HEAD, PUT, DELETE,
    /// OPTIONS. Only idempotent requests are resent after a reused idle connection turns out
    /// to have been closed by the server.
    std::optional<bool> idempotent;
};

/// A complete response.
struct ClientResponse {
    unsigned status = 0;
    beast::http::fields headers;
    std::string body;
    std::string url;  ///< The URL that answered (differs from the request's after redirects).

    /// The value of header `name`, empty when absent.
    [[nodiscard]] std::string_view header(std::string_view name) const;
};

struct ClientOptions {
    /// Idle connections kept per scheme/host/port.
    std::size_t max_idle_per_origin = 4;
    /// Idle connections older than this are closed rather than reused.
    std::chrono::milliseconds idle_ttl{30000};
    /// Cap of the connect step, inside the request deadline.
    std::chrono::milliseconds connect_timeout{10000};
    /// Extra trust anchors (PEM) added to the system store, e.g. a private CA. Empty: none.
    std::filesystem::path extra_ca_file;
    std::size_t header_limit = 64U << 10U;
};

/// Sends requests over pooled connections. Not thread-safe: use it from its executor only.
class HttpClient final {
  public:
    explicit HttpClient(asio::any_io_executor executor, ClientOptions options = {});
    ~HttpClient();
    HttpClient(const HttpClient&) = delete;
    HttpClient& operator=(const HttpClient&) = delete;

    /// Sends `request` and reads the whole response. Any HTTP status is a response; transport
    /// problems throw ClientError.
    [[nodiscard]] asio::awaitable<ClientResponse> send(ClientRequest request);

    /// Connections currently idle in the pool.
    [[nodiscard]] std::size_t idle_connections() const;
    /// Connections opened since construction (for tests and metrics).
    [[nodiscard]] std::size_t connections_opened() const;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace iea::http
