#include "iea/service/job_queue.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

// GCC 12 at -O2 reports -Wmismatched-new-delete for some coroutine frames in this file (the
// frame comes from Asio's recycling operator new and goes back through the matching operator
// delete; a known false positive for coroutine frames).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace iea::service {
namespace {

namespace asio = boost::asio;
constexpr auto kAsTuple = asio::as_tuple(asio::use_awaitable);
// How often a run that waits for its ending (WEBHOOK_ANSWER=when_done) looks.
constexpr auto kEndingPoll = std::chrono::milliseconds(250);
// Pause after the queue could not be read (Redis away), and while every slot is taken.
constexpr auto kRetryPause = std::chrono::milliseconds(500);
constexpr auto kFullPause = std::chrono::milliseconds(100);
constexpr auto kDepthEvery = std::chrono::seconds(1);
// How often a running job's lock and queue entry are kept alive, as a part of their life.
constexpr int kKeepAlivesPerLife = 3;

asio::awaitable<void> sleep_for(std::chrono::milliseconds pause) {
    asio::steady_timer timer(co_await asio::this_coro::executor, pause);
    co_await timer.async_wait(kAsTuple);
}

/// What a queue entry names: the job and its task.
struct EntryJob {
    journal::JobId job = 0;
    std::string task_id;
};

std::optional<EntryJob> read_entry(const state::QueuedJob& entry) {
    const auto body = nlohmann::json::parse(entry.body, nullptr, false);
    if (!body.is_object() || !body.contains("job_id") || !body["job_id"].is_number_integer() ||
        !body.contains("task_id") || !body["task_id"].is_string()) {
        return std::nullopt;
    }
    return EntryJob{body["job_id"].get<journal::JobId>(), body["task_id"].get<std::string>()};
}

}  // namespace

QueuedTasks::QueuedTasks(asio::any_io_executor executor, state::RedisJournal& journal,
                         state::RedisJobQueue& queue, state::RedisTaskLocks& task_locks,
                         state::RedisTaskLocks& instance_names, locking::TaskLocks& local_locks,
                         pipeline::Pipeline& runner)
    : executor_(std::move(executor)),
      journal_(journal),
      queue_(queue),
      task_locks_(task_locks),
      instance_names_(instance_names),
      local_locks_(local_locks),
      runner_(runner) {}

asio::awaitable<Admission> QueuedTasks::admit(TaskJob job, locking::TaskLocks::Guard lock,
                                              bool wait_for_end) {
    // This instance's lock kept the tick from racing a run of the task here; from now on the
    // task's Redis lock and queued marker speak for every instance.
    lock.release();
    Admission admission;
    const auto queued =
        co_await journal_.enqueue(job.task_id, job.delivery_id, job.received_at, true);
    if (!queued) {
        log_.error("Task not taken: Redis did not record it",
                   {{"task_id", job.task_id}, {"error", queued.error().message()}});
        admission.kind = Admission::Kind::kUnavailable;
        co_return admission;
    }
    switch (queued->outcome) {
        case state::Enqueued::kRedelivered:
            admission.kind = Admission::Kind::kRedelivered;
            co_return admission;
        case state::Enqueued::kBusy:
            admission.kind = Admission::Kind::kBusy;
            co_return admission;
        case state::Enqueued::kAccepted:
            break;
    }
    log_.debug("Task queued", {{"task_id", job.task_id}, {"run_id", queued->job}});
    if (!wait_for_end) co_return admission;

    // The original's way: answer when the edit has ended, on whichever instance ran it.
    for (;;) {
        const auto state = co_await journal_.state_of(queued->job);
        if (state && *state != journal::kRunning) {
            admission.ending = *state;
            co_return admission;
        }
        co_await sleep_for(kEndingPoll);
    }
}

void QueuedTasks::start() {
    asio::co_spawn(executor_, take_jobs(), asio::detached);
}

void QueuedTasks::stop_taking_work() { stopping_ = true; }

nlohmann::json QueuedTasks::depth() const {
    nlohmann::json body{{"backend", "redis"},
                        {"this_instance",
                         {{"running", runner_.running()},
                          {"free_slots", runner_.free_slots()}}}};
    if (depth_known_) {
        body["waiting"] = last_depth_.waiting;
        body["running"] = last_depth_.running;
    }
    return body;
}

