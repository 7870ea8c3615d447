#include "iea/image/converter.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <utility>

#include "iea/logging/log.hpp"
#include "image/worker_protocol.hpp"

namespace iea::image {
namespace {

namespace asio = boost::asio;
using detail::Operation;
using detail::WorkerReply;
using detail::WorkerRequest;

const logging::Logger& log() {
    static const logging::Logger logger("image");
    return logger;
}

// Throws the reply's error, naming the file the way the designer knows it.
void throw_if_failed(const WorkerReply& reply, const std::string& file_name) {
    if (reply.ok) return;
    // The pipeline reports the refusal to the task and logs it there.
    log().debug("Image refused",
                {{"kind", kind_name(reply.kind)},
                 {"source_format", format_name(reply.source_format)},
                 {"detail", reply.detail}});
    throw ImageError(reply.kind, file_name, reply.detail);
}

PreparedImage to_prepared(WorkerReply reply) {
    return {
        std::move(reply.payload), reply.width, reply.height, reply.has_alpha, reply.source_format};
}

// Runs the helper on the pool and resumes the caller on its own executor.
asio::awaitable<WorkerReply> run(asio::thread_pool& pool,
                                 const ConversionLimits& limits,
                                 WorkerRequest request) {
    co_return co_await asio::co_spawn(
        pool.get_executor(),
        [&limits, request]() -> asio::awaitable<WorkerReply> {
            co_return detail::run_in_worker(request, limits);
        },
        asio::use_awaitable);
}

WorkerRequest base_request(Operation operation,
                           const ConversionLimits& limits,
                           std::string_view payload) {
    WorkerRequest request;
    request.operation = operation;
    request.max_pixels = limits.max_pixels;
    request.png_compression = limits.png_compression;
    request.payload = payload;
    return request;
}

}  // namespace

ImageConverter::ImageConverter(asio::any_io_executor executor, ConversionLimits limits)
    : executor_(std::move(executor)),
      limits_(std::move(limits)),
      pool_(std::max(1u, limits_.max_concurrent_decodes)) {}

ImageConverter::~ImageConverter() {
    pool_.stop();
    pool_.join();
}

asio::awaitable<PreparedImage> ImageConverter::prepare(std::string bytes, std::string file_name) {
    // Cheap refusals need no child process.
    if (bytes.empty()) throw ImageError(ImageErrorKind::kEmpty, file_name, "0 bytes");
    if (bytes.size() > limits_.max_download_bytes) {
        throw ImageError(ImageErrorKind::kTooLarge,
                         file_name,
                         std::to_string(bytes.size()) + " bytes, limit " +
                             std::to_string(limits_.max_download_bytes));
    }
    if (sniff(bytes) == ImageFormat::kUnknown) {
        throw ImageError(ImageErrorKind::kUnsupportedFormat,
                         file_name,
                         "content matches no supported image format");
    }

    auto reply = co_await run(pool_, limits_, base_request(Operation::kPrepare, limits_, bytes));
    throw_if_failed(reply, file_name);
    log().debug("Image prepared",
                {{"source_format", format_name(reply.source_format)},
                 {"bytes_in", bytes.size()},
                 {"bytes_out", reply.payload.size()},
                 {"width", reply.width},
                 {"height", reply.height}});
    co_return to_prepared(std::move(reply));
}

asio::awaitable<PreparedImage> ImageConverter::fit_for_model(const PreparedImage& image,
                                                             int min_side,
                                                             int max_side) {
    const auto long_side = std::max(image.width, image.height);
    const auto short_side = std::min(image.width, image.height);
    if (short_side >= min_side && long_side <= max_side) co_return image;

    auto request = base_request(Operation::kFit, limits_, image.png);
    request.min_side = min_side;
    request.max_side = max_side;
    auto reply = co_await run(pool_, limits_, request);
    throw_if_failed(reply, "image");
    auto out = to_prepared(std::move(reply));
    out.source_format = image.source_format;
    co_return out;
}

asio::awaitable<EncodedImage> ImageConverter::for_validation(std::string_view bytes,
                                                             ValidationLimits limits,
                                                             std::string file_name) {
    if (bytes.empty()) throw ImageError(ImageErrorKind::kEmpty, file_name, "0 bytes");
    if (bytes.size() > limits_.max_download_bytes) {
        throw ImageError(
            ImageErrorKind::kTooLarge, file_name, std::to_string(bytes.size()) + " bytes");
    }
    auto request = base_request(Operation::kValidation, limits_, bytes);
    request.max_long_side = limits.max_long_side;
    request.max_base64_bytes = limits.max_base64_bytes;
    auto reply = co_await run(pool_, limits_, request);
    throw_if_failed(reply, file_name);
    co_return EncodedImage{std::move(reply.payload), reply.format, reply.width, reply.height};
}

}  // namespace iea::image
