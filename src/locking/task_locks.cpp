#include "iea/locking/task_locks.hpp"

#include <algorithm>

namespace iea::locking {

struct TaskLocks::State {
    struct Entry {
        std::uint64_t token;
        Clock::time_point taken_at;
        Clock::time_point renewed_at;
    };

    std::chrono::milliseconds ttl;
    int cleanup_interval;
    Now now;
    std::mutex mutex;
    std::unordered_map<std::string, Entry> locks;
    std::uint64_t next_token = 1;
    int acquisitions_since_cleanup = 0;

    bool is_stale(const Entry& entry, Clock::time_point at) const {
        return at - entry.renewed_at >= ttl;
    }

    std::size_t remove_stale_locked(Clock::time_point at) {
        return std::erase_if(locks, [&](const auto& item) { return is_stale(item.second, at); });
    }
};

TaskLocks::Guard::Guard(std::shared_ptr<State> state, std::string task_id, std::uint64_t token)
    : state_(std::move(state)), task_id_(std::move(task_id)), token_(token) {}

TaskLocks::Guard::Guard(Guard&& other) noexcept
    : state_(std::move(other.state_)), task_id_(std::move(other.task_id_)), token_(other.token_) {
    other.token_ = 0;
}

TaskLocks::Guard& TaskLocks::Guard::operator=(Guard&& other) noexcept {
    if (this != &other) {
        release();
        state_ = std::move(other.state_);
        task_id_ = std::move(other.task_id_);
        token_ = other.token_;
        other.token_ = 0;
    }
    return *this;
}

TaskLocks::Guard::~Guard() { release(); }

bool TaskLocks::Guard::renew() {
    if (!state_ || token_ == 0) return false;
    std::scoped_lock lock(state_->mutex);
    const auto it = state_->locks.find(task_id_);
    if (it == state_->locks.end() || it->second.token != token_) return false;
    it->second.renewed_at = state_->now();
    return true;
}

void TaskLocks::Guard::release() {
    if (!state_ || token_ == 0) return;
    {
        std::scoped_lock lock(state_->mutex);
        // Only the owner may release: a run that outlived its TTL must not free the lock
        // a newer run took over.
        const auto it = state_->locks.find(task_id_);
        if (it != state_->locks.end() && it->second.token == token_) state_->locks.erase(it);
    }
    token_ = 0;
    state_.reset();
}

TaskLocks::TaskLocks(std::chrono::milliseconds ttl, int cleanup_interval, Now now)
    : state_(std::make_shared<State>()) {
    state_->ttl = ttl;
    state_->cleanup_interval = std::max(1, cleanup_interval);
    state_->now = std::move(now);
}

std::optional<TaskLocks::Guard> TaskLocks::try_acquire(std::string_view task_id) {
    std::scoped_lock lock(state_->mutex);
    const auto at = state_->now();
    if (++state_->acquisitions_since_cleanup >= state_->cleanup_interval) {
        state_->acquisitions_since_cleanup = 0;
        state_->remove_stale_locked(at);
    }

    const std::string key(task_id);
    const auto it = state_->locks.find(key);
    if (it != state_->locks.end() && !state_->is_stale(it->second, at)) return std::nullopt;

    const auto token = state_->next_token++;
    state_->locks.insert_or_assign(key, State::Entry{token, at, at});
    return Guard(state_, key, token);
}

bool TaskLocks::is_held(std::string_view task_id) const {
    std::scoped_lock lock(state_->mutex);
    const auto it = state_->locks.find(std::string(task_id));
    return it != state_->locks.end() && !state_->is_stale(it->second, state_->now());
}

LockStats TaskLocks::stats() const {
    std::scoped_lock lock(state_->mutex);
    const auto at = state_->now();
    LockStats out;
    out.total_locks = state_->locks.size();
    if (out.total_locks == 0) return out;

    double sum = 0;
    out.newest_lock_seconds = std::numeric_limits<double>::max();
    for (const auto& [task_id, entry] : state_->locks) {
        const double age = std::chrono::duration<double>(at - entry.taken_at).count();
        sum += age;
        out.oldest_lock_seconds = std::max(out.oldest_lock_seconds, age);
        out.newest_lock_seconds = std::min(out.newest_lock_seconds, age);
        if (state_->is_stale(entry, at)) ++out.stale_locks;
    }
    out.average_lock_age_seconds = sum / static_cast<double>(out.total_locks);
    return out;
}

std::size_t TaskLocks::remove_stale() {
    std::scoped_lock lock(state_->mutex);
    return state_->remove_stale_locked(state_->now());
}

DeliveryLog::DeliveryLog(std::chrono::milliseconds keep_for, Now now)
    : keep_for_(keep_for), now_(std::move(now)) {}

bool DeliveryLog::record(std::string_view delivery_id) {
    std::scoped_lock lock(mutex_);
    const auto at = now_();
    expire(at);
    const auto [it, inserted] = seen_.try_emplace(std::string(delivery_id), at);
    if (!inserted) return false;
    by_age_.emplace_back(at, it->first);
    return true;
}

std::size_t DeliveryLog::size() const {
    std::scoped_lock lock(mutex_);
    return seen_.size();
}

void DeliveryLog::remember_body(std::string_view signature) {
    std::scoped_lock lock(mutex_);
    const auto at = now_();
    expire(at);
    // Bounded: a flood of distinct signed bodies must not grow memory without limit.
    constexpr std::size_t kMaxBodies = 100000;
    if (bodies_.size() >= kMaxBodies) {
        bodies_.erase(bodies_by_age_.front().second);
        bodies_by_age_.pop_front();
    }
    if (bodies_.try_emplace(std::string(signature), at).second) {
        bodies_by_age_.emplace_back(at, std::string(signature));
    }
}

bool DeliveryLog::knows_body(std::string_view signature) const {
    std::scoped_lock lock(mutex_);
    const auto found = bodies_.find(std::string(signature));
    return found != bodies_.end() && now_() - found->second < keep_for_;
}

void DeliveryLog::forget(std::string_view delivery_id, std::string_view signature) {
    std::scoped_lock lock(mutex_);
    seen_.erase(std::string(delivery_id));
    bodies_.erase(std::string(signature));
}

void DeliveryLog::expire(Clock::time_point now) {
    // An entry forgotten and recorded again has a newer time than its old place in the age
    // queue: only the entry of that time is expired.
    const auto drop_old = [&](auto& entries, auto& by_age) {
        while (!by_age.empty() && now - by_age.front().first >= keep_for_) {
            const auto found = entries.find(by_age.front().second);
            if (found != entries.end() && found->second == by_age.front().first) {
                entries.erase(found);
            }
            by_age.pop_front();
        }
    };
    drop_old(seen_, by_age_);
    drop_old(bodies_, bodies_by_age_);
}

}  // namespace iea::locking
