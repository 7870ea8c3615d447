#include "iea/providers/errors.hpp"

namespace iea::providers {
namespace {

std::string render(const ErrorDetails& details) {
    std::string out = details.provider + ": " + details.operation + ": ";
    if (details.status != 0) out += "HTTP " + std::to_string(details.status) + " ";
    out += to_string(details.kind);
    if (!details.message.empty()) out += ": " + details.message;
    return out;
}

}  // namespace

std::string_view to_string(ErrorKind kind) {
    switch (kind) {
        case ErrorKind::kAuthentication:
            return "authentication failed";
        case ErrorKind::kRateLimited:
            return "rate limited";
        case ErrorKind::kNotFound:
            return "not found";
        case ErrorKind::kBadRequest:
            return "bad request";
        case ErrorKind::kProviderError:
            return "provider error";
        case ErrorKind::kTimeout:
            return "timed out";
        case ErrorKind::kMalformedResponse:
            return "malformed response";
        case ErrorKind::kConnection:
            return "connection failed";
        case ErrorKind::kTruncatedAnswer:
            return "truncated answer";
        case ErrorKind::kTooLarge:
            return "response too large";
    }
    return "unknown";
}

ProviderError::ProviderError(ErrorDetails details)
    : std::runtime_error(render(details)), details_(std::move(details)) {}

std::string scrub(std::string_view text, std::string_view secret, std::size_t max_chars) {
    std::string out(text);
    if (!secret.empty()) {
        for (auto at = out.find(secret); at != std::string::npos; at = out.find(secret, at)) {
            out.replace(at, secret.size(), "[redacted]");
        }
    }
    if (out.size() > max_chars) {
        out.resize(max_chars);
        out += "...";
    }
    return out;
}

}  // namespace iea::providers
