#pragma once

/// Several instances sharing Redis (STATE_BACKEND=redis): an accepted tick goes into the
/// shared job queue instead of straight into this instance's pipeline, and every instance
/// takes jobs from the queue as it has room (MAX_CONCURRENT_TASKS), so a burst waits in Redis
/// and is spread over whoever is free.
///
/// A job runs under its task's Redis lock, kept alive while it runs together with the job's
/// queue entry; a job whose instance died goes quiet and is taken over by another instance
/// after JOB_CLAIM_AFTER_SECONDS, resuming from its checkpoints. A restarted instance (same
/// INSTANCE_ID) takes back its own unfinished jobs at once. On shutdown, the jobs it had not
/// finished are handed back to the queue for the others.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <nlohmann/json.hpp>

#include "iea/locking/task_locks.hpp"
#include "iea/logging/log.hpp"
#include "iea/pipeline/pipeline.hpp"
#include "iea/service/intake.hpp"
#include "iea/state/redis_journal.hpp"
#include "iea/state/redis_locks.hpp"
#include "iea/state/redis_queue.hpp"

namespace iea::service {

/// How long a hold on an instance's name lasts without renewal (renewed every third of it).
inline constexpr std::chrono::seconds kNameLife{6};

class QueuedTasks final : public TaskRunner {
  public:
    /// Everything given must outlive this object.
    /// `instance_names` holds the lock on this instance's name (its INSTANCE_ID).
    QueuedTasks(boost::asio::any_io_executor executor, state::RedisJournal& journal,
                state::RedisJobQueue& queue, state::RedisTaskLocks& task_locks,
                state::RedisTaskLocks& instance_names, locking::TaskLocks& local_locks,
                pipeline::Pipeline& runner);

    /// Records the tick and queues it (one atomic step in Redis); the run starts on whichever
    /// instance has room first. With `wait_for_end`, waits for the job's ending.
    [[nodiscard]] boost::asio::awaitable<Admission> admit(TaskJob job,
                                                          locking::TaskLocks::Guard lock,
                                                          bool wait_for_end) override;

    /// Starts taking jobs: first this instance's own unfinished ones, then new and abandoned.
    void start();
    /// Shutdown: no more jobs are taken; runs that stop for it are handed back to the queue.
    void stop_taking_work();
    /// Shutdown, once every run has ended or been handed back: frees this instance's name, so
    /// that its next process takes back what is left at once.
    boost::asio::awaitable<void> let_go();

    /// The queue as last read (every instance's jobs), for /health.
    [[nodiscard]] nlohmann::json depth() const;

    /// Why this instance takes no jobs (another live instance has its name), or nothing.
    [[nodiscard]] std::optional<std::string> problem() const;

  private:
    boost::asio::awaitable<void> take_jobs();
    /// Holds this instance's name in Redis while it runs: two live processes under one name
    /// would take each other's jobs. Waits while another process holds it (a dead
    /// predecessor's hold runs out within kNameLife).
    boost::asio::awaitable<void> hold_name();
    /// Renews the hold until let_go(); clears name_token_ when it was lost.
    boost::asio::awaitable<void> keep_name();
    boost::asio::awaitable<void> start_job(state::QueuedJob entry, bool taking_back);
    boost::asio::awaitable<void> hand_back_unstarted(const state::QueuedJob& entry);
    /// Renews the task's Redis lock and the queue entry until `running` turns false; sets
    /// `lost` when another instance holds the lock.
    boost::asio::awaitable<void> keep_alive(std::string task_id, std::string entry,
                                            std::shared_ptr<std::string> token,
                                            std::shared_ptr<bool> running,
                                            std::shared_ptr<bool> lost);

    boost::asio::any_io_executor executor_;
    state::RedisJournal& journal_;
    state::RedisJobQueue& queue_;
    state::RedisTaskLocks& task_locks_;
    state::RedisTaskLocks& instance_names_;
    std::string name_token_;  // this process's hold on the instance name
    bool name_taken_elsewhere_ = false;
    bool keeping_name_ = false;
    bool name_released_ = false;
    locking::TaskLocks& local_locks_;
    pipeline::Pipeline& runner_;
    bool stopping_ = false;
    // Jobs read from the queue, not yet in the pipeline. Shared with the coroutines that count
    // it down, which the event loop may destroy after this object, at exit.
    std::shared_ptr<std::size_t> starting_ = std::make_shared<std::size_t>(0);
    state::QueueDepth last_depth_;
    bool depth_known_ = false;
    logging::Logger log_{"queue"};
};

}  // namespace iea::service
