#pragma once

// Private: just enough of the Photoshop file layout to decide how to read a PSD/PSB before any
// decoder touches it (Adobe's "Photoshop File Formats Specification": header, colour mode
// data, image resources, layer and mask information).

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace iea::image::detail {

struct PsdFacts {
    std::uint32_t width = 0;
    std::uint32_t height = 0;
    bool psb = false;
    std::uint32_t channels = 0;
    std::uint32_t depth = 0;        ///< bits per channel
    std::uint32_t colour_mode = 0;  ///< 3 = RGB, 4 = CMYK, ...
    /// Where the image data section (the flattened composite) starts; 0 when the file ends
    /// before it.
    std::size_t composite_offset = 0;
    /// False when resource 1057 (version info) says hasRealMergedData = 0: the file was saved
    /// with "Maximize compatibility" off and its composite section is blank.
    bool has_real_composite = true;
    int layer_count = 0;
    /// True when every layer is a visible, unmasked, unclipped pixel layer in normal or
    /// pass-through mode without effects: the only case where merging the layers ourselves
    /// gives what Photoshop shows. Holds why not otherwise.
    bool layers_flatten_faithfully = true;
    std::string why_not_faithful;
};

/// Reads the header, the resources and the layer records; nothing when the structure is
/// malformed (the decoder then reports the file as unreadable).
std::optional<PsdFacts> inspect_psd(std::string_view bytes);

/// True for the common document whose composite we read ourselves: RGB, 8 bits, exactly three
/// channels (no alpha or extra channels to interpret), composite present, raw or PackBits.
bool is_plain_rgb8(const PsdFacts& facts);

/// Writes the composite of a plain_rgb8 document into `out` (width * height * 3 bytes,
/// interleaved RGB). False when the image data section is damaged or short; `out` is then
/// partly written and the caller falls back to ImageMagick, whose refusal names the damage.
bool read_rgb8_composite(std::string_view bytes, const PsdFacts& facts, unsigned char* out);

}  // namespace iea::image::detail
