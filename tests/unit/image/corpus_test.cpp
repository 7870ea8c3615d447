#include <catch2/catch.hpp>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vips/vips8>

#include "iea/image/converter.hpp"
#include "image_test_support.hpp"

namespace {

using iea::image::ImageConverter;
using iea::image::ImageError;
using iea::image::ImageErrorKind;
using iea::image::ImageFormat;
using namespace iea::image::testing;

struct Expected {
    int width = 0;
    int height = 0;
    bool alpha = false;
    std::optional<ImageErrorKind> refusal;
};

Expected converted(int width, int height, bool alpha = false) { return {width, height, alpha, {}}; }
Expected refused(ImageErrorKind kind) { return {0, 0, false, kind}; }

// What MANIFEST.md implies for each corpus file: dimensions after orientation and page/frame
// selection, or the refusal a designer should read.
const std::map<std::string, Expected>& expectations() {
    static const std::map<std::string, Expected> table{
        {"avif-bomb-17000x17000.avif", refused(ImageErrorKind::kTooManyPixels)},
        {"empty-zero-bytes.jpg", refused(ImageErrorKind::kEmpty)},
        {"gif-animated.gif", converted(370, 285, true)},
        {"gif-bomb.gif", refused(ImageErrorKind::kTruncated)},
        {"gif-truncated.gif", refused(ImageErrorKind::kTruncated)},
        {"heic-alpha.heic", converted(512, 512, true)},
        {"heic-named-as.jpg", converted(451, 461)},
        {"heic-ordinary.heic", converted(451, 461)},
        {"jpeg-cmyk-adobe.jpg", converted(100, 100)},
        {"jpeg-cmyk-noprofile.jpg", converted(500, 333)},
        {"jpeg-exif-orient6.jpg", converted(1800, 1200)},
        {"jpeg-giant-20000x14000.jpg", refused(ImageErrorKind::kTooManyPixels)},
        {"jpeg-icc-big.jpg", converted(425, 250)},
        {"jpeg-ordinary.jpg", converted(290, 442)},
        {"jpeg-truncated.jpg", refused(ImageErrorKind::kTruncated)},
        {"pdf-ordinary.pdf", converted(2000, 1200, true)},
        {"pdf-two-pages.pdf", refused(ImageErrorKind::kTooSmall)},
        {"png-16bit-rgba.png", converted(32, 32, true)},
        {"png-bomb-65536x65536.png", refused(ImageErrorKind::kTooManyPixels)},
        {"png-interlaced-16bit.png", converted(32, 32, true)},
        {"png-not-a-png.png", refused(ImageErrorKind::kUnreadable)},
        {"png-palette-trns.png", converted(32, 32, true)},
        {"png-truncated.png", refused(ImageErrorKind::kTruncated)},
        {"png-ztxt-bomb.png", converted(1, 1)},
        // TODO: keep the transparent background of 32-bit PSB files; ImageMagick's composite
        // read gives it without alpha, so it comes out on white.
        {"psb-32bit-alpha-lost.psb", converted(100, 150)},
        {"psb-ok.psb", converted(360, 200)},
        {"psd-16bit.psd", converted(5, 5)},
        {"psd-32bit.psd", converted(100, 150)},
        {"psd-cmyk-alpha-spot-letter.psd", converted(3300, 5100)},
        {"psd-cmyk-spot.psd", converted(640, 637)},
        // TODO: render duotone inks; duotone PSDs come out as plain greyscale.
        {"psd-duotone.psd", converted(4, 4)},
        {"psd-fuzz-overflow.psd", converted(10, 10)},
        {"psd-fuzz-truncated.psd", refused(ImageErrorKind::kTruncated)},
        {"psd-indexed.psd", refused(ImageErrorKind::kUnreadable)},
        {"psd-lab.psd", converted(4, 4)},
        {"psd-layer-bad-header.psd", converted(32, 32, true)},
        {"psd-layer-decompress-fail.psd", converted(32, 32, true)},
        {"psd-nocomposite-layers-ok.psd", converted(32, 32, true)},
        {"psd-nocomposite-partial.psd", refused(ImageErrorKind::kNoComposite)},
        {"psd-nocomposite-white.psd", refused(ImageErrorKind::kNoComposite)},
        {"psd-rgb8-layered-ok.psd", converted(600, 600)},
        {"psd-rgb8-simple-ok.psd", converted(128, 128)},
        {"svg-external-ref.svg", converted(480, 360, true)},
        {"svg-ordinary.svg", converted(736, 552, true)},
        {"svgz-truncated-hang.svgz", refused(ImageErrorKind::kUnreadable)},
        {"tiff-cmyk-jpeg.tif", converted(100, 100)},
        {"tiff-multipage.tiff", converted(10, 10)},
        {"webp-alpha.webp", converted(200, 150, true)},
        {"webp-animated.webp", converted(370, 285, true)},
        {"webp-looks-like-svg.webp", converted(256, 256, true)},
    };
    return table;
}

std::optional<std::filesystem::path> corpus_dir() {
    const auto shared = iea::testing::shared_dir();
    if (!shared) return std::nullopt;
    return *shared / "corpus" / "images";
}

// Pixels of a PNG we produced, through libvips in this process (trusted input). Decoded into
// memory at once: libvips reads buffers lazily and `png` may be a temporary.
vips::VImage decode_png(const std::string& png) {
    static const bool started = VIPS_INIT("unit_image") == 0;
    REQUIRE(started);
    return vips::VImage::new_from_buffer(png.data(), png.size(), "").copy_memory();
}

}  // namespace

