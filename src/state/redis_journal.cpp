#include "iea/state/redis_journal.hpp"

#include <charconv>
#include <map>

#include <fmt/format.h>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "redis_support.hpp"

namespace iea::state {
namespace {

using journal::JobId;

// A tick becomes a job in one atomic step: the delivery is new (and is remembered even when
// the task turns out busy, so its redeliveries are known), the task is free, then the job is
// numbered, recorded, listed under its task and queued. Either all of it or none.
// Job numbers start, whenever the counter is missing, at the time in ms times 1000: after
// Redis lost its data they still never repeat a number from before (which a run of that time
// may still be writing under). Lua 5.1 prints such numbers in exponent form, hence the %d.
// KEYS: delivery, lock, queued marker, job counter, stream.
// ARGV: task id, delivery id, received ms, remember ms, prefix, check busy, runs kept, keep ms,
// the counter's start.
const RedisScript kEnqueue(R"lua(
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[4]) then return {'redelivered'} end
if ARGV[6] == '1' and (redis.call('EXISTS', KEYS[2]) == 1 or redis.call('EXISTS', KEYS[3]) == 1) then
  return {'busy'}
end
if redis.call('EXISTS', KEYS[4]) == 0 then redis.call('SET', KEYS[4], ARGV[9]) end
local id = string.format('%d', redis.call('INCR', KEYS[4]))
local entry = redis.call('XADD', KEYS[5], '*', 'job',
  '{"job_id":' .. id .. ',"task_id":' .. cjson.encode(ARGV[1]) .. '}')
redis.call('HSET', ARGV[5] .. 'job:' .. id, 'job_id', id, 'task_id', ARGV[1], 'delivery_id', ARGV[2],
  'received_at_ms', ARGV[3], 'started_at_ms', ARGV[3], 'state', 'running', 'resumes', 0,
  'stalled_resumes', 0, 'checkpoints_seen', 0, 'resumed_at_ms', 0, 'taken', 0, 'entry', entry)
redis.call('SET', KEYS[3], id, 'PX', ARGV[4])
local runs = ARGV[5] .. 'task:' .. ARGV[1] .. ':runs'
redis.call('RPUSH', runs, id)
redis.call('LTRIM', runs, -tonumber(ARGV[7]), -1)
redis.call('PEXPIRE', runs, ARGV[8])
return {'accepted', id}
)lua");

// Taking a job counts a resume when it was taken before, stalled when no step was recorded
// since though it had the catch-up time to record one (the SQLite journal's rule).
// KEYS: job, checkpoints. ARGV: now ms, catch-up ms, prefix, instance.
const RedisScript kTake(R"lua(
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local steps = redis.call('LLEN', KEYS[2])
local now = tonumber(ARGV[1])
if redis.call('HGET', KEYS[1], 'taken') == '1' then
  local seen = tonumber(redis.call('HGET', KEYS[1], 'checkpoints_seen') or '0')
  local stalled = tonumber(redis.call('HGET', KEYS[1], 'stalled_resumes') or '0')
  local at = tonumber(redis.call('HGET', KEYS[1], 'resumed_at_ms') or '0')
  if steps > seen then stalled = 0 elseif now - at >= tonumber(ARGV[2]) then stalled = stalled + 1 end
  redis.call('HINCRBY', KEYS[1], 'resumes', 1)
  redis.call('HSET', KEYS[1], 'stalled_resumes', stalled)
end
redis.call('HSET', KEYS[1], 'taken', '1', 'checkpoints_seen', steps, 'resumed_at_ms', ARGV[1],
  'instance', ARGV[4])
local queued = ARGV[3] .. 'queued:' .. redis.call('HGET', KEYS[1], 'task_id')
if redis.call('GET', queued) == redis.call('HGET', KEYS[1], 'job_id') then redis.call('DEL', queued) end
return {redis.call('HGETALL', KEYS[1]), redis.call('LRANGE', KEYS[2], 0, -1)}
)lua");

// Back to the queue in one step with freeing the task's lock and marking the task as waiting,
// so that the instance taking it finds the lock free and no new tick of the task slips in
// between. KEYS: job, stream, lock. ARGV: group, lock token, remember ms, prefix.
const RedisScript kHandBack(R"lua(
local old = redis.call('HGET', KEYS[1], 'entry')
if not old or redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
local task = redis.call('HGET', KEYS[1], 'task_id')
local id = redis.call('HGET', KEYS[1], 'job_id')
if ARGV[2] ~= '' and redis.call('GET', KEYS[3]) == ARGV[2] then redis.call('DEL', KEYS[3]) end
redis.call('XACK', KEYS[2], ARGV[1], old)
redis.call('XDEL', KEYS[2], old)
local body = '{"job_id":' .. id .. ',"task_id":' .. cjson.encode(task) .. '}'
redis.call('HSET', KEYS[1], 'entry', redis.call('XADD', KEYS[2], '*', 'job', body))
redis.call('SET', ARGV[4] .. 'queued:' .. task, id, 'PX', ARGV[3])
return 1
)lua");

// A checkpoint of the run that owns the record: after Redis lost its data, job numbers start
// again, and a run from before must not write into a newer job's record (it gets -1).
// KEYS: job, checkpoints. ARGV: entry, the run's delivery id ('' when unknown).
const RedisScript kAppend(R"lua(
if ARGV[2] ~= '' and redis.call('HGET', KEYS[1], 'delivery_id') ~= ARGV[2] then return -1 end
return redis.call('RPUSH', KEYS[2], ARGV[1])
)lua");

// The ending and the queue's acknowledgement together: an ended job is never run again.
// KEYS: job, checkpoints, stream. ARGV: state, now ms, group, keep ms, the run's delivery id.
const RedisScript kEnd(R"lua(
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[5] ~= '' and redis.call('HGET', KEYS[1], 'delivery_id') ~= ARGV[5] then return -1 end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'ended_at_ms', ARGV[2], 'finished_at_ms', ARGV[2])
local entry = redis.call('HGET', KEYS[1], 'entry')
if entry then
  redis.call('XACK', KEYS[3], ARGV[3], entry)
  redis.call('XDEL', KEYS[3], entry)
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1
)lua");

