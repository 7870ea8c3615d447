#include "iea/state/redis_journal.hpp"

#include "iea/state/redis_locks.hpp"
#include "iea/state/redis_queue.hpp"
#include "redis_test_support.hpp"

namespace {

namespace asio = boost::asio;
using namespace iea::testing;
using iea::journal::JobRecord;
using iea::journal::SystemClock;
using iea::state::Enqueued;
using iea::state::EnqueueResult;
using iea::state::JobQueueOptions;
using iea::state::parse_redis_url;
using iea::state::QueueDepth;
using iea::state::QueuedJob;
using iea::state::RedisClient;
using iea::state::RedisJobQueue;
using iea::state::RedisJournal;
using iea::state::RedisTaskLocks;

JobQueueOptions queue_options(const std::string& consumer) {
    JobQueueOptions options;
    options.consumer = consumer;
    options.block_for = 100ms;
    options.claim_after = 1s;
    return options;
}

// One instance's view: its connections, the journal and the queue.
struct Instance {
    RedisClient commands;
    RedisClient reads;
    RedisJobQueue queue;
    RedisJournal journal;

    Instance(asio::io_context& io, const std::string& url, const std::string& name)
        : commands(io.get_executor(), parse_redis_url(url), quick_options(name)),
          reads(io.get_executor(), parse_redis_url(url), quick_options(name + " reads")),
          queue(commands, reads, queue_options(name)),
          journal(commands, "test redis", queue.options(), 60s) {
        commands.start();
        reads.start();
    }

    asio::awaitable<void> connected() {
        need(co_await commands.wait_connected(5s), "commands connected");
        need(co_await reads.wait_connected(5s), "reads connected");
        need((co_await queue.ensure_group()).has_value(), "group made");
    }

    asio::awaitable<EnqueueResult> tick(std::string task, std::string delivery) {
        co_return (co_await journal.enqueue(std::move(task), std::move(delivery),
                                            SystemClock::now(), true))
            .value();
    }
};

}  // namespace

TEST_CASE("redis journal: a tick is recorded and queued once; busy tasks and redeliveries are not",
          "[state]") {
    IEA_REQUIRE_REDIS_SERVER();
    RedisServer server;
    asio::io_context io;
    Instance one(io, server.url(), "instance-1");
    RedisTaskLocks locks(one.commands, 10s);

    EnqueueResult first, again, busy_while_queued, after_take, busy_while_locked;
    QueueDepth depth;
    std::vector<QueuedJob> read;
    std::optional<JobRecord> taken;
    run_task(io, [&]() -> asio::awaitable<void> {
        co_await one.connected();
        first = co_await one.tick("task-1", "wh:1");
        again = co_await one.tick("task-1", "wh:1");
        busy_while_queued = co_await one.tick("task-1", "wh:2");
        depth = (co_await one.queue.depth()).value();
        read = (co_await one.queue.read_new()).value();
        taken = (co_await one.journal.take(first.job, "instance-1")).value();
        // Taken: no longer waiting, and not locked here, so a new tick is a new job.
        after_take = co_await one.tick("task-1", "wh:3");
        need((co_await locks.acquire("task-2")).value().has_value(), "lock taken");
        busy_while_locked = co_await one.tick("task-2", "wh:4");
    }());

    CHECK(first.outcome == Enqueued::kAccepted);
    CHECK(first.job > 0);
    CHECK(again.outcome == Enqueued::kRedelivered);
    CHECK(busy_while_queued.outcome == Enqueued::kBusy);
    CHECK(depth.waiting == 1);
    REQUIRE(read.size() == 1);
    CHECK(read[0].body.find("\"task_id\":\"task-1\"") != std::string::npos);
    REQUIRE(taken);
    CHECK(taken->task_id == "task-1");
    CHECK(taken->delivery_id == "wh:1");
    CHECK(taken->state == "running");
    CHECK(taken->resumes == 0);
    CHECK(after_take.outcome == Enqueued::kAccepted);
    CHECK(after_take.job == first.job + 1);
    CHECK(busy_while_locked.outcome == Enqueued::kBusy);
}

