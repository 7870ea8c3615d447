#include "iea/metrics/metrics.hpp"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <array>
#include <cstdint>
#include <mutex>
#include <utility>

namespace iea::metrics {
namespace {

using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Histogram;

constexpr std::array kWebhookOutcomes = {WebhookOutcome::kAccepted,
                                         WebhookOutcome::kIgnored,
                                         WebhookOutcome::kAlreadyProcessing,
                                         WebhookOutcome::kRejectedSignature,
                                         WebhookOutcome::kBadRequest,
                                         WebhookOutcome::kUnavailable};
constexpr std::array kTaskStates = {
    TaskState::kComplete, TaskState::kNeedsReview, TaskState::kBlocked, TaskState::kStopped};
constexpr std::array kSteps = {Step::kCheckTask,
                               Step::kPrepareImage,
                               Step::kEnhance,
                               Step::kGenerate,
                               Step::kValidate,
                               Step::kWrite};
constexpr std::size_t kReadings = 2;

// Buckets follow what each thing takes in practice: the webhook answers in milliseconds, a
// provider call in up to a couple of minutes, a step up to the 15-minute task deadline.
const Histogram::BucketBoundaries& webhook_buckets() {
    static const Histogram::BucketBoundaries buckets{
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1};
    return buckets;
}
const Histogram::BucketBoundaries& provider_buckets() {
    static const Histogram::BucketBoundaries buckets{
        0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120};
    return buckets;
}
const Histogram::BucketBoundaries& step_buckets() {
    static const Histogram::BucketBoundaries buckets{
        0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 900};
    return buckets;
}

double seconds(Duration elapsed) { return std::chrono::duration<double>(elapsed).count(); }

template <typename T, typename Builder>
Family<T>& family(prometheus::Registry& registry,
                  Builder builder,
                  const char* name,
                  const char* help) {
    return builder.Name(name).Help(help).Register(registry);
}

// Owns the registry and every family. Series with a fixed label set are created at start, so
// they are scraped as 0 before their first event and rate() works from the first scrape.
class Metrics final {
  public:
    Metrics()
        : webhooks_(family<Counter>(registry_,
                                    prometheus::BuildCounter(),
                                    "iea_webhooks_total",
                                    "Webhook requests answered, by outcome.")),
          webhook_latency_(
              family<Histogram>(registry_,
                                prometheus::BuildHistogram(),
                                "iea_webhook_answer_duration_seconds",
                                "Time from a whole webhook request read to its answer sent.")),
          tasks_(family<Counter>(registry_,
                                 prometheus::BuildCounter(),
                                 "iea_tasks_finished_total",
                                 "Tasks that reached a terminal state, by state.")),
          steps_(family<Histogram>(registry_,
                                   prometheus::BuildHistogram(),
                                   "iea_pipeline_step_duration_seconds",
                                   "Time one step of a task took, waits for shared limits "
                                   "included, by step.")),
          provider_calls_(family<Counter>(registry_,
                                          prometheus::BuildCounter(),
                                          "iea_provider_calls_total",
                                          "Provider HTTP attempts, by provider, operation and "
                                          "HTTP status (or network, timeout).")),
          provider_latency_(family<Histogram>(registry_,
                                              prometheus::BuildHistogram(),
                                              "iea_provider_call_duration_seconds",
                                              "Time one provider HTTP attempt took, by provider "
                                              "and operation.")),
          provider_retries_(family<Counter>(registry_,
                                            prometheus::BuildCounter(),
                                            "iea_provider_retries_total",
                                            "Provider calls attempted again after a passing "
                                            "failure, by provider and operation.")),
          locks_held_(family<Gauge>(registry_,
                                    prometheus::BuildGauge(),
                                    "iea_task_locks_held",
                                    "Task locks held now (one per task being edited).")
                          .Add({})),
          tasks_in_flight_(family<Gauge>(registry_,
                                         prometheus::BuildGauge(),
                                         "iea_tasks_in_flight",
                                         "Tasks being edited now.")
                               .Add({})),
          decodes_busy_(family<Gauge>(registry_,
                                      prometheus::BuildGauge(),
                                      "iea_decode_workers_busy",
                                      "Image decode worker processes running now.")
                            .Add({})),
          webhook_answer_(webhook_latency_.Add({}, webhook_buckets())) {
        for (const auto outcome : kWebhookOutcomes) {
            webhook_counters_.at(index(outcome)) =
                &webhooks_.Add({{"outcome", std::string(to_string(outcome))}});
        }
        for (const auto state : kTaskStates) {
            task_counters_.at(index(state)) =
                &tasks_.Add({{"state", std::string(to_string(state))}});
        }
        for (const auto step : kSteps) {
            step_histograms_.at(index(step)) =
                &steps_.Add({{"step", std::string(to_string(step))}}, step_buckets());
        }
    }