asio::awaitable<void> QueuedTasks::take_jobs() {
    // The group first; Redis may still be starting.
    while (!stopping_) {
        if (co_await queue_.ensure_group()) break;
        co_await sleep_for(kRetryPause);
    }
    // Accepted ticks live only in Redis in this mode: without its append-only file, a restart
    // of Redis loses them. Said once; a Redis that will not answer CONFIG says nothing.
    if (const auto off = co_await journal_.persistence_off(); off && *off) {
        log_.warning("Redis runs without appendonly: a restart of Redis loses accepted tasks; "
                     "set appendonly yes");
    }
    co_await hold_name();
    // Jobs this instance's previous process left unfinished: taken back at once rather than
    // after the claim timeout.
    while (!stopping_) {
        const auto own = co_await queue_.own_pending();
        if (!own) {
            co_await sleep_for(kRetryPause);
            continue;
        }
        if (!own->empty()) log_.info("Taking back unfinished tasks", {{"count", own->size()}});
        for (auto& entry : *own) asio::co_spawn(executor_, start_job(entry, true), asio::detached);
        break;
    }

    const auto claim_every = queue_.options().claim_after / 2;
    auto next_claim = std::chrono::steady_clock::now();
    auto next_depth = std::chrono::steady_clock::now();
    while (!stopping_) {
        if (name_token_.empty()) {
            // The name was lost (it ran out during a Redis outage and another took it).
            co_await hold_name();
            continue;
        }
        // Read once a second for /health (not on every pass of a full instance); unknown while
        // Redis is away, rather than an old reading shown as current.
        if (const auto now = std::chrono::steady_clock::now(); now >= next_depth) {
            next_depth = now + kDepthEvery;
            const auto depth = co_await queue_.depth();
            depth_known_ = depth.has_value();
            if (depth) last_depth_ = *depth;
        }
        const auto free = runner_.free_slots();
        const auto room = free > *starting_ ? free - *starting_ : 0;
        if (room == 0) {
            co_await sleep_for(kFullPause);
            continue;
        }
        std::vector<state::QueuedJob> taken;
        if (std::chrono::steady_clock::now() >= next_claim) {
            next_claim = std::chrono::steady_clock::now() + claim_every;
            if (auto claimed = co_await queue_.claim_abandoned(room); claimed) {
                taken = std::move(*claimed);
            }
        }
        if (taken.size() < room) {
            auto fresh = co_await queue_.read_new(room - taken.size());
            if (!fresh) {
                co_await sleep_for(kRetryPause);
            } else {
                for (auto& entry : *fresh) taken.push_back(std::move(entry));
            }
        }
        if (stopping_) {
            // Read while the shutdown began (our own hand-backs can come back to this very
            // read): passed on to the other instances instead of started.
            for (const auto& entry : taken) co_await hand_back_unstarted(entry);
            break;
        }
        for (auto& entry : taken) {
            ++*starting_;
            asio::co_spawn(executor_, start_job(std::move(entry), false), asio::detached);
        }
    }
}

asio::awaitable<void> QueuedTasks::let_go() {
    // Only now, with every run of this process ended or handed back: a new process under the
    // same name must not take back a run this one is still finishing.
    name_released_ = true;
    if (!name_token_.empty()) {
        (void)co_await instance_names_.release(queue_.options().consumer, name_token_);
        name_token_.clear();
    }
}

asio::awaitable<void> QueuedTasks::keep_name() {
    const auto& name = queue_.options().consumer;
    while (!name_released_) {
        co_await sleep_for(std::chrono::duration_cast<std::chrono::milliseconds>(kNameLife) / 3);
        if (name_released_ || name_token_.empty()) continue;
        const auto renewed = co_await instance_names_.renew(name, name_token_);
        // Redis away: nothing is taken meanwhile anyway; the hold is looked at again next time.
        if (!renewed || *renewed) continue;
        log_.error("This instance's hold on its INSTANCE_ID ran out (Redis was away?); it takes "
                   "no new tasks until it holds it again",
                   {{"instance", name}});
        name_token_.clear();
    }
}

asio::awaitable<void> QueuedTasks::hold_name() {
    const auto& name = queue_.options().consumer;
    const auto started = std::chrono::steady_clock::now();
    bool said = false;
    while (!stopping_) {
        if (const auto held = co_await instance_names_.acquire(name); held && *held) {
            name_token_ = **held;
            if (name_taken_elsewhere_) log_.info("Instance name free; taking tasks");
            name_taken_elsewhere_ = false;
            if (!keeping_name_) {
                keeping_name_ = true;
                asio::co_spawn(executor_, keep_name(), asio::detached);
            }
            co_return;
        } else if (held) {
            name_taken_elsewhere_ = true;
            if (!said && std::chrono::steady_clock::now() - started > 2 * kNameLife) {
                // A dead predecessor's hold would have run out by now: someone renews it.
                log_.error("Another live instance uses this INSTANCE_ID; this one takes no tasks "
                           "until the name is free (give every instance its own)",
                           {{"instance", name}});
                said = true;
            }
        }
        co_await sleep_for(std::chrono::duration_cast<std::chrono::milliseconds>(kNameLife) / 6);
    }
}

std::optional<std::string> QueuedTasks::problem() const {
    if (!name_taken_elsewhere_) return std::nullopt;
    return "another live instance uses INSTANCE_ID " + queue_.options().consumer;
}

asio::awaitable<void> QueuedTasks::hand_back_unstarted(const state::QueuedJob& entry) {
    if (const auto named = read_entry(entry)) {
        (void)co_await journal_.hand_back(named->job, named->task_id, "");
    }
}

