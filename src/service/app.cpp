#include "iea/service/app.hpp"

#include <unistd.h>

#include <csignal>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "iea/http/client.hpp"
#include "iea/image/converter.hpp"
#include "iea/journal/journal.hpp"
#include "iea/logging/log.hpp"
#include "iea/metrics/metrics.hpp"
#include "iea/pipeline/pipeline.hpp"
#include "iea/pipeline/prompts.hpp"
#include "iea/providers/clickup.hpp"
#include "iea/providers/openrouter.hpp"
#include "iea/providers/wavespeed.hpp"
#include "iea/service/intake.hpp"
#include "iea/service/job_queue.hpp"
#include "iea/service/readiness.hpp"
#include "iea/service/wiring.hpp"
#include "iea/state/redis_client.hpp"
#include "iea/state/redis_journal.hpp"
#include "iea/state/redis_locks.hpp"
#include "iea/state/redis_queue.hpp"

namespace iea::service {
namespace {

namespace asio = boost::asio;
constexpr auto kAsTuple = asio::as_tuple(asio::use_awaitable);
constexpr auto kLockSweepPeriod = std::chrono::seconds(60);
// After the grace period, the time runs get to unwind once cut off.
constexpr auto kCutOffGrace = std::chrono::seconds(2);
constexpr std::string_view kWebhookPath = "/webhook/clickup";
// How long a start waits for Redis before it listens anyway.
constexpr auto kRedisStartWait = std::chrono::seconds(5);

asio::awaitable<void> sweep_stale_locks(locking::TaskLocks& locks) {
    static const logging::Logger log("locking");
    asio::steady_timer timer(co_await asio::this_coro::executor);
    for (;;) {
        timer.expires_after(kLockSweepPeriod);
        if (auto [ec] = co_await timer.async_wait(kAsTuple); ec) co_return;
        if (const auto removed = locks.remove_stale(); removed > 0) {
            log.warning("Stale task locks removed", {{"count", removed}});
        }
    }
}

/// Picks up every job a crash or a shutdown left unfinished, each under its task's lock, so
/// a tick of the same task arriving meanwhile is answered "already processing".
void resume_unfinished_jobs(journal::SqliteJournal& journal, locking::TaskLocks& locks,
                            pipeline::Pipeline& runner) {
    static const logging::Logger log("service");
    auto jobs = journal.take_unfinished_jobs();
    if (jobs.empty()) return;
    log.info("Resuming unfinished tasks", {{"count", jobs.size()}});
    for (auto& job : jobs) {
        if (!job.damaged.empty()) {
            // One unreadable record must not keep every other task from resuming.
            log.error("Unfinished run cannot be resumed, its record is damaged",
                      {{"task_id", job.task_id}, {"run_id", job.id}, {"error", job.damaged}});
            journal.record_ending_now(job.id, "damaged");
            continue;
        }
        auto lock = locks.try_acquire(job.task_id);
        if (!lock) {
            // Two unfinished runs of one task: the older one goes on; this one is dropped.
            log.warning("Duplicate unfinished run dropped",
                        {{"task_id", job.task_id}, {"run_id", job.id}});
            journal.record_ending_now(job.id, "superseded");
            continue;
        }
        runner.resume(std::move(job), std::move(*lock));
    }
}

/// Waits, polling, until `done` holds or `limit` has passed.
template <typename Done>
asio::awaitable<void> wait_until(Done done, std::chrono::steady_clock::duration limit) {
    asio::steady_timer poll(co_await asio::this_coro::executor);
    const auto end = std::chrono::steady_clock::now() + limit;
    while (!done() && std::chrono::steady_clock::now() < end) {
        poll.expires_after(std::chrono::milliseconds(50));
        co_await poll.async_wait(kAsTuple);
    }
}

/// This instance's name in Redis: INSTANCE_ID, or the host name and port, which stay the
/// same across a restart of the same deployment.
std::string instance_name(const config::Settings& settings) {
    if (!settings.instance_id.empty()) return settings.instance_id;
    std::array<char, 256> host{};
    if (gethostname(host.data(), host.size() - 1) != 0) host[0] = '\0';
    const std::string name = host[0] != '\0' ? host.data() : "instance";
    if (settings.port != 0) return name + ":" + std::to_string(settings.port);
    return name + ":pid" + std::to_string(getpid());
}

/// Everything STATE_BACKEND=redis shares with the other instances. The blocking queue reads
/// get a connection of their own, so that they hold up no other command.
struct SharedState {
    SharedState(asio::io_context& io, const config::Settings& settings,
                const state::RedisEndpoint& endpoint, const std::string& instance)
        : commands(io.get_executor(), endpoint, {.name = "redis"}),
          reads(io.get_executor(), endpoint, {.name = "redis-queue-reads"}),
          queue(commands, reads, queue_options(settings, instance)),
          journal(commands, endpoint.redacted(), queue.options(), settings.lock_ttl),
          task_locks(commands, settings.job_claim_after, "iea:", instance),
          instance_names(commands, kNameLife, "iea:instance-name:") {}