TEST_CASE("redis journal: a job taken again counts a resume; one that made no progress stalls",
          "[state]") {
    IEA_REQUIRE_REDIS_SERVER();
    RedisServer server;
    asio::io_context io;
    Instance one(io, server.url(), "instance-1");

    std::vector<std::pair<int, int>> counters;  // resumes, stalled after each take
    std::size_t checkpoints_seen = 0;
    run_task(io, [&]() -> asio::awaitable<void> {
        co_await one.connected();
        const auto job = (co_await one.tick("task-1", "wh:1")).job;
        const auto key = "iea:job:" + std::to_string(job);
        // Pretends the previous take was long ago: past the catch-up time.
        auto age_last_take = [&]() -> asio::awaitable<void> {
            const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                SystemClock::now().time_since_epoch());
            const auto long_ago = std::to_string((now - 60s).count());
            (void)co_await one.commands.command("HSET", key, "resumed_at_ms", long_ago);
        };
        auto take = [&]() -> asio::awaitable<void> {
            const auto record = (co_await one.journal.take(job, "instance-1")).value();
            need(record.has_value(), "job known");
            counters.emplace_back(record->resumes, record->stalled_resumes);
            checkpoints_seen = record->checkpoints.size();
        };
        co_await take();                     // first take: not a resume
        co_await take();                     // at once again: a resume, too soon to stall
        co_await age_last_take();
        co_await take();                     // long after, nothing new: stalled
        co_await age_last_take();
        co_await take();                     // and again
        const nlohmann::json image = {{"url", "u"}};
        co_await one.journal.record_checkpoint(job, "image_prepared", image);
        co_await age_last_take();
        co_await take();                     // a new step since: progress, not stalled
    }());

    REQUIRE(counters.size() == 5);
    CHECK(counters[0] == std::pair{0, 0});
    CHECK(counters[1] == std::pair{1, 0});
    CHECK(counters[2] == std::pair{2, 1});
    CHECK(counters[3] == std::pair{3, 2});
    CHECK(counters[4] == std::pair{4, 0});
    CHECK(checkpoints_seen == 1);
}

TEST_CASE("redis journal: the ending acknowledges the job; the history reads like SQLite's",
          "[state]") {
    IEA_REQUIRE_REDIS_SERVER();
    RedisServer server;
    asio::io_context io;
    Instance one(io, server.url(), "instance-1");
    Instance two(io, server.url(), "instance-2");

    QueueDepth running{}, ended{};
    std::string state;
    nlohmann::json history;
    std::optional<JobRecord> taken_after_end;
    run_task(io, [&]() -> asio::awaitable<void> {
        co_await one.connected();
        co_await two.connected();
        const auto job = (co_await one.tick("task-1", "wh:1")).job;
        need((co_await one.queue.read_new()).value().size() == 1, "read");
        (void)co_await one.journal.take(job, "instance-1");
        running = (co_await one.queue.depth()).value();
        co_await one.journal.record_checkpoint(job, "task_checked", nlohmann::json::object());
        const auto attempts = nlohmann::json::array({{{"model", "m"}, {"score", 9}}});
        co_await one.journal.record_checkpoint(job, "attempts", attempts);
        co_await one.journal.record_ending(job, "complete");
        ended = (co_await one.queue.depth()).value();
        state = (co_await two.journal.state_of(job)).value();
        history = co_await two.journal.task_history("task-1");
        taken_after_end = (co_await two.journal.take(job, "instance-2")).value();
    }());

    CHECK(running.running == 1);
    CHECK(ended.running == 0);
    CHECK(ended.waiting == 0);
    CHECK(state == "complete");
    REQUIRE(history.at("runs").size() == 1);
    const auto& run = history["runs"][0];
    CHECK(run.at("state") == "complete");
    CHECK(run.at("delivery_id") == "wh:1");
    CHECK(run.at("instance") == "instance-1");
    CHECK(run.at("ended_at").is_string());
    CHECK(run.at("attempts").size() == 1);
    REQUIRE(run.at("steps").size() == 1);
    CHECK(run["steps"][0].at("step") == "task_checked");
    // The same fields as the SQLite journal's history.
    for (const char* field : {"run_id", "received_at", "resumes", "steps", "attempts"}) {
        CHECK(run.contains(field));
    }
    // An ended job taken by mistake (a race) shows its ending, so it is not run again.
    REQUIRE(taken_after_end);
    CHECK(taken_after_end->state == "complete");
}

