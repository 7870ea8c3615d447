#include "iea/image/format.hpp"

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>

namespace iea::image {
namespace {

constexpr std::size_t kSniffWindow = 4096;

bool starts_with(std::string_view bytes, std::string_view prefix) {
    return bytes.substr(0, prefix.size()) == prefix;
}

std::uint32_t big_endian_u16(std::string_view bytes, std::size_t at) {
    return (static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[at])) << 8) |
           static_cast<unsigned char>(bytes[at + 1]);
}

// ISO base media files (HEIF, AVIF) open with an `ftyp` box: a major brand, then a list of
// compatible brands. "mif1" alone says HEIF container, so the other brands decide.
ImageFormat sniff_ftyp(std::string_view bytes) {
    if (bytes.size() < 16 || bytes.substr(4, 4) != "ftyp") return ImageFormat::kUnknown;
    const auto box_size = std::min<std::size_t>(
        (static_cast<std::size_t>(static_cast<unsigned char>(bytes[0])) << 24) |
            (static_cast<std::size_t>(static_cast<unsigned char>(bytes[1])) << 16) |
            (static_cast<std::size_t>(static_cast<unsigned char>(bytes[2])) << 8) |
            static_cast<unsigned char>(bytes[3]),
        std::min(bytes.size(), std::size_t{256}));
    constexpr std::array<std::string_view, 2> kAvifBrands{"avif", "avis"};
    constexpr std::array<std::string_view, 8> kHeicBrands{
        "heic", "heix", "hevc", "hevx", "heim", "heis", "hevm", "hevs"};
    bool heif_container = false;
    for (std::size_t at = 8; at + 4 <= box_size; at += 4) {
        if (at == 12) continue;  // minor version, not a brand
        const auto brand = bytes.substr(at, 4);
        if (std::find(kAvifBrands.begin(), kAvifBrands.end(), brand) != kAvifBrands.end()) {
            return ImageFormat::kAvif;
        }
        if (std::find(kHeicBrands.begin(), kHeicBrands.end(), brand) != kHeicBrands.end()) {
            return ImageFormat::kHeic;
        }
        if (brand == "mif1" || brand == "msf1") heif_container = true;
    }
    return heif_container ? ImageFormat::kHeic : ImageFormat::kUnknown;
}

// SVG is text: an optional BOM, XML declaration, comments or doctype, then an <svg> element.
bool looks_like_svg(std::string_view bytes) {
    auto head = bytes.substr(0, kSniffWindow);
    if (starts_with(head, "\xEF\xBB\xBF")) head.remove_prefix(3);
    const auto first = head.find_first_not_of(" \t\r\n");
    if (first == std::string_view::npos || head[first] != '<') return false;
    return head.find("<svg") != std::string_view::npos;
}

}  // namespace

ImageFormat sniff(std::string_view bytes) noexcept {
    if (starts_with(bytes, "\x89PNG\r\n\x1A\n")) return ImageFormat::kPng;
    if (starts_with(bytes, "\xFF\xD8\xFF")) return ImageFormat::kJpeg;
    if (starts_with(bytes, "GIF87a") || starts_with(bytes, "GIF89a")) return ImageFormat::kGif;
    if (bytes.size() >= 12 && starts_with(bytes, "RIFF") && bytes.substr(8, 4) == "WEBP") {
        return ImageFormat::kWebp;
    }
    if (starts_with(bytes, std::string_view("II*\0", 4)) ||
        starts_with(bytes, std::string_view("MM\0*", 4)) ||
        starts_with(bytes, std::string_view("II+\0", 4)) ||
        starts_with(bytes, std::string_view("MM\0+", 4))) {
        return ImageFormat::kTiff;
    }
    if (bytes.size() >= 26 && starts_with(bytes, "BM")) return ImageFormat::kBmp;
    if (bytes.size() >= 26 && starts_with(bytes, "8BPS")) {
        const auto version = big_endian_u16(bytes, 4);
        if (version == 1) return ImageFormat::kPsd;
        if (version == 2) return ImageFormat::kPsb;
        return ImageFormat::kUnknown;
    }
    // PDF readers accept the marker anywhere in the first kilobyte.
    if (bytes.substr(0, 1024).find("%PDF-") != std::string_view::npos) return ImageFormat::kPdf;
    if (starts_with(bytes, "\x1F\x8B")) return ImageFormat::kSvgz;
    if (const auto heif = sniff_ftyp(bytes); heif != ImageFormat::kUnknown) return heif;
    if (looks_like_svg(bytes)) return ImageFormat::kSvg;
    return ImageFormat::kUnknown;
}

std::string_view mime_type(ImageFormat format) noexcept {
    switch (format) {
        case ImageFormat::kPng:
            return "image/png";
        case ImageFormat::kJpeg:
            return "image/jpeg";
        case ImageFormat::kGif:
            return "image/gif";
        case ImageFormat::kWebp:
            return "image/webp";
        case ImageFormat::kTiff:
            return "image/tiff";
        case ImageFormat::kBmp:
            return "image/bmp";
        case ImageFormat::kPsd:
        case ImageFormat::kPsb:
            return "image/vnd.adobe.photoshop";
        case ImageFormat::kPdf:
            return "application/pdf";
        case ImageFormat::kSvg:
            return "image/svg+xml";
        case ImageFormat::kSvgz:
            return "image/svg+xml";
        case ImageFormat::kHeic:
            return "image/heic";
        case ImageFormat::kAvif:
            return "image/avif";
        case ImageFormat::kUnknown:
            break;
    }
    return "application/octet-stream";
}

std::string_view extension(ImageFormat format) noexcept {
    switch (format) {
        case ImageFormat::kPng:
            return ".png";
        case ImageFormat::kJpeg:
            return ".jpg";
        case ImageFormat::kGif:
            return ".gif";
        case ImageFormat::kWebp:
            return ".webp";
        case ImageFormat::kTiff:
            return ".tiff";
        case ImageFormat::kBmp:
            return ".bmp";
        case ImageFormat::kPsd:
            return ".psd";
        case ImageFormat::kPsb:
            return ".psb";
        case ImageFormat::kPdf:
            return ".pdf";
        case ImageFormat::kSvg:
            return ".svg";
        case ImageFormat::kSvgz:
            return ".svgz";
        case ImageFormat::kHeic:
            return ".heic";
        case ImageFormat::kAvif:
            return ".avif";
        case ImageFormat::kUnknown:
            break;
    }
    return ".bin";
}

std::string_view format_name(ImageFormat format) noexcept {
    switch (format) {
        case ImageFormat::kPng:
            return "PNG";
        case ImageFormat::kJpeg:
            return "JPEG";
        case ImageFormat::kGif:
            return "GIF";
        case ImageFormat::kWebp:
            return "WebP";
        case ImageFormat::kTiff:
            return "TIFF";
        case ImageFormat::kBmp:
            return "BMP";
        case ImageFormat::kPsd:
            return "PSD";
        case ImageFormat::kPsb:
            return "PSB";
        case ImageFormat::kPdf:
            return "PDF";
        case ImageFormat::kSvg:
            return "SVG";
        case ImageFormat::kSvgz:
            return "SVGZ";
        case ImageFormat::kHeic:
            return "HEIC";
        case ImageFormat::kAvif:
            return "AVIF";
        case ImageFormat::kUnknown:
            break;
    }
    return "unknown";
}

}  // namespace iea::image
