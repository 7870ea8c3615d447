#include "iea/image/converter.hpp"

#include <algorithm>
#include <array>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <vector>
#include <vips/vips8>

#include "image_test_support.hpp"

namespace {

namespace asio = boost::asio;
using iea::image::ConversionLimits;
using iea::image::ImageConverter;
using iea::image::ImageError;
using iea::image::ImageErrorKind;
using iea::image::ImageFormat;
using iea::image::PreparedImage;
using iea::image::ValidationLimits;
using namespace iea::image::testing;

void start_vips() {
    static const bool started = VIPS_INIT("unit_image") == 0;
    REQUIRE(started);
}

std::string to_png(const vips::VImage& image) {
    VipsBlob* blob = image.pngsave_buffer();
    std::size_t size = 0;
    const auto* data = static_cast<const char*>(vips_blob_get(blob, &size));
    std::string out(data, size);
    vips_area_unref(VIPS_AREA(blob));
    return out;
}

// A noisy RGB picture: compresses like a photo, not like a flat colour.
std::string noise_png(int width, int height) {
    start_vips();
    const auto noise =
        vips::VImage::gaussnoise(width, height, vips::VImage::option()->set("sigma", 40.0));
    const std::vector<vips::VImage> bands{noise + 128, noise + 100, noise + 60};
    return to_png(vips::VImage::bandjoin(bands).cast(VIPS_FORMAT_UCHAR));
}

// A smooth gradient: compresses like a banner or a screenshot.
std::string gradient_png(int width, int height) {
    start_vips();
    const auto xyz = vips::VImage::xyz(width, height);
    const auto ramp = (xyz[0] * (255.0 / width)).cast(VIPS_FORMAT_UCHAR);
    const std::vector<vips::VImage> bands{ramp, 255 - ramp, ramp / 2};
    return to_png(vips::VImage::bandjoin(bands).cast(VIPS_FORMAT_UCHAR));
}

std::uint32_t crc32(std::string_view bytes) {
    std::uint32_t crc = 0xFFFFFFFFu;
    for (const char c : bytes) {
        crc ^= static_cast<unsigned char>(c);
        for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

void append_big_endian(std::string& out, std::uint32_t value) {
    for (int shift = 24; shift >= 0; shift -= 8)
        out.push_back(static_cast<char>((value >> shift) & 0xFFu));
}

// A valid PNG whose IHDR claims width x height, followed by one tiny IDAT (a stored deflate
// block of one zero byte) and IEND: enough for a header read, far too little for the pixels.
std::string png_claiming(std::uint32_t width, std::uint32_t height) {
    std::string chunk = "IHDR";
    append_big_endian(chunk, width);
    append_big_endian(chunk, height);
    chunk += std::string("\x08\x02\x00\x00\x00", 5);
    std::string out = "\x89PNG\r\n\x1A\n";
    append_big_endian(out, 13);
    out += chunk;
    append_big_endian(out, crc32(chunk));
    const std::string idat =
        std::string("IDAT") + std::string("\x78\x01\x01\x01\x00\xFE\xFF\x00\x00\x01\x00\x01", 12);
    append_big_endian(out, 12);
    out += idat;
    append_big_endian(out, crc32(idat));
    append_big_endian(out, 0);
    out += "IEND";
    append_big_endian(out, crc32("IEND"));
    return out;
}

ImageErrorKind refusal_of(asio::io_context& io,
                          ImageConverter& converter,
                          std::string bytes,
                          const std::string& name) {
    try {
        (void)run(io, converter.prepare(std::move(bytes), name));
    } catch (const ImageError& error) {
        CHECK(error.user_message().find("'" + name + "'") != std::string::npos);
        return error.kind();
    }
    FAIL("converted although it should have been refused: " << name);
    return ImageErrorKind::kUnreadable;
}

}  // namespace

TEST_CASE("converter: refuses what it must, with a typed error naming the file", "[image]") {
    asio::io_context io;
    ImageConverter converter(io.get_executor(), test_limits());

    SECTION("a header claiming 100000 x 100000 pixels is refused before decoding") {
        CHECK(refusal_of(io, converter, png_claiming(100000, 100000), "huge.png") ==
              ImageErrorKind::kTooManyPixels);
    }
    SECTION("a PNG cut in half is truncated, not grey rows") {
        auto png = noise_png(256, 256);
        png.resize(png.size() / 2);
        CHECK(refusal_of(io, converter, png, "cut.png") == ImageErrorKind::kTruncated);
    }
    SECTION("a zero-byte file is an empty file") {
        CHECK(refusal_of(io, converter, "", "nothing.jpg") == ImageErrorKind::kEmpty);
    }
    SECTION("a text file named .png is not an image") {
        CHECK(refusal_of(io, converter, "just some notes\nline two\n", "notes.png") ==
              ImageErrorKind::kUnsupportedFormat);
    }
    SECTION("a download over the byte limit") {
        auto limits = test_limits();
        limits.max_download_bytes = 100;
        ImageConverter small(io.get_executor(), limits);
        CHECK(refusal_of(io, small, noise_png(64, 64), "big.png") == ImageErrorKind::kTooLarge);
    }
    SECTION("the pixel limit is configurable") {
        auto limits = test_limits();
        limits.max_pixels = 1000;
        ImageConverter small(io.get_executor(), limits);
        CHECK(refusal_of(io, small, noise_png(64, 64), "big.png") ==
              ImageErrorKind::kTooManyPixels);
    }
}

TEST_CASE("converter: a 16-bit PNG becomes 8-bit with the same colours", "[image]") {
    start_vips();
    // 16-bit RGB at 1/2 and 1/4 of full scale in its first two bands.
    const auto plane = vips::VImage::black(64, 48);
    const std::vector<vips::VImage> bands{plane + 32768, plane + 16384, plane + 65535};
    const auto image16 =
        vips::VImage::bandjoin(bands)
            .cast(VIPS_FORMAT_USHORT)
            .copy(vips::VImage::option()->set("interpretation", VIPS_INTERPRETATION_RGB16));
    asio::io_context io;
    ImageConverter converter(io.get_executor(), test_limits());
    const auto prepared = run(io, converter.prepare(to_png(image16), "deep.png"));

    const auto header = png_header(prepared.png);
    CHECK(header.bit_depth == 8);
    CHECK(header.colour_type == 2);
    const auto out = vips::VImage::new_from_buffer(prepared.png.data(), prepared.png.size(), "");
    const auto pixel = out.getpoint(10, 10);
    REQUIRE(pixel.size() == 3);
    CHECK(pixel[0] == Approx(128).margin(1));
    CHECK(pixel[1] == Approx(64).margin(1));
    CHECK(pixel[2] == Approx(255).margin(1));
}

TEST_CASE("converter: the PNGs we write hold exactly the decoded pixels", "[image]") {
    start_vips();
    asio::io_context io;
    ImageConverter converter(io.get_executor(), test_limits());
    const auto pixels_of = [](const std::string& png) {
        const auto image = vips::VImage::new_from_buffer(png.data(), png.size(), "");
        std::size_t size = 0;
        auto* memory = static_cast<unsigned char*>(image.write_to_memory(&size));
        std::vector<unsigned char> out(memory, memory + size);
        g_free(memory);
        return out;
    };
    const auto round_trip = [&](const std::string& input) {
        const auto prepared = run(io, converter.prepare(input, "in.png"));
        CHECK(pixels_of(prepared.png) == pixels_of(input));
        return prepared;
    };
    SECTION("a noisy picture cut into several strips, odd width") {
        // 512 KiB of pixels per strip: 701 x 1900 RGB is eight strips.
        CHECK(round_trip(noise_png(701, 1900)).width == 701);
    }
    SECTION("a smooth picture (every filter type wins somewhere)") {
        CHECK(round_trip(gradient_png(1200, 900)).height == 900);
    }
    SECTION("transparency") {
        const auto noise =
            vips::VImage::gaussnoise(333, 1700, vips::VImage::option()->set("sigma", 60.0));
        const std::vector<vips::VImage> bands{noise + 128, noise + 90, noise + 40, noise + 200};
        const auto rgba =
            vips::VImage::bandjoin(bands)
                .cast(VIPS_FORMAT_UCHAR)
                .copy(vips::VImage::option()->set("interpretation", VIPS_INTERPRETATION_sRGB));
        CHECK(round_trip(to_png(rgba)).has_alpha);
    }
    SECTION("a single row and a single pixel") {
        CHECK(round_trip(noise_png(517, 1)).height == 1);
        CHECK(round_trip(noise_png(1, 1)).width == 1);
    }
}

TEST_CASE("converter: a decode over its wall-time limit is killed and reported unreadable",
          "[image]") {
    asio::io_context io;
    auto limits = test_limits();
    SECTION("a decode that cannot finish in 1 ms") {
        limits.decode_wall_time = std::chrono::milliseconds(1);
        ImageConverter converter(io.get_executor(), limits);
        try {
            (void)run(io, converter.prepare(noise_png(512, 512), "slow.png"));
            FAIL("not killed");
        } catch (const ImageError& error) {
            CHECK(error.kind() == ImageErrorKind::kUnreadable);
            CHECK(error.detail().find("wall-time") != std::string::npos);
        }
    }
    SECTION("the truncated SVGZ that hangs libvips 8.14 ends as an error within the limit") {
        const auto shared = iea::testing::shared_dir();
        if (!shared) {
            WARN("skipped: no corpus");
            return;
        }
        limits.decode_wall_time = std::chrono::seconds(3);
        ImageConverter converter(io.get_executor(), limits);
        const auto bytes =
            iea::testing::read_file(*shared / "corpus/images/svgz-truncated-hang.svgz");
        CHECK_THROWS_AS(run(io, converter.prepare(bytes, "hang.svgz")), ImageError);
    }
}

TEST_CASE("converter: fits an image into a model's side range", "[image]") {
    asio::io_context io;
    ImageConverter converter(io.get_executor(), test_limits());
    const auto prepare = [&](int width, int height) {
        return run(io, converter.prepare(noise_png(width, height), "in.png"));
    };

    SECTION("already inside: unchanged") {
        const auto image = prepare(400, 500);
        const auto fitted = run(io, converter.fit_for_model(image, 384, 5000));
        CHECK(fitted.png == image.png);
    }
    SECTION("too small: scaled up to the shortest side allowed") {
        const auto fitted = run(io, converter.fit_for_model(prepare(64, 32), 384, 5000));
        CHECK(fitted.width == 768);
        CHECK(fitted.height == 384);
        CHECK(png_header(fitted.png).width == 768);
    }
    SECTION("too large: scaled down to the longest side allowed") {
        const auto fitted = run(io, converter.fit_for_model(prepare(1200, 900), 100, 1000));
        CHECK(fitted.width == 1000);
        CHECK(fitted.height == 750);
    }
    SECTION("too long and narrow for both bounds") {
        try {
            (void)run(io, converter.fit_for_model(prepare(2000, 100), 384, 5000));
            FAIL("fitted");
        } catch (const ImageError& error) {
            CHECK(error.kind() == ImageErrorKind::kBadProportions);
        }
    }
}

TEST_CASE("converter: the vision copy respects side and size limits", "[image]") {
    asio::io_context io;
    ImageConverter converter(io.get_executor(), test_limits());
    SECTION("downscaled to the long-side limit, PNG when it fits") {
        const auto banner = gradient_png(2400, 1600);
        const auto copy = run(io, converter.for_validation(banner, ValidationLimits{}));
        CHECK(copy.width == 1568);
        CHECK(copy.height == 1045);
        CHECK(copy.format == ImageFormat::kPng);
        CHECK(iea::image::base64_length(copy.bytes.size()) <= 5'000'000);
        CHECK(iea::image::sniff(copy.bytes) == ImageFormat::kPng);
    }
    SECTION("JPEG when PNG would not fit") {
        // Noise at 1568 x 1045 is about 4.9 MB of PNG, 6.5 MB once base64-encoded.
        const auto photo = noise_png(2400, 1600);
        const ValidationLimits limits;
        const auto copy = run(io, converter.for_validation(photo, limits));
        CHECK(copy.width == 1568);
        CHECK(copy.format == ImageFormat::kJpeg);
        CHECK(copy.mime() == "image/jpeg");
        CHECK(iea::image::sniff(copy.bytes) == ImageFormat::kJpeg);
        CHECK(iea::image::base64_length(copy.bytes.size()) <= limits.max_base64_bytes);
    }
    SECTION("small model outputs keep their size") {
        const auto copy =
            run(io, converter.for_validation(noise_png(300, 200), ValidationLimits{}));
        CHECK(copy.width == 300);
        CHECK(copy.height == 200);
    }
}

TEST_CASE("converter: decodes run off the event loop, several at once", "[image]") {
    asio::io_context io;
    auto limits = test_limits();
    limits.max_concurrent_decodes = 2;
    ImageConverter converter(io.get_executor(), limits);
    const auto input = noise_png(1500, 1000);

    int finished = 0;
    int ticks = 0;
    for (int i = 0; i < 4; ++i) {
        asio::co_spawn(
            io,
            [&]() -> asio::awaitable<void> {
                const auto image = co_await converter.prepare(input, "same.png");
                if (image.width == 1500) ++finished;
            },
            asio::detached);
    }
    // A ticker on the same loop keeps running while the decodes are in flight.
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            asio::steady_timer timer(io);
            while (finished < 4) {
                timer.expires_after(std::chrono::milliseconds(5));
                co_await timer.async_wait(asio::use_awaitable);
                ++ticks;
            }
        },
        asio::detached);
    io.run();
    CHECK(finished == 4);
    CHECK(ticks > 1);
}

