#pragma once

// Private: the conversation between the service and its decode helper.
//
// Why a separate helper executable and not fork() of the service or a thread: a thread that
// spins inside libvips cannot be stopped, and fork() of a multi-threaded process may only call
// async-signal-safe functions before exec. A small executable started with posix_spawn gets
// fresh state, its own rlimits and can be SIGKILLed; it also lets tests (which are not the
// service binary) use the very same path.
//
// Frames, both directions: u32 little-endian length, a JSON header of that length, then the
// payload up to end of stream (the parent half-closes after the request payload).

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "iea/image/converter.hpp"

namespace iea::image::detail {

enum class Operation { kPrepare, kFit, kValidation };

struct WorkerRequest {
    Operation operation = Operation::kPrepare;
    std::uint64_t max_pixels = 0;
    int png_compression = 2;
    int min_side = 0;                    // kFit
    int max_side = 0;                    // kFit
    int max_long_side = 0;               // kValidation
    std::uint64_t max_base64_bytes = 0;  // kValidation
    std::string_view payload;
};

struct WorkerReply {
    bool ok = false;
    ImageErrorKind kind = ImageErrorKind::kUnreadable;
    std::string detail;
    int width = 0;
    int height = 0;
    bool has_alpha = false;
    ImageFormat format = ImageFormat::kUnknown;         // of payload
    ImageFormat source_format = ImageFormat::kUnknown;  // of the input
    std::string payload;
};

/// The JSON header frame (length + JSON) of a request or reply, without the payload.
std::string encode_header(const WorkerRequest& request);
std::string encode_header(const WorkerReply& reply);
/// Parse a whole stream (header + payload); throws std::runtime_error when malformed.
WorkerRequest decode_request(std::string_view stream);
WorkerReply decode_reply(std::string stream);

/// Runs one request in a fresh helper process and waits for it (blocking: call it from a
/// worker thread). Never throws for what the child does: a crash, a kill on a limit or a
/// garbled answer come back as a kUnreadable reply. Throws std::system_error only when the
/// helper cannot be started at all.
WorkerReply run_in_worker(const WorkerRequest& request, const ConversionLimits& limits);

/// The helper's path under `limits` (see ConversionLimits::worker_path).
std::filesystem::path worker_path(const ConversionLimits& limits);

/// main() of the helper: reads one request on stdin, answers on stdout.
int run_decode_worker(int argc, char** argv);

/// main() of the helper started as `image-decode-worker convert IN OUT [options]` by
/// `image-edit-agent convert` (see convert_command.hpp): the one-shot command line is itself a
/// disposable process, so it decodes in place under the same CPU, memory and wall-clock limits
/// and through the same execute() as a service decode, without a second process.
int run_one_shot_convert(int argc, char** argv);

/// CPU-time, address-space and core limits of a decoding process; with `die_with_parent`, the
/// process is also killed when the one that started it dies (the service's helpers).
void limit_process(std::uint64_t cpu_seconds, std::uint64_t memory_bytes, bool die_with_parent);

/// VIPS_INIT for decoding `input`: libvips' loadable modules are loaded only when its loader
/// lives in one (HEIF, PDF). False when libvips cannot start.
bool start_vips(const char* argv0, ImageFormat input);

/// Child side: carries out one request in this process (libvips/ImageMagick). Never throws.
WorkerReply execute(const WorkerRequest& request);

}  // namespace iea::image::detail
