#pragma once

/// Task locks kept in Redis, so that several instances share them. (Deliveries seen are kept
/// by RedisJournal::enqueue, in the same atomic step that records the job.)
///
/// Every call is one round trip on the given client and never blocks the loop. When Redis
/// cannot be reached the result holds RedisErrc::kUnavailable and nothing is assumed: the
/// caller answers 503 or pauses. An acquire that failed as unavailable after it was sent may
/// still have taken the lock on the server; nobody knows its token, so it simply expires
/// after its TTL.

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "iea/logging/log.hpp"
#include "iea/state/redis_client.hpp"

namespace iea::state {

/// One lock per task id (key `<prefix>lock:<task_id>`), held by whoever knows its owner token
/// and for at most its TTL unless renewed. Renew and release are atomic compare-and-act Lua
/// scripts, so a run that outlived its TTL cannot extend or free a lock another run took.
class RedisTaskLocks final {
  public:
    /// Uses `redis`, which must outlive this object. Tokens start with `owner` (the instance
    /// id) when one is given, so that a restarted instance can take back its own locks.
    RedisTaskLocks(RedisClient& redis, std::chrono::milliseconds ttl, std::string prefix = "iea:",
                   std::string owner = {});

    /// Takes the lock of `task_id` (SET NX PX): its fresh random owner token, or nothing when
    /// another owner holds it.
    asio::awaitable<RedisResult<std::optional<std::string>>> acquire(std::string task_id);
    /// Like acquire(), but also takes the lock over when it is held under this owner's name:
    /// by this instance's previous process, which died with the lock.
    asio::awaitable<RedisResult<std::optional<std::string>>> take_back(std::string task_id);
    /// Restarts the TTL if `token` still owns the lock; false when the lock was lost.
    asio::awaitable<RedisResult<bool>> renew(std::string task_id, std::string token);
    /// Frees the lock if `token` still owns it; false when it did not (it had expired, and
    /// another run may hold it now).
    asio::awaitable<RedisResult<bool>> release(std::string task_id, std::string token);

    [[nodiscard]] std::string key(std::string_view task_id) const;
    [[nodiscard]] std::chrono::milliseconds ttl() const { return ttl_; }

  private:
    RedisClient& redis_;
    [[nodiscard]] std::string new_token() const;

    std::chrono::milliseconds ttl_;
    std::string prefix_;
    std::string owner_;
    logging::Logger log_;
};

}  // namespace iea::state
