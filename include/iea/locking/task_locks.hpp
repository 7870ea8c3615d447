#pragma once

/// Per-task locks with owner tokens and a time to live, and the log of deliveries seen.
///
/// A lock older than its TTL is stale: a new run may take it over, and the old run's guard
/// then releases nothing, because release checks the owner token. Thread-safe.

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace iea::locking {

using Clock = std::chrono::steady_clock;
using Now = std::function<Clock::time_point()>;

struct LockStats {
    std::size_t total_locks = 0;
    double oldest_lock_seconds = 0;
    double newest_lock_seconds = 0;
    double average_lock_age_seconds = 0;
    std::size_t stale_locks = 0;
};

class TaskLocks final {
    struct State;

public:
    /// Owns one task's lock; releases it when destroyed unless released before.
    class Guard final {
    public:
        Guard(Guard&& other) noexcept;
        Guard& operator=(Guard&& other) noexcept;
        Guard(const Guard&) = delete;
        Guard& operator=(const Guard&) = delete;
        ~Guard();

        [[nodiscard]] const std::string& task_id() const { return task_id_; }
        [[nodiscard]] std::uint64_t token() const { return token_; }

        /// Restarts the TTL; false when the lock was lost (taken over after going stale).
        [[nodiscard]] bool renew();
        /// Releases now; later calls and the destructor do nothing.
        void release();

    private:
        friend class TaskLocks;
        Guard(std::shared_ptr<State> state, std::string task_id, std::uint64_t token);
        std::shared_ptr<State> state_;
        std::string task_id_;
        std::uint64_t token_ = 0;
    };

    TaskLocks(std::chrono::milliseconds ttl, int cleanup_interval, Now now = Clock::now);

    /// Takes the lock of `task_id`, or nothing when a live lock is held.
    [[nodiscard]] std::optional<Guard> try_acquire(std::string_view task_id);

    [[nodiscard]] bool is_held(std::string_view task_id) const;
    [[nodiscard]] LockStats stats() const;

    /// Drops stale locks; returns how many. Also runs every `cleanup_interval` acquisitions.
    std::size_t remove_stale();

private:
    std::shared_ptr<State> state_;
};

/// Remembers deliveries (webhook_id:history_item_id) for a while, to spot redeliveries.
class DeliveryLog final {
public:
    DeliveryLog(std::chrono::milliseconds keep_for, Now now = Clock::now);

    /// Records `delivery_id`; true the first time it is seen within the keep period.
    [[nodiscard]] bool record(std::string_view delivery_id);
    [[nodiscard]] std::size_t size() const;

    /// Remembers that a verified body with this signature was a delivery, so an identical
    /// redelivery can be answered without parsing it again.
    void remember_body(std::string_view signature);
    /// True when a verified body with this signature was already taken (within the period).
    [[nodiscard]] bool knows_body(std::string_view signature) const;

    /// Forgets a delivery that could not be taken after all, so its redelivery is taken.
    void forget(std::string_view delivery_id, std::string_view signature);

private:
    void expire(Clock::time_point now);

    std::chrono::milliseconds keep_for_;
    Now now_;
    mutable std::mutex mutex_;
    std::unordered_map<std::string, Clock::time_point> seen_;
    std::deque<std::pair<Clock::time_point, std::string>> by_age_;
    std::unordered_map<std::string, Clock::time_point> bodies_;
    std::deque<std::pair<Clock::time_point, std::string>> bodies_by_age_;
};

}  // namespace iea::locking
