#pragma once

// Private: our PNG writer. libpng (through libvips) filters and deflates every row on one
// thread, and that encode is most of a large conversion (a 12 MP photo: 0.84 s of PNG for
// 0.11 s of JPEG decode). Here the rows are cut into strips that are filtered and deflated on
// several threads at once, each strip ending on a byte boundary (a zlib sync flush), and the
// pieces are joined into the one zlib stream a PNG holds. Same zlib level, same adaptive filter
// rule as libpng; a few hundred bytes more per strip for the dictionary each one starts without.

#include <string>
#include <vips/vips8>

namespace iea::image::detail {

/// PNG of an 8-bit image with 1 to 4 bands at zlib `level` (0-9), adaptive row filters, no
/// metadata. Throws vips::VError when libvips cannot compute the pixels.
std::string write_png(const vips::VImage& image, int level);

}  // namespace iea::image::detail
