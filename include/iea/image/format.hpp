#pragma once

/// Image formats recognised from their content (magic bytes), never from a file name or a
/// declared mime type. Used to pick a decoder and to name files we upload: a JPEG result is
/// uploaded as `.jpg` with `image/jpeg`, whatever the model or the file name claimed.

#include <string_view>

namespace iea::image {

enum class ImageFormat {
    kUnknown,
    kPng,
    kJpeg,
    kGif,
    kWebp,
    kTiff,
    kBmp,
    kPsd,
    kPsb,
    kPdf,
    kSvg,
    kSvgz,  ///< gzip-compressed data, read as a compressed SVG
    kHeic,
    kAvif,
};

/// The format the bytes are in; kUnknown for anything we do not read (text, empty input).
/// Looks at no more than the first 4 KiB.
[[nodiscard]] ImageFormat sniff(std::string_view bytes) noexcept;

/// Mime type for upload headers, e.g. "image/png"; "application/octet-stream" for kUnknown.
[[nodiscard]] std::string_view mime_type(ImageFormat format) noexcept;

/// File extension with its dot, e.g. ".jpg"; ".bin" for kUnknown.
[[nodiscard]] std::string_view extension(ImageFormat format) noexcept;

/// Short upper-case name for messages and logs, e.g. "JPEG", "PSD".
[[nodiscard]] std::string_view format_name(ImageFormat format) noexcept;

}  // namespace iea::image
