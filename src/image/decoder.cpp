// Child side of image intake: runs inside `image-decode-worker`, never in the service.

#include <magick/MagickCore.h>
#include <malloc.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>
#include <vips/vips8>

#include "image/png_writer.hpp"
#include "image/psd.hpp"
#include "image/worker_protocol.hpp"

namespace iea::image::detail {
namespace {

using vips::VError;
using vips::VImage;

// Raised inside the child and turned into an error reply.
struct Failure {
    ImageErrorKind kind;
    std::string detail;
};

[[noreturn]] void fail(ImageErrorKind kind, std::string detail) {
    throw Failure{kind, std::move(detail)};
}

constexpr int kPdfTargetLongSide = 2000;
constexpr double kMinPdfPagePoints = 36;  // half an inch: smaller pages are not pictures
constexpr std::array<int, 3> kJpegQualities{85, 75, 60};

std::string trimmed(std::string text) {
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    return text;
}

bool mentions(const std::string& text, std::initializer_list<const char*> needles) {
    return std::any_of(needles.begin(), needles.end(), [&](const char* needle) {
        return text.find(needle) != std::string::npos;
    });
}

// Decoder messages are the only signal of why a load failed; map the known ones.
ImageErrorKind classify(const std::string& text) {
    if (mentions(text,
                 {"Premature end",
                  "truncated",
                  "not enough data",
                  "Unexpected end",
                  "insufficient image data",
                  "unexpected end",
                  "short read",
                  "Read error",
                  "read error",
                  "out of data"})) {
        return ImageErrorKind::kTruncated;
    }
    if (mentions(text, {"password", "encrypted", "Encrypted"})) return ImageErrorKind::kEncrypted;
    if (mentions(text, {"Security limit", "exceeds the maximum", "too large"})) {
        return ImageErrorKind::kTooManyPixels;
    }
    return ImageErrorKind::kUnreadable;
}

[[noreturn]] void fail_from_vips(const VError& error) {
    auto text = trimmed(error.what());
    vips_error_clear();
    const auto kind = classify(text);
    fail(kind, std::move(text));
}

void check_pixels(std::uint64_t width, std::uint64_t height, std::uint64_t max_pixels) {
    if (width == 0 || height == 0) fail(ImageErrorKind::kUnreadable, "zero-sized image");
    if (width * height > max_pixels) {
        fail(ImageErrorKind::kTooManyPixels,
             std::to_string(width) + "x" + std::to_string(height) + " pixels, limit " +
                 std::to_string(max_pixels));
    }
}

// A blob over the request payload, which lives as long as the process.
class Blob final {
  public:
    explicit Blob(std::string_view bytes)
        : blob_(vips_blob_new(nullptr, bytes.data(), bytes.size())) {}
    ~Blob() { vips_area_unref(VIPS_AREA(blob_)); }
    Blob(const Blob&) = delete;
    Blob& operator=(const Blob&) = delete;
    [[nodiscard]] VipsBlob* get() const { return blob_; }

