// `image-decode-worker convert ...`: the command-line conversion, decoded in the process that
// runs it (see run_one_shot_convert in worker_protocol.hpp).

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "image/worker_protocol.hpp"

namespace iea::image::detail {
namespace {

struct OneShotArguments {
    std::filesystem::path input;
    std::filesystem::path output;
    bool for_validation = false;
    int png_compression = ConversionLimits{}.png_compression;
    std::uint64_t cpu_seconds =
        static_cast<std::uint64_t>(ConversionLimits{}.decode_cpu_time.count());
    std::uint64_t memory_bytes = ConversionLimits{}.decode_memory_bytes;
    std::uint64_t wall_ms = static_cast<std::uint64_t>(ConversionLimits{}.decode_wall_time.count());
};

// argv: convert IN OUT [--for-validation] [--png-compression N] [--cpu-seconds N]
// [--memory-bytes N] [--wall-ms N], as written by run_convert_command().
std::optional<OneShotArguments> parse(int argc, char** argv) {
    OneShotArguments out;
    std::vector<std::string_view> paths;
    try {
        for (int i = 2; i < argc; ++i) {
            const std::string_view name = argv[i];
            const bool has_value = i + 1 < argc;
            if (name == "--for-validation") {
                out.for_validation = true;
            } else if (name == "--png-compression" && has_value) {
                out.png_compression = std::stoi(argv[++i]);
            } else if (name == "--cpu-seconds" && has_value) {
                out.cpu_seconds = std::stoull(argv[++i]);
            } else if (name == "--memory-bytes" && has_value) {
                out.memory_bytes = std::stoull(argv[++i]);
            } else if (name == "--wall-ms" && has_value) {
                out.wall_ms = std::stoull(argv[++i]);
            } else {
                paths.push_back(name);
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

// The sentence printed when a limit or a crash ends the decode. Built before decoding starts:
// the signal handler that prints it may only call write() and _exit().
std::array<char, 2048> refusal_text{};
std::size_t refusal_size = 0;

void refuse_and_exit(int /*signal*/) {
    [[maybe_unused]] const auto written = ::write(STDERR_FILENO, refusal_text.data(), refusal_size);
    ::_exit(1);
}

// Wall clock (SIGALRM), CPU time (SIGXCPU at the soft limit) and decoder crashes all end the
// process with the refusal a designer would read; a hang can never outlive the wall limit.
void arm_limits(const std::string& file_name, std::uint64_t wall_ms) {
    const auto text = ImageError(ImageErrorKind::kUnreadable, file_name, "").user_message() + "\n";
    refusal_size = std::min(text.size(), refusal_text.size());
    std::memcpy(refusal_text.data(), text.data(), refusal_size);

    struct sigaction action {};
    action.sa_handler = refuse_and_exit;
    sigemptyset(&action.sa_mask);
    for (const int signal : {SIGALRM, SIGXCPU, SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) {
        ::sigaction(signal, &action, nullptr);
    }
    itimerval wall{};
    wall.it_value.tv_sec = static_cast<time_t>(wall_ms / 1000);
    wall.it_value.tv_usec = static_cast<suseconds_t>((wall_ms % 1000) * 1000);
    ::setitimer(ITIMER_REAL, &wall, nullptr);
}

void disarm_wall_clock() {
    const itimerval off{};
    ::setitimer(ITIMER_REAL, &off, nullptr);
}

// The input file, mapped rather than read: only the pages a decoder touches become resident
// (a layered PSD's layer data is never read when its composite is).
class InputFile final {
  public:
    explicit InputFile(const std::filesystem::path& path) {
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) throw std::runtime_error("cannot open " + path.string());
        struct stat facts {};
        if (::fstat(fd, &facts) == 0 && S_ISREG(facts.st_mode) && facts.st_size > 0) {
            size_ = static_cast<std::size_t>(facts.st_size);
            void* mapped = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
            if (mapped != MAP_FAILED) mapped_ = mapped;
        }
        ::close(fd);
        if (mapped_ == nullptr) {  // a pipe or an empty file: read it
            size_ = 0;
            std::ifstream in(path, std::ios::binary);
            std::ostringstream all;
            all << in.rdbuf();
            copy_ = all.str();
        }
    }
    ~InputFile() {
        if (mapped_ != nullptr) ::munmap(mapped_, size_);
    }
    InputFile(const InputFile&) = delete;
    InputFile& operator=(const InputFile&) = delete;

    [[nodiscard]] std::string_view bytes() const {
        if (mapped_ == nullptr) return copy_;
        return {static_cast<const char*>(mapped_), size_};
    }

  private:
    void* mapped_ = nullptr;
    std::size_t size_ = 0;
    std::string copy_;
};

void write_bytes(const std::filesystem::path& path, std::string_view bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) throw std::runtime_error("cannot write " + path.string());
}

int convert(const char* argv0, const OneShotArguments& arguments) {
    const auto name = arguments.input.filename().string();
    arm_limits(name, arguments.wall_ms);
    const InputFile input(arguments.input);
    const ConversionLimits limits;
    if (input.bytes().size() > limits.max_download_bytes) {
        throw ImageError(ImageErrorKind::kTooLarge,
                         name,
                         std::to_string(input.bytes().size()) + " bytes, limit " +
                             std::to_string(limits.max_download_bytes));
    }
    if (!start_vips(argv0, sniff(input.bytes()))) throw std::runtime_error("libvips did not start");

    WorkerRequest request;
    request.operation = arguments.for_validation ? Operation::kValidation : Operation::kPrepare;
    request.max_pixels = limits.max_pixels;
    request.png_compression = arguments.png_compression;
    request.max_long_side = ValidationLimits{}.max_long_side;
    request.max_base64_bytes = ValidationLimits{}.max_base64_bytes;
    request.payload = input.bytes();
    auto reply = execute(request);
    disarm_wall_clock();
    if (!reply.ok) throw ImageError(reply.kind, name, reply.detail);

    if (!arguments.for_validation) {
        write_bytes(arguments.output, reply.payload);
        std::cout << arguments.output.string() << ": " << reply.width << "x" << reply.height
                  << (reply.has_alpha ? " RGBA" : " RGB") << " PNG from "
                  << format_name(reply.source_format) << "\n";
        return 0;
    }
    auto output = arguments.output;
    output.replace_extension(extension(reply.format));
    write_bytes(output, reply.payload);
    std::cout << output.string() << ": " << reply.width << "x" << reply.height << " "
              << mime_type(reply.format) << ", " << reply.payload.size() << " bytes\n";
    return 0;
}

}  // namespace

int run_one_shot_convert(int argc, char** argv) {
    const auto arguments = parse(argc, argv);
    if (!arguments) {
        std::cerr << "image-decode-worker convert: bad arguments (use image-edit-agent convert)\n";
        return 2;
    }
    // No parent to die with: this process is the command the user started.
    limit_process(arguments->cpu_seconds, arguments->memory_bytes, false);
    try {
        return convert(argv[0], *arguments);
    } catch (const ImageError& error) {
        std::cerr << error.user_message() << "\n";
    } catch (const std::exception& error) {
        std::cerr << "convert: " << error.what() << "\n";
    }
    return 1;
}

}  // namespace iea::image::detail