TEST_CASE("converter: the convert command writes a PNG or says why not", "[image]") {
    const auto dir = iea::testing::scratch_dir("convert");
    const auto agent = (iea::testing::binary_dir() / "image-edit-agent").string();
    {
        std::ofstream(dir / "in.png", std::ios::binary) << noise_png(80, 60);
        std::ofstream(dir / "notes.png", std::ios::binary) << "not a picture\n";
    }
    SECTION("exit 0 with the PNG written") {
        iea::testing::ChildProcess child(
            {agent, "convert", (dir / "in.png").string(), (dir / "out.png").string()}, {});
        REQUIRE(child.wait_exit(std::chrono::seconds(60)) == 0);
        const auto out = iea::testing::read_file(dir / "out.png");
        CHECK(png_header(out).width == 80);
    }
    SECTION("non-zero with one plain-words line on stderr") {
        iea::testing::ChildProcess child(
            {agent, "convert", (dir / "notes.png").string(), (dir / "out.png").string()}, {});
        CHECK(child.wait_exit(std::chrono::seconds(60)) == 1);
        const auto text = child.stderr_text();
        CHECK(text.find("'notes.png' is not an image we can read") != std::string::npos);
        CHECK(std::count(text.begin(), text.end(), '\n') == 1);
    }
}

