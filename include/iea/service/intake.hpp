#pragma once

/// The webhook endpoint: verify, parse, filter, deduplicate, lock, hand off, answer.
/// Every answer goes out in milliseconds; the work itself continues elsewhere.

#include <chrono>
#include <string>

#include <boost/asio/awaitable.hpp>

#include "iea/http/server.hpp"
#include "iea/locking/task_locks.hpp"
#include "iea/logging/log.hpp"

namespace iea::service {

/// One accepted request for an edit.
struct TaskJob {
    std::string task_id;
    std::string delivery_id;  ///< webhook_id:history_item_id
    std::chrono::system_clock::time_point received_at;
};

/// Where accepted tasks go. `start` returns at once; the task runs on its own and the
/// guard is released when it ends, whatever the outcome.
class TaskRunner {
public:
    virtual ~TaskRunner() = default;
    virtual void start(TaskJob job, locking::TaskLocks::Guard lock) = 0;
};

struct IntakeOptions {
    std::string webhook_secret;
    std::string ai_edit_field_id;
};

class WebhookIntake final {
public:
    WebhookIntake(IntakeOptions options,
                  locking::TaskLocks& locks,
                  locking::DeliveryLog& deliveries,
                  TaskRunner& runner);

    [[nodiscard]] boost::asio::awaitable<http::Response> handle(const http::Request& request);

private:
    void note_rejected_signature(std::string_view why);

    IntakeOptions options_;
    locking::TaskLocks& locks_;
    locking::DeliveryLog& deliveries_;
    TaskRunner& runner_;
    logging::Logger log_{"webhook"};
    // Forged webhooks can flood: they are counted and logged at most once a second.
    std::size_t rejected_since_log_ = 0;
    std::chrono::steady_clock::time_point last_rejection_log_{};
};

}  // namespace iea::service