constexpr auto kRetryPause = std::chrono::milliseconds(500);
// A command waiting longer than this for its answer makes the instance not ready.
constexpr auto kSlowAnswer = std::chrono::milliseconds(1000);

std::int64_t to_int(const std::string& text) {
    std::int64_t value = 0;
    std::from_chars(text.data(), text.data() + text.size(), value);
    return value;
}

std::map<std::string, std::string> to_fields(const RedisReply& flat) {
    std::map<std::string, std::string> fields;
    for (std::size_t i = 0; i + 1 < flat.elements.size(); i += 2) {
        fields[flat.elements[i].text] = flat.elements[i + 1].text;
    }
    return fields;
}

std::string field(const std::map<std::string, std::string>& fields, const std::string& name) {
    const auto found = fields.find(name);
    return found == fields.end() ? std::string() : found->second;
}

journal::SystemClock::time_point from_ms(std::int64_t ms) {
    return journal::SystemClock::time_point(std::chrono::milliseconds(ms));
}

std::int64_t to_ms(journal::SystemClock::time_point at) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(at.time_since_epoch()).count();
}

/// A checkpoint list entry {key, data, at_ms}; nothing when it is not one.
std::optional<journal::HistoryStep> to_step(const std::string& text) {
    auto entry = nlohmann::json::parse(text, nullptr, false);
    if (entry.is_discarded() || !entry.is_object() || !entry.contains("key") ||
        !entry["key"].is_string()) {
        return std::nullopt;
    }
    return journal::HistoryStep{entry["key"].get<std::string>(),
                                entry.value("data", nlohmann::json()),
                                entry.value("at_ms", std::int64_t{0})};
}

std::runtime_error redis_refused(std::string_view what, const boost::system::error_code& error) {
    return std::runtime_error(fmt::format("Redis refused to {}: {}", what, error.message()));
}

}  // namespace

