#include "iea/image/convert_command.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <optional>
#include <string>

#include "iea/image/converter.hpp"
#include "image/worker_protocol.hpp"

namespace iea::image {
namespace {

struct ConvertArguments {
    std::string input;
    std::string output;
    bool for_validation = false;
    int png_compression = ConversionLimits{}.png_compression;
    std::optional<long long> time_limit_seconds;
};

std::optional<ConvertArguments> parse(const std::vector<std::string>& arguments) {
    ConvertArguments out;
    std::vector<std::string> paths;
    try {
        for (std::size_t i = 0; i < arguments.size(); ++i) {
            const bool has_value = i + 1 < arguments.size();
            if (arguments[i] == "--for-validation") {
                out.for_validation = true;
            } else if (arguments[i] == "--png-compression" && has_value) {
                out.png_compression = std::stoi(arguments[++i]);
                if (out.png_compression < 0 || out.png_compression > 9) return std::nullopt;
            } else if (arguments[i] == "--time-limit" && has_value) {
                out.time_limit_seconds = std::stoll(arguments[++i]);
                if (*out.time_limit_seconds < 1) return std::nullopt;
            } else {
                paths.push_back(arguments[i]);
            }
        }
    } catch (const std::exception&) {
        return std::nullopt;
    }
    if (paths.size() != 2) return std::nullopt;
    out.input = paths[0];
    out.output = paths[1];
    return out;
}

}  // namespace

int run_convert_command(const std::vector<std::string>& arguments) {
    const auto parsed = parse(arguments);
    if (!parsed) {
        std::cerr << "usage: image-edit-agent convert IN OUT.png [--for-validation] "
                     "[--png-compression 0-9] [--time-limit SECONDS]\n";
        return 2;
    }
    // This process only started to read the command line: the decode helper takes its place
    // (exec, no second process) and converts under the service's limits, through the very code
    // that a service decode runs.
    ConversionLimits limits;
    auto cpu_seconds = limits.decode_cpu_time.count();
    auto wall_ms = limits.decode_wall_time.count();
    if (parsed->time_limit_seconds) {
        cpu_seconds = std::min<long long>(cpu_seconds, *parsed->time_limit_seconds);
        wall_ms = *parsed->time_limit_seconds * 1000;
    }
    const auto worker = detail::worker_path(limits).string();
    std::vector<std::string> words{worker,
                                   "convert",
                                   parsed->input,
                                   parsed->output,
                                   "--png-compression",
                                   std::to_string(parsed->png_compression),
                                   "--cpu-seconds",
                                   std::to_string(cpu_seconds),
                                   "--memory-bytes",
                                   std::to_string(limits.decode_memory_bytes),
                                   "--wall-ms",
                                   std::to_string(wall_ms)};
    if (parsed->for_validation) words.emplace_back("--for-validation");
    std::vector<char*> argv;
    for (auto& word : words) argv.push_back(word.data());
    argv.push_back(nullptr);
    std::cout.flush();
    ::execv(worker.c_str(), argv.data());
    std::cerr << "convert: cannot start " << worker << ": " << std::strerror(errno) << "\n";
    return 1;
}

}  // namespace iea::image
