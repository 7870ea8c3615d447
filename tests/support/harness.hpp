#pragma once

// Test helpers: the corpus in ../shared, child processes of our binaries, and a blocking
// HTTP client that only ever talks to 127.0.0.1.

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace iea::testing {

using Env = std::map<std::string, std::string>;

/// ../shared next to the project, or nothing in a clone that has no such folder.
std::optional<std::filesystem::path> shared_dir();

/// Directory holding the built executables.
std::filesystem::path binary_dir();

/// Reads a whole file.
std::string read_file(const std::filesystem::path& path);

/// A fresh empty directory under the build tree, removed at exit of the test binary.
std::filesystem::path scratch_dir(const std::string& name);

struct HttpReply {
    int status = 0;
    std::map<std::string, std::string> headers;  // lower-case names
    std::string body;
};

/// One request to 127.0.0.1:port; throws on connection failure or after `timeout`.
HttpReply http_request(unsigned short port,
                       const std::string& method,
                       const std::string& target,
                       const std::string& body = {},
                       const std::map<std::string, std::string>& headers = {},
                       std::chrono::milliseconds timeout = std::chrono::seconds(10));

/// A child process with its stdout and stderr captured into files.
class ChildProcess {
public:
    ChildProcess(std::vector<std::string> argv, std::map<std::string, std::string> env);
    ~ChildProcess();
    ChildProcess(const ChildProcess&) = delete;
    ChildProcess& operator=(const ChildProcess&) = delete;

    /// Waits until a stdout line satisfies `match`; returns it, or nothing after `timeout`.
    std::optional<std::string> wait_for_line(const std::function<bool(const std::string&)>& match,
                                             std::chrono::milliseconds timeout);
    void signal(int number);
    /// Exit code (128+signal when killed), or nothing if it did not exit within `timeout`.
    std::optional<int> wait_exit(std::chrono::milliseconds timeout);
    [[nodiscard]] std::string stdout_text() const;
    [[nodiscard]] std::string stderr_text() const;
    [[nodiscard]] int pid() const { return pid_; }

private:
    int pid_ = -1;
    std::optional<int> exit_code_;
    std::filesystem::path out_path_;
    std::filesystem::path err_path_;
};

class RedisServer;

/// True when this run's services keep their state in Redis (IEA_TEST_STATE_BACKEND=redis):
/// the single-instance suites run once on each backend.
[[nodiscard]] bool testing_on_redis();

/// Settings that put a service on `redis`, with short takeover times for tests.
[[nodiscard]] std::map<std::string, std::string> redis_backend_env(const RedisServer& redis);

/// The service binary started on a free port of 127.0.0.1 with `env` added to a minimal
/// environment (test secret, field id). Waits until it listens.
class ServiceProcess {
public:
    explicit ServiceProcess(std::map<std::string, std::string> env = {});
    explicit ServiceProcess(std::map<std::string, std::string> env,
                            std::vector<std::string> extra_args);
    [[nodiscard]] unsigned short port() const { return port_; }
    ChildProcess& process() { return *process_; }

    static constexpr const char* kSecret = "test-secret-1";
    static constexpr const char* kFieldId = "00000000-aaaa-4bbb-8ccc-000000000001";

private:
    std::shared_ptr<RedisServer> redis_;  // its own, when testing on Redis without one given
    std::unique_ptr<ChildProcess> process_;
    unsigned short port_ = 0;
};

}  // namespace iea::testing
