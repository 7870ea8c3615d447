#include "iea/state/redis_locks.hpp"

#include "redis_support.hpp"

namespace iea::state {
namespace {

// Both scripts act only when the caller's token still owns the lock, in one atomic step.
const RedisScript kRenew(
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0");
// Free, or held under this owner's name by a process of it that died.
const RedisScript kTakeBack(
    "local holder = redis.call('GET', KEYS[1]) "
    "if holder and string.sub(holder, 1, #ARGV[1]) ~= ARGV[1] then return 0 end "
    "redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1");
const RedisScript kRelease(
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "return redis.call('DEL', KEYS[1]) end return 0");

}  // namespace

RedisTaskLocks::RedisTaskLocks(RedisClient& redis,
                               std::chrono::milliseconds ttl,
                               std::string prefix,
                               std::string owner)
    : redis_(redis), ttl_(ttl), prefix_(std::move(prefix)), owner_(std::move(owner)),
      log_("state") {}

std::string RedisTaskLocks::new_token() const {
    return owner_.empty() ? random_token() : owner_ + "/" + random_token();
}

asio::awaitable<RedisResult<std::optional<std::string>>> RedisTaskLocks::take_back(
    std::string task_id) {
    if (owner_.empty()) co_return co_await acquire(std::move(task_id));
    auto token = new_token();
    const auto lock_key = key(task_id);
    const auto mine = owner_ + "/";
    const auto ttl = ms_text(ttl_);
    const auto reply = co_await redis_.eval(kTakeBack, 1, lock_key, mine, token, ttl);
    if (!reply) co_return failed(reply.error());
    if (!reply->is_integer()) co_return failed_reply(log_, "lock take back", *reply);
    if (reply->integer == 1) co_return std::optional<std::string>(std::move(token));
    co_return std::optional<std::string>();
}

std::string RedisTaskLocks::key(std::string_view task_id) const {
    return prefix_ + "lock:" + std::string(task_id);
}

asio::awaitable<RedisResult<std::optional<std::string>>> RedisTaskLocks::acquire(
    std::string task_id) {
    auto token = new_token();
    const auto lock_key = key(task_id);
    const auto ttl = ms_text(ttl_);
    const auto reply = co_await redis_.command("SET", lock_key, token, "NX", "PX", ttl);
    if (!reply) co_return failed(reply.error());

    if (reply->is_ok()) co_return std::optional<std::string>(std::move(token));
    if (reply->is_nil()) co_return std::optional<std::string>();
    co_return failed_reply(log_, "lock acquire", *reply);
}

asio::awaitable<RedisResult<bool>> RedisTaskLocks::renew(std::string task_id, std::string token) {
    const auto lock_key = key(task_id);
    const auto ttl = ms_text(ttl_);
    const auto reply = co_await redis_.eval(kRenew, 1, lock_key, token, ttl);
    if (!reply) co_return failed(reply.error());
    if (!reply->is_integer()) co_return failed_reply(log_, "lock renew", *reply);
    co_return reply->integer == 1;
}

asio::awaitable<RedisResult<bool>> RedisTaskLocks::release(std::string task_id, std::string token) {
    const auto lock_key = key(task_id);
    const auto reply = co_await redis_.eval(kRelease, 1, lock_key, token);
    if (!reply) co_return failed(reply.error());
    if (!reply->is_integer()) co_return failed_reply(log_, "lock release", *reply);
    co_return reply->integer == 1;
}

}  // namespace iea::state
