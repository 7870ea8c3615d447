#include "iea/state/redis_history.hpp"

#include "redis_test_support.hpp"

namespace {

namespace asio = boost::asio;
using namespace iea::testing;
using iea::state::JobCheckpoint;
using iea::state::JobRun;
using iea::state::parse_redis_url;
using iea::state::RedisClient;
using iea::state::RedisJobHistory;

}  // namespace

TEST_CASE("redis history: checkpoints in order, finish, and a task's runs", "[state]") {
    IEA_REQUIRE_REDIS_SERVER();
    RedisServer server;
    asio::io_context io;
    RedisClient redis(io.get_executor(), parse_redis_url(server.url()), quick_options());
    RedisClient other(io.get_executor(), parse_redis_url(server.url()), quick_options("other"));
    redis.start();
    other.start();
    RedisJobHistory history(redis);
    RedisJobHistory elsewhere(other);  // another instance reading the same history

    bool started = false;
    bool started_again = true;
    std::int64_t count = 0;
    std::vector<JobCheckpoint> checkpoints;
    bool finished = false;
    bool finished_unknown = true;
    std::vector<JobRun> runs;
    std::optional<JobRun> unknown;
    run_task(io, [&]() -> asio::awaitable<void> {
        need(co_await redis.wait_connected(5s), "connected");
        need(co_await other.wait_connected(5s), "other connected");
        started = (co_await history.start("job-1", "task-9")).value();
        started_again = (co_await history.start("job-1", "task-9")).value();
        const nlohmann::json image = {{"url", "https://example.invalid/a.png"}, {"bytes", 1200}};
        const nlohmann::json verdict = {{"score", 8}};
        const auto nothing = nlohmann::json::object();
        (void)co_await history.append_checkpoint("job-1", "task_checked", nothing);
        (void)co_await history.append_checkpoint("job-1", "image_prepared", image);
        count = (co_await history.append_checkpoint("job-1", "verdict:model-a:1", verdict)).value();
        checkpoints = (co_await elsewhere.checkpoints("job-1")).value();
        finished = (co_await history.finish("job-1", "complete")).value();
        finished_unknown = (co_await history.finish("job-404", "complete")).value();

        (void)co_await history.start("job-2", "task-9");
        runs = (co_await elsewhere.runs("task-9")).value();
        unknown = (co_await elsewhere.job("job-404")).value();
    }());

    CHECK(started);
    CHECK_FALSE(started_again);
    CHECK(count == 3);
    REQUIRE(checkpoints.size() == 3);
    CHECK(checkpoints[0].key == "task_checked");
    CHECK(checkpoints[1].key == "image_prepared");
    CHECK(checkpoints[1].data.at("url") == "https://example.invalid/a.png");
    CHECK(checkpoints[2].data.at("score") == 8);
    CHECK(checkpoints[2].at_ms >= checkpoints[0].at_ms);
    CHECK(finished);
    CHECK_FALSE(finished_unknown);
    REQUIRE(runs.size() == 2);
    CHECK(runs[0].job_id == "job-1");
    CHECK(runs[0].task_id == "task-9");
    CHECK(runs[0].state == "complete");
    CHECK(runs[0].finished_at_ms >= runs[0].started_at_ms);
    CHECK(runs[1].job_id == "job-2");
    CHECK(runs[1].state == "running");
    CHECK(runs[1].finished_at_ms == 0);
    CHECK_FALSE(unknown.has_value());
}
