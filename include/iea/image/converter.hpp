#pragma once

/// Image intake: any attachment a designer sends in, an sRGB 8-bit PNG out; model-sized and
/// vision-sized copies of it.
///
/// Every decode of untrusted bytes runs in a separate helper process (`image-decode-worker`,
/// installed next to the service binary) under CPU-time, address-space and wall-clock limits,
/// so a decoder that hangs (the truncated SVGZ that spins libvips 8.14 forever), explodes in
/// memory or crashes costs one killed child, never the service. The awaiting coroutine is
/// resumed on its own executor; the event loop is never blocked: a bounded thread pool (one
/// thread per allowed concurrent decode) waits on the children. (`image-edit-agent convert`
/// does not use this class: it becomes the helper itself, see convert_command.hpp.)

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "iea/image/format.hpp"
#include "iea/image/image_error.hpp"

namespace iea::image {

/// Limits and knobs of intake. Defaults follow issue 4. The decode worker must sit next to
/// image-edit-agent (docker/Dockerfile puts it there); without it every intake fails with
/// "image: cannot start ...".
struct ConversionLimits {
    std::size_t max_download_bytes = std::size_t{100} << 20;     ///< 100 MiB
    std::uint64_t max_pixels = 100'000'000;                      ///< checked from the header
    std::chrono::milliseconds decode_wall_time{60'000};          ///< child killed after this
    std::chrono::seconds decode_cpu_time{45};                    ///< RLIMIT_CPU of the child
    std::uint64_t decode_memory_bytes = std::uint64_t{3} << 30;  ///< RLIMIT_AS of the child
    unsigned max_concurrent_decodes = 2;  ///< children alive at once; also the pool size
    /// zlib level of the PNGs we produce (0-9), written with adaptive row filters. Level 2
    /// measured best on upload size against encode time (docs/BENCHMARKS.md): above 4 a photo
    /// costs 2-6x the time for no gain; below 2 flat artwork grows.
    int png_compression = 2;
    /// The helper executable; empty means `image-decode-worker` next to this process's
    /// executable, or $IEA_DECODE_WORKER when set.
    std::filesystem::path worker_path;
};

/// Limits of the copy sent to the vision model.
struct ValidationLimits {
    int max_long_side = 1568;                  ///< larger is downscaled by the provider anyway
    std::size_t max_base64_bytes = 5'000'000;  ///< the provider's cap on one image
};

/// The model-ready picture: PNG, sRGB, 8 bits per channel, 3 or 4 channels, upright.
struct PreparedImage {
    std::string png;
    int width = 0;
    int height = 0;
    bool has_alpha = false;
    ImageFormat source_format = ImageFormat::kUnknown;  ///< what the attachment really was
};

/// Encoded bytes with their real format (PNG or JPEG for validation copies).
struct EncodedImage {
    std::string bytes;
    ImageFormat format = ImageFormat::kUnknown;
    int width = 0;
    int height = 0;
    [[nodiscard]] std::string_view mime() const noexcept { return mime_type(format); }
};

/// Converts images off the event loop. Construct once per service; safe to call from many
/// coroutines at once (decodes beyond `max_concurrent_decodes` queue). Destroying it waits for
/// running decodes (each bounded by the wall-time limit); queued ones are dropped.
class ImageConverter final {
  public:
    ImageConverter(boost::asio::any_io_executor executor, ConversionLimits limits);
    ~ImageConverter();
    ImageConverter(const ImageConverter&) = delete;
    ImageConverter& operator=(const ImageConverter&) = delete;

    /// Attachment bytes to the model-ready PNG: EXIF orientation applied, ICC/CMYK/Lab/16-bit
    /// converted to sRGB 8-bit, alpha kept; PSD/PSB composite, PDF page 1 at about 2000 px on
    /// the long side, SVG without external access, first frame/page of GIF/WebP/TIFF.
    /// Throws ImageError naming `file_name` (only used in messages).
    boost::asio::awaitable<PreparedImage> prepare(std::string bytes, std::string file_name);

    /// Scales `image` so both sides lie in [min_side, max_side] (e.g. wan-2.5: 384..5000),
    /// keeping proportions; returns it unchanged when they already do. Throws ImageError
    /// kBadProportions when no scale satisfies both bounds.
    boost::asio::awaitable<PreparedImage> fit_for_model(const PreparedImage& image,
                                                        int min_side,
                                                        int max_side);

    /// A copy for the vision model from any readable image (our PNG, a model's JPEG/PNG/WebP):
    /// long side at most limits.max_long_side, PNG when its base64 fits
    /// limits.max_base64_bytes, JPEG otherwise. `bytes` must stay alive until the awaitable
    /// completes. Throws ImageError naming `file_name`.
    boost::asio::awaitable<EncodedImage> for_validation(std::string_view bytes,
                                                        ValidationLimits limits = {},
                                                        std::string file_name = "image");

    [[nodiscard]] const ConversionLimits& limits() const noexcept { return limits_; }

  private:
    boost::asio::any_io_executor executor_;
    ConversionLimits limits_;
    boost::asio::thread_pool pool_;
};

/// Length of `size` bytes once base64-encoded (with padding).
[[nodiscard]] constexpr std::size_t base64_length(std::size_t size) noexcept {
    return (size + 2) / 3 * 4;
}

}  // namespace iea::image