asio::awaitable<void> QueuedTasks::start_job(state::QueuedJob entry, bool taking_back) {
    // starting_ counts jobs on their way into the pipeline, so that no more are read than
    // there is room for; taken-back jobs were never counted.
    struct Started {
        std::shared_ptr<std::size_t> count;
        ~Started() {
            if (count) --*count;
        }
    } started{taking_back ? nullptr : starting_};

    const auto named = read_entry(entry);
    if (!named) {
        log_.error("Queue entry dropped: it names no job", {{"entry", entry.id}});
        (void)co_await queue_.acknowledge(entry.id);
        co_return;
    }
    const auto job = named->job;
    const auto& task_id = named->task_id;

    // A run of this task already going here: the entry waits to be claimed again later.
    auto local_lock = local_locks_.try_acquire(task_id);
    if (!local_lock) co_return;

    state::RedisResult<std::optional<std::string>> token;
    if (taking_back) {
        token = co_await task_locks_.take_back(task_id);
    } else {
        token = co_await task_locks_.acquire(task_id);
    }
    if (!token) co_return;  // Redis away: the entry stays pending and is claimed later
    if (!*token) {
        // Another instance runs this task. A fresh tick is dropped, as a tick during a run
        // always is; a job that ran before waits for the lock and is claimed again later.
        const auto resumed = co_await journal_.taken_before(job);
        if (resumed && !*resumed) {
            log_.info("Task already processing elsewhere, tick dropped",
                      {{"task_id", task_id}, {"run_id", job}});
            co_await journal_.record_ending(job, "superseded");
        }
        co_return;
    }
    auto release = [&]() -> asio::awaitable<void> {
        (void)co_await task_locks_.release(task_id, **token);
    };

    auto taken = co_await journal_.take(job, queue_.options().consumer);
    if (!taken) {
        log_.warning("Task could not be taken from the queue; it is tried again later",
                     {{"task_id", task_id}, {"run_id", job}, {"error", taken.error().message()}});
        co_await release();
        co_return;
    }
    if (!*taken || (*taken)->state != journal::kRunning) {
        // Expired or ended already (a hand-back raced its ending): nothing left to run.
        log_.info("Queue entry of a run that ended or expired, dropped",
                  {{"task_id", task_id}, {"run_id", job}});
        (void)co_await queue_.acknowledge(entry.id);
        co_await release();
        co_return;
    }
    auto record = std::move(**taken);
    if (!record.damaged.empty()) {
        // TODO: the person who ticked the task is not told: it stays ticked with no comment;
        // the run should end blocked on the task with a plain-words reason.
        log_.error("Run cannot be resumed, its record is damaged",
                   {{"task_id", task_id}, {"run_id", job}, {"error", record.damaged}});
        co_await journal_.record_ending(job, "damaged");
        co_await release();
        co_return;
    }

    auto lock_token = std::make_shared<std::string>(std::move(**token));
    auto running = std::make_shared<bool>(true);
    auto lost = std::make_shared<bool>(false);
    asio::co_spawn(executor_, keep_alive(task_id, entry.id, lock_token, running, lost),
                   asio::detached);
    pipeline::Pipeline::OnEnd on_end = [this, job, task_id, lock_token, running,
                                        lost](pipeline::Ending ending) -> asio::awaitable<void> {
        *running = false;
        // Another instance runs the job now: nothing of it is this instance's any more.
        if (*lost) co_return;
        // Stopped for a shutdown: back to the queue, so that another instance goes on at once.
        if (ending == pipeline::Ending::kInterrupted) {
            if (co_await journal_.hand_back(job, task_id, *lock_token)) {
                log_.info("Unfinished task handed back to the queue",
                          {{"task_id", task_id}, {"run_id", job}});
                co_return;
            }
        }
        (void)co_await task_locks_.release(task_id, *lock_token);
    };
    runner_.resume(std::move(record), std::move(*local_lock), std::move(on_end), lost);
}

asio::awaitable<void> QueuedTasks::keep_alive(std::string task_id, std::string entry,
                                              std::shared_ptr<std::string> token,
                                              std::shared_ptr<bool> running,
                                              std::shared_ptr<bool> lost) {
    const auto every = task_locks_.ttl() / kKeepAlivesPerLife;
    auto next = std::chrono::steady_clock::now() + every;
    while (*running) {
        co_await sleep_for(kFullPause);
        if (!*running || std::chrono::steady_clock::now() < next) continue;
        next = std::chrono::steady_clock::now() + every;

        const auto renewed = co_await task_locks_.renew(task_id, *token);
        if (renewed && !*renewed && *running) {
            // Expired (Redis was away longer than its life): take it again if nobody else did.
            const auto again = co_await task_locks_.acquire(task_id);
            if (again && *again) {
                *token = **again;
            } else if (again) {
                // Redis was away longer than the lock's life and another instance took the
                // job over: this run stops at its next checkpoint and leaves it to that one.
                log_.warning("Task taken over by another instance; this run stops",
                             {{"task_id", task_id}});
                *lost = true;
                co_return;
            }
        }
        (void)co_await queue_.touch(entry);
    }
}

}  // namespace iea::service
