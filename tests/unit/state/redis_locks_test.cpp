#include "iea/state/redis_locks.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include "redis_test_support.hpp"

namespace {

namespace asio = boost::asio;
using namespace iea::testing;
using iea::state::parse_redis_url;
using iea::state::RedisClient;
using iea::state::RedisTaskLocks;

// Two instances' worth of connections to one server.
struct TwoClients {
    RedisServer server;
    asio::io_context io;
    RedisClient first{io.get_executor(), parse_redis_url(server.url()), quick_options("first")};
    RedisClient second{io.get_executor(), parse_redis_url(server.url()), quick_options("second")};

    TwoClients() {
        first.start();
        second.start();
    }

    asio::awaitable<void> connected() {
        need(co_await first.wait_connected(5s), "first connected");
        need(co_await second.wait_connected(5s), "second connected");
    }
};

}  // namespace

TEST_CASE("redis locks: one owner at a time across two instances", "[state]") {
    IEA_REQUIRE_REDIS_SERVER();
    TwoClients f;
    RedisTaskLocks locks_a(f.first, 30s);
    RedisTaskLocks locks_b(f.second, 30s);

    // Twenty contenders from both instances at once.
    int owners = 0;
    int refused = 0;
    int finished = 0;
    run_task(f.io, [&]() -> asio::awaitable<void> {
        co_await f.connected();
        for (int i = 0; i < 20; ++i) {
            auto& locks = i % 2 == 0 ? locks_a : locks_b;
            asio::co_spawn(
                f.io,
                [&]() -> asio::awaitable<void> {
                    const auto token = (co_await locks.acquire("task-1")).value();
                    owners += token.has_value();
                    refused += !token.has_value();
                    ++finished;
                },
                asio::detached);
        }
        need(co_await eventually([&] { return finished == 20; }), "all contenders answered");
    }());
    CHECK(owners == 1);
    CHECK(refused == 19);
}

TEST_CASE("redis locks: only the owner renews or releases", "[state]") {
    IEA_REQUIRE_REDIS_SERVER();
    TwoClients f;
    RedisTaskLocks locks_a(f.first, 30s);
    RedisTaskLocks locks_b(f.second, 30s);

    bool stranger_renewed = true;
    bool stranger_released = true;
    bool still_held = false;
    bool owner_renewed = false;
    bool owner_released = false;
    bool taken_after = false;
    run_task(f.io, [&]() -> asio::awaitable<void> {
        co_await f.connected();
        const auto token = (co_await locks_a.acquire("task-2")).value();
        need(token.has_value(), "first acquire");
        stranger_renewed = (co_await locks_b.renew("task-2", "not-the-token")).value();
        stranger_released = (co_await locks_b.release("task-2", "not-the-token")).value();
        still_held = !(co_await locks_b.acquire("task-2")).value().has_value();
        owner_renewed = (co_await locks_a.renew("task-2", *token)).value();
        owner_released = (co_await locks_a.release("task-2", *token)).value();
        taken_after = (co_await locks_b.acquire("task-2")).value().has_value();
    }());
    CHECK_FALSE(stranger_renewed);
    CHECK_FALSE(stranger_released);
    CHECK(still_held);
    CHECK(owner_renewed);
    CHECK(owner_released);
    CHECK(taken_after);
}

TEST_CASE("redis locks: an expired lock goes to the next run, and the old owner cannot free it",
          "[state]") {
    IEA_REQUIRE_REDIS_SERVER();
    TwoClients f;
    RedisTaskLocks locks_a(f.first, 1s);
    RedisTaskLocks locks_b(f.second, 30s);

    bool refused_while_live = false;
    bool taken_after_expiry = false;
    bool old_release = true;
    bool old_renew = true;
    bool new_owner_kept = false;
    run_task(f.io, [&]() -> asio::awaitable<void> {
        co_await f.connected();
        const auto old_token = (co_await locks_a.acquire("task-3")).value();
        need(old_token.has_value(), "first acquire");
        refused_while_live = !(co_await locks_b.acquire("task-3")).value().has_value();

        co_await pause_for(1300ms);
        const auto new_token = (co_await locks_b.acquire("task-3")).value();
        taken_after_expiry = new_token.has_value();
        old_release = (co_await locks_a.release("task-3", *old_token)).value();
        old_renew = (co_await locks_a.renew("task-3", *old_token)).value();
        new_owner_kept = (co_await locks_b.renew("task-3", new_token.value_or(""))).value();
    }());
    CHECK(refused_while_live);
    CHECK(taken_after_expiry);
    CHECK_FALSE(old_release);
    CHECK_FALSE(old_renew);
    CHECK(new_owner_kept);
}

TEST_CASE("redis locks: renewing keeps a lock past its first TTL", "[state]") {
    IEA_REQUIRE_REDIS_SERVER();
    TwoClients f;
    RedisTaskLocks locks_a(f.first, 1s);
    RedisTaskLocks locks_b(f.second, 1s);

    int renewals = 0;
    bool taken_by_other = true;
    run_task(f.io, [&]() -> asio::awaitable<void> {
        co_await f.connected();
        const auto token = (co_await locks_a.acquire("task-4")).value();
        need(token.has_value(), "first acquire");
        for (int i = 0; i < 15; ++i) {
            co_await pause_for(100ms);
            renewals += (co_await locks_a.renew("task-4", *token)).value();
        }
        taken_by_other = (co_await locks_b.acquire("task-4")).value().has_value();
    }());
    CHECK(renewals == 15);
    CHECK_FALSE(taken_by_other);
}

TEST_CASE("redis locks: unavailable while Redis is down, usable again after", "[state]") {
    IEA_REQUIRE_REDIS_SERVER();
    TwoClients f;
    RedisTaskLocks locks(f.first, 30s);

    bool unavailable = false;
    bool taken_after = false;
    run_task(f.io, [&]() -> asio::awaitable<void> {
        co_await f.connected();
        f.server.stop();
        need(co_await eventually([&] { return !f.first.connected(); }), "outage noticed");
        unavailable = is_unavailable(co_await locks.acquire("task-5"));
        f.server.start();
        need(co_await f.first.wait_connected(5s), "reconnected");
        taken_after = (co_await locks.acquire("task-5")).value().has_value();
    }());
    CHECK(unavailable);
    CHECK(taken_after);
}
