#include "iea/state/redis_queue.hpp"

#include <algorithm>
#include <optional>
#include <stdexcept>

#include "redis_support.hpp"

namespace iea::state {
namespace {

// Acknowledged entries go, so the stream's length is the number of unfinished jobs.
const RedisScript kAcknowledge(
    "local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) "
    "redis.call('XDEL', KEYS[1], ARGV[2]) return acked");

// Touching must not take an entry back from a consumer that claimed it meanwhile, so the
// owner is checked and the idle time reset in one atomic step.
const RedisScript kTouch(
    "local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1) "
    "if #pending == 0 or pending[1][2] ~= ARGV[2] then return 0 end "
    "redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID') return 1");

constexpr std::string_view kJobField = "job";

// One entry: [id, [field, value, ...]]. A nil field list is an entry deleted while pending.
std::optional<QueuedJob> to_job(const RedisReply& entry) {
    if (!entry.is_array() || entry.elements.size() != 2 || !entry.elements[0].is_string()) {
        return std::nullopt;
    }
    QueuedJob job;
    job.id = entry.elements[0].text;
    const auto& fields = entry.elements[1].elements;
    for (std::size_t i = 0; i + 1 < fields.size(); i += 2) {
        if (fields[i].text == kJobField) job.body = fields[i + 1].text;
    }
    return job;
}

// Entries of an XREADGROUP or XAUTOCLAIM answer. False when the shape is not an entry list.
bool append_jobs(const RedisReply& entries, std::vector<QueuedJob>& jobs) {
    if (!entries.is_array()) return false;
    for (const auto& entry : entries.elements) {
        if (entry.is_array() && entry.elements.size() == 2 && entry.elements[1].is_nil()) continue;
        auto job = to_job(entry);
        if (!job) return false;
        jobs.push_back(std::move(*job));
    }
    return true;
}

}  // namespace

RedisJobQueue::RedisJobQueue(RedisClient& commands, RedisClient& reads, JobQueueOptions options)
    : commands_(commands),
      reads_(reads),
      options_(std::move(options)),
      log_(logging::Logger("state").with({{"consumer", options_.consumer}})) {
    if (options_.consumer.empty()) {
        throw std::invalid_argument("state: the job queue needs a consumer name (the instance id)");
    }
    options_.batch = std::max<std::size_t>(1, options_.batch);
}

asio::awaitable<RedisResult<void>> RedisJobQueue::ensure_group() {
    // From id 0, so jobs enqueued before the group existed are read too.
    const auto reply = co_await commands_.command(
        "XGROUP", "CREATE", options_.stream, options_.group, "0", "MKSTREAM");
    if (!reply) co_return failed(reply.error());
    if (reply->is_ok() || reply->is_error_code("BUSYGROUP"))
        co_return boost::system::result<void>();
    co_return failed_reply(log_, "queue group create", *reply);
}

asio::awaitable<RedisResult<std::string>> RedisJobQueue::enqueue(std::string job_json) {
    const auto reply =
        co_await commands_.command("XADD", options_.stream, "*", kJobField, job_json);
    if (!reply) co_return failed(reply.error());
    if (!reply->is_string()) co_return failed_reply(log_, "queue enqueue", *reply);
    co_return reply->text;
}

asio::awaitable<RedisResult<std::vector<QueuedJob>>> RedisJobQueue::read_new(std::size_t most) {
    const std::vector<std::string> read = {"XREADGROUP",
                                           "GROUP",
                                           options_.group,
                                           options_.consumer,
                                           "COUNT",
                                           std::to_string(most == 0 ? options_.batch : most),
                                           "BLOCK",
                                           ms_text(options_.block_for),
                                           "STREAMS",
                                           options_.stream,
                                           ">"};
    const auto reply = co_await reads_.blocking_command(read, options_.block_for);
    if (!reply) co_return failed(reply.error());

    std::vector<QueuedJob> jobs;
    if (reply->is_nil()) co_return jobs;  // nothing arrived while blocked
    if (reply->is_error_code("NOGROUP")) {
        // Redis lost the group (restarted without its data): make it again, read next time.
        // Whatever waited in the queue is gone with it, and nobody else can say so.
        log_.error("Redis lost the job queue (restarted without its data?): tasks that waited "
                   "in it will not run; their boxes stay ticked. Creating the queue again");
        const auto created = co_await ensure_group();
        if (!created) co_return failed(created.error());
        co_return jobs;
    }
    // [[stream, [entry, ...]]]
    if (!reply->is_array() || reply->elements.size() != 1 ||
        reply->elements[0].elements.size() != 2 ||
        !append_jobs(reply->elements[0].elements[1], jobs)) {
        co_return failed_reply(log_, "queue read", *reply);
    }
    co_return jobs;
}

asio::awaitable<RedisResult<std::vector<QueuedJob>>> RedisJobQueue::own_pending() {
    // Id 0 instead of ">" reads this consumer's own pending entries, not new ones.
    const auto reply = co_await commands_.command("XREADGROUP", "GROUP", options_.group,
                                                  options_.consumer, "STREAMS", options_.stream,
                                                  "0");
    if (!reply) co_return failed(reply.error());
    std::vector<QueuedJob> jobs;
    if (reply->is_nil() || reply->is_error_code("NOGROUP")) co_return jobs;
    if (!reply->is_array() || reply->elements.size() != 1 ||
        reply->elements[0].elements.size() != 2 ||
        !append_jobs(reply->elements[0].elements[1], jobs)) {
        co_return failed_reply(log_, "queue own pending", *reply);
    }
    co_return jobs;
}

asio::awaitable<RedisResult<std::vector<QueuedJob>>> RedisJobQueue::claim_abandoned(
    std::size_t most) {
    const auto batch = most == 0 ? options_.batch : most;
    std::vector<QueuedJob> jobs;
    std::string cursor = "0-0";
    // XAUTOCLAIM walks the pending list in pages; stop at its end or at a full batch.
    do {
        const auto count = std::to_string(batch - jobs.size());
        const auto idle = ms_text(options_.claim_after);
        const auto reply = co_await commands_.command("XAUTOCLAIM",
                                                      options_.stream,
                                                      options_.group,
                                                      options_.consumer,
                                                      idle,
                                                      cursor,
                                                      "COUNT",
                                                      count);
        if (!reply) co_return failed(reply.error());
        if (reply->is_error_code("NOGROUP")) co_return jobs;
        // [next cursor, [entry, ...]] (Redis 7 adds a third element: ids already deleted)
        if (!reply->is_array() || reply->elements.size() < 2 ||
            !append_jobs(reply->elements[1], jobs)) {
            co_return failed_reply(log_, "queue claim", *reply);
        }
        cursor = reply->elements[0].text;
    } while (cursor != "0-0" && jobs.size() < batch);

    if (!jobs.empty()) {
        log_.info("Claimed abandoned jobs", {{"count", jobs.size()}});
    }
    co_return jobs;
}

asio::awaitable<RedisResult<bool>> RedisJobQueue::touch(std::string entry_id) {
    const auto reply = co_await commands_.eval(
        kTouch, 1, options_.stream, options_.group, options_.consumer, entry_id);
    if (!reply) co_return failed(reply.error());
    if (!reply->is_integer()) co_return failed_reply(log_, "queue touch", *reply);
    co_return reply->integer == 1;
}

asio::awaitable<RedisResult<bool>> RedisJobQueue::acknowledge(std::string entry_id) {
    const auto reply =
        co_await commands_.eval(kAcknowledge, 1, options_.stream, options_.group, entry_id);
    if (!reply) co_return failed(reply.error());
    if (!reply->is_integer()) co_return failed_reply(log_, "queue acknowledge", *reply);
    co_return reply->integer == 1;
}

asio::awaitable<RedisResult<QueueDepth>> RedisJobQueue::depth() {
    const auto length = co_await commands_.command("XLEN", options_.stream);
    if (!length) co_return failed(length.error());
    if (!length->is_integer()) co_return failed_reply(log_, "queue length", *length);

    const auto pending = co_await commands_.command("XPENDING", options_.stream, options_.group);
    if (!pending) co_return failed(pending.error());
    QueueDepth depth;
    // No group yet: nothing was ever read, so nothing runs.
    if (pending->is_array() && !pending->elements.empty() && pending->elements[0].is_integer()) {
        depth.running = pending->elements[0].integer;
    } else if (!pending->is_error_code("NOGROUP")) {
        co_return failed_reply(log_, "queue pending", *pending);
    }
    depth.waiting = std::max<std::int64_t>(0, length->integer - depth.running);
    co_return depth;
}

}  // namespace iea::state
