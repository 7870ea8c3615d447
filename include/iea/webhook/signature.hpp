#pragma once

/// ClickUp webhook signatures: lowercase hex HMAC-SHA256 of the raw body under the secret.

#include <string>
#include <string_view>

namespace iea::webhook {

enum class Verification { kValid, kMissing, kMalformed, kMismatch };

/// Checks `signature_header` (X-Signature) against the exact body bytes, in constant time.
/// Hex is accepted in either case; anything that is not 64 hex digits is kMalformed.
[[nodiscard]] Verification verify_signature(std::string_view secret,
                                            std::string_view body,
                                            std::string_view signature_header);

/// The signature ClickUp would send for `body`: lowercase hex HMAC-SHA256.
[[nodiscard]] std::string sign(std::string_view secret, std::string_view body);

}  // namespace iea::webhook
