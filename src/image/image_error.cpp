#include "iea/image/image_error.hpp"

#include <array>
#include <utility>

namespace iea::image {
namespace {

struct KindText {
    ImageErrorKind kind;
    std::string_view name;
    std::string_view reason;  // completes "The attached file 'x' ..."
};

constexpr std::array<KindText, 10> kKinds{{
    {ImageErrorKind::kEmpty, "empty", "is an empty file (0 bytes); please attach it again"},
    {ImageErrorKind::kTooLarge,
     "too_large",
     "is too large to download; please attach a smaller export"},
    {ImageErrorKind::kTooManyPixels,
     "too_many_pixels",
     "has too many pixels for us to process; please export it at a smaller size"},
    {ImageErrorKind::kUnsupportedFormat,
     "unsupported_format",
     "is not an image we can read; please attach a PNG, JPEG, PSD, PDF, SVG, WebP, GIF, TIFF, "
     "HEIC, AVIF or BMP file"},
    {ImageErrorKind::kTruncated,
     "truncated",
     "is incomplete: the file ends before the picture does; please upload it again"},
    {ImageErrorKind::kUnreadable,
     "unreadable",
     "could not be read: it seems damaged or uses a feature we do not support"},
    {ImageErrorKind::kEncrypted,
     "encrypted",
     "is password-protected; please attach a copy without a password"},
    {ImageErrorKind::kNoComposite,
     "no_composite",
     "is not a readable image: it has no flattened preview layer; save it with "
     "'Maximize compatibility' on"},
    {ImageErrorKind::kTooSmall, "too_small", "is too small to be edited as a picture"},
    {ImageErrorKind::kBadProportions,
     "bad_proportions",
     "is too long and narrow for the image models; please crop it closer to a rectangle"},
}};

const KindText& text_of(ImageErrorKind kind) {
    for (const auto& entry : kKinds) {
        if (entry.kind == kind) return entry;
    }
    return kKinds[5];
}

}  // namespace

std::string_view kind_name(ImageErrorKind kind) noexcept { return text_of(kind).name; }

ImageErrorKind kind_from_name(std::string_view name) noexcept {
    for (const auto& entry : kKinds) {
        if (entry.name == name) return entry.kind;
    }
    return ImageErrorKind::kUnreadable;
}

ImageError::ImageError(ImageErrorKind kind, std::string file_name, std::string detail)
    : std::runtime_error("image: cannot use '" + file_name + "': " + std::string(kind_name(kind)) +
                         (detail.empty() ? "" : ": " + detail)),
      kind_(kind),
      file_name_(std::move(file_name)),
      detail_(std::move(detail)),
      user_message_("The attached file '" + file_name_ + "' " + std::string(text_of(kind).reason) +
                    ".") {}

}  // namespace iea::image
