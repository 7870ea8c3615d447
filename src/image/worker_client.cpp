#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <system_error>
#include <vector>

#include "iea/metrics/metrics.hpp"
#include "image/worker_protocol.hpp"

extern char** environ;

namespace iea::image::detail {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

std::string frame(const json& header) {
    const auto text = header.dump();
    const auto size = static_cast<std::uint32_t>(text.size());
    std::string out(4, '\0');
    for (int i = 0; i < 4; ++i)
        out[static_cast<std::size_t>(i)] = static_cast<char>((size >> (8 * i)) & 0xFFu);
    return out + text;
}

// Splits a stream into its JSON header and the payload that follows.
std::pair<json, std::size_t> unframe(std::string_view stream) {
    if (stream.size() < 4) throw std::runtime_error("short frame");
    std::uint32_t size = 0;
    for (int i = 0; i < 4; ++i) {
        size |= static_cast<std::uint32_t>(
                    static_cast<unsigned char>(stream[static_cast<std::size_t>(i)]))
                << (8 * i);
    }
    if (stream.size() - 4 < size) throw std::runtime_error("header longer than frame");
    return {json::parse(stream.substr(4, size)), 4 + std::size_t{size}};
}

// Owns a file descriptor.
class Fd final {
  public:
    explicit Fd(int fd = -1) : fd_(fd) {}
    ~Fd() { reset(); }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    [[nodiscard]] int get() const { return fd_; }
    void reset() {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }

  private:
    int fd_;
};

WorkerReply failure(std::string detail) {
    WorkerReply reply;
    reply.kind = ImageErrorKind::kUnreadable;
    reply.detail = std::move(detail);
    return reply;
}

std::string describe_exit(int status) {
    if (WIFSIGNALED(status)) {
        const int number = WTERMSIG(status);
        if (number == SIGXCPU) return "decoder exceeded its CPU time limit";
        return "decoder stopped by signal " + std::to_string(number);
    }
    return "decoder exited with status " + std::to_string(WEXITSTATUS(status));
}

pid_t spawn_worker(const std::filesystem::path& exe,
                   int child_end,
                   const ConversionLimits& limits) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, child_end, STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&actions, child_end, STDOUT_FILENO);
    // Decoder chatter (libpng/libjpeg warnings) must not reach our JSON log stream.
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
    // Nothing else of ours may live on in the worker: an inherited listening socket or client
    // connection would outlive the service (a restart could not bind its port again).
    posix_spawn_file_actions_addclosefrom_np(&actions, STDERR_FILENO + 1);

    const std::string cpu = std::to_string(limits.decode_cpu_time.count());
    const std::string memory = std::to_string(limits.decode_memory_bytes);
    const std::string path = exe.string();
    std::vector<char*> argv{const_cast<char*>(path.c_str()),
                            const_cast<char*>("--cpu-seconds"),
                            const_cast<char*>(cpu.c_str()),
                            const_cast<char*>("--memory-bytes"),
                            const_cast<char*>(memory.c_str()),
                            nullptr};
    pid_t pid = -1;
    const int rc = posix_spawn(&pid, path.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
        throw std::system_error(rc, std::generic_category(), "image: cannot start " + path);
    }
    return pid;
}

// Waits for the child, killing it if it is still alive at `deadline`.
int reap(pid_t pid, Clock::time_point deadline, bool& killed) {
    int status = 0;
    for (;;) {
        const pid_t done = ::waitpid(pid, &status, WNOHANG);
        if (done == pid) return status;
        if (done < 0 && errno != EINTR) return 0;
        if (Clock::now() >= deadline && !killed) {
            ::kill(pid, SIGKILL);
            killed = true;
            ::waitpid(pid, &status, 0);
            return status;
        }
        ::usleep(2000);
    }
}

}  // namespace

std::string encode_header(const WorkerRequest& request) {
    return frame({{"operation", static_cast<int>(request.operation)},
                  {"max_pixels", request.max_pixels},
                  {"png_compression", request.png_compression},
                  {"min_side", request.min_side},
                  {"max_side", request.max_side},
                  {"max_long_side", request.max_long_side},
                  {"max_base64_bytes", request.max_base64_bytes}});
}

std::string encode_header(const WorkerReply& reply) {
    return frame({{"ok", reply.ok},
                  {"kind", kind_name(reply.kind)},
                  {"detail", reply.detail},
                  {"width", reply.width},
                  {"height", reply.height},
                  {"has_alpha", reply.has_alpha},
                  {"format", static_cast<int>(reply.format)},
                  {"source_format", static_cast<int>(reply.source_format)}});
}

