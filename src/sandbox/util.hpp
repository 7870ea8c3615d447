#pragma once

// Small text helpers shared by the sandbox's fakes.

#include <optional>
#include <string>
#include <string_view>

namespace iea::sandbox {

/// Lower-case extension without the dot ("png"), or empty.
[[nodiscard]] std::string extension_of(std::string_view file_name);

/// A MIME type for a file extension; application/octet-stream when unknown.
[[nodiscard]] std::string mimetype_for(std::string_view extension);

/// Percent-encodes everything except RFC 3986 unreserved characters.
[[nodiscard]] std::string url_encode(std::string_view text);

/// Undoes percent-encoding; malformed escapes are kept as they are.
[[nodiscard]] std::string url_decode(std::string_view text);

[[nodiscard]] std::string lower(std::string_view text);

/// Standard base64 with padding; nothing when `text` is not valid base64.
[[nodiscard]] std::optional<std::string> base64_decode(std::string_view text);

/// Standard base64 with padding.
[[nodiscard]] std::string base64_encode(std::string_view bytes);

}  // namespace iea::sandbox