TEST_CASE("redis journal: a job handed back is taken at once by another instance", "[state]") {
    IEA_REQUIRE_REDIS_SERVER();
    RedisServer server;
    asio::io_context io;
    Instance one(io, server.url(), "instance-1");
    Instance two(io, server.url(), "instance-2");

    RedisTaskLocks locks(one.commands, 10s);
    iea::journal::JobId handed_back = 0;
    std::vector<QueuedJob> taken_by_two;
    QueueDepth after{};
    bool lock_freed = false;
    EnqueueResult tick_meanwhile;
    run_task(io, [&]() -> asio::awaitable<void> {
        co_await one.connected();
        co_await two.connected();
        const auto job = (co_await one.tick("task-1", "wh:1")).job;
        handed_back = job;
        need((co_await one.queue.read_new()).value().size() == 1, "read by one");
        need((co_await one.journal.take(job, "instance-1")).has_value(), "taken by one");
        const auto token = (co_await locks.acquire("task-1")).value();
        need(token.has_value(), "locked by one");
        need((co_await one.journal.hand_back(job, "task-1", *token)).has_value(), "handed back");
        lock_freed = (co_await one.commands.command("EXISTS", "iea:lock:task-1"))->integer == 0;
        // Waiting in the queue again: a new tick of the task is not a second job.
        tick_meanwhile = co_await one.tick("task-1", "wh:2");
        taken_by_two = (co_await two.queue.read_new()).value();
        after = (co_await one.queue.depth()).value();
    }());

    CHECK(lock_freed);
    CHECK(tick_meanwhile.outcome == Enqueued::kBusy);

    REQUIRE(taken_by_two.size() == 1);
    CHECK(taken_by_two[0].body.find("\"job_id\":" + std::to_string(handed_back)) !=
          std::string::npos);
    CHECK(after.running == 1);  // two's now; one's old entry is gone
    CHECK(after.waiting == 0);
}

TEST_CASE("redis journal: a checkpoint waits while Redis is down and is written when it is back",
          "[state]") {
    IEA_REQUIRE_REDIS_SERVER();
    RedisServer server;
    asio::io_context io;
    Instance one(io, server.url(), "instance-1");

    bool recorded = false;
    bool recorded_while_down = true;
    std::string problem_while_down;
    std::size_t steps = 0;
    run_task(
        io,
        [&]() -> asio::awaitable<void> {
            co_await one.connected();
            const auto job = (co_await one.tick("task-1", "wh:1")).job;
            server.stop();
            need(co_await eventually([&] { return !one.commands.connected(); }), "noticed");
            problem_while_down = one.journal.problem().value_or("");
            asio::co_spawn(
                co_await asio::this_coro::executor,
                [&]() -> asio::awaitable<void> {
                    co_await one.journal.record_checkpoint(job, "task_checked",
                                                           nlohmann::json::object());
                    recorded = true;
                },
                asio::detached);
            co_await pause_for(600ms);
            recorded_while_down = recorded;
            server.start();
            need(co_await eventually([&] { return recorded; }), "recorded after the restart");
            const auto history = co_await one.journal.task_history("task-1");
            steps = history["runs"][0]["steps"].size();
        }(),
        30s);

    CHECK_FALSE(recorded_while_down);
    CHECK(problem_while_down.find("cannot be reached") != std::string::npos);
    CHECK(recorded);
    CHECK(steps == 1);
}

