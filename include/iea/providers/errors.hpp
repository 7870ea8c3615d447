#pragma once

/// The one exception type the provider clients throw.
///
/// It names the provider ("clickup", "openrouter", "wavespeed") and the operation
/// ("get_task", "chat", "submit", ...), carries the HTTP status and the provider's own
/// message, and says what kind of failure it was so a caller can decide without parsing
/// text. The text never contains a credential: clients strip their key from anything a
/// server echoed before building the error.

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace iea::providers {

/// What went wrong, in terms a caller can act on.
enum class ErrorKind {
    kAuthentication,     ///< 401/403: the key is wrong, revoked or not allowed.
    kRateLimited,        ///< 429: see retry_after().
    kNotFound,           ///< 404: the task, prediction or file does not exist.
    kBadRequest,         ///< Other 4xx: the request itself is wrong; repeating will not help.
    kProviderError,      ///< 5xx or an error reported inside a 200 body.
    kTimeout,            ///< The deadline passed (ours, or a 408 from the provider).
    kMalformedResponse,  ///< A 2xx whose body is not what the contract describes.
    kConnection,         ///< Could not connect, TLS failed, or the connection broke.
    kTruncatedAnswer,    ///< The model stopped at its token limit or produced no content.
    kTooLarge,           ///< The response exceeded the caller's size cap.
};

[[nodiscard]] std::string_view to_string(ErrorKind kind);

/// Everything an error carries; built by the clients.
struct ErrorDetails {
    std::string provider;
    std::string operation;
    ErrorKind kind = ErrorKind::kProviderError;
    int status = 0;       ///< HTTP status, 0 when no response arrived.
    std::string message;  ///< The provider's message, or the transport's; never a key.
    /// How long the provider asked us to wait (Retry-After, X-RateLimit-Reset).
    std::optional<std::chrono::milliseconds> retry_after;
    /// Worth another attempt: connection trouble, timeouts, 429, 502/503/504 and errors a
    /// provider documents as passing.
    bool transient = false;
    /// False only when the failure proves the server did not act on the request (no byte
    /// sent, or a 429/503 refusal). Non-idempotent calls are retried only then.
    bool may_have_been_processed = true;
};

/// what() reads "<provider>: <operation>: <detail>", e.g.
/// "clickup: get_task: HTTP 401 authentication failed: Token invalid".
class ProviderError final : public std::runtime_error {
  public:
    explicit ProviderError(ErrorDetails details);

    [[nodiscard]] const std::string& provider() const { return details_.provider; }
    [[nodiscard]] const std::string& operation() const { return details_.operation; }
    [[nodiscard]] ErrorKind kind() const { return details_.kind; }
    [[nodiscard]] int status() const { return details_.status; }
    [[nodiscard]] const std::string& provider_message() const { return details_.message; }
    [[nodiscard]] std::optional<std::chrono::milliseconds> retry_after() const {
        return details_.retry_after;
    }
    [[nodiscard]] bool transient() const { return details_.transient; }
    [[nodiscard]] bool may_have_been_processed() const { return details_.may_have_been_processed; }
    [[nodiscard]] const ErrorDetails& details() const { return details_; }

  private:
    ErrorDetails details_;
};

/// Replaces every occurrence of `secret` in `text` with "[redacted]" and cuts the result to
/// `max_chars`, so nothing a server echoes can leak a key into an error or a log.
[[nodiscard]] std::string scrub(std::string_view text,
                                std::string_view secret,
                                std::size_t max_chars = 500);

}  // namespace iea::providers