RedisJournal::RedisJournal(RedisClient& redis, std::string location, JobQueueOptions queue,
                           std::chrono::milliseconds remember_deliveries, std::string prefix)
    : redis_(redis),
      location_(std::move(location)),
      queue_(std::move(queue)),
      remember_deliveries_(remember_deliveries),
      prefix_(std::move(prefix)),
      log_("journal") {}

std::string RedisJournal::job_key(JobId job) const { return prefix_ + "job:" + std::to_string(job); }

asio::awaitable<RedisResult<EnqueueResult>> RedisJournal::enqueue(
    std::string task_id, std::string delivery_id, journal::SystemClock::time_point received_at,
    bool check_busy) {
    const auto delivery_key = prefix_ + "delivery:" + delivery_id;
    const auto lock_key = prefix_ + "lock:" + task_id;
    const auto queued_key = prefix_ + "queued:" + task_id;
    const auto counter_key = prefix_ + "job-ids";
    const auto received = std::to_string(to_ms(received_at));
    const auto remember = ms_text(remember_deliveries_);
    const auto busy = std::string(check_busy ? "1" : "0");
    const auto runs_kept = std::to_string(journal::kHistoryRuns);
    const auto keep = ms_text(kRedisHistoryKeptFor);
    const auto first_number = std::to_string(unix_ms() * 1000);
    const auto reply =
        co_await redis_.eval(kEnqueue, 5, delivery_key, lock_key, queued_key, counter_key,
                             queue_.stream, task_id, delivery_id, received, remember, prefix_,
                             busy, runs_kept, keep, first_number);
    if (!reply) co_return failed(reply.error());
    if (reply->is_error()) refusing_ = reply->text;
    if (!reply->is_array() || reply->elements.empty()) {
        co_return failed_reply(log_, "job enqueue", *reply);
    }
    refusing_.reset();
    const auto& outcome = reply->elements[0].text;
    EnqueueResult result;
    if (outcome == "busy") {
        result.outcome = Enqueued::kBusy;
    } else if (outcome == "redelivered") {
        result.outcome = Enqueued::kRedelivered;
    } else if (outcome == "accepted" && reply->elements.size() == 2 &&
               reply->elements[1].is_string()) {
        result.job = to_int(reply->elements[1].text);
    } else {
        co_return failed_reply(log_, "job enqueue", *reply);
    }
    co_return result;
}

asio::awaitable<RedisResult<std::optional<journal::JobRecord>>> RedisJournal::take(
    JobId job, std::string instance) {
    const auto record_key = job_key(job);
    const auto checkpoints_key = record_key + ":checkpoints";
    const auto now = std::to_string(unix_ms());
    const auto catch_up = ms_text(journal::kCatchUpTime);
    const auto reply =
        co_await redis_.eval(kTake, 2, record_key, checkpoints_key, now, catch_up, prefix_, instance);
    if (!reply) co_return failed(reply.error());
    if (reply->is_nil()) co_return std::optional<journal::JobRecord>();
    if (!reply->is_array() || reply->elements.size() != 2) {
        co_return failed_reply(log_, "job take", *reply);
    }
    const auto fields = to_fields(reply->elements[0]);
    journal::JobRecord record;
    record.id = job;
    record.task_id = field(fields, "task_id");
    record.delivery_id = field(fields, "delivery_id");
    record.received_at = from_ms(to_int(field(fields, "received_at_ms")));
    record.state = field(fields, "state");
    record.resumes = static_cast<int>(to_int(field(fields, "resumes")));
    record.stalled_resumes = static_cast<int>(to_int(field(fields, "stalled_resumes")));
    // From now on this instance writes for this run only while the record is still its own.
    runs_here_[job] = record.delivery_id;
    lost_.erase(job);
    for (const auto& element : reply->elements[1].elements) {
        auto step = to_step(element.text);
        if (!step) {
            record.damaged = "a checkpoint of this run is not valid JSON";
            break;
        }
        record.checkpoints.emplace_back(std::move(step->key), std::move(step->value));
    }
    co_return std::optional<journal::JobRecord>(std::move(record));
}