TEST_CASE("redis journal: after Redis lost its data, new jobs get new numbers and a run from "
          "before writes nothing into them",
          "[state]") {
    IEA_REQUIRE_REDIS_SERVER();
    const LogCapture logs;
    RedisServer server;
    asio::io_context io;
    Instance one(io, server.url(), "instance-1");

    EnqueueResult newer;
    iea::journal::JobId older = 0;
    nlohmann::json newer_history;
    std::string newer_state;
    run_task(io, [&]() -> asio::awaitable<void> {
        co_await one.connected();
        const auto old_job = (co_await one.tick("task-old", "wh:1")).job;
        older = old_job;
        need((co_await one.journal.take(old_job, "instance-1")).has_value(), "taken");
        // Numbers restart from the clock in ms x 1000: a loss within the same millisecond as
        // the job could repeat it; a real one takes far longer.
        co_await pause_for(5ms);
        (void)co_await one.commands.command("FLUSHALL");
        need((co_await one.queue.ensure_group()).has_value(), "group again");
        newer = co_await one.tick("task-new", "wh:2");
        // The old run goes on: its steps and its ending must not land on the new job.
        const nlohmann::json step = {{"url", "u"}};
        co_await one.journal.record_checkpoint(old_job, "image", step);
        co_await one.journal.record_checkpoint(old_job, "decision", step);
        co_await one.journal.record_ending(old_job, "complete");
        newer_history = co_await one.journal.task_history("task-new");
        newer_state = (co_await one.journal.state_of(newer.job)).value();
    }());

    // Numbering starts again from the time, so it never repeats a number from before.
    CHECK(newer.job > older);
    REQUIRE(newer_history.at("runs").size() == 1);
    CHECK(newer_history["runs"][0].at("steps").empty());
    CHECK(newer_state == "running");
    CHECK(logs.count("Redis no longer holds this run's record") == 1);
}

TEST_CASE("redis journal: a checkpoint Redis refuses (out of memory) waits and is written once "
          "memory is back",
          "[state]") {
    IEA_REQUIRE_REDIS_SERVER();
    const LogCapture logs;
    RedisServer server;
    asio::io_context io;
    Instance one(io, server.url(), "instance-1");

    bool recorded = false;
    bool recorded_while_full = true;
    std::size_t steps = 0;
    run_task(
        io,
        [&]() -> asio::awaitable<void> {
            co_await one.connected();
            const auto job = (co_await one.tick("task-1", "wh:1")).job;
            need((co_await one.journal.take(job, "instance-1")).has_value(), "taken");
            (void)co_await one.commands.command("CONFIG", "SET", "maxmemory", "1");
            asio::co_spawn(
                co_await asio::this_coro::executor,
                [&]() -> asio::awaitable<void> {
                    const nlohmann::json step = {{"url", "u"}};
                    co_await one.journal.record_checkpoint(job, "image", step);
                    recorded = true;
                },
                asio::detached);
            co_await pause_for(800ms);
            recorded_while_full = recorded;
            (void)co_await one.commands.command("CONFIG", "SET", "maxmemory", "0");
            need(co_await eventually([&] { return recorded; }), "recorded once memory was back");
            const auto history = co_await one.journal.task_history("task-1");
            steps = history["runs"][0]["steps"].size();
        }(),
        30s);

    CHECK_FALSE(recorded_while_full);
    CHECK(recorded);
    CHECK(steps == 1);
    CHECK(logs.count("Run paused: Redis refuses to record it") == 1);
}

TEST_CASE("redis journal: a Redis that stops answering is a problem within a second", "[state]") {
    IEA_REQUIRE_REDIS_SERVER();
    RedisServer server;
    asio::io_context io;
    Instance one(io, server.url(), "instance-1");

    std::string problem_before = "unset";
    std::string problem_frozen;
    run_task(
        io,
        [&]() -> asio::awaitable<void> {
            co_await one.connected();
            problem_before = one.journal.problem().value_or("");
            server.pause();
            asio::co_spawn(
                co_await asio::this_coro::executor,
                [&]() -> asio::awaitable<void> { (void)co_await one.commands.command("PING"); },
                asio::detached);
            co_await pause_for(1500ms);
            problem_frozen = one.journal.problem().value_or("");
            server.resume();
            need(co_await one.commands.wait_connected(10s), "back");
        }(),
        30s);

    CHECK(problem_before.empty());
    CHECK(problem_frozen.find("has not answered") != std::string::npos);
}
