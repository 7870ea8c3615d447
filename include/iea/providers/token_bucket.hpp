#pragma once

/// A client-side rate limiter: a token bucket refilled continuously.
///
/// Used from one executor only (not thread-safe). Callers that find the bucket empty wait
/// their turn in order of arrival: each takes a token on arrival and sleeps off its debt.

#include <boost/asio/awaitable.hpp>
#include <chrono>

namespace iea::providers {

class TokenBucket final {
  public:
    /// `per_minute` tokens a minute, at most `burst` saved up. `per_minute` <= 0 disables it.
    TokenBucket(double per_minute, double burst);

    /// Takes one token, waiting on the calling coroutine's executor when there is none.
    [[nodiscard]] boost::asio::awaitable<void> acquire();

    /// Hands out no token before `wait` from now (after a 429 told us to back off).
    void pause_for(std::chrono::milliseconds wait);

    /// How long a caller arriving now would wait (for tests and logs).
    [[nodiscard]] std::chrono::milliseconds wait_now();

  private:
    using Clock = std::chrono::steady_clock;
    void refill(Clock::time_point now);

    double per_ms_;
    double burst_;
    double tokens_;
    Clock::time_point last_;
    Clock::time_point paused_until_{};
};

}  // namespace iea::providers