asio::awaitable<RedisResult<void>> RedisJournal::hand_back(JobId job, std::string task_id,
                                                        std::string lock_token) {
    const auto record_key = job_key(job);
    const auto lock_key = prefix_ + "lock:" + task_id;
    const auto remember = ms_text(remember_deliveries_);
    const auto reply = co_await redis_.eval(kHandBack, 3, record_key, queue_.stream, lock_key,
                                            queue_.group, lock_token, remember, prefix_);
    if (!reply) co_return failed(reply.error());
    if (!reply->is_integer()) co_return failed_reply(log_, "job hand back", *reply);
    co_return boost::system::result<void>();
}

asio::awaitable<RedisResult<bool>> RedisJournal::taken_before(JobId job) {
    const auto record_key = job_key(job);
    const auto reply = co_await redis_.command("HGET", record_key, "taken");
    if (!reply) co_return failed(reply.error());
    co_return reply->is_string() && reply->text == "1";
}

asio::awaitable<RedisResult<bool>> RedisJournal::persistence_off() {
    const auto reply = co_await redis_.command("CONFIG", "GET", "appendonly");
    if (!reply) co_return failed(reply.error());
    co_return reply->is_array() && reply->elements.size() == 2 &&
        reply->elements[1].text == "no";
}

asio::awaitable<RedisResult<std::string>> RedisJournal::state_of(JobId job) {
    const auto record_key = job_key(job);
    const auto reply = co_await redis_.command("HGET", record_key, "state");
    if (!reply) co_return failed(reply.error());
    if (reply->is_nil()) co_return std::string("unknown");
    if (!reply->is_string()) co_return failed_reply(log_, "job state", *reply);
    co_return reply->text;
}

template <typename Attempt>
asio::awaitable<void> RedisJournal::until_answered(JobId job, std::string_view what,
                                                   Attempt& attempt) {
    bool paused = false;
    asio::steady_timer pause(co_await asio::this_coro::executor);
    for (;;) {
        const auto outcome = co_await attempt();
        if (outcome && !outcome->is_error()) {
            refusing_.reset();
            if (paused) log_.info("Run goes on: Redis answers again", {{"run_id", job}});
            co_return;
        }
        if (outcome) refusing_ = outcome->text;
        if (!paused) {
            if (outcome) {
                // Redis answers but will not take it (out of memory, most likely): the run
                // waits as it would for an outage, so an operator can free memory and lose
                // nothing; the client logs nothing of it, so this does.
                log_.error("Run paused: Redis refuses to record it",
                           {{"run_id", job}, {"step", what}, {"error", outcome->text}});
            } else {
                // The client logs an outage itself, once; this says which runs wait for it.
                log_.debug("Run paused until Redis answers", {{"run_id", job}, {"step", what}});
            }
            paused = true;
        }
        pause.expires_after(kRetryPause);
        co_await pause.async_wait(asio::use_awaitable);
    }
}

asio::awaitable<std::optional<JobId>> RedisJournal::record_job(
    std::string task_id, std::string delivery_id, journal::SystemClock::time_point received_at) {
    const auto result = co_await enqueue(std::move(task_id), std::move(delivery_id), received_at,
                                         false);
    if (!result) throw redis_refused("record the job", result.error());
    if (result->outcome != Enqueued::kAccepted) co_return std::nullopt;
    co_return result->job;
}

std::string RedisJournal::delivery_of(JobId job) const {
    const auto found = runs_here_.find(job);
    return found == runs_here_.end() ? std::string() : found->second;
}

void RedisJournal::note_lost(JobId job) {
    if (!lost_.insert(job).second) return;
    log_.error("Redis no longer holds this run's record (did it restart without its data?); "
               "the run goes on unrecorded",
               {{"run_id", job}, {"delivery_id", delivery_of(job)}});
}

