#pragma once

/// Small coroutine tools for the pipeline on a single-threaded executor: a semaphore that
/// caps calls across all tasks, and running several awaitables at once.

#include <cstddef>
#include <deque>
#include <exception>
#include <memory>
#include <optional>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace iea::pipeline {

namespace asio = boost::asio;

/// Caps how many coroutines hold a permit at once; waiters are served first come, first
/// served. Use from one executor (thread) only. A waiter cancelled while queued leaves the
/// queue and gets operation_aborted.
class AsyncSemaphore final {
    struct Waiter;

public:
    AsyncSemaphore(asio::any_io_executor executor, std::size_t permits);

    /// Returned by acquire(); gives its permit back when destroyed.
    class Permit final {
    public:
        Permit(Permit&& other) noexcept : owner_(std::exchange(other.owner_, nullptr)) {}
        Permit& operator=(Permit&&) = delete;
        Permit(const Permit&) = delete;
        ~Permit() {
            if (owner_ != nullptr) owner_->release();
        }

    private:
        friend class AsyncSemaphore;
        explicit Permit(AsyncSemaphore* owner) : owner_(owner) {}
        AsyncSemaphore* owner_;
    };

    [[nodiscard]] asio::awaitable<Permit> acquire();

    [[nodiscard]] std::size_t in_use() const { return permits_ - free_; }
    /// Most permits ever held at once.
    [[nodiscard]] std::size_t peak() const { return peak_; }

private:
    void release();

    asio::any_io_executor executor_;
    std::size_t permits_;
    std::size_t free_;
    std::size_t peak_ = 0;
    std::deque<std::shared_ptr<Waiter>> waiters_;
};

/// What one awaitable of a gather() ended with.
template <typename T>
struct Outcome {
    std::optional<T> value;
    std::exception_ptr error;
};

/// Runs every awaitable at once on the current executor and waits for all of them.
/// Failures are kept per awaitable; one failing does not stop the others. When the caller
/// is cancelled (a task deadline), every awaitable still running is cancelled too.
template <typename T>
asio::awaitable<std::vector<Outcome<T>>> gather(std::vector<asio::awaitable<T>> work) {
    struct State {
        explicit State(asio::any_io_executor executor, std::size_t count)
            : done(executor), results(count), signals(count), remaining(count) {
            done.expires_at(asio::steady_timer::time_point::max());
        }
        asio::steady_timer done;
        std::vector<Outcome<T>> results;
        std::vector<asio::cancellation_signal> signals;
        std::size_t remaining;
    };
    const auto executor = co_await asio::this_coro::executor;
    auto state = std::make_shared<State>(executor, work.size());
    if (work.empty()) co_return std::move(state->results);

    for (std::size_t i = 0; i < work.size(); ++i) {
        asio::co_spawn(executor, std::move(work[i]),
                       asio::bind_cancellation_slot(
                           state->signals[i].slot(),
                           [state, i](std::exception_ptr error, T value) {
                               state->results[i].error = error;
                               if (!error) state->results[i].value = std::move(value);
                               if (--state->remaining == 0) state->done.cancel();
                           }));
    }

    // The timer is only a wake-up: it is cancelled when the last awaitable finishes.
    (void)co_await state->done.async_wait(asio::as_tuple(asio::use_awaitable));
    if (state->remaining > 0) {
        // We were cancelled from outside: stop the rest, and wait for them to unwind so no
        // work outlives the task that asked for it.
        co_await asio::this_coro::reset_cancellation_state();
        for (auto& signal : state->signals) signal.emit(asio::cancellation_type::terminal);
        asio::steady_timer drain(executor);
        while (state->remaining > 0) {
            drain.expires_after(std::chrono::milliseconds(5));
            co_await drain.async_wait(asio::as_tuple(asio::use_awaitable));
        }
        throw boost::system::system_error(asio::error::operation_aborted);
    }
    co_return std::move(state->results);
}

}  // namespace iea::pipeline
