#pragma once

/// The job queue on a Redis stream with one consumer group shared by every instance.
///
/// An accepted webhook becomes an entry (field `job`, the job as JSON). Each instance reads
/// new entries as a consumer named by its instance id; an entry stays pending, owned by that
/// consumer, until it is acknowledged on a terminal state. Entries left pending longer than
/// the idle timeout (their consumer died) are claimed by another instance. A running job keeps
/// its entry fresh with touch(), so a slow job is not mistaken for an abandoned one.
///
/// Acknowledged entries are deleted, so the stream holds exactly the jobs not finished yet.

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "iea/logging/log.hpp"
#include "iea/state/redis_client.hpp"

namespace iea::state {

struct JobQueueOptions {
    std::string stream = "iea:jobs";
    std::string group = "iea-workers";
    /// This instance's consumer name (its instance id); must differ between instances.
    std::string consumer;
    /// How long one read waits for new entries on the server; keep it short so that a
    /// shutdown is noticed soon.
    std::chrono::milliseconds block_for{1000};
    /// How long an entry must sit unacknowledged and untouched before another consumer may
    /// claim it.
    std::chrono::milliseconds claim_after{60000};
    /// Most entries one read or claim returns.
    std::size_t batch = 10;
};

/// One queued job.
struct QueuedJob {
    std::string id;    ///< Stream entry id, e.g. "1733340000000-0".
    std::string body;  ///< The job as enqueued (JSON).
};

/// For /health.
struct QueueDepth {
    std::int64_t waiting = 0;  ///< Enqueued, not yet read by any instance.
    std::int64_t running = 0;  ///< Read by an instance and not yet acknowledged.
};

class RedisJobQueue final {
  public:
    /// `commands` carries the short commands; `reads` only the blocking reads (a blocking read
    /// would hold up every command behind it on a shared connection). Both must outlive this.
    RedisJobQueue(RedisClient& commands, RedisClient& reads, JobQueueOptions options);

    /// Creates the stream and the group when missing. read_new() also does this when it
    /// finds the group gone (a Redis that lost its data).
    asio::awaitable<RedisResult<void>> ensure_group();

    /// Appends a job; returns its entry id.
    asio::awaitable<RedisResult<std::string>> enqueue(std::string job_json);

    /// Takes up to `most` (0: `batch`) entries never read by any consumer, waiting up to
    /// `block_for` for one to arrive; empty when none came.
    asio::awaitable<RedisResult<std::vector<QueuedJob>>> read_new(std::size_t most = 0);

    /// Claims up to `most` (0: `batch`) entries pending longer than `claim_after` with any
    /// consumer (one that died, most likely); they are now this consumer's.
    asio::awaitable<RedisResult<std::vector<QueuedJob>>> claim_abandoned(std::size_t most = 0);

    /// Entries this consumer read and never acknowledged: after a restart under the same
    /// instance id, the jobs its previous process was running.
    asio::awaitable<RedisResult<std::vector<QueuedJob>>> own_pending();

    /// Resets the idle time of an entry this consumer owns; false when it is no longer
    /// this consumer's (another claimed it, or it was acknowledged): stop working on it.
    asio::awaitable<RedisResult<bool>> touch(std::string entry_id);

    /// Acknowledges and deletes an entry, on a terminal state; false when it was not
    /// pending any more (acknowledged before).
    asio::awaitable<RedisResult<bool>> acknowledge(std::string entry_id);

    asio::awaitable<RedisResult<QueueDepth>> depth();

    [[nodiscard]] const JobQueueOptions& options() const { return options_; }

  private:
    RedisClient& commands_;
    RedisClient& reads_;
    JobQueueOptions options_;
    logging::Logger log_;
};

}  // namespace iea::state
