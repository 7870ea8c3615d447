#include "iea/image/format.hpp"

#include <catch2/catch.hpp>
#include <string>

using iea::image::ImageFormat;
using iea::image::sniff;

TEST_CASE("format: sniffs formats from their first bytes", "[image]") {
    CHECK(sniff("\x89PNG\r\n\x1A\n....") == ImageFormat::kPng);
    CHECK(sniff("\xFF\xD8\xFF\xE0") == ImageFormat::kJpeg);
    CHECK(sniff("GIF89a....") == ImageFormat::kGif);
    CHECK(sniff(std::string("RIFF\x10\0\0\0WEBPVP8 ", 16)) == ImageFormat::kWebp);
    CHECK(sniff(std::string("II*\0\x08\0\0\0", 8)) == ImageFormat::kTiff);
    CHECK(sniff("%PDF-1.7\n") == ImageFormat::kPdf);
    CHECK(sniff("\xEF\xBB\xBF<?xml version=\"1.0\"?>\n<svg xmlns=\"x\"/>") == ImageFormat::kSvg);
    CHECK(sniff("\x1F\x8B\x08\x00") == ImageFormat::kSvgz);
    CHECK(sniff(std::string("\0\0\0\x18"
                            "ftypheic\0\0\0\0mif1heic",
                            24)) == ImageFormat::kHeic);
    CHECK(sniff(std::string("\0\0\0\x1C"
                            "ftypavif\0\0\0\0avifmif1miaf",
                            28)) == ImageFormat::kAvif);
    CHECK(sniff(std::string("8BPS\0\x01", 6) + std::string(20, '\0')) == ImageFormat::kPsd);
    CHECK(sniff(std::string("8BPS\0\x02", 6) + std::string(20, '\0')) == ImageFormat::kPsb);
    CHECK(sniff(std::string("BM") + std::string(30, '\0')) == ImageFormat::kBmp);
}

TEST_CASE("format: text, html and empty input are unknown", "[image]") {
    CHECK(sniff("") == ImageFormat::kUnknown);
    CHECK(sniff("hello, this is not a picture\n") == ImageFormat::kUnknown);
    CHECK(sniff("<html><body>404</body></html>") == ImageFormat::kUnknown);
    CHECK(sniff("8BPS") == ImageFormat::kUnknown);
}

TEST_CASE("format: names uploads by content (a JPEG result is a .jpg)", "[image]") {
    CHECK(iea::image::extension(ImageFormat::kJpeg) == ".jpg");
    CHECK(iea::image::mime_type(ImageFormat::kJpeg) == "image/jpeg");
    CHECK(iea::image::extension(ImageFormat::kPng) == ".png");
    CHECK(iea::image::mime_type(ImageFormat::kWebp) == "image/webp");
    CHECK(iea::image::mime_type(ImageFormat::kHeic) == "image/heic");
    CHECK(iea::image::extension(ImageFormat::kUnknown) == ".bin");
}
