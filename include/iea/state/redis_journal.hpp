#pragma once

/// The journal kept in Redis, for several instances behind one URL (STATE_BACKEND=redis).
///
/// What the SQLite journal keeps in one file, shared: each job's record and checkpoints, each
/// task's runs, the deliveries seen, and the queue of jobs to run (a stream read by every
/// instance, see RedisJobQueue). Accepting a tick is one atomic script: the delivery is
/// remembered, the job recorded and queued, all or nothing, so a tick is never recorded
/// without being queued nor queued twice.
///
/// Keys (prefix `iea:`): `job:<id>` (hash), `job:<id>:checkpoints` (list of {key, data,
/// at_ms}), `task:<task_id>:runs` (list of job ids), `delivery:<id>`, `queued:<task_id>` (a
/// job waiting for an instance), `lock:<task_id>`, `job-ids` (counter), `jobs` (the stream).
///
/// While Redis cannot be reached, recording a checkpoint or an ending waits and tries again,
/// so a running task pauses at its next checkpoint and goes on when Redis is back.

#include <chrono>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include <boost/asio/awaitable.hpp>

#include "iea/journal/journal.hpp"
#include "iea/logging/log.hpp"
#include "iea/state/redis_client.hpp"
#include "iea/state/redis_queue.hpp"

namespace iea::state {

/// What became of a tick offered to the queue.
enum class Enqueued {
    kAccepted,     ///< Recorded and queued.
    kRedelivered,  ///< This delivery was taken before.
    kBusy,         ///< The task already has a job running or waiting.
};

struct EnqueueResult {
    Enqueued outcome = Enqueued::kAccepted;
    journal::JobId job = 0;
};

/// A job an instance took from the queue, to run or resume.
struct TakenJob {
    journal::JobRecord record;
    std::string queue_entry;  ///< Its stream entry, acknowledged when the job ends.
};

class RedisJournal final : public journal::Journal {
  public:
    /// `redis` must outlive this; `queue` names the stream and group the jobs go to.
    RedisJournal(RedisClient& redis, std::string location, JobQueueOptions queue,
                 std::chrono::milliseconds remember_deliveries, std::string prefix = "iea:");

    [[nodiscard]] std::string location() const override { return location_; }

    /// Remembers the delivery, records the job and queues it, in one step; nothing happens
    /// when the task is busy (`check_busy`) or the delivery was seen.
    asio::awaitable<RedisResult<EnqueueResult>> enqueue(std::string task_id,
                                                        std::string delivery_id,
                                                        journal::SystemClock::time_point received_at,
                                                        bool check_busy);

    /// Marks the job as taken by `instance` and reads its record and checkpoints. A job
    /// taken before counts as resumed once more (with the same rule as the SQLite journal for
    /// resumes that made no progress). Nothing when the job is unknown (expired).
    asio::awaitable<RedisResult<std::optional<journal::JobRecord>>> take(journal::JobId job,
                                                                        std::string instance);

    /// Puts an unfinished job back at the end of the queue under a new entry, for another
    /// instance to take at once (this one is shutting down), and frees the task's lock when
    /// `lock_token` holds it; the task counts as waiting, so a new tick of it is not taken.
    asio::awaitable<RedisResult<void>> hand_back(journal::JobId job, std::string task_id,
                                                 std::string lock_token);

    /// True when an instance took the job before (it is a resume, not a fresh tick).
    asio::awaitable<RedisResult<bool>> taken_before(journal::JobId job);

    /// True when Redis runs without its append-only file (CONFIG GET appendonly is "no"): a
    /// restart of Redis would lose accepted ticks. False too when Redis will not say.
    asio::awaitable<RedisResult<bool>> persistence_off();

    /// How a job ended, or "running".
    asio::awaitable<RedisResult<std::string>> state_of(journal::JobId job);

    // journal::Journal
    [[nodiscard]] asio::awaitable<std::optional<journal::JobId>> record_job(
        std::string task_id, std::string delivery_id,
        journal::SystemClock::time_point received_at) override;
    [[nodiscard]] asio::awaitable<void> record_checkpoint(journal::JobId job, std::string key,
                                                          nlohmann::json value) override;
    [[nodiscard]] asio::awaitable<void> record_ending(journal::JobId job,
                                                      std::string state) override;
    [[nodiscard]] asio::awaitable<nlohmann::json> task_history(std::string task_id) override;
    [[nodiscard]] std::optional<std::string> problem() const override;

  private:
    /// Runs `attempt` until Redis answers it, waiting between tries; logs the pause once.
    template <typename Attempt>
    asio::awaitable<void> until_answered(journal::JobId job, std::string_view what,
                                         Attempt& attempt);
    [[nodiscard]] std::string job_key(journal::JobId job) const;
    /// The delivery of a run this instance took; empty when it took none of that number.
    [[nodiscard]] std::string delivery_of(journal::JobId job) const;
    /// Redis no longer holds the run's record: it goes on unrecorded. Logged once.
    void note_lost(journal::JobId job);
    asio::awaitable<RedisResult<RedisReply>> append_checkpoint(journal::JobId job,
                                                             const std::string& key,
                                                             const nlohmann::json& value);

    RedisClient& redis_;
    std::string location_;
    JobQueueOptions queue_;
    std::chrono::milliseconds remember_deliveries_;
    std::string prefix_;
    // Runs this instance took, by number: their delivery, which their record must still show
    // (job numbers start again after Redis lost its data).
    std::unordered_map<journal::JobId, std::string> runs_here_;
    std::unordered_set<journal::JobId> lost_;  // runs whose record Redis lost
    std::optional<std::string> refusing_;      // Redis's answer while it refuses writes
    logging::Logger log_;
};

/// Finished jobs and their checkpoints are kept this long in Redis, then expire.
inline constexpr std::chrono::hours kRedisHistoryKeptFor{24 * 30};

}  // namespace iea::state
