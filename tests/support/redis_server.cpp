#include "support/redis_server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

namespace iea::testing {
namespace {

sockaddr_in loopback(unsigned short port) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return address;
}

// A port the kernel just handed out and released; Redis binds it a moment later.
unsigned short free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    auto address = loopback(0);
    socklen_t size = sizeof(address);
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&address), size) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size) != 0) {
        if (fd >= 0) ::close(fd);
        throw std::runtime_error("redis fixture: no free port on 127.0.0.1");
    }
    ::close(fd);
    return ntohs(address.sin_port);
}

// Sends PING and returns the first line of the answer, or nothing.
std::optional<std::string> ping(unsigned short port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return std::nullopt;
    timeval limit{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof(limit));
    const auto address = loopback(port);
    std::optional<std::string> answer;
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0 &&
        ::send(fd, "PING\r\n", 6, MSG_NOSIGNAL) == 6) {
        char buffer[128];
        const auto size = ::recv(fd, buffer, sizeof(buffer), 0);
        if (size > 0) answer = std::string(buffer, static_cast<std::size_t>(size));
    }
    ::close(fd);
    return answer;
}

}  // namespace

std::optional<std::filesystem::path> RedisServer::executable() {
    const char* path = std::getenv("PATH");
    std::istringstream dirs(path != nullptr ? path : "/usr/bin:/usr/sbin");
    for (std::string dir; std::getline(dirs, dir, ':');) {
        const auto candidate = std::filesystem::path(dir) / "redis-server";
        if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    }
    return std::nullopt;
}

RedisServer::RedisServer(RedisServerOptions options)
    : options_(std::move(options)),
      dir_(scratch_dir("redis")),
      port_(free_port()),
      log_path_(dir_ / "redis.log") {
    start();
}

RedisServer::~RedisServer() {
    if (running()) {
        resume();
        kill();
    }
}

std::string RedisServer::url() const {
    const std::string credentials = options_.password.empty() ? "" : ":" + options_.password + "@";
    return "redis://" + credentials + "127.0.0.1:" + std::to_string(port_);
}

void RedisServer::start() {
    if (running()) return;
    const auto program = executable();
    if (!program) throw std::runtime_error("redis fixture: redis-server is not installed");

    std::vector<std::string> argv = {program->string(),
                                     "--port",
                                     std::to_string(port_),
                                     "--bind",
                                     "127.0.0.1",
                                     "--dir",
                                     dir_.string(),
                                     "--daemonize",
                                     "no",
                                     "--logfile",
                                     log_path_.string(),
                                     "--appendonly",
                                     options_.append_only ? "yes" : "no",
                                     "--save",
                                     options_.rdb_snapshots ? "3600 1 300 100 60 10000" : ""};
    if (!options_.password.empty()) argv.insert(argv.end(), {"--requirepass", options_.password});
    std::vector<char*> args;
    for (auto& arg : argv) args.push_back(arg.data());
    args.push_back(nullptr);

    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("redis fixture: fork failed");
    if (pid_ == 0) {
        // A crashed test must not leave servers behind.
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        const int quiet = ::open("/dev/null", O_RDWR);
        ::dup2(quiet, 0);
        ::dup2(quiet, 1);
        ::dup2(quiet, 2);
        char* no_environment[] = {nullptr};
        ::execve(args[0], args.data(), no_environment);
        ::_exit(127);
    }
    wait_until_ready(std::chrono::seconds(10));
}

void RedisServer::wait_until_ready(std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
        // A password-protected server answers NOAUTH; a loading one answers LOADING.
        const auto answer = ping(port_);
        if (answer && (answer->starts_with("+PONG") || answer->starts_with("-NOAUTH"))) return;
        if (reap(std::chrono::milliseconds(0))) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    kill();
    throw std::runtime_error("redis fixture: redis-server did not start on port " +
                             std::to_string(port_) + ":\n" + log());
}

void RedisServer::signal(int number) const {
    if (running()) ::kill(pid_, number);
}

bool RedisServer::reap(std::chrono::milliseconds limit) {
    if (!running()) return true;
    const auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
        if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
            pid_ = -1;
            return true;
        }
        if (std::chrono::steady_clock::now() >= deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

void RedisServer::stop() {
    if (!running()) return;
    resume();
    signal(SIGTERM);
    if (!reap(std::chrono::seconds(10))) kill();
}

void RedisServer::kill() {
    signal(SIGKILL);
    (void)reap(std::chrono::seconds(10));
}

void RedisServer::pause() { signal(SIGSTOP); }

void RedisServer::resume() { signal(SIGCONT); }

std::string RedisServer::log() const {
    try {
        return read_file(log_path_);
    } catch (const std::exception&) {
        return {};
    }
}

}  // namespace iea::testing
