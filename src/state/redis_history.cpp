#include "iea/state/redis_history.hpp"

#include <charconv>

#include "redis_support.hpp"

namespace iea::state {
namespace {

// The job's record and its place in the task's runs appear together or not at all.
const RedisScript kStart(
    "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end "
    "redis.call('HSET', KEYS[1], 'job_id', ARGV[1], 'task_id', ARGV[2], "
    "'state', 'running', 'started_at_ms', ARGV[3]) "
    "redis.call('RPUSH', KEYS[2], ARGV[1]) return 1");

// Finishing an unknown job must not leave a half record behind.
const RedisScript kFinish(
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end "
    "redis.call('HSET', KEYS[1], 'state', ARGV[1], 'finished_at_ms', ARGV[2]) return 1");

std::int64_t to_int(const std::string& text) {
    std::int64_t value = 0;
    std::from_chars(text.data(), text.data() + text.size(), value);
    return value;
}

// HGETALL's flat [field, value, ...] as a run.
JobRun to_run(const RedisReply& fields) {
    JobRun run;
    for (std::size_t i = 0; i + 1 < fields.elements.size(); i += 2) {
        const auto& name = fields.elements[i].text;
        const auto& value = fields.elements[i + 1].text;
        if (name == "job_id") run.job_id = value;
        if (name == "task_id") run.task_id = value;
        if (name == "state") run.state = value;
        if (name == "started_at_ms") run.started_at_ms = to_int(value);
        if (name == "finished_at_ms") run.finished_at_ms = to_int(value);
    }
    return run;
}

}  // namespace

// TODO: history keys never expire, so Redis memory grows with every run; finished jobs need
// a retention period (EXPIRE on finish) and the task's run list a cap.
RedisJobHistory::RedisJobHistory(RedisClient& redis, std::string prefix)
    : redis_(redis), prefix_(std::move(prefix)), log_("state") {}

std::string RedisJobHistory::job_key(std::string_view job_id) const {
    return prefix_ + "job:" + std::string(job_id);
}

asio::awaitable<RedisResult<bool>> RedisJobHistory::start(std::string job_id, std::string task_id) {
    const auto record = job_key(job_id);
    const auto runs_key = prefix_ + "task:" + task_id + ":runs";
    const auto now = std::to_string(unix_ms());
    const auto reply = co_await redis_.eval(kStart, 2, record, runs_key, job_id, task_id, now);
    if (!reply) co_return failed(reply.error());
    if (!reply->is_integer()) co_return failed_reply(log_, "history start", *reply);
    co_return reply->integer == 1;
}

asio::awaitable<RedisResult<std::int64_t>> RedisJobHistory::append_checkpoint(std::string job_id,
                                                                              std::string key,
                                                                              nlohmann::json data) {
    const auto list = job_key(job_id) + ":checkpoints";
    nlohmann::json entry;
    entry["key"] = std::move(key);
    entry["data"] = std::move(data);
    entry["at_ms"] = unix_ms();
    const auto text = entry.dump();
    const auto reply = co_await redis_.command("RPUSH", list, text);
    if (!reply) co_return failed(reply.error());
    if (!reply->is_integer()) co_return failed_reply(log_, "history checkpoint", *reply);
    co_return reply->integer;
}

asio::awaitable<RedisResult<std::vector<JobCheckpoint>>> RedisJobHistory::checkpoints(
    std::string job_id) {
    const auto list = job_key(job_id) + ":checkpoints";
    const auto reply = co_await redis_.command("LRANGE", list, "0", "-1");
    if (!reply) co_return failed(reply.error());
    if (!reply->is_array()) co_return failed_reply(log_, "history checkpoints", *reply);

    std::vector<JobCheckpoint> out;
    for (const auto& element : reply->elements) {
        const auto entry = nlohmann::json::parse(element.text, nullptr, false);
        if (entry.is_discarded() || !entry.is_object() || !entry.contains("key")) {
            co_return failed_reply(log_, "history checkpoints", element);
        }
        JobCheckpoint checkpoint;
        checkpoint.key = entry.value("key", "");
        checkpoint.data = entry.value("data", nlohmann::json());
        checkpoint.at_ms = entry.value("at_ms", std::int64_t{0});
        out.push_back(std::move(checkpoint));
    }
    co_return out;
}

asio::awaitable<RedisResult<bool>> RedisJobHistory::finish(std::string job_id,
                                                           std::string terminal_state) {
    const auto record = job_key(job_id);
    const auto now = std::to_string(unix_ms());
    const auto reply = co_await redis_.eval(kFinish, 1, record, terminal_state, now);
    if (!reply) co_return failed(reply.error());
    if (!reply->is_integer()) co_return failed_reply(log_, "history finish", *reply);
    co_return reply->integer == 1;
}

asio::awaitable<RedisResult<std::optional<JobRun>>> RedisJobHistory::job(std::string job_id) {
    const auto record = job_key(job_id);
    const auto reply = co_await redis_.command("HGETALL", record);
    if (!reply) co_return failed(reply.error());
    if (!reply->is_array()) co_return failed_reply(log_, "history job", *reply);
    if (reply->elements.empty()) co_return std::optional<JobRun>();
    co_return std::optional<JobRun>(to_run(*reply));
}

asio::awaitable<RedisResult<std::vector<JobRun>>> RedisJobHistory::runs(std::string task_id) {
    const auto runs_key = prefix_ + "task:" + task_id + ":runs";
    const auto ids = co_await redis_.command("LRANGE", runs_key, "0", "-1");
    if (!ids) co_return failed(ids.error());
    if (!ids->is_array()) co_return failed_reply(log_, "history runs", *ids);

    // A task has a handful of runs; one HGETALL each on loopback is cheap enough.
    std::vector<JobRun> out;
    for (const auto& id : ids->elements) {
        auto run = co_await job(id.text);
        if (!run) co_return failed(run.error());
        if (*run) out.push_back(std::move(**run));
    }
    co_return out;
}

}  // namespace iea::state
