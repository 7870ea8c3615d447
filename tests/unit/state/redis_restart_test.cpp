#include "iea/state/redis_journal.hpp"
#include "iea/state/redis_locks.hpp"
#include "redis_test_support.hpp"

namespace {

namespace asio = boost::asio;
using namespace iea::testing;
using iea::state::Enqueued;
using iea::state::JobQueueOptions;
using iea::state::parse_redis_url;
using iea::state::RedisClient;
using iea::state::RedisJournal;
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
    JobQueueOptions queue;
    queue.consumer = "instance-1";
    RedisJournal journal(redis, "test redis", queue, 60s);

    bool lock_kept = false;
    bool stranger_refused = false;
    bool delivery_remembered = false;
    std::size_t checkpoints = 0;
    run_task(io, [&]() -> asio::awaitable<void> {
        need(co_await redis.wait_connected(5s), "connected");
        const auto token = (co_await locks.acquire("task-1")).value();
        need(token.has_value(), "lock taken");
        const auto job = (co_await journal.enqueue("task-1", "webhook-1:item-1",
                                                   std::chrono::system_clock::now(), false))
                             .value()
                             .job;
        const nlohmann::json step = {{"url", "https://example.invalid/in.png"}};
        co_await journal.record_checkpoint(job, "image_prepared", step);

        server.kill();
        need(co_await eventually([&] { return !redis.connected(); }), "outage noticed");
        server.start();
        need(co_await redis.wait_connected(5s), "reconnected");

        lock_kept = (co_await locks.renew("task-1", *token)).value();
        stranger_refused = !(co_await locks.acquire("task-1")).value().has_value();
        delivery_remembered =
            (co_await journal.enqueue("task-1", "webhook-1:item-1", std::chrono::system_clock::now(),
                                      false))
                .value()
                .outcome == Enqueued::kRedelivered;
        const auto history = co_await journal.task_history("task-1");
        checkpoints = history["runs"][0]["steps"].size();
    }());
    CHECK(lock_kept);
    CHECK(stranger_refused);
    CHECK(delivery_remembered);
    CHECK(checkpoints == 1);
}
