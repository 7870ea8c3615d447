#include "iea/state/redis_queue.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <memory>
#include <set>

#include "redis_test_support.hpp"

namespace {

namespace asio = boost::asio;
using namespace iea::testing;
using iea::state::JobQueueOptions;
using iea::state::parse_redis_url;
using iea::state::QueueDepth;
using iea::state::RedisClient;
using iea::state::RedisJobQueue;

// One service instance's view of the queue: its two connections and its consumer name.
struct Instance {
    RedisClient commands;
    RedisClient reads;
    RedisJobQueue queue;

    Instance(asio::io_context& io, const std::string& url, JobQueueOptions options)
        : commands(io.get_executor(), parse_redis_url(url), quick_options(options.consumer)),
          reads(
              io.get_executor(), parse_redis_url(url), quick_options(options.consumer + " reads")),
          queue(commands, reads, options) {
        commands.start();
        reads.start();
    }

    asio::awaitable<void> connected() {
        need(co_await commands.wait_connected(5s), "commands connected");
        need(co_await reads.wait_connected(5s), "reads connected");
        need((co_await queue.ensure_group()).has_value(), "group made");
    }
};

JobQueueOptions options_for(const std::string& consumer) {
    JobQueueOptions options;
    options.consumer = consumer;
    options.block_for = 100ms;
    options.claim_after = 1s;
    options.batch = 4;
    return options;
}

std::string job_json(int number) {
    return R"({"task_id":"task-)" + std::to_string(number) + R"("})";
}

// Reads and acknowledges jobs until `stop` is set; records what it took.
asio::awaitable<void> work(Instance& instance,
                           std::multiset<std::string>& taken,
                           const bool& stop) {
    while (!stop) {
        const auto jobs = co_await instance.queue.read_new();
        if (!jobs) continue;
        for (const auto& job : *jobs) {
            taken.insert(job.body);
            (void)co_await instance.queue.acknowledge(job.id);
        }
    }
}

}  // namespace

TEST_CASE("redis queue: two consumers share the jobs, each job exactly once", "[state]") {
    IEA_REQUIRE_REDIS_SERVER();
    RedisServer server;
    asio::io_context io;
    Instance a(io, server.url(), options_for("instance-a"));
    Instance b(io, server.url(), options_for("instance-b"));

    std::multiset<std::string> taken_a;
    std::multiset<std::string> taken_b;
    bool stop = false;
    QueueDepth depth_before;
    QueueDepth depth_after;
    run_task(io, [&]() -> asio::awaitable<void> {
        co_await a.connected();
        co_await b.connected();
        for (int i = 0; i < 40; ++i) (void)co_await a.queue.enqueue(job_json(i));
        depth_before = (co_await a.queue.depth()).value();

        asio::co_spawn(io, work(a, taken_a, stop), asio::detached);
        asio::co_spawn(io, work(b, taken_b, stop), asio::detached);
        need(co_await eventually([&] { return taken_a.size() + taken_b.size() >= 40; }),
             "all jobs taken");
        co_await pause_for(200ms);  // room for a wrongly repeated delivery to show up
        stop = true;
        co_await pause_for(300ms);  // both workers leave their blocking reads
        depth_after = (co_await a.queue.depth()).value();
    }());

    std::multiset<std::string> all = taken_a;
    all.insert(taken_b.begin(), taken_b.end());
    CHECK(all.size() == 40);
    CHECK(std::set<std::string>(all.begin(), all.end()).size() == 40);
    CHECK_FALSE(taken_a.empty());
    CHECK_FALSE(taken_b.empty());
    CHECK(depth_before.waiting == 40);
    CHECK(depth_before.running == 0);
    CHECK(depth_after.waiting == 0);
    CHECK(depth_after.running == 0);
}

TEST_CASE("redis queue: jobs a dead consumer left pending are claimed after the idle timeout",
          "[state]") {
    IEA_REQUIRE_REDIS_SERVER();
    RedisServer server;
    asio::io_context io;
    auto dead = std::make_unique<Instance>(io, server.url(), options_for("instance-dead"));
    Instance alive(io, server.url(), options_for("instance-alive"));

    std::vector<std::string> taken_by_dead;
    std::size_t claimed_early = 99;
    std::vector<std::string> claimed;
    QueueDepth depth_while_running;
    QueueDepth depth_after;
    run_task(io, [&]() -> asio::awaitable<void> {
        co_await dead->connected();
        co_await alive.connected();
        for (int i = 0; i < 3; ++i) (void)co_await alive.queue.enqueue(job_json(i));
        for (const auto& job : (co_await dead->queue.read_new()).value()) {
            taken_by_dead.push_back(job.id);
        }
        dead.reset();  // the instance dies without acknowledging

        claimed_early = (co_await alive.queue.claim_abandoned()).value().size();
        co_await pause_for(1300ms);
        for (const auto& job : (co_await alive.queue.claim_abandoned()).value()) {
            claimed.push_back(job.id);
        }
        depth_while_running = (co_await alive.queue.depth()).value();
        for (const auto& id : claimed) (void)co_await alive.queue.acknowledge(id);
        depth_after = (co_await alive.queue.depth()).value();
    }());
    CHECK(taken_by_dead.size() == 3);
    CHECK(claimed_early == 0);
    CHECK(claimed == taken_by_dead);
    CHECK(depth_while_running.running == 3);
    CHECK(depth_after.running == 0);
    CHECK(depth_after.waiting == 0);
}

