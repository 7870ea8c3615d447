#include "image/psd.hpp"

#include <algorithm>
#include <array>
#include <stdexcept>

namespace iea::image::detail {
namespace {

// Big-endian reader that throws when a read would leave the buffer.
class Reader final {
  public:
    explicit Reader(std::string_view bytes) : bytes_(bytes) {}

    std::uint64_t read(int width) {
        need(static_cast<std::size_t>(width));
        std::uint64_t value = 0;
        for (int i = 0; i < width; ++i) {
            value = (value << 8) | static_cast<unsigned char>(bytes_[at_++]);
        }
        return value;
    }
    std::string_view take(std::size_t size) {
        need(size);
        const auto out = bytes_.substr(at_, size);
        at_ += size;
        return out;
    }
    void skip(std::uint64_t size) { (void)take(static_cast<std::size_t>(size)); }
    void seek(std::size_t at) {
        if (at > bytes_.size()) throw std::out_of_range("psd: seek past end");
        at_ = at;
    }
    [[nodiscard]] std::size_t at() const { return at_; }

  private:
    void need(std::size_t size) const {
        if (size > bytes_.size() - at_) throw std::out_of_range("psd: short read");
    }
    std::string_view bytes_;
    std::size_t at_ = 0;
};

constexpr std::uint16_t kVersionInfoResource = 1057;

// Additional-layer-information keys whose content ImageMagick 6 does not render: fills,
// adjustments, type, smart objects, vector masks and layer effects.
constexpr std::array<std::string_view, 34> kUnrenderedKeys{
    "SoCo", "GdFl", "PtFl", "vscg", "TySh", "tySh", "SoLd", "SoLE", "PlLd", "plLd", "vmsk", "vsms",
    "vstk", "vogk", "brit", "levl", "curv", "expA", "vibA", "hue ", "hue2", "blnc", "blwh", "phfl",
    "mixr", "clrL", "nvrt", "post", "thrs", "grdm", "selc", "lfx2", "lfxs", "lmfx"};

// Keys whose length field is 8 bytes wide in PSB files.
constexpr std::array<std::string_view, 13> kLongKeysInPsb{"LMsk",
                                                          "Lr16",
                                                          "Lr32",
                                                          "Layr",
                                                          "Mt16",
                                                          "Mt32",
                                                          "Mtrn",
                                                          "Alph",
                                                          "FMsk",
                                                          "lnk2",
                                                          "FEid",
                                                          "FXid",
                                                          "PxSD"};

template <std::size_t N>
bool contains(const std::array<std::string_view, N>& keys, std::string_view key) {
    return std::find(keys.begin(), keys.end(), key) != keys.end();
}

void read_resources(Reader& in, PsdFacts& facts) {
    const auto length = in.read(4);
    const auto end = in.at() + static_cast<std::size_t>(length);
    while (in.at() + 12 <= end) {
        (void)in.take(4);  // "8BIM" and a few vendor signatures
        const auto id = static_cast<std::uint16_t>(in.read(2));
        const auto name_length = in.read(1);
        in.skip(name_length + ((name_length + 1) % 2));  // Pascal string padded to even
        const auto size = in.read(4);
        const auto data = in.take(static_cast<std::size_t>(size));
        if (size % 2 != 0) in.skip(1);
        if (id == kVersionInfoResource && data.size() >= 5) {
            facts.has_real_composite = data[4] != 0;
        }
    }
    in.seek(end);
}

void mark_unfaithful(PsdFacts& facts, std::string why) {
    if (facts.layers_flatten_faithfully) facts.why_not_faithful = std::move(why);
    facts.layers_flatten_faithfully = false;
}

void read_layer_record(Reader& in, bool psb, PsdFacts& facts) {
    in.skip(16);  // top, left, bottom, right
    const auto channels = in.read(2);
    for (std::uint64_t c = 0; c < channels; ++c) in.skip(2 + (psb ? 8 : 4));
    if (in.take(4) != "8BIM") throw std::runtime_error("psd: bad blend signature");
    const auto blend = in.take(4);
    in.skip(1);  // opacity: ImageMagick applies it
    const auto clipping = in.read(1);
    const auto flags = in.read(1);
    in.skip(1);
    const auto extra_length = in.read(4);
    const auto extra_end = in.at() + static_cast<std::size_t>(extra_length);

    if (blend != "norm" && blend != "pass") mark_unfaithful(facts, "a layer uses a blend mode");
    if (clipping != 0) mark_unfaithful(facts, "a layer is a clipping mask");
    if ((flags & 0x02u) != 0) mark_unfaithful(facts, "a layer is hidden");

    const auto mask_length = in.read(4);
    if (mask_length != 0) mark_unfaithful(facts, "a layer has a mask");
    in.skip(mask_length);
    in.skip(in.read(4));  // blending ranges
    const auto name_length = in.read(1);
    in.skip(name_length + (3 - name_length % 4));  // Pascal string padded to 4

    while (in.at() + 12 <= extra_end) {
        const auto signature = in.take(4);
        if (signature != "8BIM" && signature != "8B64") break;
        const auto key = in.take(4);
        const auto size = in.read(psb && contains(kLongKeysInPsb, key) ? 8 : 4);
        if (contains(kUnrenderedKeys, key)) {
            mark_unfaithful(facts,
                            "a layer is a fill, adjustment, text, smart object or has effects");
        }
        in.skip(size);
    }
    in.seek(extra_end);
}

}  // namespace

std::optional<PsdFacts> inspect_psd(std::string_view bytes) {
    try {
        Reader in(bytes);
        if (in.take(4) != "8BPS") return std::nullopt;
        const auto version = in.read(2);
        if (version != 1 && version != 2) return std::nullopt;
        const bool psb = version == 2;
        in.skip(6);  // reserved
        PsdFacts facts;
        facts.psb = psb;
        facts.channels = static_cast<std::uint32_t>(in.read(2));
        facts.height = static_cast<std::uint32_t>(in.read(4));
        facts.width = static_cast<std::uint32_t>(in.read(4));
        facts.depth = static_cast<std::uint32_t>(in.read(2));
        facts.colour_mode = static_cast<std::uint32_t>(in.read(2));

        in.skip(in.read(4));  // colour mode data
        read_resources(in, facts);

        // Layer records only matter when the composite is missing; a damaged record makes
        // flattening untrustworthy, not the whole file unreadable.
        try {
            const auto layer_and_mask_length = in.read(psb ? 8 : 4);
            if (layer_and_mask_length <= bytes.size() - in.at()) {
                facts.composite_offset = in.at() + static_cast<std::size_t>(layer_and_mask_length);
            }
            if (layer_and_mask_length == 0) return facts;
            const auto layer_info_length = in.read(psb ? 8 : 4);
            if (layer_info_length == 0) return facts;
            const auto count = static_cast<std::int16_t>(in.read(2));
            facts.layer_count = count < 0 ? -count : count;
            for (int i = 0; i < facts.layer_count; ++i) read_layer_record(in, psb, facts);
        } catch (const std::exception&) {
            mark_unfaithful(facts, "the layer records are damaged");
        }
        return facts;
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

bool is_plain_rgb8(const PsdFacts& facts) {
    constexpr std::uint32_t kRgbMode = 3;
    return facts.colour_mode == kRgbMode && facts.depth == 8 && facts.channels == 3 &&
           facts.has_real_composite && facts.composite_offset != 0;
}

// The image data section: a compression code, then the channels one after the other (planar),
// either raw or as PackBits rows preceded by the byte count of every row of every channel.
bool read_rgb8_composite(std::string_view bytes, const PsdFacts& facts, unsigned char* out) {
    constexpr std::size_t kBands = 3;
    if (!is_plain_rgb8(facts)) return false;
    const std::size_t width = facts.width;
    const std::size_t height = facts.height;
    try {
        Reader in(bytes);
        in.seek(facts.composite_offset);
        const auto compression = in.read(2);
        if (compression == 0) {
            for (std::size_t band = 0; band < kBands; ++band) {
                const auto plane = in.take(width * height);
                for (std::size_t i = 0; i < width * height; ++i) {
                    out[i * kBands + band] = static_cast<unsigned char>(plane[i]);
                }
            }
            return true;
        }
        if (compression != 1) return false;  // ZIP composites are rare; ImageMagick reads them

        const int count_width = facts.psb ? 4 : 2;
        const auto counts = in.take(kBands * height * static_cast<std::size_t>(count_width));
        Reader row_lengths(counts);
        for (std::size_t band = 0; band < kBands; ++band) {
            for (std::size_t y = 0; y < height; ++y) {
                Reader row(in.take(static_cast<std::size_t>(row_lengths.read(count_width))));
                unsigned char* pixel = out + y * width * kBands + band;
                std::size_t x = 0;
                // PackBits: n < 128 copies n + 1 bytes, n > 128 repeats the next byte 257 - n
                // times, 128 is padding.
                while (x < width) {
                    const auto header = row.read(1);
                    if (header == 128) continue;
                    const bool run = header > 128;
                    const std::size_t length = run ? 257 - header : header + 1;
                    if (length > width - x) return false;
                    if (run) {
                        const auto value = static_cast<unsigned char>(row.read(1));
                        for (std::size_t i = 0; i < length; ++i, pixel += kBands) *pixel = value;
                    } else {
                        const auto literal = row.take(length);
                        for (const char byte : literal) {
                            *pixel = static_cast<unsigned char>(byte);
                            pixel += kBands;
                        }
                    }
                    x += length;
                }
            }
        }
        return true;
    } catch (const std::exception&) {
        return false;
    }
}

}  // namespace iea::image::detail
