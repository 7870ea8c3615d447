#include "iea/state/redis_history.hpp"
#include "iea/state/redis_locks.hpp"
#include "redis_test_support.hpp"

namespace {

namespace asio = boost::asio;
using namespace iea::testing;
using iea::state::parse_redis_url;
using iea::state::RedisClient;
using iea::state::RedisDeliveryLog;
using iea::state::RedisJobHistory;
using iea::state::RedisTaskLocks;

}  // namespace

TEST_CASE("redis state: what Redis acknowledged survives its crash, thanks to the append-only file",
          "[state]") {
    IEA_REQUIRE_REDIS_SERVER();
    RedisServer server;
    asio::io_context io;
    RedisClient redis(io.get_executor(), parse_redis_url(server.url()), quick_options());
    redis.start();
    RedisTaskLocks locks(redis, 60s);
    RedisDeliveryLog deliveries(redis, 60s);
    RedisJobHistory history(redis);

    bool lock_kept = false;
    bool stranger_refused = false;
    bool delivery_remembered = false;
    std::size_t checkpoints = 0;
    bool checkpoint_refused = false;
    run_task(io, [&]() -> asio::awaitable<void> {
        need(co_await redis.wait_connected(5s), "connected");
        const auto token = (co_await locks.acquire("task-1")).value();
        need(token.has_value(), "lock taken");
        (void)(co_await deliveries.record("webhook-1:item-1")).value();
        (void)(co_await history.start("job-1", "task-1")).value();
        const nlohmann::json step = {{"url", "https://example.invalid/in.png"}};
        (void)(co_await history.append_checkpoint("job-1", "image_prepared", step)).value();

        server.kill();
        need(co_await eventually([&] { return !redis.connected(); }), "outage noticed");
        checkpoint_refused =
            is_unavailable(co_await history.append_checkpoint("job-1", "generated", step));
        server.start();
        need(co_await redis.wait_connected(5s), "reconnected");

        lock_kept = (co_await locks.renew("task-1", *token)).value();
        stranger_refused = !(co_await locks.acquire("task-1")).value().has_value();
        delivery_remembered = !(co_await deliveries.record("webhook-1:item-1")).value();
        checkpoints = (co_await history.checkpoints("job-1")).value().size();
    }());
    CHECK(checkpoint_refused);
    CHECK(lock_kept);
    CHECK(stranger_refused);
    CHECK(delivery_remembered);
    CHECK(checkpoints == 1);
}