TEST_CASE(
    "redis queue: a job its owner keeps touching is not claimed; a claimed one is no longer "
    "the old owner's",
    "[state]") {
    IEA_REQUIRE_REDIS_SERVER();
    RedisServer server;
    asio::io_context io;
    Instance slow(io, server.url(), options_for("instance-slow"));
    Instance other(io, server.url(), options_for("instance-other"));

    int touches = 0;
    std::size_t claimed_while_touched = 99;
    std::size_t claimed_after = 0;
    bool old_owner_touch = true;
    bool old_owner_ack = false;
    run_task(io, [&]() -> asio::awaitable<void> {
        co_await slow.connected();
        co_await other.connected();
        (void)co_await slow.queue.enqueue(job_json(1));
        const auto jobs = (co_await slow.queue.read_new()).value();
        need(jobs.size() == 1, "one job read");

        for (int i = 0; i < 15; ++i) {
            co_await pause_for(100ms);
            touches += (co_await slow.queue.touch(jobs[0].id)).value();
        }
        claimed_while_touched = (co_await other.queue.claim_abandoned()).value().size();

        co_await pause_for(1300ms);  // the slow owner stops touching: looks dead
        claimed_after = (co_await other.queue.claim_abandoned()).value().size();
        old_owner_touch = (co_await slow.queue.touch(jobs[0].id)).value();
        old_owner_ack = (co_await other.queue.acknowledge(jobs[0].id)).value();
    }());
    CHECK(touches == 15);
    CHECK(claimed_while_touched == 0);
    CHECK(claimed_after == 1);
    CHECK_FALSE(old_owner_touch);
    CHECK(old_owner_ack);
}

TEST_CASE(
    "redis queue: Redis killed and restarted with its append-only file loses nothing "
    "acknowledged",
    "[state]") {
    IEA_REQUIRE_REDIS_SERVER();
    RedisServer server;
    asio::io_context io;
    Instance a(io, server.url(), options_for("instance-a"));
    Instance b(io, server.url(), options_for("instance-b"));

    std::vector<std::string> unfinished;
    bool enqueue_refused = false;
    bool ack_refused = false;
    bool read_refused = false;
    int ticks_during_outage = 0;
    QueueDepth depth_after;
    std::vector<std::string> claimed;
    bool enqueued_after = false;
    run_task(io, [&]() -> asio::awaitable<void> {
        co_await a.connected();
        co_await b.connected();
        for (int i = 0; i < 10; ++i) (void)co_await a.queue.enqueue(job_json(i));
        auto jobs = (co_await a.queue.read_new()).value();
        while (jobs.size() < 10) {
            for (auto& job : (co_await a.queue.read_new()).value()) jobs.push_back(std::move(job));
        }
        // Half finish before the crash, half are still running.
        for (std::size_t i = 0; i < jobs.size(); ++i) {
            if (i % 2 == 0) {
                need((co_await a.queue.acknowledge(jobs[i].id)).value(), "acknowledged");
            } else {
                unfinished.push_back(jobs[i].id);
            }
        }

        int ticks = 0;
        bool ticking = true;
        asio::co_spawn(
            io,
            [&]() -> asio::awaitable<void> {
                while (ticking) {
                    co_await pause_for(10ms);
                    ++ticks;
                }
            },
            asio::detached);

        server.kill();
        need(co_await eventually([&] { return !a.commands.connected() && !a.reads.connected(); }),
             "outage noticed");
        const int ticks_before = ticks;
        enqueue_refused = is_unavailable(co_await a.queue.enqueue(job_json(99)));
        ack_refused = is_unavailable(co_await a.queue.acknowledge(unfinished[0]));
        read_refused = is_unavailable(co_await b.queue.read_new());
        co_await pause_for(300ms);
        ticks_during_outage = ticks - ticks_before;
        ticking = false;

        server.start();
        co_await a.connected();
        co_await b.connected();
        depth_after = (co_await b.queue.depth()).value();
        co_await pause_for(1300ms);
        // A claim returns at most a batch; claim until none are left.
        for (auto batch = (co_await b.queue.claim_abandoned()).value(); !batch.empty();
             batch = (co_await b.queue.claim_abandoned()).value()) {
            for (const auto& job : batch) claimed.push_back(job.id);
        }
        enqueued_after = (co_await b.queue.enqueue(job_json(100))).has_value();
    }());
    CHECK(enqueue_refused);
    CHECK(ack_refused);
    CHECK(read_refused);
    CHECK(ticks_during_outage > 0);
    CHECK(depth_after.running == 5);
    CHECK(depth_after.waiting == 0);
    CHECK(claimed == unfinished);
    CHECK(enqueued_after);
}
