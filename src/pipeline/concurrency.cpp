#include "iea/pipeline/concurrency.hpp"

namespace iea::pipeline {

struct AsyncSemaphore::Waiter {
    explicit Waiter(const asio::any_io_executor& executor) : wake(executor) {
        wake.expires_at(asio::steady_timer::time_point::max());
    }
    asio::steady_timer wake;
    bool granted = false;
};

AsyncSemaphore::AsyncSemaphore(asio::any_io_executor executor, std::size_t permits)
    : executor_(std::move(executor)), permits_(permits), free_(permits) {}

asio::awaitable<AsyncSemaphore::Permit> AsyncSemaphore::acquire() {
    if (free_ > 0 && waiters_.empty()) {
        --free_;
        peak_ = std::max(peak_, in_use());
        co_return Permit(this);
    }
    auto waiter = std::make_shared<Waiter>(executor_);
    waiters_.push_back(waiter);
    co_await waiter->wake.async_wait(asio::as_tuple(asio::use_awaitable));
    if (!waiter->granted) {
        // Cancelled while queued: leave the queue without taking a permit.
        std::erase(waiters_, waiter);
        throw boost::system::system_error(asio::error::operation_aborted);
    }
    co_return Permit(this);
}

void AsyncSemaphore::release() {
    if (waiters_.empty()) {
        ++free_;
        return;
    }
    // Hand the permit straight to the next waiter, so none can overtake it.
    auto next = waiters_.front();
    waiters_.pop_front();
    next->granted = true;
    next->wake.cancel();
    peak_ = std::max(peak_, in_use());
}

}  // namespace iea::pipeline
