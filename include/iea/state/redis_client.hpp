#pragma once

/// An asynchronous Redis client for the service's event loop.
///
/// Commands are pipelined over one TCP connection and parsed with hiredis's reply reader;
/// nothing blocks the loop. The client keeps itself connected: after a failure it reconnects
/// with exponential backoff (capped), and while it is disconnected every command fails at
/// once with RedisErrc::kUnavailable, so callers decide (answer 503, pause a task) instead of
/// queueing work that may never run. An outage is logged once ("Redis unreachable") and its
/// end once ("Redis back").
///
/// A blocking command (XREADGROUP BLOCK) holds up every command behind it on the same
/// connection: give blocking reads a client of their own.

#include <array>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "iea/config/settings.hpp"
#include "iea/state/redis_reply.hpp"

namespace iea::state {

namespace asio = boost::asio;

/// Where Redis is, from a REDIS_URL.
struct RedisEndpoint {
    std::string host = "127.0.0.1";
    unsigned short port = 6379;
    int db = 0;
    std::string user;         ///< ACL user; empty for the default user.
    config::Secret password;  ///< Empty when Redis needs none.

    /// The URL without credentials, fit for a log line: redis://host:port/db.
    [[nodiscard]] std::string redacted() const;
};

/// Parses `redis://[[user]:password@]host[:port][/db]`. Throws std::invalid_argument with a
/// sentence naming the problem and the expected form; the message never holds the password.
[[nodiscard]] RedisEndpoint parse_redis_url(std::string_view url);

struct RedisClientOptions {
    /// Names the connection in log lines ("commands", "queue reads").
    std::string name = "redis";
    std::chrono::milliseconds connect_timeout{2000};
    /// How long a command may wait for its answer; past it the connection counts as broken.
    std::chrono::milliseconds command_timeout{5000};
    std::chrono::milliseconds reconnect_first_delay{100};
    std::chrono::milliseconds reconnect_max_delay{5000};
};

/// A Lua script run with EVALSHA, falling back to EVAL when the server does not know it
/// (after a restart or SCRIPT FLUSH). The SHA-1 is computed once, here.
class RedisScript final {
  public:
    explicit RedisScript(std::string source);
    [[nodiscard]] const std::string& source() const { return source_; }
    [[nodiscard]] const std::string& sha1() const { return sha1_; }

  private:
    std::string source_;
    std::string sha1_;
};

namespace detail {
struct RedisClientState;
/// One command as RESP2 puts it on the wire: an array of bulk strings.
std::string encode_command(std::span<const std::string_view> words);
std::string encode_command(std::span<const std::string> words);
}  // namespace detail

class RedisClient final {
  public:
    /// Runs on `executor`, which must be single-threaded (an io_context run by one thread or
    /// a strand): the client keeps its state without locks. Call start() to connect.
    RedisClient(asio::any_io_executor executor,
                RedisEndpoint endpoint,
                RedisClientOptions options = {});
    /// Closes: commands still waiting fail with kUnavailable.
    ~RedisClient();
    RedisClient(const RedisClient&) = delete;
    RedisClient& operator=(const RedisClient&) = delete;

    /// Starts connecting in the background; later outages reconnect by themselves.
    void start();
    /// Disconnects for good; waiting and later commands fail with kUnavailable.
    void close();

    [[nodiscard]] bool connected() const;
    /// How long the oldest command still waiting for its answer has waited (zero when none):
    /// a frozen server shows here before the command timeout drops the connection.
    [[nodiscard]] std::chrono::steady_clock::duration oldest_wait() const;
    /// Waits until connected, at most `limit`; true when connected.
    asio::awaitable<bool> wait_connected(std::chrono::milliseconds limit);

    /// Sends one command: `co_await redis.command("SET", key, value, "NX")`. Every word must
    /// convert to std::string_view; the words are encoded before the call returns, so
    /// temporaries are fine. (Separate arguments rather than a braced list: GCC 12 cannot
    /// compile an initializer_list inside a co_await expression.)
    template <typename... Words>
    asio::awaitable<RedisResult<RedisReply>> command(const Words&... words) {
        const std::array<std::string_view, sizeof...(Words)> list{std::string_view(words)...};
        return send_encoded(detail::encode_command(list), false);
    }
    /// The same, for a list of words built at run time (XADD with fields, many keys).
    asio::awaitable<RedisResult<RedisReply>> command(const std::vector<std::string>& words);

    /// A command the server may hold for up to `blocks_for` (BLOCK, BLPOP): its answer may
    /// take that long on top of the usual command timeout.
    asio::awaitable<RedisResult<RedisReply>> blocking_command(const std::vector<std::string>& words,
                                                              std::chrono::milliseconds blocks_for);

    /// Runs `script` as EVAL does: `key_count` keys first, then the arguments, e.g.
    /// `co_await redis.eval(kRelease, 1, lock_key, token)`. Sends EVALSHA, and EVAL when the
    /// server does not know the script.
    template <typename... Words>
    asio::awaitable<RedisResult<RedisReply>> eval(const RedisScript& script,
                                                  int key_count,
                                                  const Words&... keys_then_args) {
        const std::string count = std::to_string(key_count);
        std::array<std::string_view, sizeof...(Words) + 3> list{
            "EVALSHA", script.sha1(), count, std::string_view(keys_then_args)...};
        auto by_sha = detail::encode_command(list);
        list[0] = "EVAL";
        list[1] = script.source();
        return eval_encoded(std::move(by_sha), detail::encode_command(list));
    }

  private:
    asio::awaitable<RedisResult<RedisReply>> send_encoded(
        std::string request, bool blocking, std::chrono::milliseconds blocks_for = {});
    asio::awaitable<RedisResult<RedisReply>> eval_encoded(std::string by_sha,
                                                          std::string by_source);

    std::shared_ptr<detail::RedisClientState> state_;
};

}  // namespace iea::state
