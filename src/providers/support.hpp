#pragma once

// Helpers shared by the provider clients: turning transport failures and HTTP statuses into
// ProviderError, JSON bodies, multipart bodies, base64, URL joining. Private to providers.

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "iea/http/client.hpp"
#include "iea/providers/errors.hpp"
#include "iea/providers/retry.hpp"

namespace iea::providers::support {

/// Details with only provider and operation set.
[[nodiscard]] ErrorDetails details(std::string_view provider, std::string_view operation);

/// A transport failure as a ProviderError (kind, transient, may_have_been_processed).
[[nodiscard]] ProviderError from_transport(std::string_view provider,
                                           std::string_view operation,
                                           const http::ClientError& error);

/// The default meaning of a non-2xx status: kind, transient, processed, and the wait asked by
/// Retry-After (or X-RateLimit-Reset on a 429). `message` is already scrubbed.
[[nodiscard]] ErrorDetails from_status(std::string_view provider,
                                       std::string_view operation,
                                       const http::ClientResponse& response,
                                       std::string message);

/// The body as JSON, or a kMalformedResponse error.
[[nodiscard]] nlohmann::json parse_json(std::string_view provider,
                                        std::string_view operation,
                                        const http::ClientResponse& response);

/// Base64 (standard alphabet, padded).
[[nodiscard]] std::string base64(std::string_view bytes);

struct Multipart {
    std::string content_type;  ///< "multipart/form-data; boundary=..."
    std::string body;
};

/// A multipart/form-data body holding one file in field `field`.
[[nodiscard]] Multipart multipart_file(std::string_view field,
                                       std::string_view file_name,
                                       std::string_view content_type,
                                       std::string_view bytes);

/// `base` without trailing slashes, then `path` (which starts with '/').
[[nodiscard]] std::string join_url(std::string_view base, std::string_view path);

/// GETs a file (attachment, model output) without any credential, following redirects,
/// retrying like any idempotent call. Non-2xx and transport failures throw ProviderError.
[[nodiscard]] boost::asio::awaitable<std::string> download(http::HttpClient& http,
                                                           CallInfo info,
                                                           RetryPolicy policy,
                                                           http::ClientRequest request);

/// Milliseconds since `started`, for latency_ms.
[[nodiscard]] long long elapsed_ms(std::chrono::steady_clock::time_point started);

/// Logs a finished call at debug level with the usual fields, and counts it in the metrics.
void log_success(std::string_view provider,
                 std::string_view operation,
                 int attempt,
                 unsigned status,
                 std::chrono::steady_clock::time_point started);

}  // namespace iea::providers::support
