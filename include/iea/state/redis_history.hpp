#pragma once

/// Jobs' checkpoints and every task's runs, kept in Redis so that any instance can resume any
/// job and answer for any task.
///
/// Shape, kept simple on purpose: a hash per job (`<prefix>job:<job_id>`: job_id, task_id,
/// state, started_at_ms, finished_at_ms), a list per job of its checkpoints in order
/// (`<prefix>job:<job_id>:checkpoints`, each a JSON object {key, data, at_ms}) and a list per
/// task of its job ids (`<prefix>task:<task_id>:runs`). Times are the writing instance's wall
/// clock in milliseconds since the Unix epoch.

#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "iea/logging/log.hpp"
#include "iea/state/redis_client.hpp"

namespace iea::state {

struct JobCheckpoint {
    std::string key;  ///< Which step, e.g. "image_prepared" or "verdict:seedream:1".
    nlohmann::json data;
    std::int64_t at_ms = 0;
};

struct JobRun {
    std::string job_id;
    std::string task_id;
    std::string state;  ///< "running" until finished, then the terminal state given.
    std::int64_t started_at_ms = 0;
    std::int64_t finished_at_ms = 0;  ///< 0 while running.
};

class RedisJobHistory final {
  public:
    explicit RedisJobHistory(RedisClient& redis, std::string prefix = "iea:");

    /// Records a new run of `task_id`; false when `job_id` was already started (a resumed or
    /// claimed job keeps its record).
    asio::awaitable<RedisResult<bool>> start(std::string job_id, std::string task_id);

    /// Appends a checkpoint after the ones before it; returns how many the job has now.
    asio::awaitable<RedisResult<std::int64_t>> append_checkpoint(std::string job_id,
                                                                 std::string key,
                                                                 nlohmann::json data);

    /// The job's checkpoints in the order they were appended.
    asio::awaitable<RedisResult<std::vector<JobCheckpoint>>> checkpoints(std::string job_id);

    /// Marks the job finished with `terminal_state` ("complete", "blocked", ...); false when
    /// the job is unknown.
    asio::awaitable<RedisResult<bool>> finish(std::string job_id, std::string terminal_state);

    /// One job's record, or nothing when unknown.
    asio::awaitable<RedisResult<std::optional<JobRun>>> job(std::string job_id);

    /// Every run of `task_id`, oldest first.
    asio::awaitable<RedisResult<std::vector<JobRun>>> runs(std::string task_id);

  private:
    [[nodiscard]] std::string job_key(std::string_view job_id) const;

    RedisClient& redis_;
    std::string prefix_;
    logging::Logger log_;
};

}  // namespace iea::state