TEST_CASE("corpus: every file is converted or refused as its manifest implies", "[image]") {
    const auto dir = corpus_dir();
    if (!dir) {
        WARN("skipped: ../shared/corpus/images is not next to this clone");
        return;
    }
    boost::asio::io_context io;
    ImageConverter converter(io.get_executor(), test_limits());

    int seen = 0;
    for (const auto& entry : std::filesystem::directory_iterator(*dir)) {
        const auto name = entry.path().filename().string();
        if (name == "MANIFEST.md") continue;
        ++seen;
        INFO(name);
        const auto expected = expectations().find(name);
        REQUIRE(expected != expectations().end());

        try {
            const auto image =
                run(io, converter.prepare(iea::testing::read_file(entry.path()), name));
            CHECK_FALSE(expected->second.refusal.has_value());
            const auto header = png_header(image.png);
            CHECK(header.width == static_cast<std::uint32_t>(expected->second.width));
            CHECK(header.height == static_cast<std::uint32_t>(expected->second.height));
            CHECK(header.bit_depth == 8);
            CHECK(header.colour_type == (expected->second.alpha ? 6 : 2));
            CHECK(image.width == expected->second.width);
            CHECK(image.height == expected->second.height);
            CHECK(image.has_alpha == expected->second.alpha);
            CHECK(image.source_format != ImageFormat::kUnknown);
        } catch (const ImageError& error) {
            INFO(error.what());
            REQUIRE(expected->second.refusal.has_value());
            CHECK(error.kind() == *expected->second.refusal);
            CHECK(error.user_message().find("'" + name + "'") != std::string::npos);
        }
    }
    CHECK(seen == static_cast<int>(expectations().size()));
}

TEST_CASE("corpus: pictures that must not come out blank or sideways", "[image]") {
    const auto dir = corpus_dir();
    if (!dir) {
        WARN("skipped: ../shared/corpus/images is not next to this clone");
        return;
    }
    boost::asio::io_context io;
    ImageConverter converter(io.get_executor(), test_limits());
    const auto prepare = [&](const std::string& name) {
        return run(io, converter.prepare(iea::testing::read_file(*dir / name), name));
    };

    SECTION("a PSD without composite whose layers we merged shows its pixels") {
        const auto image = decode_png(prepare("psd-nocomposite-layers-ok.psd").png);
        CHECK(image.deviate() > 0);
    }
    SECTION("a CMYK print PSD is a white page, not a dark one") {
        const auto image = decode_png(prepare("psd-cmyk-alpha-spot-letter.psd").png);
        CHECK(image.avg() > 200);
    }
    SECTION("a heic named .jpg is known as HEIC") {
        CHECK(prepare("heic-named-as.jpg").source_format == ImageFormat::kHeic);
    }
    SECTION("the EXIF-6 photo is landscape: its sky is at the top") {
        const auto image = decode_png(prepare("jpeg-exif-orient6.jpg").png);
        const auto top = image.crop(0, 0, image.width(), image.height() / 4).avg();
        const auto bottom =
            image.crop(0, image.height() * 3 / 4, image.width(), image.height() / 4).avg();
        CHECK(image.width() == 1800);
        CHECK(top > bottom);
    }
}
