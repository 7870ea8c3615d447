#pragma once

// A real redis-server (Debian's) for tests: started on a free port of 127.0.0.1 in a scratch
// directory, with the append-only file on and RDB snapshots off, and able to be stopped,
// killed, paused and started again on the same port and directory. The server dies with the
// test process, even when that crashes.

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>

#include "support/harness.hpp"

namespace iea::testing {

struct RedisServerOptions {
    bool append_only = true;
    /// RDB snapshots (`save 3600 1 ...`); off by default (`--save ""`).
    bool rdb_snapshots = false;
    /// `requirepass`, when not empty.
    std::string password;
};

class RedisServer final {
  public:
    /// The redis-server executable, or nothing when it is not installed.
    static std::optional<std::filesystem::path> executable();

    /// Starts the server and waits until it answers PING; throws with its log when it does not.
    explicit RedisServer(RedisServerOptions options = {});
    ~RedisServer();
    RedisServer(const RedisServer&) = delete;
    RedisServer& operator=(const RedisServer&) = delete;

    [[nodiscard]] unsigned short port() const { return port_; }
    [[nodiscard]] const std::filesystem::path& dir() const { return dir_; }
    /// redis://127.0.0.1:PORT (with the password, when there is one).
    [[nodiscard]] std::string url() const;
    [[nodiscard]] bool running() const { return pid_ > 0; }

    /// Stops with SIGTERM (Redis flushes the append-only file) and waits for the exit.
    void stop();
    /// Stops with SIGKILL, as a crash would.
    void kill();
    /// Starts again on the same port and directory, replaying the append-only file.
    void start();
    /// SIGSTOP / SIGCONT: the server keeps its connections but answers nothing.
    void pause();
    void resume();

    /// The server's log so far (for failure messages).
    [[nodiscard]] std::string log() const;

  private:
    void wait_until_ready(std::chrono::milliseconds limit);
    void signal(int number) const;
    /// Waits for the server to exit; true when it did within `limit`.
    bool reap(std::chrono::milliseconds limit);

    RedisServerOptions options_;
    std::filesystem::path dir_;
    unsigned short port_ = 0;
    std::filesystem::path log_path_;
    int pid_ = -1;
};

}  // namespace iea::testing

/// Ends the current test early with a warning when redis-server is not installed.
#define IEA_REQUIRE_REDIS_SERVER()                                                         \
    do {                                                                                   \
        if (!::iea::testing::RedisServer::executable()) {                                  \
            WARN("redis-server is not installed (apt-get install redis-server): skipped"); \
            return;                                                                        \
        }                                                                                  \
    } while (false)
