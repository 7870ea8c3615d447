// The composite of plain 8-bit RGB Photoshop documents is read by our own code, everything else
// by ImageMagick: both must give the same pixels, and a damaged composite must still be refused.

#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>
#include <cstdint>
#include <string>
#include <vector>
#include <vips/vips8>

#include "iea/image/converter.hpp"
#include "image_test_support.hpp"

namespace {

namespace asio = boost::asio;
using iea::image::ImageConverter;
using iea::image::ImageError;
using namespace iea::image::testing;

constexpr int kWidth = 67;
constexpr int kHeight = 41;

void put(std::string& out, std::uint64_t value, int bytes) {
    for (int shift = (bytes - 1) * 8; shift >= 0; shift -= 8)
        out.push_back(static_cast<char>((value >> shift) & 0xFFu));
}

// Planar test picture: flat runs (PackBits repeats), noise (literals) and a gradient.
std::vector<std::vector<unsigned char>> picture() {
    std::vector<std::vector<unsigned char>> planes(3);
    std::uint32_t seed = 12345;
    for (int band = 0; band < 3; ++band) {
        for (int y = 0; y < kHeight; ++y) {
            for (int x = 0; x < kWidth; ++x) {
                seed = seed * 1664525u + 1013904223u;
                unsigned char value = 0;
                if (x < 20)
                    value = static_cast<unsigned char>(40 * band + 7);
                else if (x < 45)
                    value = static_cast<unsigned char>(seed >> 24);
                else
                    value = static_cast<unsigned char>(x * 3 + y + band * 50);
                planes[static_cast<std::size_t>(band)].push_back(value);
            }
        }
    }
    return planes;
}

// PackBits as Photoshop writes it: runs of 3 or more repeat, everything else is literal.
std::string pack_bits(const unsigned char* row, int width) {
    std::string out;
    int x = 0;
    while (x < width) {
        int run = 1;
        while (x + run < width && run < 128 && row[x + run] == row[x]) ++run;
        if (run >= 3) {
            out.push_back(static_cast<char>(257 - run));
            out.push_back(static_cast<char>(row[x]));
            x += run;
            continue;
        }
        int literal = 0;
        while (x + literal < width && literal < 128) {
            const int at = x + literal;
            if (at + 2 < width && row[at] == row[at + 1] && row[at] == row[at + 2]) break;
            ++literal;
        }
        out.push_back(static_cast<char>(literal - 1));
        out.append(reinterpret_cast<const char*>(row + x), static_cast<std::size_t>(literal));
        x += literal;
    }
    return out;
}

enum class Layout { kRaw8, kPackBits8, kRaw16 };

// A minimal Photoshop document (no resources, no layers) holding picture() as its composite.
std::string photoshop_file(Layout layout, bool big_document) {
    const auto planes = picture();
    std::string out = "8BPS";
    put(out, big_document ? 2 : 1, 2);
    out.append(6, '\0');
    put(out, 3, 2);  // channels
    put(out, kHeight, 4);
    put(out, kWidth, 4);
    put(out, layout == Layout::kRaw16 ? 16 : 8, 2);
    put(out, 3, 2);                     // RGB
    put(out, 0, 4);                     // colour mode data
    put(out, 0, 4);                     // image resources
    put(out, 0, big_document ? 8 : 4);  // layer and mask information
    put(out, layout == Layout::kPackBits8 ? 1 : 0, 2);
    if (layout == Layout::kRaw8) {
        for (const auto& plane : planes) out.append(plane.begin(), plane.end());
    } else if (layout == Layout::kRaw16) {
        for (const auto& plane : planes) {
            for (const auto value : plane) put(out, value * 257u, 2);
        }
    } else {
        std::vector<std::string> rows;
        for (const auto& plane : planes) {
            for (int y = 0; y < kHeight; ++y) {
                rows.push_back(pack_bits(plane.data() + y * kWidth, kWidth));
            }
        }
        for (const auto& row : rows) put(out, row.size(), big_document ? 4 : 2);
        for (const auto& row : rows) out += row;
    }
    return out;
}

// The converted PNG's pixels, interleaved RGB.
std::vector<unsigned char> pixels_of(const std::string& png) {
    const auto image = vips::VImage::new_from_buffer(png.data(), png.size(), "");
    REQUIRE(image.bands() == 3);
    std::size_t size = 0;
    auto* memory = static_cast<unsigned char*>(image.write_to_memory(&size));
    std::vector<unsigned char> out(memory, memory + size);
    g_free(memory);
    return out;
}

std::vector<unsigned char> expected_pixels() {
    const auto planes = picture();
    std::vector<unsigned char> out;
    for (std::size_t i = 0; i < planes[0].size(); ++i) {
        for (const auto& plane : planes) out.push_back(plane[i]);
    }
    return out;
}

}  // namespace

TEST_CASE("psd: 8-bit RGB composites read by us match ImageMagick's read", "[image]") {
    REQUIRE(VIPS_INIT("unit_image") == 0);
    asio::io_context io;
    ImageConverter converter(io.get_executor(), test_limits());
    const auto convert = [&](Layout layout, bool big_document) {
        const auto prepared =
            run(io, converter.prepare(photoshop_file(layout, big_document), "doc.psd"));
        CHECK(prepared.width == kWidth);
        CHECK(prepared.height == kHeight);
        CHECK_FALSE(prepared.has_alpha);
        return pixels_of(prepared.png);
    };
    // 16 bits per channel is not ours to read: ImageMagick reads it, as every PSD before.
    const auto by_imagemagick = convert(Layout::kRaw16, false);
    CHECK(by_imagemagick == expected_pixels());

    SECTION("raw PSD") { CHECK(convert(Layout::kRaw8, false) == by_imagemagick); }
    SECTION("PackBits PSD") { CHECK(convert(Layout::kPackBits8, false) == by_imagemagick); }
    SECTION("PackBits PSB (wider row counts)") {
        CHECK(convert(Layout::kPackBits8, true) == by_imagemagick);
    }
}

TEST_CASE("psd: a damaged 8-bit composite is refused, not returned with holes", "[image]") {
    asio::io_context io;
    ImageConverter converter(io.get_executor(), test_limits());
    SECTION("cut short in the PackBits rows") {
        auto bytes = photoshop_file(Layout::kPackBits8, false);
        bytes.resize(bytes.size() - 400);
        CHECK_THROWS_AS(run(io, converter.prepare(bytes, "cut.psd")), ImageError);
    }
    SECTION("cut short in the raw planes") {
        auto bytes = photoshop_file(Layout::kRaw8, false);
        bytes.resize(bytes.size() - 1000);
        CHECK_THROWS_AS(run(io, converter.prepare(bytes, "cut.psd")), ImageError);
    }
}