  private:
    VipsBlob* blob_;
};

struct LoadHints {
    VipsAccess access = VIPS_ACCESS_RANDOM;
    int jpeg_shrink = 1;
    double scale = 1.0;  // PDF and SVG render scale
};

// The loader is chosen from our own sniffing, never by libvips' guess, so only the loaders
// listed here can ever see untrusted bytes.
VImage load_with_vips(ImageFormat format, const Blob& blob, const LoadHints& hints) {
    auto* options =
        VImage::option()->set("fail_on", VIPS_FAIL_ON_TRUNCATED)->set("access", hints.access);
    switch (format) {
        case ImageFormat::kPng:
            return VImage::pngload_buffer(blob.get(), options);
        case ImageFormat::kJpeg:
            return VImage::jpegload_buffer(blob.get(), options->set("shrink", hints.jpeg_shrink));
        case ImageFormat::kGif:
            return VImage::gifload_buffer(blob.get(), options);
        case ImageFormat::kWebp:
            return VImage::webpload_buffer(blob.get(), options);
        case ImageFormat::kTiff:
            return VImage::tiffload_buffer(blob.get(), options);
        case ImageFormat::kHeic:
        case ImageFormat::kAvif:
            return VImage::heifload_buffer(blob.get(), options);
        case ImageFormat::kPdf:
            return VImage::pdfload_buffer(blob.get(), options->set("scale", hints.scale));
        case ImageFormat::kSvg:
        case ImageFormat::kSvgz:
            // Loaded from memory, librsvg has no base directory and resolves no external
            // references; `unlimited` stays off.
            return VImage::svgload_buffer(blob.get(), options->set("scale", hints.scale));
        default:
            break;
    }
    delete options;
    fail(ImageErrorKind::kUnsupportedFormat, "no vips loader for this format");
}

// ---- ImageMagick (PSD, PSB, BMP) ----

void start_magick() {
    static bool started = false;
    if (started) return;
    MagickCoreGenesis("image-decode-worker", MagickFalse);
    started = true;
}

struct MagickDeleter {
    void operator()(Image* image) const { DestroyImageList(image); }
    void operator()(ImageInfo* info) const { DestroyImageInfo(info); }
    void operator()(ExceptionInfo* exception) const { DestroyExceptionInfo(exception); }
};
template <typename T>
using MagickPtr = std::unique_ptr<T, MagickDeleter>;

void limit_magick(std::uint64_t max_pixels) {
    SetMagickResourceLimit(AreaResource, static_cast<MagickSizeType>(max_pixels));
    SetMagickResourceLimit(WidthResource, 300'000);
    SetMagickResourceLimit(HeightResource, 300'000);
    // Debian's policy caps the in-memory pixel cache at 256 MiB (a limit a program can lower,
    // not raise) and spills larger documents to a disk cache, so the disk cache stays allowed.
    // TODO: give each decode its own temporary directory; a killed decode leaves ImageMagick's
    // pixel cache file in /tmp until the machine cleans it.
}

// Reads `scenes` (0 = all) of a blob with the coder forced to `coder`.
MagickPtr<Image> read_magick(std::string_view bytes, const char* coder, std::size_t scenes) {
    MagickPtr<ImageInfo> info(AcquireImageInfo());
    MagickPtr<ExceptionInfo> exception(AcquireExceptionInfo());
    CopyMagickString(info->magick, coder, MaxTextExtent);
    CopyMagickString(info->filename, (std::string(coder) + ":blob").c_str(), MaxTextExtent);
    info->scene = 0;
    info->number_scenes = scenes;
    MagickPtr<Image> image(BlobToImage(info.get(), bytes.data(), bytes.size(), exception.get()));
    if (exception->severity >= ErrorException || !image) {
        std::string text = exception->reason != nullptr ? exception->reason : "read failed";
        if (exception->description != nullptr)
            text += std::string(" (") + exception->description + ")";
        const auto kind = classify(text);
        fail(kind, std::move(text));
    }
    return image;
}

// Frees pixels handed to libvips when the image that wraps them closes.
void free_pixels(VipsImage* /*image*/, gpointer pixels) {
    delete[] static_cast<unsigned char*>(pixels);
}

// Wraps `pixels` (width x height x bands, 8-bit, interleaved) in a libvips image that owns
// them: no second full-size copy of a large document.
VImage adopt_pixels(std::unique_ptr<unsigned char[]> pixels,
                    std::size_t width,
                    std::size_t height,
                    int bands) {
    const auto size = width * height * static_cast<std::size_t>(bands);
    VipsImage* image = vips_image_new_from_memory(pixels.get(),
                                                  size,
                                                  static_cast<int>(width),
                                                  static_cast<int>(height),
                                                  bands,
                                                  VIPS_FORMAT_UCHAR);
    if (image == nullptr) fail(ImageErrorKind::kUnreadable, "out of memory");
    g_signal_connect(image, "postclose", G_CALLBACK(free_pixels), pixels.release());
    const VImage out(image);
    return out.copy(VImage::option()->set("interpretation", VIPS_INTERPRETATION_sRGB));
}

std::unique_ptr<unsigned char[]> allocate_pixels(std::size_t width, std::size_t height, int bands) {
    try {
        return std::make_unique_for_overwrite<unsigned char[]>(width * height *
                                                               static_cast<std::size_t>(bands));
    } catch (const std::bad_alloc&) {
        fail(ImageErrorKind::kUnreadable, "out of memory");
    }
}

// ImageMagick's picture as a libvips image whose rows are exported on demand, so the pixels
// are never held twice: libvips asks for a strip, we copy those rows out of ImageMagick's pixel
// cache. The ImageMagick image lives until the libvips image closes.
struct MagickRows {
    MagickPtr<Image> image;
    const char* map = "RGB";
    std::mutex lock;  // ImageMagick's pixel cache has one read view for all non-OpenMP threads
};

int export_rows(VipsRegion* out, void* /*sequence*/, void* rows_pointer, void*, gboolean*) {
    auto* rows = static_cast<MagickRows*>(rows_pointer);
    const VipsRect& area = out->valid;
    const std::lock_guard<std::mutex> hold(rows->lock);
    MagickPtr<ExceptionInfo> exception(AcquireExceptionInfo());
    for (int y = area.top; y < area.top + area.height; ++y) {
        if (ExportImagePixels(rows->image.get(),
                              area.left,
                              y,
                              static_cast<std::size_t>(area.width),
                              1,
                              rows->map,
                              CharPixel,
                              VIPS_REGION_ADDR(out, area.left, y),
                              exception.get()) == MagickFalse) {
            vips_error("image", "pixel export failed");
            return -1;
        }
    }
    return 0;
}

void free_magick_rows(VipsImage* /*image*/, gpointer rows) {
    delete static_cast<MagickRows*>(rows);
}

// Colour conversion the way `convert 'file[0]' -colorspace sRGB` does it, which renders CMYK
// and Lab documents right where libvips' magick loader does not; then 8-bit rows to libvips.
// TODO: apply the embedded ICC profile of PSD, PSB and BMP files; today they get ImageMagick's
// plain colourspace maths, so colours of profiled print files can shift slightly.
VImage magick_to_vips(MagickPtr<Image> image) {
    if (TransformImageColorspace(image.get(), sRGBColorspace) == MagickFalse) {
        fail(ImageErrorKind::kUnreadable, "colour conversion failed");
    }
    const bool alpha = image->matte != MagickFalse;
    const int width = static_cast<int>(image->columns);
    const int height = static_cast<int>(image->rows);
    auto rows = std::make_unique<MagickRows>();
    rows->image = std::move(image);
    rows->map = alpha ? "RGBA" : "RGB";

    VipsImage* out = vips_image_new();
    vips_image_init_fields(out,
                           width,
                           height,
                           alpha ? 4 : 3,
                           VIPS_FORMAT_UCHAR,
                           VIPS_CODING_NONE,
                           VIPS_INTERPRETATION_sRGB,
                           1.0,
                           1.0);
    auto* owned_rows = rows.release();
    g_signal_connect(out, "postclose", G_CALLBACK(free_magick_rows), owned_rows);
    const VImage wrapped(out);  // closes `out` (and frees the rows) on every path below
    if (vips_image_pipelinev(out, VIPS_DEMAND_STYLE_THINSTRIP, nullptr) != 0 ||
        vips_image_generate(out, nullptr, export_rows, nullptr, owned_rows, nullptr) != 0) {
        fail(ImageErrorKind::kUnreadable, "cannot hand the pixels to libvips");
    }
    return wrapped;
}

// Input that is fully decoded need not stay resident. MADV_PAGEOUT keeps the data: pages of a
// mapped file (the convert command's input) are dropped and would be read again if touched; a
// heap copy (the service's request) is left alone when there is no swap.
void release_pages(std::string_view bytes) {
    const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
    const auto begin = (reinterpret_cast<std::uintptr_t>(bytes.data()) + page - 1) / page * page;
    const auto end = (reinterpret_cast<std::uintptr_t>(bytes.data()) + bytes.size()) / page * page;
    if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_PAGEOUT);
}

VImage load_psd(std::string_view bytes, const char* coder, std::uint64_t max_pixels) {
    const auto facts = inspect_psd(bytes);
    if (!facts) fail(ImageErrorKind::kUnreadable, "malformed Photoshop structure");
    check_pixels(facts->width, facts->height, max_pixels);

    // The common 8-bit RGB document: its composite read straight into the pixels libvips gets,
    // without ImageMagick's 16-bit copy of the whole picture (half the peak memory of a large
    // PSD, and no ImageMagick start-up). Same pixels as ImageMagick's read of that composite.
    if (is_plain_rgb8(*facts)) {
        auto pixels = allocate_pixels(facts->width, facts->height, 3);
        if (read_rgb8_composite(bytes, *facts, pixels.get())) {
            release_pages(bytes);
            return adopt_pixels(std::move(pixels), facts->width, facts->height, 3);
        }
    }

    start_magick();
    limit_magick(max_pixels);

    // TODO: keep the transparent background of 32-bit PSB files; ImageMagick's composite read
    // drops their alpha, so such a file comes out on white.
    // TODO: render duotone inks; duotone documents come out as plain greyscale.
    // Scene 0 is the flattened composite. Reading it alone keeps one undecodable layer from
    // failing a file whose composite is fine.
    if (facts->has_real_composite) {
        return magick_to_vips(read_magick(bytes, coder, 1));
    }

    // Saved without "Maximize compatibility": the composite is blank. Merge the layers only
    // when that reproduces what Photoshop shows; never hand a blank picture to the models.
    if (facts->layer_count == 0 || !facts->layers_flatten_faithfully) {
        fail(ImageErrorKind::kNoComposite,
             "no composite and layers cannot be merged faithfully: " +
                 (facts->layer_count == 0 ? std::string("no layers") : facts->why_not_faithful));
    }
    auto all = read_magick(bytes, coder, 0);
    Image* list = all.release();
    MagickPtr<Image> blank(RemoveFirstImageFromList(&list));
    MagickPtr<Image> layers(list);
    if (!layers) fail(ImageErrorKind::kNoComposite, "no layer could be read");
    // The merge covers the first image's page; layers carry only their own bounds.
    layers->page.width = facts->width;
    layers->page.height = facts->height;
    layers->background_color.opacity = TransparentOpacity;
    MagickPtr<ExceptionInfo> exception(AcquireExceptionInfo());
    MagickPtr<Image> flat(MergeImageLayers(layers.get(), FlattenLayer, exception.get()));
    if (!flat) fail(ImageErrorKind::kNoComposite, "layer merge failed");
    return magick_to_vips(std::move(flat));
}

std::uint32_t little_endian_u32(std::string_view bytes, std::size_t at) {
    std::uint32_t value = 0;
    for (std::size_t i = 0; i < 4; ++i) {
        value |= static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[at + i])) << (8 * i);
    }
    return value;
}

VImage load_bmp(std::string_view bytes, std::uint64_t max_pixels) {
    // libvips 8.14 has no BMP loader of its own. BITMAPINFOHEADER: width at 18, height at 22
    // (negative for top-down rows).
    const auto width = little_endian_u32(bytes, 18);
    const auto height = static_cast<std::int32_t>(little_endian_u32(bytes, 22));
    check_pixels(
        width, static_cast<std::uint64_t>(std::abs(static_cast<std::int64_t>(height))), max_pixels);
    start_magick();
    limit_magick(max_pixels);
    return magick_to_vips(read_magick(bytes, "BMP", 1));
}

// ---- colour ----

bool has_orientation(const VImage& image) {
    if (image.get_typeof(VIPS_META_ORIENTATION) == 0) return false;
    const int orientation = image.get_int(VIPS_META_ORIENTATION);
    return orientation > 1 && orientation <= 8;
}

VImage colour_to_srgb(VImage colour) {
    // Apply an embedded profile rather than dropping it; a broken one falls back to the
    // interpretation libvips knows (CMYK without a profile uses libvips' built-in one).
    if (colour.get_typeof(VIPS_META_ICC_NAME) != 0) {
        try {
            return colour.icc_transform("srgb",
                                        VImage::option()
                                            ->set("embedded", true)
                                            ->set("intent", VIPS_INTENT_RELATIVE)
                                            ->set("depth", 8));
        } catch (const VError&) {
            vips_error_clear();
        }
    }
    try {
        colour = colour.colourspace(VIPS_INTERPRETATION_sRGB);
    } catch (const VError&) {
        vips_error_clear();
        // Unlabelled bands: take them as grey or RGB.
        colour = colour.bands() >= 3 ? colour.extract_band(0, VImage::option()->set("n", 3))
                                     : colour.extract_band(0);
        colour = colour.copy(VImage::option()->set(
            "interpretation",
            colour.bands() == 3 ? VIPS_INTERPRETATION_sRGB : VIPS_INTERPRETATION_B_W));
        colour = colour.colourspace(VIPS_INTERPRETATION_sRGB);
    }
    if (colour.format() != VIPS_FORMAT_UCHAR) colour = colour.cast(VIPS_FORMAT_UCHAR);
    return colour;
}

// sRGB, 8 bits, 3 bands or 4 with alpha. Alpha is scaled, never clipped.
VImage to_srgb8(const VImage& image) {
    if (!image.has_alpha()) return colour_to_srgb(image);
    const int colour_bands = image.bands() - 1;
    auto colour = image.extract_band(0, VImage::option()->set("n", colour_bands));
    auto alpha = image.extract_band(colour_bands);
    // libvips keeps alpha in the range of the band format (65535 for 16-bit images).
    const bool wide = image.format() == VIPS_FORMAT_USHORT || image.format() == VIPS_FORMAT_SHORT;
    if (wide) alpha = alpha * (255.0 / 65535.0);
    if (alpha.format() != VIPS_FORMAT_UCHAR) alpha = alpha.cast(VIPS_FORMAT_UCHAR);
    return colour_to_srgb(colour).bandjoin(alpha);
}

// ---- decoding ----

struct Decoded {
    VImage image;
    ImageFormat source = ImageFormat::kUnknown;
};

// Any supported input to an upright sRGB 8-bit image. `long_side_hint` > 0 lets loaders that
// can (JPEG shrink-on-load, PDF and SVG render scale) produce a smaller image directly.
Decoded decode(std::string_view bytes, std::uint64_t max_pixels, int long_side_hint) {
    if (bytes.empty()) fail(ImageErrorKind::kEmpty, "0 bytes");
    const auto format = sniff(bytes);
    switch (format) {
        case ImageFormat::kUnknown:
            fail(ImageErrorKind::kUnsupportedFormat, "content matches no supported image format");
        case ImageFormat::kPsd:
            return {to_srgb8(load_psd(bytes, "PSD", max_pixels)), format};
        case ImageFormat::kPsb:
            return {to_srgb8(load_psd(bytes, "PSB", max_pixels)), format};
        case ImageFormat::kBmp:
            return {to_srgb8(load_bmp(bytes, max_pixels)), format};
        default:
            break;
    }

    const Blob blob(bytes);
    LoadHints hints;
    auto header = load_with_vips(format, blob, hints);
    double width = header.width();
    double height = header.height();
    const double long_side = std::max(width, height);

    if (format == ImageFormat::kPdf) {
        // At the default 72 dpi, pixels are points.
        if (std::min(width, height) < kMinPdfPagePoints) {
            fail(ImageErrorKind::kTooSmall,
                 "PDF page of " + std::to_string(header.width()) + "x" +
                     std::to_string(header.height()) + " pt");
        }
        hints.scale = (long_side_hint > 0 ? std::min(long_side_hint, kPdfTargetLongSide)
                                          : kPdfTargetLongSide) /
                      long_side;
    } else if ((format == ImageFormat::kSvg || format == ImageFormat::kSvgz) &&
               long_side_hint > 0 && long_side > long_side_hint) {
        hints.scale = long_side_hint / long_side;
    }
    check_pixels(static_cast<std::uint64_t>(std::ceil(width * hints.scale)),
                 static_cast<std::uint64_t>(std::ceil(height * hints.scale)),
                 max_pixels);

    if (format == ImageFormat::kJpeg && long_side_hint > 0) {
        for (const int shrink : {8, 4, 2}) {
            if (long_side / shrink >= long_side_hint) {
                hints.jpeg_shrink = shrink;
                break;
            }
        }
    }
    // Rotation needs the whole image; everything else streams top to bottom.
    const bool rotate = has_orientation(header);
    hints.access = rotate ? VIPS_ACCESS_RANDOM : VIPS_ACCESS_SEQUENTIAL;
    auto image = load_with_vips(format, blob, hints);
    if (rotate) image = image.autorot();
    return {to_srgb8(image), format};
}

// libvips writes the encoded file straight into our string, without a buffer of its own that
// would then be copied: one copy less of a large PNG, in memory and in time.
gint64 append_to_string(VipsTargetCustom* /*target*/, const void* data, gint64 length, void* out) {
    try {
        static_cast<std::string*>(out)->append(static_cast<const char*>(data),
                                               static_cast<std::size_t>(length));
        return length;
    } catch (const std::exception&) {
        return -1;  // libvips turns this into a failed save
    }
}

template <typename Save>
std::string encode_to_string(Save save) {
    std::string out;
    VipsTargetCustom* custom = vips_target_custom_new();
    g_signal_connect(custom, "write", G_CALLBACK(append_to_string), &out);
    const vips::VTarget target(VIPS_TARGET(custom));
    save(target);
    return out;
}

std::string encode_png(const VImage& image, int compression) {
    // Our own writer: the same zlib level and adaptive filters as libpng, on several threads.
    if (image.format() == VIPS_FORMAT_UCHAR && image.bands() <= 4) {
        return write_png(image, compression);
    }
    // Adaptive filtering: about a quarter smaller on photos than none, for a few % more time.
    return encode_to_string([&](const vips::VTarget& target) {
        image.pngsave_target(target,
                             VImage::option()
                                 ->set("compression", compression)
                                 ->set("filter", VIPS_FOREIGN_PNG_FILTER_ALL)
                                 ->set("strip", true));
    });
}

std::string encode_jpeg(VImage image, int quality) {
    if (image.has_alpha()) {
        image =
            image.flatten(VImage::option()->set("background", std::vector<double>{255, 255, 255}));
    }
    return encode_to_string([&](const vips::VTarget& target) {
        image.jpegsave_target(
            target,
            VImage::option()->set("Q", quality)->set("strip", true)->set("optimize_coding", true));
    });
}

// Exact target size, premultiplied so alpha edges do not darken.
VImage resize_to(const VImage& image, int width, int height) {
    return image.thumbnail_image(width,
                                 VImage::option()
                                     ->set("height", height)
                                     ->set("size", VIPS_SIZE_FORCE)
                                     ->set("no_rotate", true));
}

WorkerReply reply_with(const VImage& image,
                       std::string payload,
                       ImageFormat format,
                       ImageFormat source) {
    WorkerReply reply;
    reply.ok = true;
    reply.width = image.width();
    reply.height = image.height();
    reply.has_alpha = image.has_alpha();
    reply.format = format;
    reply.source_format = source;
    reply.payload = std::move(payload);
    return reply;
}

WorkerReply prepare(const WorkerRequest& request) {
    const auto decoded = decode(request.payload, request.max_pixels, 0);
    return reply_with(decoded.image,
                      encode_png(decoded.image, request.png_compression),
                      ImageFormat::kPng,
                      decoded.source);
}

WorkerReply fit(const WorkerRequest& request) {
    const auto decoded = decode(request.payload, request.max_pixels, 0);
    const double width = decoded.image.width();
    const double height = decoded.image.height();
    const double long_side = std::max(width, height);
    const double short_side = std::min(width, height);
    double scale = 1.0;
    if (long_side > request.max_side)
        scale = request.max_side / long_side;
    else if (short_side < request.min_side)
        scale = request.min_side / short_side;
    const auto scaled_short = static_cast<int>(std::lround(short_side * scale));
    const auto scaled_long = static_cast<int>(std::lround(long_side * scale));
    if (scaled_short < request.min_side || scaled_long > request.max_side) {
        fail(ImageErrorKind::kBadProportions,
             std::to_string(static_cast<int>(width)) + "x" +
                 std::to_string(static_cast<int>(height)) + " cannot fit " +
                 std::to_string(request.min_side) + ".." + std::to_string(request.max_side));
    }
    const bool landscape = width >= height;
    const auto image = resize_to(decoded.image,
                                 landscape ? scaled_long : scaled_short,
                                 landscape ? scaled_short : scaled_long);
    return reply_with(
        image, encode_png(image, request.png_compression), ImageFormat::kPng, decoded.source);
}

WorkerReply for_validation(const WorkerRequest& request) {
    const auto decoded = decode(request.payload, request.max_pixels, request.max_long_side);
    auto image = decoded.image;
    double long_side = std::max(image.width(), image.height());
    const double limit = request.max_long_side;
    if (long_side > limit) {
        const double scale = limit / long_side;
        image = resize_to(image,
                          std::max(1, static_cast<int>(std::lround(image.width() * scale))),
                          std::max(1, static_cast<int>(std::lround(image.height() * scale))));
    }
    // Encoded up to several times below: hold the (small) pixels instead of re-running a
    // sequential pipeline.
    image = image.copy_memory();
    // Photos re-encoded as PNG are several times larger than as JPEG; PNG is kept for what fits
    // because it is lossless (text, flat colours), JPEG otherwise at falling quality, then smaller.
    for (int round = 0; round < 6; ++round) {
        auto png = encode_png(image, request.png_compression);
        if (base64_length(png.size()) <= request.max_base64_bytes) {
            return reply_with(image, std::move(png), ImageFormat::kPng, decoded.source);
        }
        for (const int quality : kJpegQualities) {
            auto jpeg = encode_jpeg(image, quality);
            if (base64_length(jpeg.size()) <= request.max_base64_bytes) {
                return reply_with(image, std::move(jpeg), ImageFormat::kJpeg, decoded.source);
            }
        }
        image = resize_to(
            image, std::max(1, image.width() * 3 / 4), std::max(1, image.height() * 3 / 4));
    }
    fail(ImageErrorKind::kTooLarge, "no encoding fits the validation size limit");
}

// ---- process input and output ----

std::string read_all(int fd) {
    std::string out;
    char buffer[1 << 16];
    for (;;) {
        const ssize_t n = ::read(fd, buffer, sizeof buffer);
        if (n == 0) return out;
        if (n < 0) {
            if (errno == EINTR) continue;
            return out;
        }
        out.append(buffer, static_cast<std::size_t>(n));
    }
}

bool write_all(int fd, std::string_view bytes) {
    while (!bytes.empty()) {
        const ssize_t n = ::write(fd, bytes.data(), bytes.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

}  // namespace

void limit_process(std::uint64_t cpu_seconds, std::uint64_t memory_bytes, bool die_with_parent) {
    // Die with the service (a one-shot command has no service to die with); never gain
    // privileges; no core files of untrusted data.
    if (die_with_parent) ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    const rlimit no_core{0, 0};
    ::setrlimit(RLIMIT_CORE, &no_core);
    // SIGXCPU at the soft limit, SIGKILL a second later if it is ignored.
    const rlimit cpu{cpu_seconds, cpu_seconds + 1};
    ::setrlimit(RLIMIT_CPU, &cpu);
#if defined(__SANITIZE_ADDRESS__)
    // AddressSanitizer reserves terabytes of shadow address space: an address-space limit would
    // stop the sanitizer build from starting at all. Memory stays unlimited there.
    (void)memory_bytes;
#else
    const rlimit memory{memory_bytes, memory_bytes};
    ::setrlimit(RLIMIT_AS, &memory);
#endif
    // Each glibc arena reserves 64 MiB of address space; keep them few under RLIMIT_AS.
    ::mallopt(M_ARENA_MAX, 2);
}

bool start_vips(const char* argv0, ImageFormat input) {
    // libvips 8.14 loads all its modules at start (HEIF, PDF, JPEG XL, OpenSlide, its own
    // ImageMagick loader): about 20 ms and 6 MB per decode, in a process that reads one file.
    // Only the HEIF and PDF loaders live in modules, so for every other input VIPSHOME, the
    // documented install-prefix override, points at a prefix that cannot hold any.
    const bool needs_module =
        input == ImageFormat::kHeic || input == ImageFormat::kAvif || input == ImageFormat::kPdf;
    if (!needs_module) ::setenv("VIPSHOME", "/dev/null", 1);
    if (VIPS_INIT(argv0) != 0) return false;
    // Each process decodes one image: the operation cache would only hold memory.
    vips_cache_set_max(0);
    return true;
}

WorkerReply execute(const WorkerRequest& request) {
    try {
        try {
            switch (request.operation) {
                case Operation::kPrepare:
                    return prepare(request);
                case Operation::kFit:
                    return fit(request);
                case Operation::kValidation:
                    return for_validation(request);
            }
            fail(ImageErrorKind::kUnreadable, "unknown operation");
        } catch (const VError& error) {
            fail_from_vips(error);
        }
    } catch (const Failure& failure) {
        WorkerReply reply;
        reply.kind = failure.kind;
        reply.detail = failure.detail;
        reply.source_format = sniff(request.payload);
        return reply;
    } catch (const std::exception& error) {
        WorkerReply reply;
        reply.detail = error.what();
        return reply;
    }
}

int run_decode_worker(int argc, char** argv) {
    std::uint64_t cpu_seconds = 30;
    std::uint64_t memory_bytes = std::uint64_t{3} << 30;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string_view name = argv[i];
        if (name == "--cpu-seconds") cpu_seconds = std::stoull(argv[i + 1]);
        if (name == "--memory-bytes") memory_bytes = std::stoull(argv[i + 1]);
    }
    limit_process(cpu_seconds, memory_bytes, true);

    const std::string stream = read_all(STDIN_FILENO);
    WorkerReply reply;
    try {
        const auto request = decode_request(stream);
        if (!start_vips(argv[0], sniff(request.payload))) return 3;
        reply = execute(request);
    } catch (const std::exception& error) {
        reply.detail = std::string("bad request: ") + error.what();
    }
    const bool written =
        write_all(STDOUT_FILENO, encode_header(reply)) && write_all(STDOUT_FILENO, reply.payload);
    return written ? 0 : 4;
}

}  // namespace iea::image::detail
