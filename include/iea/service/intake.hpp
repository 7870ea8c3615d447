#pragma once

/// The webhook endpoint: verify, parse, filter, deduplicate, lock, hand off, answer.
/// Every answer goes out in milliseconds; the work itself continues elsewhere.

#include <chrono>
#include <cstdint>
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
    std::int64_t run_id = 0;  ///< The job's number in the journal, once recorded.
};

/// What became of a tick handed to the runner.
struct Admission {
    enum class Kind {
        kAccepted,     ///< Recorded durably; running (or, when waited for, ended: see ending).
        kRedelivered,  ///< The journal already holds this delivery.
        kBusy,         ///< The task has a run going or waiting, on this or another instance.
        kUnavailable,  ///< It could not be recorded; ClickUp should send it again later.
    };
    Kind kind = Kind::kAccepted;
    std::string ending;  ///< How the run ended, when the caller waited for it.
};

/// Where accepted tasks go. The job is recorded before `admit` returns; the task runs on its
/// own and the guard is released when it ends, whatever the outcome.
class TaskRunner {
public:
    virtual ~TaskRunner() = default;
    [[nodiscard]] virtual boost::asio::awaitable<Admission> admit(
        TaskJob job, locking::TaskLocks::Guard lock, bool wait_for_end) = 0;
};

struct IntakeOptions {
    std::string webhook_secret;
    std::string ai_edit_field_id;
    bool answer_when_done = false;  ///< The original's way: answer after the whole edit.
};

class WebhookIntake final {
public:
    WebhookIntake(IntakeOptions options,
                  locking::TaskLocks& locks,
                  locking::DeliveryLog& deliveries,
                  TaskRunner& runner);

    [[nodiscard]] boost::asio::awaitable<http::Response> handle(const http::Request& request);

    /// Shutdown: from now on webhooks are answered 503 with Retry-After, so ClickUp sends them
    /// again to the next instance or after the restart.
    void stop_taking_work() { stopping_ = true; }

private:
    void note_rejected_signature(std::string_view why);
    /// The answer to a tick of a task that has a run going or waiting: counted, logged, dropped.
    [[nodiscard]] http::Response already_running(const std::string& task_id);

    IntakeOptions options_;
    locking::TaskLocks& locks_;
    locking::DeliveryLog& deliveries_;
    TaskRunner& runner_;
    bool stopping_ = false;
    logging::Logger log_{"webhook"};
    // Forged webhooks can flood: they are counted and logged at most once a second.
    std::size_t rejected_since_log_ = 0;
    std::chrono::steady_clock::time_point last_rejection_log_{};
};

}  // namespace iea::service