asio::awaitable<RedisResult<RedisReply>> RedisJournal::append_checkpoint(
    JobId job, const std::string& key, const nlohmann::json& value) {
    const auto record_key = job_key(job);
    const auto checkpoints_key = record_key + ":checkpoints";
    const nlohmann::json entry = {{"key", key}, {"data", value}, {"at_ms", unix_ms()}};
    const auto text = entry.dump();
    const auto delivery = delivery_of(job);
    co_return co_await redis_.eval(kAppend, 2, record_key, checkpoints_key, text, delivery);
}

asio::awaitable<void> RedisJournal::record_checkpoint(JobId job, std::string key,
                                                      nlohmann::json value) {
    if (lost_.contains(job)) co_return;
    std::int64_t answer = 0;
    auto append = [&]() -> asio::awaitable<RedisResult<RedisReply>> {
        auto reply = co_await append_checkpoint(job, key, value);
        if (reply && reply->is_integer()) answer = reply->integer;
        co_return reply;
    };
    co_await until_answered(job, "record a checkpoint", append);
    if (answer < 0) note_lost(job);
}

asio::awaitable<void> RedisJournal::record_ending(JobId job, std::string state) {
    const auto record_key = job_key(job);
    const auto checkpoints_key = record_key + ":checkpoints";
    const auto keep = ms_text(kRedisHistoryKeptFor);
    const auto delivery = delivery_of(job);
    if (!lost_.contains(job)) {
        auto end = [&]() -> asio::awaitable<RedisResult<RedisReply>> {
            const auto now = std::to_string(unix_ms());
            co_return co_await redis_.eval(kEnd, 3, record_key, checkpoints_key, queue_.stream,
                                           state, now, queue_.group, keep, delivery);
        };
        co_await until_answered(job, "record the ending", end);
    }
    runs_here_.erase(job);
    lost_.erase(job);
}

asio::awaitable<nlohmann::json> RedisJournal::task_history(std::string task_id) {
    const auto runs_key = prefix_ + "task:" + task_id + ":runs";
    const auto newest = "-" + std::to_string(journal::kHistoryRuns);
    const auto ids = co_await redis_.command("LRANGE", runs_key, newest, "-1");
    if (!ids) throw redis_refused("read the history", ids.error());
    std::vector<journal::HistoryRun> runs;
    // Newest first; a run whose record expired is left out.
    for (auto id = ids->elements.rbegin(); id != ids->elements.rend(); ++id) {
        const auto record_key = prefix_ + "job:" + id->text;
        const auto record = co_await redis_.command("HGETALL", record_key);
        if (!record) throw redis_refused("read the history", record.error());
        if (!record->is_array() || record->elements.empty()) continue;
        const auto fields = to_fields(*record);
        journal::HistoryRun run;
        run.id = to_int(id->text);
        run.delivery_id = field(fields, "delivery_id");
        run.received_at_ms = to_int(field(fields, "received_at_ms"));
        run.state = field(fields, "state");
        if (const auto ended = field(fields, "ended_at_ms"); !ended.empty()) {
            run.ended_at_ms = to_int(ended);
        }
        run.resumes = static_cast<int>(to_int(field(fields, "resumes")));
        run.instance = field(fields, "instance");
        const auto steps = co_await redis_.command("LRANGE", record_key + ":checkpoints", "0", "-1");
        if (!steps) throw redis_refused("read the history", steps.error());
        for (const auto& element : steps->elements) {
            auto step = to_step(element.text);
            if (!step) step = journal::HistoryStep{"(unreadable)", "(not valid JSON)", 0};
            run.steps.push_back(std::move(*step));
        }
        runs.push_back(std::move(run));
    }
    co_return journal::history_body(task_id, runs);
}

std::optional<std::string> RedisJournal::problem() const {
    if (!redis_.connected()) return fmt::format("Redis at {} cannot be reached", location_);
    if (const auto waited = redis_.oldest_wait(); waited > kSlowAnswer) {
        return fmt::format("Redis at {} has not answered for {} ms", location_,
                           std::chrono::duration_cast<std::chrono::milliseconds>(waited).count());
    }
    if (refusing_) return fmt::format("Redis at {} refuses writes: {}", location_, *refusing_);
    return std::nullopt;
}

}  // namespace iea::state