    void webhook_answered(WebhookOutcome outcome) {
        webhook_counters_.at(index(outcome))->Increment();
    }
    void webhook_answer_took(Duration elapsed) { webhook_answer_.Observe(seconds(elapsed)); }
    void task_finished(TaskState state) { task_counters_.at(index(state))->Increment(); }
    void step_took(Step step, Duration elapsed) {
        step_histograms_.at(index(step))->Observe(seconds(elapsed));
    }

    void provider_call(std::string_view provider,
                       std::string_view operation,
                       std::string status,
                       Duration elapsed) {
        provider_calls_
            .Add({{"provider", std::string(provider)},
                  {"operation", std::string(operation)},
                  {"status", std::move(status)}})
            .Increment();
        provider_latency_
            .Add({{"provider", std::string(provider)}, {"operation", std::string(operation)}},
                 provider_buckets())
            .Observe(seconds(elapsed));
    }
    void provider_retry(std::string_view provider, std::string_view operation) {
        provider_retries_
            .Add({{"provider", std::string(provider)}, {"operation", std::string(operation)}})
            .Increment();
    }

    void decode_started() { decodes_busy_.Increment(); }
    void decode_ended() { decodes_busy_.Decrement(); }

    std::uint64_t set_reader(Reading reading, std::function<double()> reader) {
        const std::lock_guard guard(readers_mutex_);
        auto& slot = readers_.at(index(reading));
        slot.reader = std::move(reader);
        slot.generation = ++last_generation_;
        return slot.generation;
    }
    // Only the registration that set the reader may clear it: a newer one stays.
    void clear_reader(Reading reading, std::uint64_t generation) {
        const std::lock_guard guard(readers_mutex_);
        auto& slot = readers_.at(index(reading));
        if (slot.generation != generation) return;
        slot.reader = nullptr;
        slot.generation = 0;
    }

    std::string exposition() {
        {
            const std::lock_guard guard(readers_mutex_);
            read(Reading::kLocksHeld, locks_held_);
            read(Reading::kTasksInFlight, tasks_in_flight_);
        }
        return prometheus::TextSerializer().Serialize(registry_.Collect());
    }

  private:
    struct ReaderSlot {
        std::function<double()> reader;
        std::uint64_t generation = 0;
    };

    template <typename Enum>
    static std::size_t index(Enum value) {
        return static_cast<std::size_t>(value);
    }

    // A reading nobody provides (the service is not running) shows 0.
    void read(Reading reading, Gauge& gauge) {
        const auto& reader = readers_.at(index(reading)).reader;
        gauge.Set(reader ? reader() : 0.0);
    }