    static state::JobQueueOptions queue_options(const config::Settings& settings,
                                                const std::string& instance) {
        state::JobQueueOptions options;
        options.consumer = instance;
        options.claim_after = settings.job_claim_after;
        options.batch = static_cast<std::size_t>(settings.max_concurrent_tasks);
        return options;
    }

    state::RedisClient commands;
    state::RedisClient reads;
    state::RedisJobQueue queue;
    state::RedisJournal journal;
    state::RedisTaskLocks task_locks;
    state::RedisTaskLocks instance_names;
};

state::RedisEndpoint redis_endpoint(const config::Settings& settings) {
    try {
        return state::parse_redis_url(settings.redis_url.reveal());
    } catch (const std::invalid_argument& error) {
        // The message names REDIS_URL already.
        throw config::ConfigError({error.what()});
    }
}

}  // namespace

int run_service(const config::Settings& settings) {
    const logging::Logger log("service");
    asio::io_context io(1);

    // The journal first: without it an accepted task could be lost, so the service refuses to
    // run (the reason goes to the log and to stderr). One instance keeps it in SQLite; several
    // share Redis, which also holds the queue of jobs and the task locks.
    const bool shared_mode = settings.state_backend == "redis";
    std::unique_ptr<journal::SqliteJournal> own_journal;
    std::unique_ptr<SharedState> shared;
    journal::Journal* journal = nullptr;
    if (shared_mode) {
        const auto endpoint = redis_endpoint(settings);
        shared = std::make_unique<SharedState>(io, settings, endpoint, instance_name(settings));
        shared->commands.start();
        shared->reads.start();
        journal = &shared->journal;
        // Like the SQLite journal, Redis comes before listening: a tick that arrives the moment
        // the port opens is recorded, not answered 503. A Redis still away after the wait does
        // not stop the start; ticks get 503 and /health/ready says why until it is back.
        const auto give_up = std::chrono::steady_clock::now() + kRedisStartWait;
        while (!shared->commands.connected() && std::chrono::steady_clock::now() < give_up) {
            io.run_one_for(std::chrono::milliseconds(50));
        }
        io.restart();
        if (!shared->commands.connected()) {
            log.warning("Starting without Redis; ticks are answered 503 until it answers",
                        {{"redis", shared->journal.location()}});
        }
    } else {
        try {
            own_journal = journal::SqliteJournal::open(settings.journal_path);
        } catch (const journal::JournalError& error) {
            log.error("Journal unusable, not starting", {{"error", error.what()}});
            throw;
        }
        journal = own_journal.get();
    }

    // Providers, image intake, prompts and the pipeline, shared by every task.
    TaskWiring wiring(io, settings, *journal);
    auto& runner = wiring.pipeline();

    locking::TaskLocks locks(settings.lock_ttl, settings.lock_cleanup_interval);
    locking::DeliveryLog deliveries(settings.lock_ttl);
    std::unique_ptr<QueuedTasks> queued;
    TaskRunner* admissions = &runner;
    if (shared_mode) {
        queued = std::make_unique<QueuedTasks>(io.get_executor(), shared->journal, shared->queue,
                                               shared->task_locks, shared->instance_names, locks,
                                               runner);
        admissions = queued.get();
    }
    WebhookIntake intake({settings.clickup_webhook_secret.reveal(), settings.ai_edit_field_id,
                          settings.webhook_answer == "when_done"},
                         locks, deliveries, *admissions);
    if (shared_mode) {
        queued->start();
    } else {
        resume_unfinished_jobs(*own_journal, locks, runner);
    }

    // Readiness and the gauges others own, read when asked.
    Readiness readiness;
    readiness.add_check("configuration", [&settings]() -> std::optional<std::string> {
        const auto problems = config::problems_for_serving(settings);
        if (problems.empty()) return std::nullopt;
        return problems.front();
    });
    readiness.add_check(shared_mode ? "redis" : "journal", [journal] { return journal->problem(); });
    if (queued) readiness.add_check("instance", [&queued] { return queued->problem(); });
    const auto locks_reading = metrics::read_at_scrape(metrics::Reading::kLocksHeld, [&locks] {
        return static_cast<double>(locks.stats().total_locks);
    });
    const auto tasks_reading = metrics::read_at_scrape(metrics::Reading::kTasksInFlight, [&runner] {
        return static_cast<double>(runner.in_flight());
    });

    QueueReading queue_reading = [&runner, &queued]() -> nlohmann::json {
        if (queued) return queued->depth();
        return {{"backend", "sqlite"},
                {"waiting", runner.waiting()},
                {"running", runner.running()}};
    };
    auto router = make_router(locks, intake, *journal, settings.history_api_token, readiness,
                              queue_reading);

    http::Server server(io,
                        {settings.bind_address, static_cast<unsigned short>(settings.port),
                         settings.max_body_bytes, settings.header_timeout, settings.idle_timeout,
                         static_cast<std::size_t>(settings.max_connections)},
                        std::move(router));
    server.observe_answers([](std::string_view route, unsigned, metrics::Duration elapsed) {
        if (route == kWebhookPath) metrics::webhook_answer_took(elapsed);
    });
    server.start();
    log.info("Service listening", {{"address", settings.bind_address},
                                   {"port", server.port()},
                                   {"version", IEA_VERSION},
                                   {shared_mode ? "redis" : "journal", journal->location()},
                                   {"max_concurrent_tasks", settings.max_concurrent_tasks}});

    asio::co_spawn(io, sweep_stale_locks(locks), asio::detached);

    // Shutdown: webhooks are answered 503 (ClickUp sends them again), running tasks stop at
    // their next checkpoint within the grace period, and whatever is left unfinished stays in
    // the journal for the next start. Nothing is written to the tasks on the way out.
    asio::signal_set signals(io, SIGTERM, SIGINT);
    signals.async_wait([&](const boost::system::error_code& ec, int signal_number) {
        if (ec) return;
        readiness.set_shutting_down();
        log.info("Shutdown requested",
                 {{"signal", signal_number}, {"tasks_running", runner.in_flight()}});
        intake.stop_taking_work();
        if (queued) queued->stop_taking_work();
        runner.pause();
        asio::co_spawn(
            io,
            [&]() -> asio::awaitable<void> {
                co_await wait_until([&] { return runner.in_flight() == 0; },
                                    settings.shutdown_grace);
                const auto cut_off = runner.in_flight();
                if (cut_off > 0) {
                    runner.stop();
                    co_await wait_until([&] { return runner.in_flight() == 0; }, kCutOffGrace);
                }
                if (queued) co_await queued->let_go();
                server.stop();
                const bool drained = co_await server.drain(std::chrono::seconds(1));
                log.info("Service stopped", {{"connections_drained", drained},
                                             {"tasks_cut_off", cut_off},
                                             {"tasks_left", runner.in_flight()}});
                io.stop();
            },
            asio::detached);
    });

    io.run();
    return 0;
}

}  // namespace iea::service
