#include <atomic>
#include <thread>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <catch2/catch.hpp>

#include "iea/locking/task_locks.hpp"

using iea::locking::Clock;
using iea::locking::DeliveryLog;
using iea::locking::TaskLocks;
using namespace std::chrono_literals;

namespace {

// A clock the test moves by hand.
struct ManualClock {
    Clock::time_point now = Clock::time_point{} + 1000h;
    iea::locking::Now source() {
        return [this] { return now; };
    }
};

}  // namespace

TEST_CASE("locks: one holder per task until released", "[locking]") {
    TaskLocks locks(1h, 100);
    auto first = locks.try_acquire("task-a");
    REQUIRE(first);
    CHECK_FALSE(locks.try_acquire("task-a"));
    CHECK(locks.try_acquire("task-b"));
    first->release();
    CHECK(locks.try_acquire("task-a"));
}

TEST_CASE("locks: the guard releases when it goes out of scope", "[locking]") {
    TaskLocks locks(1h, 100);
    { auto guard = locks.try_acquire("task-a"); REQUIRE(guard); }
    CHECK_FALSE(locks.is_held("task-a"));
    CHECK(locks.try_acquire("task-a"));
}

TEST_CASE("locks: a stale lock is taken over and its old owner cannot free the new one",
          "[locking]") {
    ManualClock clock;
    TaskLocks locks(10s, 100, clock.source());
    auto old_run = locks.try_acquire("task-a");
    REQUIRE(old_run);
    clock.now += 11s;
    auto new_run = locks.try_acquire("task-a");
    REQUIRE(new_run);
    CHECK(new_run->token() != old_run->token());

    CHECK_FALSE(old_run->renew());
    old_run->release();
    CHECK(locks.is_held("task-a"));
    CHECK_FALSE(locks.try_acquire("task-a"));
}

TEST_CASE("locks: renewing keeps a long task's lock alive", "[locking]") {
    ManualClock clock;
    TaskLocks locks(10s, 100, clock.source());
    auto run = locks.try_acquire("task-a");
    REQUIRE(run);
    clock.now += 8s;
    CHECK(run->renew());
    clock.now += 8s;
    CHECK_FALSE(locks.try_acquire("task-a"));
}

TEST_CASE("locks: statistics report ages and stale locks", "[locking]") {
    ManualClock clock;
    TaskLocks locks(100s, 1000, clock.source());
    CHECK(locks.stats().total_locks == 0);

    auto a = locks.try_acquire("a");
    clock.now += 150s;
    auto b = locks.try_acquire("b");
    clock.now += 10s;
    const auto stats = locks.stats();
    CHECK(stats.total_locks == 2);
    CHECK(stats.oldest_lock_seconds == Approx(160));
    CHECK(stats.newest_lock_seconds == Approx(10));
    CHECK(stats.average_lock_age_seconds == Approx(85));
    CHECK(stats.stale_locks == 1);
}

TEST_CASE("locks: stale locks are swept on the configured acquisition count", "[locking]") {
    ManualClock clock;
    TaskLocks locks(10s, 3, clock.source());
    auto a = locks.try_acquire("a");
    auto b = locks.try_acquire("b");
    clock.now += 20s;
    CHECK(locks.stats().total_locks == 2);
    auto c = locks.try_acquire("c");  // third acquisition: sweep runs first
    CHECK(locks.stats().total_locks == 1);
    CHECK(locks.remove_stale() == 0);
}

TEST_CASE("locks: 1000 coroutines racing for one task id, exactly one wins", "[locking]") {
    TaskLocks locks(1h, 100);
    boost::asio::thread_pool pool(4);
    std::atomic<int> winners = 0;
    std::atomic<int> finished = 0;
    std::vector<TaskLocks::Guard> held;
    std::mutex held_mutex;

    for (int i = 0; i < 1000; ++i) {
        boost::asio::co_spawn(
            pool,
            [&]() -> boost::asio::awaitable<void> {
                if (auto guard = locks.try_acquire("same-task")) {
                    ++winners;
                    std::scoped_lock lock(held_mutex);
                    held.push_back(std::move(*guard));
                }
                ++finished;
                co_return;
            },
            boost::asio::detached);
    }
    pool.join();
    CHECK(finished == 1000);
    CHECK(winners == 1);
}

TEST_CASE("locks: 1000 coroutines on different task ids all win", "[locking]") {
    TaskLocks locks(1h, 100);
    boost::asio::thread_pool pool(4);
    std::atomic<int> winners = 0;
    std::vector<TaskLocks::Guard> held;
    std::mutex held_mutex;

    for (int i = 0; i < 1000; ++i) {
        boost::asio::co_spawn(
            pool,
            [&, i]() -> boost::asio::awaitable<void> {
                if (auto guard = locks.try_acquire("task-" + std::to_string(i))) {
                    ++winners;
                    std::scoped_lock lock(held_mutex);
                    held.push_back(std::move(*guard));
                }
                co_return;
            },
            boost::asio::detached);
    }
    pool.join();
    CHECK(winners == 1000);
    CHECK(locks.stats().total_locks == 1000);
}

TEST_CASE("deliveries: a delivery is new once within the keep period", "[locking]") {
    ManualClock clock;
    DeliveryLog log(60s, clock.source());
    CHECK(log.record("wh:1"));
    CHECK_FALSE(log.record("wh:1"));
    CHECK(log.record("wh:2"));
    clock.now += 61s;
    CHECK(log.record("wh:1"));
    CHECK(log.size() == 1);
}

TEST_CASE("deliveries: a taken body is known by its signature until it expires", "[locking]") {
    ManualClock clock;
    DeliveryLog log(60s, clock.source());
    CHECK_FALSE(log.knows_body("ab12"));
    log.remember_body("ab12");
    CHECK(log.knows_body("ab12"));
    CHECK_FALSE(log.knows_body("ab13"));
    clock.now += 61s;
    CHECK_FALSE(log.knows_body("ab12"));
}