    prometheus::Registry registry_;
    Family<Counter>& webhooks_;
    Family<Histogram>& webhook_latency_;
    Family<Counter>& tasks_;
    Family<Histogram>& steps_;
    Family<Counter>& provider_calls_;
    Family<Histogram>& provider_latency_;
    Family<Counter>& provider_retries_;
    Gauge& locks_held_;
    Gauge& tasks_in_flight_;
    Gauge& decodes_busy_;
    Histogram& webhook_answer_;
    std::array<Counter*, kWebhookOutcomes.size()> webhook_counters_{};
    std::array<Counter*, kTaskStates.size()> task_counters_{};
    std::array<Histogram*, kSteps.size()> step_histograms_{};

    std::mutex readers_mutex_;
    std::array<ReaderSlot, kReadings> readers_{};
    std::uint64_t last_generation_ = 0;
};

// Never destroyed: image worker threads may still record while the process exits.
Metrics& instance() {
    static auto* const metrics = new Metrics();
    return *metrics;
}

}  // namespace

std::string_view to_string(WebhookOutcome outcome) {
    switch (outcome) {
        case WebhookOutcome::kAccepted:
            return "accepted";
        case WebhookOutcome::kIgnored:
            return "ignored";
        case WebhookOutcome::kAlreadyProcessing:
            return "already_processing";
        case WebhookOutcome::kRejectedSignature:
            return "rejected_signature";
        case WebhookOutcome::kBadRequest:
            return "bad_request";
        case WebhookOutcome::kUnavailable:
            return "unavailable";
    }
    return "unknown";
}

std::string_view to_string(TaskState state) {
    switch (state) {
        case TaskState::kComplete:
            return "complete";
        case TaskState::kNeedsReview:
            return "needs_review";
        case TaskState::kBlocked:
            return "blocked";
        case TaskState::kStopped:
            return "stopped";
    }
    return "unknown";
}

std::string_view to_string(Step step) {
    switch (step) {
        case Step::kCheckTask:
            return "check_task";
        case Step::kPrepareImage:
            return "prepare_image";
        case Step::kEnhance:
            return "enhance";
        case Step::kGenerate:
            return "generate";
        case Step::kValidate:
            return "validate";
        case Step::kWrite:
            return "write";
    }
    return "unknown";
}

void webhook_answered(WebhookOutcome outcome) { instance().webhook_answered(outcome); }

void webhook_answer_took(Duration elapsed) { instance().webhook_answer_took(elapsed); }

void task_finished(TaskState state) { instance().task_finished(state); }

void step_took(Step step, Duration elapsed) { instance().step_took(step, elapsed); }

void provider_call(std::string_view provider,
                   std::string_view operation,
                   int http_status,
                   Duration elapsed) {
    instance().provider_call(provider, operation, std::to_string(http_status), elapsed);
}

void provider_call(std::string_view provider,
                   std::string_view operation,
                   NoAnswer why,
                   Duration elapsed) {
    instance().provider_call(
        provider, operation, why == NoAnswer::kTimeout ? "timeout" : "network", elapsed);
}

void provider_retry(std::string_view provider, std::string_view operation) {
    instance().provider_retry(provider, operation);
}

StepTimer::StepTimer(Step step) : step_(step), started_(std::chrono::steady_clock::now()) {}

StepTimer::~StepTimer() { step_took(step_, std::chrono::steady_clock::now() - started_); }

DecodeInProgress::DecodeInProgress() { instance().decode_started(); }

DecodeInProgress::~DecodeInProgress() { instance().decode_ended(); }

ReaderRegistration::ReaderRegistration(Reading reading, std::uint64_t generation)
    : reading_(reading), generation_(generation) {}

ReaderRegistration::ReaderRegistration(ReaderRegistration&& other) noexcept
    : reading_(other.reading_), generation_(std::exchange(other.generation_, 0)) {}

ReaderRegistration::~ReaderRegistration() {
    if (generation_ != 0) instance().clear_reader(reading_, generation_);
}

ReaderRegistration read_at_scrape(Reading reading, std::function<double()> reader) {
    return ReaderRegistration(reading, instance().set_reader(reading, std::move(reader)));
}

std::string exposition() { return instance().exposition(); }

}  // namespace iea::metrics
