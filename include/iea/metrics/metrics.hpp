#pragma once

/// The service's Prometheus metrics, recorded in domain words.
///
/// One process-wide registry (like logging): call sites record with one line and never see a
/// Prometheus type. Every function here is thread-safe, so the image worker threads record
/// as freely as the I/O thread. `exposition()` renders the text format for GET /metrics.
/// Names, units and meanings are listed in docs/metrics.md.

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace iea::metrics {

using Duration = std::chrono::steady_clock::duration;

/// How the webhook endpoint answered one request.
enum class WebhookOutcome {
    kAccepted,           ///< A tick took the task's lock; the edit is queued.
    kIgnored,            ///< Signed and well formed, but not a tick of the AI-edit box.
    kAlreadyProcessing,  ///< A redelivery, or the task is already being edited.
    kRejectedSignature,  ///< Missing, malformed or wrong X-Signature.
    kBadRequest,         ///< Signed, but not a webhook body we understand.
    kUnavailable,        ///< The service could not take the work now (503).
};

/// How a task's run ended.
enum class TaskState { kComplete, kNeedsReview, kBlocked, kStopped };

/// The timed steps of a task's run.
enum class Step { kCheckTask, kPrepareImage, kEnhance, kGenerate, kValidate, kWrite };

/// A provider call that got no HTTP answer.
enum class NoAnswer { kNetwork, kTimeout };

/// Gauges owned by other objects, read when metrics are scraped.
enum class Reading { kLocksHeld, kTasksInFlight };

[[nodiscard]] std::string_view to_string(WebhookOutcome outcome);
[[nodiscard]] std::string_view to_string(TaskState state);
[[nodiscard]] std::string_view to_string(Step step);

/// Counts one answer of the webhook endpoint.
void webhook_answered(WebhookOutcome outcome);

/// Records how long the webhook endpoint took, from the whole request read to the answer sent.
void webhook_answer_took(Duration elapsed);

/// Counts a task that reached its terminal state.
void task_finished(TaskState state);

/// Records how long one step of a task took (waits for shared limits included).
void step_took(Step step, Duration elapsed);

/// Records one provider HTTP attempt that got an answer with `http_status`. `provider` and
/// `operation` are the clients' fixed names ("clickup", "get_task"), never data.
void provider_call(std::string_view provider,
                   std::string_view operation,
                   int http_status,
                   Duration elapsed);

/// Records one provider HTTP attempt that got no answer.
void provider_call(std::string_view provider,
                   std::string_view operation,
                   NoAnswer why,
                   Duration elapsed);

/// Counts one repeated attempt of a provider call.
void provider_retry(std::string_view provider, std::string_view operation);

/// Times a step from construction to destruction: `const StepTimer timing(Step::kEnhance);`
/// at the top of the step's function. A step that throws is timed too.
class StepTimer final {
  public:
    explicit StepTimer(Step step);
    ~StepTimer();
    StepTimer(const StepTimer&) = delete;
    StepTimer& operator=(const StepTimer&) = delete;

  private:
    Step step_;
    std::chrono::steady_clock::time_point started_;
};

/// Marks a decode worker busy for its lifetime: `const DecodeInProgress decoding;`.
class DecodeInProgress final {
  public:
    DecodeInProgress();
    ~DecodeInProgress();
    DecodeInProgress(const DecodeInProgress&) = delete;
    DecodeInProgress& operator=(const DecodeInProgress&) = delete;
};

/// Keeps a scrape-time reader registered; unregisters it when destroyed, so a reader never
/// outlives the object it reads.
class ReaderRegistration final {
  public:
    ReaderRegistration(Reading reading, std::uint64_t generation);
    ~ReaderRegistration();
    ReaderRegistration(ReaderRegistration&& other) noexcept;
    ReaderRegistration(const ReaderRegistration&) = delete;
    ReaderRegistration& operator=(const ReaderRegistration&) = delete;
    ReaderRegistration& operator=(ReaderRegistration&&) = delete;

  private:
    Reading reading_;
    std::uint64_t generation_;  ///< 0 once moved from
};

/// Sets the function that gives `reading`'s value; it runs on the thread that calls
/// `exposition()` (the I/O thread, for GET /metrics). A later registration replaces it.
[[nodiscard]] ReaderRegistration read_at_scrape(Reading reading, std::function<double()> reader);

/// Every metric in the Prometheus text exposition format (version 0.0.4).
[[nodiscard]] std::string exposition();

/// The Content-Type of `exposition()`.
inline constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace iea::metrics