TEST_CASE("converter: the convert command keeps the service's limits", "[image]") {
    const auto dir = iea::testing::scratch_dir("convert-limits");
    const auto agent = (iea::testing::binary_dir() / "image-edit-agent").string();
    SECTION("a file that keeps the decoder busy ends with a refusal at the time limit") {
        // librsvg needs many seconds of blur and noise for this 81-megapixel page.
        std::ofstream(dir / "slow.svg")
            << R"svg(<svg xmlns="http://www.w3.org/2000/svg" width="9000" height="9000">)svg"
            << R"svg(<filter id="f"><feGaussianBlur stdDeviation="400"/>)svg"
            << R"svg(<feTurbulence baseFrequency="0.01" numOctaves="10"/></filter>)svg"
            << R"svg(<rect width="9000" height="9000" fill="red" filter="url(#f)"/></svg>)svg";
        iea::testing::ChildProcess child({agent,
                                          "convert",
                                          (dir / "slow.svg").string(),
                                          (dir / "out.png").string(),
                                          "--time-limit",
                                          "1"},
                                         {});
        // Bounded: without the limit the command would still be rendering.
        REQUIRE(child.wait_exit(std::chrono::seconds(30)) == 1);
        const auto text = child.stderr_text();
        CHECK(text.find("'slow.svg' could not be read") != std::string::npos);
        CHECK(std::count(text.begin(), text.end(), '\n') == 1);
    }
    SECTION("the vision copy from the command line") {
        std::ofstream(dir / "wide.png", std::ios::binary) << gradient_png(2000, 500);
        iea::testing::ChildProcess child({agent,
                                          "convert",
                                          (dir / "wide.png").string(),
                                          (dir / "vision.png").string(),
                                          "--for-validation"},
                                         {});
        REQUIRE(child.wait_exit(std::chrono::seconds(60)) == 0);
        CHECK(png_header(iea::testing::read_file(dir / "vision.png")).width == 1568);
    }
    SECTION("a bad time limit is a usage error") {
        iea::testing::ChildProcess child(
            {agent, "convert", "in.png", "out.png", "--time-limit", "soon"}, {});
        CHECK(child.wait_exit(std::chrono::seconds(60)) == 2);
    }
}

TEST_CASE("converter: a helper that crashes, answers nothing or is missing", "[image]") {
    asio::io_context io;
    auto limits = test_limits();
    const auto dir = iea::testing::scratch_dir("helpers");

    SECTION("a crash becomes an unreadable image") {
        const auto crasher = dir / "crasher.sh";
        std::ofstream(crasher) << "#!/bin/sh\nkill -SEGV $$\n";
        std::filesystem::permissions(crasher, std::filesystem::perms::owner_all);
        limits.worker_path = crasher;
        ImageConverter converter(io.get_executor(), limits);
        try {
            (void)run(io, converter.prepare(noise_png(16, 16), "x.png"));
            FAIL("converted");
        } catch (const ImageError& error) {
            CHECK(error.kind() == ImageErrorKind::kUnreadable);
            CHECK(error.detail().find("signal 11") != std::string::npos);
        }
    }
    SECTION("an empty answer becomes an unreadable image") {
        limits.worker_path = "/bin/true";
        ImageConverter converter(io.get_executor(), limits);
        CHECK(refusal_of(io, converter, noise_png(16, 16), "x.png") == ImageErrorKind::kUnreadable);
    }
    SECTION("a missing helper is an operator's problem, not the file's") {
        limits.worker_path = dir / "no-such-helper";
        ImageConverter converter(io.get_executor(), limits);
        CHECK_THROWS_AS(run(io, converter.prepare(noise_png(16, 16), "x.png")), std::system_error);
    }
#if !defined(__SANITIZE_ADDRESS__)
    SECTION("a decode over its memory limit fails as unreadable") {
        limits.decode_memory_bytes = std::uint64_t{48} << 20;
        ImageConverter converter(io.get_executor(), limits);
        CHECK(refusal_of(io, converter, noise_png(3000, 2000), "big.png") ==
              ImageErrorKind::kUnreadable);
    }
#endif
}
