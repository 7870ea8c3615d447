#pragma once

/// Typed failures of image intake. `what()` is for logs ("image: <what failed>: <detail>");
/// `user_message()` is for the task comment and names the file in words a designer
/// understands.

#include <stdexcept>
#include <string>
#include <string_view>

namespace iea::image {

enum class ImageErrorKind {
    kEmpty,              ///< zero bytes
    kTooLarge,           ///< more bytes than the download limit
    kTooManyPixels,      ///< header declares more pixels than the pixel limit
    kUnsupportedFormat,  ///< content is no image format we read (text, archive, ...)
    kTruncated,          ///< the data ends before the image does
    kUnreadable,         ///< damaged, or the decoder failed, crashed or was killed
    kEncrypted,          ///< password-protected document
    kNoComposite,        ///< PSD without a flattened composite that we cannot rebuild
    kTooSmall,           ///< degenerate size (e.g. a 1x1 pt PDF page)
    kBadProportions,     ///< cannot fit a model's side range without breaking the other bound
};

/// Stable lower-case name of a kind, e.g. "too_many_pixels" (log field, wire protocol).
[[nodiscard]] std::string_view kind_name(ImageErrorKind kind) noexcept;

/// Inverse of kind_name(); kUnreadable for an unknown name.
[[nodiscard]] ImageErrorKind kind_from_name(std::string_view name) noexcept;

class ImageError final : public std::runtime_error {
  public:
    /// `detail` is technical (decoder text, sizes) and goes only into what();
    /// `file_name` is how the designer knows the file.
    ImageError(ImageErrorKind kind, std::string file_name, std::string detail);

    [[nodiscard]] ImageErrorKind kind() const noexcept { return kind_; }
    [[nodiscard]] const std::string& file_name() const noexcept { return file_name_; }
    [[nodiscard]] const std::string& detail() const noexcept { return detail_; }
    /// One plain-words sentence for the task comment or the command line.
    [[nodiscard]] const std::string& user_message() const noexcept { return user_message_; }

  private:
    ImageErrorKind kind_;
    std::string file_name_;
    std::string detail_;
    std::string user_message_;
};

}  // namespace iea::image
