#pragma once

// Shared by the Redis tests: an event loop with a client connected to a fixture server, a
// capturing log sink, and a bounded wait for a condition.

#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <functional>
#include <mutex>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "iea/logging/log.hpp"
#include "iea/state/redis_client.hpp"
#include "support/loopback.hpp"
#include "support/redis_server.hpp"

namespace iea::state {

/// For Catch's messages.
inline std::ostream& operator<<(std::ostream& out, const RedisReply& reply) {
    return out << "reply(kind " << static_cast<int>(reply.kind) << ", " << reply.text << ", "
               << reply.integer << ", " << reply.elements.size() << " elements)";
}

}  // namespace iea::state

namespace iea::testing {

using namespace std::chrono_literals;

/// Collects every log line while it lives; stdout gets them again afterwards.
class LogCapture final {
  public:
    LogCapture() : sink_(std::make_shared<Sink>()) { logging::setup("DEBUG", sink_); }
    ~LogCapture() { logging::setup("INFO", std::make_shared<spdlog::sinks::stdout_sink_mt>()); }

    /// How many lines hold `text`.
    [[nodiscard]] int count(const std::string& text) const {
        int found = 0;
        for (const auto& line : sink_->lines()) found += line.find(text) != std::string::npos;
        return found;
    }
    [[nodiscard]] std::string all() const {
        std::string out;
        for (const auto& line : sink_->lines()) out += line;
        return out;
    }

  private:
    class Sink final : public spdlog::sinks::base_sink<std::mutex> {
      public:
        std::vector<std::string> lines() {
            std::scoped_lock lock(this->mutex_);
            return lines_;
        }

      protected:
        void sink_it_(const spdlog::details::log_msg& message) override {
            spdlog::memory_buf_t formatted;
            this->formatter_->format(message, formatted);
            lines_.emplace_back(formatted.data(), formatted.size());
        }
        void flush_() override {}

      private:
        std::vector<std::string> lines_;
    };
    std::shared_ptr<Sink> sink_;
};

/// Options that make outages quick to notice and to end, for tests.
inline state::RedisClientOptions quick_options(std::string name = "test") {
    state::RedisClientOptions options;
    options.name = std::move(name);
    options.connect_timeout = 1s;
    options.command_timeout = 2s;
    options.reconnect_first_delay = 20ms;
    options.reconnect_max_delay = 200ms;
    return options;
}

/// Waits on the loop until `done()` holds, at most `limit`; returns whether it held.
inline boost::asio::awaitable<bool> eventually(std::function<bool()> done,
                                               std::chrono::milliseconds limit = 10s) {
    auto executor = co_await boost::asio::this_coro::executor;
    boost::asio::steady_timer timer(executor);
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done()) {
        if (std::chrono::steady_clock::now() >= deadline) co_return false;
        timer.expires_after(10ms);
        co_await timer.async_wait(boost::asio::use_awaitable);
    }
    co_return true;
}

/// Sleeps on the loop.
inline boost::asio::awaitable<void> pause_for(std::chrono::milliseconds duration) {
    boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, duration);
    co_await timer.async_wait(boost::asio::use_awaitable);
}

/// Ends a test coroutine when a precondition fails. (Catch's macros do not compile inside
/// coroutines with GCC 12, so coroutines record facts and the test checks them afterwards.)
inline void need(bool holds, const char* what) {
    if (!holds) throw std::runtime_error(std::string("precondition failed: ") + what);
}

inline bool is_unavailable(const boost::system::error_code& error) {
    return error == make_error_code(state::RedisErrc::kUnavailable);
}

template <typename T>
bool is_unavailable(const state::RedisResult<T>& result) {
    return !result && is_unavailable(result.error());
}

}  // namespace iea::testing
