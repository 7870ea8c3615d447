#include "image/png_writer.hpp"

#include <gio/gio.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <future>
#include <memory>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <vector>

// The row filters are tight byte loops; -O3's vectoriser makes them several times faster than
// the -O2 the project builds with (GCC 12 vectorises only trivial loops at -O2).
#pragma GCC optimize("O3")

namespace iea::image::detail {
namespace {

using Bytes = std::vector<unsigned char>;

constexpr std::size_t kStripBytes = std::size_t{1} << 19;  // raw pixels per strip, about
constexpr std::uint32_t kAdlerModulus = 65521;

// ---- checksums ----

const std::array<std::uint32_t, 256>& crc_table() {
    static const auto table = [] {
        std::array<std::uint32_t, 256> out{};
        for (std::uint32_t n = 0; n < 256; ++n) {
            std::uint32_t c = n;
            for (int bit = 0; bit < 8; ++bit) c = (c & 1u) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            out[n] = c;
        }
        return out;
    }();
    return table;
}

std::uint32_t crc32_of(std::string_view bytes) {
    const auto& table = crc_table();
    std::uint32_t crc = 0xFFFFFFFFu;
    for (const char byte : bytes) {
        crc = table[(crc ^ static_cast<unsigned char>(byte)) & 0xFFu] ^ (crc >> 8);
    }
    return crc ^ 0xFFFFFFFFu;
}

// Adler-32 as its two sums, so strips checksummed apart can be joined: for data D1 then D2
// (n2 bytes), A = A1 + A2 - 1 and B = B1 + B2 + n2 * (A1 - 1), modulo 65521.
struct Adler {
    std::uint64_t a = 1;
    std::uint64_t b = 0;
    std::uint64_t length = 0;

