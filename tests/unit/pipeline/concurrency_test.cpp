#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>

#include "iea/pipeline/concurrency.hpp"

using namespace iea::pipeline;
using namespace std::chrono_literals;
namespace asio = boost::asio;

namespace {
asio::awaitable<void> sleep_for(std::chrono::milliseconds time) {
    asio::steady_timer timer(co_await asio::this_coro::executor, time);
    co_await timer.async_wait(asio::use_awaitable);
}
}  // namespace

TEST_CASE("semaphore: never more holders than permits, all served", "[pipeline]") {
    asio::io_context io;
    AsyncSemaphore semaphore(io.get_executor(), 3);
    int finished = 0;
    for (int i = 0; i < 20; ++i) {
        asio::co_spawn(io, [&]() -> asio::awaitable<void> {
            auto permit = co_await semaphore.acquire();
            co_await sleep_for(2ms);
            ++finished;
        }, asio::detached);
    }
    io.run();
    CHECK(finished == 20);
    CHECK(semaphore.peak() == 3);
    CHECK(semaphore.in_use() == 0);
}

TEST_CASE("semaphore: a waiter cancelled in the queue takes no permit", "[pipeline]") {
    using namespace asio::experimental::awaitable_operators;
    asio::io_context io;
    AsyncSemaphore semaphore(io.get_executor(), 1);
    bool timed_out = false;
    asio::co_spawn(io, [&]() -> asio::awaitable<void> {
        auto held = co_await semaphore.acquire();
        asio::steady_timer timer(io, 5ms);
        const auto winner = co_await (semaphore.acquire() || timer.async_wait(asio::use_awaitable));
        timed_out = winner.index() == 1;
    }, asio::detached);
    io.run();
    CHECK(timed_out);
    CHECK(semaphore.in_use() == 0);
}

TEST_CASE("gather: every result kept, failures per item", "[pipeline]") {
    asio::io_context io;
    std::vector<Outcome<int>> outcomes;
    asio::co_spawn(io, [&]() -> asio::awaitable<void> {
        std::vector<asio::awaitable<int>> work;
        for (int i = 0; i < 4; ++i) {
            work.push_back([](int n) -> asio::awaitable<int> {
                co_await sleep_for(std::chrono::milliseconds(4 - n));
                if (n == 2) throw std::runtime_error("model down");
                co_return n * 10;
            }(i));
        }
        outcomes = co_await gather(std::move(work));
    }, asio::detached);
    io.run();
    REQUIRE(outcomes.size() == 4);
    CHECK(outcomes[0].value == 0);
    CHECK(outcomes[3].value == 30);
    CHECK(outcomes[2].error);
    CHECK_FALSE(outcomes[2].value);
}

TEST_CASE("gather: cancelling the caller cancels the work", "[pipeline]") {
    using namespace asio::experimental::awaitable_operators;
    asio::io_context io;
    bool deadline_won = false;
    asio::co_spawn(io, [&]() -> asio::awaitable<void> {
        std::vector<asio::awaitable<int>> work;
        work.push_back([]() -> asio::awaitable<int> {
            co_await sleep_for(10s);
            co_return 1;
        }());
        asio::steady_timer deadline(io, 10ms);
        const auto result = co_await (gather(std::move(work)) || deadline.async_wait(asio::use_awaitable));
        deadline_won = result.index() == 1;
    }, asio::detached);
    const auto started = std::chrono::steady_clock::now();
    io.run();
    CHECK(deadline_won);
    CHECK(std::chrono::steady_clock::now() - started < 5s);
}
