#include "iea/providers/token_bucket.hpp"

#include <algorithm>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cmath>

namespace iea::providers {

TokenBucket::TokenBucket(double per_minute, double burst)
    : per_ms_(per_minute / 60000.0),
      burst_(std::max(1.0, burst)),
      tokens_(std::max(1.0, burst)),
      last_(Clock::now()) {}

void TokenBucket::refill(Clock::time_point now) {
    const auto elapsed = std::chrono::duration<double, std::milli>(now - last_).count();
    tokens_ = std::min(burst_, tokens_ + elapsed * per_ms_);
    last_ = now;
}

std::chrono::milliseconds TokenBucket::wait_now() {
    if (per_ms_ <= 0) return std::chrono::milliseconds{0};
    const auto now = Clock::now();
    refill(now);
    const auto debt = tokens_ >= 1.0 ? 0.0 : (1.0 - tokens_) / per_ms_;
    const auto paused = std::chrono::duration<double, std::milli>(paused_until_ - now).count();
    return std::chrono::milliseconds{static_cast<long>(std::ceil(std::max({debt, paused, 0.0})))};
}

boost::asio::awaitable<void> TokenBucket::acquire() {
    if (per_ms_ <= 0) co_return;
    const auto now = Clock::now();
    refill(now);
    tokens_ -= 1.0;
    const double debt_ms = tokens_ >= 0 ? 0.0 : -tokens_ / per_ms_;
    const double paused_ms = std::chrono::duration<double, std::milli>(paused_until_ - now).count();
    const double wait_ms = std::max({debt_ms, paused_ms, 0.0});
    if (wait_ms <= 0) co_return;

    boost::asio::steady_timer timer(
        co_await boost::asio::this_coro::executor,
        std::chrono::milliseconds{static_cast<long>(std::ceil(wait_ms))});
    co_await timer.async_wait(boost::asio::use_awaitable);
}

void TokenBucket::pause_for(std::chrono::milliseconds wait) {
    paused_until_ = std::max(paused_until_, Clock::now() + wait);
}

}  // namespace iea::providers