    void add(const unsigned char* data, std::size_t size) {
        constexpr std::size_t kBlock = 5552;  // largest run before the sums can overflow 32 bits
        while (size > 0) {
            const auto run = std::min(size, kBlock);
            for (std::size_t i = 0; i < run; ++i) {
                a += data[i];
                b += a;
            }
            a %= kAdlerModulus;
            b %= kAdlerModulus;
            data += run;
            size -= run;
            length += run;
        }
    }
    void append(const Adler& next) {
        b = (b + next.b +
             (next.length % kAdlerModulus) * ((a + kAdlerModulus - 1) % kAdlerModulus)) %
            kAdlerModulus;
        a = (a + next.a + kAdlerModulus - 1) % kAdlerModulus;
        length += next.length;
    }
    [[nodiscard]] std::uint32_t value() const { return static_cast<std::uint32_t>((b << 16) | a); }
};

void put_u32(std::string& out, std::uint32_t value) {
    for (int shift = 24; shift >= 0; shift -= 8)
        out.push_back(static_cast<char>((value >> shift) & 0xFFu));
}

// One chunk: length, type, data, CRC of type and data.
void put_chunk(std::string& out, std::string_view type, std::string_view data) {
    put_u32(out, static_cast<std::uint32_t>(data.size()));
    const auto start = out.size();
    out.append(type);
    out.append(data);
    put_u32(out, crc32_of(std::string_view(out).substr(start)));
}

// ---- filtering (PNG specification, section 9) ----

std::uint64_t signed_magnitude(const unsigned char* bytes, std::size_t size) {
    std::uint64_t sum = 0;
    for (std::size_t i = 0; i < size; ++i) {
        const int value = static_cast<signed char>(bytes[i]);
        sum += static_cast<std::uint64_t>(value < 0 ? -value : value);
    }
    return sum;
}

// The five filtered versions of a row. Each loop is plain enough for the compiler to vectorise.
void filter_candidates(const unsigned char* row,
                       const unsigned char* up,
                       std::size_t size,
                       std::size_t pixel,
                       std::array<unsigned char*, 5> out) {
    const auto head = std::min(pixel, size);
    std::copy(row, row + size, out[0]);
    for (std::size_t i = 0; i < head; ++i) {
        out[1][i] = row[i];
        out[3][i] = static_cast<unsigned char>(row[i] - (up[i] >> 1));
        out[4][i] = static_cast<unsigned char>(row[i] - up[i]);  // Paeth of (0, up, 0) is up
    }
    for (std::size_t i = 0; i < size; ++i) out[2][i] = static_cast<unsigned char>(row[i] - up[i]);
    for (std::size_t i = head; i < size; ++i) {
        out[1][i] = static_cast<unsigned char>(row[i] - row[i - pixel]);
    }
    for (std::size_t i = head; i < size; ++i) {
        out[3][i] = static_cast<unsigned char>(row[i] - ((row[i - pixel] + up[i]) >> 1));
    }
    for (std::size_t i = head; i < size; ++i) {
        const int left = row[i - pixel];
        const int above = up[i];
        const int corner = up[i - pixel];
        const int to_left = std::abs(above - corner);
        const int to_above = std::abs(left - corner);
        const int to_corner = std::abs(left + above - 2 * corner);
        const int predicted = (to_left <= to_above && to_left <= to_corner) ? left
                              : (to_above <= to_corner)                     ? above
                                                                            : corner;
        out[4][i] = static_cast<unsigned char>(row[i] - predicted);
    }
}

// Writes the filter type byte and the filtered row to `out`, choosing among the five filters
// the one whose bytes, read as signed, have the smallest sum of magnitudes (libpng's rule).
void filter_row(const unsigned char* row,
                const unsigned char* previous,
                std::size_t size,
                std::size_t pixel,
                unsigned char* out,
                std::array<Bytes, 5>& candidates) {
    filter_candidates(row,
                      previous,
                      size,
                      pixel,
                      {candidates[0].data(),
                       candidates[1].data(),
                       candidates[2].data(),
                       candidates[3].data(),
                       candidates[4].data()});
    std::size_t best = 0;
    std::uint64_t best_cost = signed_magnitude(candidates[0].data(), size);
    for (std::size_t type = 1; type < 5; ++type) {
        const auto cost = signed_magnitude(candidates[type].data(), size);
        if (cost < best_cost) {
            best = type;
            best_cost = cost;
        }
    }
    out[0] = static_cast<unsigned char>(best);
    std::copy(candidates[best].begin(),
              candidates[best].begin() + static_cast<std::ptrdiff_t>(size),
              out + 1);
}

// ---- one strip ----

struct Strip {
    Bytes rows;      // raw pixels, row after row
    Bytes previous;  // the row above the first one (zeros for the first strip)
    bool last = false;
};

// A complete IDAT chunk built in one buffer (length, type, deflated strip, CRC), allocated
// without being cleared: only the bytes deflate writes ever become resident.
struct PackedStrip {
    std::unique_ptr<char[]> chunk;
    std::size_t size = 0;
    Adler adler;  // of the filtered bytes
};

void grow(std::unique_ptr<char[]>& buffer, std::size_t used, std::size_t& capacity) {
    auto bigger = std::make_unique_for_overwrite<char[]>(capacity * 2);
    std::copy(buffer.get(), buffer.get() + used, bigger.get());
    buffer = std::move(bigger);
    capacity *= 2;
}

void put_u32_at(char* out, std::uint32_t value) {
    for (int i = 0; i < 4; ++i) out[i] = static_cast<char>((value >> (24 - 8 * i)) & 0xFFu);
}

// Deflates `input` as a piece of one zlib stream: ends with a sync flush (byte-aligned, the
// stream goes on) or, for the last strip, with the final block.
PackedStrip deflate_into_chunk(const unsigned char* input, std::size_t size, int level, bool last) {
    constexpr std::size_t kHeader = 8;  // length, "IDAT"
    std::unique_ptr<GZlibCompressor, decltype(&g_object_unref)> compressor(
        g_zlib_compressor_new(G_ZLIB_COMPRESSOR_FORMAT_RAW, level), &g_object_unref);
    std::size_t capacity = kHeader + size + size / 8 + 1024;
    auto buffer = std::make_unique_for_overwrite<char[]>(capacity);
    std::size_t read = 0;
    std::size_t written = kHeader;
    const auto flags = last ? G_CONVERTER_INPUT_AT_END : G_CONVERTER_FLUSH;
    for (;;) {
        if (capacity - written < 1024 + 4) grow(buffer, written, capacity);
        gsize consumed = 0;
        gsize produced = 0;
        GError* error = nullptr;
        const auto room = capacity - written - 4;  // the CRC goes after the data
        const auto result = g_converter_convert(G_CONVERTER(compressor.get()),
                                                input + read,
                                                size - read,
                                                buffer.get() + written,
                                                room,
                                                flags,
                                                &consumed,
                                                &produced,
                                                &error);
        if (result == G_CONVERTER_ERROR) {
            const std::string message = error != nullptr ? error->message : "deflate failed";
            g_clear_error(&error);
            throw std::runtime_error("png: " + message);
        }
        read += consumed;
        written += produced;
        if (last && result == G_CONVERTER_FINISHED) break;
        // A sync flush is complete once all input is in and deflate stopped with room to spare.
        if (!last && read == size && (produced < room || result == G_CONVERTER_FLUSHED)) break;
    }
    put_u32_at(buffer.get(), static_cast<std::uint32_t>(written - kHeader));
    std::copy_n("IDAT", 4, buffer.get() + 4);
    put_u32_at(buffer.get() + written, crc32_of(std::string_view(buffer.get() + 4, written - 4)));
    PackedStrip out;
    out.chunk = std::move(buffer);
    out.size = written + 4;
    return out;
}

PackedStrip pack(const Strip& strip, std::size_t row_bytes, std::size_t pixel_bytes, int level) {
    const auto rows = strip.rows.size() / row_bytes;
    const auto filtered_size = rows * (row_bytes + 1);
    const auto filtered = std::make_unique_for_overwrite<unsigned char[]>(filtered_size);
    std::array<Bytes, 5> candidates;
    for (auto& candidate : candidates) candidate.resize(row_bytes);
    const unsigned char* previous = strip.previous.data();
    for (std::size_t y = 0; y < rows; ++y) {
        const unsigned char* row = strip.rows.data() + y * row_bytes;
        filter_row(row,
                   previous,
                   row_bytes,
                   pixel_bytes,
                   filtered.get() + y * (row_bytes + 1),
                   candidates);
        previous = row;
    }
    auto out = deflate_into_chunk(filtered.get(), filtered_size, level, strip.last);
    out.adler.add(filtered.get(), filtered_size);
    return out;
}

}  // namespace

std::string write_png(const vips::VImage& image, int level) {
    if (image.format() != VIPS_FORMAT_UCHAR || image.bands() < 1 || image.bands() > 4) {
        throw std::invalid_argument("png: 8-bit images with 1 to 4 bands only");
    }
    const auto width = static_cast<std::size_t>(image.width());
    const auto height = static_cast<std::size_t>(image.height());
    const auto pixel_bytes = static_cast<std::size_t>(image.bands());
    const auto row_bytes = width * pixel_bytes;
    const std::size_t strip_rows = std::max<std::size_t>(1, kStripBytes / row_bytes);
    const unsigned workers = std::clamp(std::thread::hardware_concurrency(), 1u, 4u);

    std::string png("\x89PNG\r\n\x1A\n", 8);
    // Room for the worst case up front (pages never written are never resident): no copy of a
    // half-written PNG each time the string would otherwise grow.
    png.reserve(height * (row_bytes + 1) + height * (row_bytes + 1) / 8 + 4096);
    std::string header;
    put_u32(header, static_cast<std::uint32_t>(width));
    put_u32(header, static_cast<std::uint32_t>(height));
    constexpr std::array<char, 5> kColourTypes{0, 0, 4, 2, 6};     // by band count
    header += std::string{8, kColourTypes[pixel_bytes], 0, 0, 0};  // depth, type, no interlace
    put_chunk(png, "IHDR", header);
    put_chunk(png, "IDAT", std::string("\x78\x5E", 2));  // zlib header: deflate, 32 KiB window

    // Strips are computed in order on this thread (libvips pulls the decode along) while up to
    // `workers` earlier strips are filtered and deflated.
    std::unique_ptr<VipsRegion, decltype(&g_object_unref)> region(
        vips_region_new(image.get_image()), &g_object_unref);
    std::deque<std::future<PackedStrip>> packing;
    Adler adler;
    const auto collect_one = [&] {
        auto packed = packing.front().get();
        packing.pop_front();
        png.append(packed.chunk.get(), packed.size);
        adler.append(packed.adler);
    };
    Bytes previous(row_bytes, 0);
    for (std::size_t top = 0; top < height; top += strip_rows) {
        const auto rows = std::min(strip_rows, height - top);
        VipsRect area{0, static_cast<int>(top), static_cast<int>(width), static_cast<int>(rows)};
        if (vips_region_prepare(region.get(), &area) != 0) throw vips::VError();
        Strip strip;
        strip.rows.resize(rows * row_bytes);
        for (std::size_t y = 0; y < rows; ++y) {
            const auto* source = reinterpret_cast<const unsigned char*>(
                VIPS_REGION_ADDR(region.get(), 0, static_cast<int>(top + y)));
            std::copy(source,
                      source + row_bytes,
                      strip.rows.begin() + static_cast<std::ptrdiff_t>(y * row_bytes));
        }
        strip.previous = previous;
        std::copy(strip.rows.end() - static_cast<std::ptrdiff_t>(row_bytes),
                  strip.rows.end(),
                  previous.begin());
        strip.last = top + rows == height;
        if (packing.size() >= workers) collect_one();
        packing.push_back(std::async(std::launch::async,
                                     [strip = std::move(strip), row_bytes, pixel_bytes, level] {
                                         return pack(strip, row_bytes, pixel_bytes, level);
                                     }));
    }
    while (!packing.empty()) collect_one();

    std::string trailer;
    put_u32(trailer, adler.value());
    put_chunk(png, "IDAT", trailer);
    put_chunk(png, "IEND", "");
    return png;
}

}  // namespace iea::image::detail