WorkerRequest decode_request(std::string_view stream) {
    const auto [header, offset] = unframe(stream);
    WorkerRequest request;
    request.operation = static_cast<Operation>(header.at("operation").get<int>());
    request.max_pixels = header.at("max_pixels").get<std::uint64_t>();
    request.png_compression = header.at("png_compression").get<int>();
    request.min_side = header.at("min_side").get<int>();
    request.max_side = header.at("max_side").get<int>();
    request.max_long_side = header.at("max_long_side").get<int>();
    request.max_base64_bytes = header.at("max_base64_bytes").get<std::uint64_t>();
    request.payload = stream.substr(offset);
    return request;
}

WorkerReply decode_reply(std::string stream) {
    const auto [header, offset] = unframe(stream);
    WorkerReply reply;
    reply.ok = header.at("ok").get<bool>();
    reply.kind = kind_from_name(header.at("kind").get<std::string>());
    reply.detail = header.at("detail").get<std::string>();
    reply.width = header.at("width").get<int>();
    reply.height = header.at("height").get<int>();
    reply.has_alpha = header.at("has_alpha").get<bool>();
    reply.format = static_cast<ImageFormat>(header.at("format").get<int>());
    reply.source_format = static_cast<ImageFormat>(header.at("source_format").get<int>());
    stream.erase(0, offset);
    reply.payload = std::move(stream);
    return reply;
}

std::filesystem::path worker_path(const ConversionLimits& limits) {
    if (!limits.worker_path.empty()) return limits.worker_path;
    if (const char* env = std::getenv("IEA_DECODE_WORKER"); env != nullptr && *env != '\0') {
        return env;
    }
    std::error_code ec;
    const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
    return (ec ? std::filesystem::current_path() : self.parent_path()) / "image-decode-worker";
}

WorkerReply run_in_worker(const WorkerRequest& request, const ConversionLimits& limits) {
    const metrics::DecodeInProgress decoding;
    const auto deadline = Clock::now() + limits.decode_wall_time;

    // One socket pair carries both directions; send() with MSG_NOSIGNAL keeps a child that dies
    // mid-request from raising SIGPIPE in the service.
    int ends[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) != 0) {
        throw std::system_error(errno, std::generic_category(), "image: socketpair");
    }
    Fd ours(ends[0]);
    Fd theirs(ends[1]);
    const pid_t pid = spawn_worker(worker_path(limits), theirs.get(), limits);
    theirs.reset();
    ::fcntl(ours.get(), F_SETFL, ::fcntl(ours.get(), F_GETFL) | O_NONBLOCK);

    const std::string header = encode_header(request);
    const std::string_view parts[2] = {header, request.payload};
    std::size_t part = 0;
    std::size_t sent = 0;
    bool sending = true;
    std::string answer;
    const std::size_t max_answer = request.payload.size() + limits.max_pixels * 8 + (1u << 20);
    bool killed = false;
    std::string problem;

    for (;;) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0) {
            ::kill(pid, SIGKILL);
            killed = true;
            problem = "decoder killed after the wall-time limit of " +
                      std::to_string(limits.decode_wall_time.count()) + " ms";
            break;
        }
        pollfd watch{ours.get(), static_cast<short>(POLLIN | (sending ? POLLOUT : 0)), 0};
        const int ready =
            ::poll(&watch, 1, static_cast<int>(std::min<long long>(left.count(), 1000)));
        if (ready < 0 && errno != EINTR) {
            problem = std::string("poll failed: ") + std::strerror(errno);
            break;
        }
        if (ready <= 0) continue;

        if (sending && (watch.revents & POLLOUT) != 0) {
            const auto chunk = parts[part].substr(sent);
            const ssize_t n = ::send(ours.get(), chunk.data(), chunk.size(), MSG_NOSIGNAL);
            if (n > 0) sent += static_cast<std::size_t>(n);
            if (n < 0 && errno != EAGAIN && errno != EINTR) sending = false;  // child gone
            if (sent == parts[part].size()) {
                sent = 0;
                if (++part == 2) sending = false;
            }
            if (!sending) ::shutdown(ours.get(), SHUT_WR);
        }
        if ((watch.revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
            char buffer[1 << 16];
            const ssize_t n = ::recv(ours.get(), buffer, sizeof buffer, 0);
            if (n == 0) break;
            if (n < 0 && errno != EAGAIN && errno != EINTR) break;
            if (n > 0) answer.append(buffer, static_cast<std::size_t>(n));
            if (answer.size() > max_answer) {
                ::kill(pid, SIGKILL);
                killed = true;
                problem = "decoder answer too large";
                break;
            }
        }
    }

    const int status = reap(pid, deadline + std::chrono::seconds(2), killed);
    if (!problem.empty()) return failure(problem);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return failure(describe_exit(status));
    try {
        return decode_reply(std::move(answer));
    } catch (const std::exception& e) {
        return failure(std::string("garbled decoder answer: ") + e.what());
    }
}

}  // namespace iea::image::detail
