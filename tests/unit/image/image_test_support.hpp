#pragma once

// Shared helpers of the image tests: run a converter call to completion, read a PNG header.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "iea/image/converter.hpp"
#include "support/harness.hpp"

namespace iea::image::testing {

/// Limits for tests: the helper from this build, short wall time.
inline ConversionLimits test_limits() {
    ConversionLimits limits;
    limits.worker_path = iea::testing::binary_dir() / "image-decode-worker";
    limits.decode_wall_time = std::chrono::seconds(20);
    limits.decode_cpu_time = std::chrono::seconds(15);
    return limits;
}

/// Runs `task` on `io` until it completes; rethrows its exception.
template <typename T>
T run(boost::asio::io_context& io, boost::asio::awaitable<T> task) {
    auto done = boost::asio::co_spawn(io, std::move(task), boost::asio::use_future);
    io.restart();
    io.run();
    return done.get();
}

struct PngHeader {
    std::uint32_t width = 0;
    std::uint32_t height = 0;
    int bit_depth = 0;
    int colour_type = -1;  // 2 RGB, 6 RGBA, 0 grey, 4 grey+alpha, 3 palette
};

inline std::uint32_t big_endian(std::string_view bytes, std::size_t at) {
    std::uint32_t value = 0;
    for (std::size_t i = 0; i < 4; ++i)
        value = (value << 8) | static_cast<unsigned char>(bytes[at + i]);
    return value;
}

/// IHDR of a PNG, read independently of libvips.
inline PngHeader png_header(std::string_view png) {
    PngHeader out;
    if (png.size() < 33 || png.substr(12, 4) != "IHDR") return out;
    out.width = big_endian(png, 16);
    out.height = big_endian(png, 20);
    out.bit_depth = static_cast<unsigned char>(png[24]);
    out.colour_type = static_cast<unsigned char>(png[25]);
    return out;
}

}  // namespace iea::image::testing
