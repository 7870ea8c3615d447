#include "support.hpp"

#include <openssl/evp.h>

#include <random>

#include "iea/metrics/metrics.hpp"
#include "iea/providers/retry.hpp"

namespace iea::providers::support {

ErrorDetails details(std::string_view provider, std::string_view operation) {
    ErrorDetails out;
    out.provider = provider;
    out.operation = operation;
    return out;
}

ProviderError from_transport(std::string_view provider,
                             std::string_view operation,
                             const http::ClientError& error) {
    auto details = support::details(provider, operation);
    details.message = error.what();
    details.may_have_been_processed = error.request_sent();
    switch (error.kind()) {
        case http::FailureKind::kInvalidUrl:
            details.kind = ErrorKind::kBadRequest;
            break;
        case http::FailureKind::kResolve:
        case http::FailureKind::kConnect:
        case http::FailureKind::kConnectionLost:
        case http::FailureKind::kTruncated:
            details.kind = ErrorKind::kConnection;
            details.transient = true;
            break;
        case http::FailureKind::kTls:
            // A certificate that fails verification will not pass on the next attempt.
            details.kind = ErrorKind::kConnection;
            break;
        case http::FailureKind::kTimeout:
            details.kind = ErrorKind::kTimeout;
            details.transient = true;
            break;
        case http::FailureKind::kTooLarge:
            details.kind = ErrorKind::kTooLarge;
            break;
        case http::FailureKind::kProtocol:
            details.kind = ErrorKind::kMalformedResponse;
            break;
        case http::FailureKind::kTooManyRedirects:
            details.kind = ErrorKind::kProviderError;
            break;
    }
    return ProviderError(std::move(details));
}

ErrorDetails from_status(std::string_view provider,
                         std::string_view operation,
                         const http::ClientResponse& response,
                         std::string message) {
    auto details = support::details(provider, operation);
    details.status = static_cast<int>(response.status);
    details.message = std::move(message);
    const auto status = response.status;
    if (status == 401 || status == 403) {
        details.kind = ErrorKind::kAuthentication;
    } else if (status == 404 || status == 410) {
        details.kind = ErrorKind::kNotFound;
    } else if (status == 408) {
        details.kind = ErrorKind::kTimeout;
        details.transient = true;
    } else if (status == 429) {
        details.kind = ErrorKind::kRateLimited;
        details.transient = true;
        details.may_have_been_processed = false;
    } else if (status >= 400 && status < 500) {
        details.kind = ErrorKind::kBadRequest;
    } else {
        details.kind = ErrorKind::kProviderError;
        // Any 5xx may pass; whether a retry is safe is decided by the call's idempotency,
        // so a comment or upload that got a 500 is still never repeated.
        details.transient = status >= 500;
        // A 503 means the server (or its gateway) refused the work.
        details.may_have_been_processed = status != 503;
    }

    const auto now = std::chrono::system_clock::now();
    details.retry_after = parse_retry_after(response.header("Retry-After"), now);
    if (!details.retry_after && status == 429) {
        details.retry_after = parse_rate_limit_reset(response.header("X-RateLimit-Reset"), now);
    }
    return details;
}

nlohmann::json parse_json(std::string_view provider,
                          std::string_view operation,
                          const http::ClientResponse& response) {
    auto json = nlohmann::json::parse(response.body, nullptr, false);
    if (json.is_discarded()) {
        auto details = support::details(provider, operation);
        details.kind = ErrorKind::kMalformedResponse;
        details.status = static_cast<int>(response.status);
        details.message = "body is not JSON (" + std::to_string(response.body.size()) + " bytes)";
        throw ProviderError(std::move(details));
    }
    return json;
}

std::string base64(std::string_view bytes) {
    std::string out(4 * ((bytes.size() + 2) / 3), '\0');
    const int written = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                        reinterpret_cast<const unsigned char*>(bytes.data()),
                                        static_cast<int>(bytes.size()));
    out.resize(static_cast<std::size_t>(written));
    return out;
}

Multipart multipart_file(std::string_view field,
                         std::string_view file_name,
                         std::string_view content_type,
                         std::string_view bytes) {
    // A random boundary; a collision with the file's bytes is astronomically unlikely.
    static constexpr char kHex[] = "0123456789abcdef";
    thread_local std::mt19937_64 random{std::random_device{}()};
    std::string boundary = "iea-";
    for (int i = 0; i < 32; ++i) boundary += kHex[random() % 16];

    // Quotes, backslashes and line breaks cannot appear inside the quoted file name.
    std::string safe_name;
    for (const char c : file_name) {
        safe_name += (c == '"' || c == '\\' || c == '\r' || c == '\n') ? '_' : c;
    }

    Multipart out;
    out.content_type = "multipart/form-data; boundary=" + boundary;
    out.body.reserve(bytes.size() + 256);
    out.body += "--" + boundary + "\r\n";
    out.body += "Content-Disposition: form-data; name=\"" + std::string(field) + "\"; filename=\"" +
                safe_name + "\"\r\n";
    out.body += "Content-Type: " + std::string(content_type) + "\r\n\r\n";
    out.body += bytes;
    out.body += "\r\n--" + boundary + "--\r\n";
    return out;
}

std::string join_url(std::string_view base, std::string_view path) {
    while (base.ends_with('/')) base.remove_suffix(1);
    return std::string(base) + std::string(path);
}

boost::asio::awaitable<std::string> download(http::HttpClient& http,
                                             CallInfo info,
                                             RetryPolicy policy,
                                             http::ClientRequest request) {
    co_return co_await with_retries<std::string>(
        policy, info, [&](int attempt) -> boost::asio::awaitable<std::string> {
            const auto started = std::chrono::steady_clock::now();
            http::ClientResponse response;
            try {
                response = co_await http.send(request);
            } catch (const http::ClientError& error) {
                throw from_transport(info.provider, info.operation, error);
            }
            if (response.status / 100 != 2) {
                throw ProviderError(from_status(
                    info.provider, info.operation, response, "file host refused the download"));
            }
            log_success(info.provider, info.operation, attempt, response.status, started);
            co_return std::move(response.body);
        });
}

long long elapsed_ms(std::chrono::steady_clock::time_point started) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                 started)
        .count();
}

void log_success(std::string_view provider,
                 std::string_view operation,
                 int attempt,
                 unsigned status,
                 std::chrono::steady_clock::time_point started) {
    metrics::provider_call(
        provider, operation, static_cast<int>(status), std::chrono::steady_clock::now() - started);
    detail::provider_log().debug("Provider call succeeded",
                                 {{"provider", provider},
                                  {"operation", operation},
                                  {"attempt", attempt},
                                  {"status", status},
                                  {"latency_ms", elapsed_ms(started)}});
}

}  // namespace iea::providers::support
