#include "iea/metrics/metrics.hpp"

#include <catch2/catch.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace metrics = iea::metrics;
using namespace std::chrono_literals;

namespace {

// The value of one sample, e.g. `iea_webhooks_total{outcome="accepted"}`, in the current
// exposition; nothing when the series is absent. The registry is process-wide, so tests
// compare before and after instead of expecting absolute values.
std::optional<double> sample(const std::string& series) {
    std::istringstream lines(metrics::exposition());
    for (std::string line; std::getline(lines, line);) {
        if (line.size() > series.size() && line.starts_with(series) && line[series.size()] == ' ') {
            return std::stod(line.substr(series.size() + 1));
        }
    }
    return std::nullopt;
}

double value(const std::string& series) { return sample(series).value_or(-1); }

}  // namespace

TEST_CASE("metrics: every webhook outcome is listed from the start", "[metrics]") {
    for (const auto* outcome : {"accepted",
                                "ignored",
                                "already_processing",
                                "rejected_signature",
                                "bad_request",
                                "unavailable"}) {
        CHECK(sample(std::string("iea_webhooks_total{outcome=\"") + outcome + "\"}"));
    }
}

TEST_CASE("metrics: a webhook answer moves only its outcome", "[metrics]") {
    const auto ignored = value("iea_webhooks_total{outcome=\"ignored\"}");
    const auto accepted = value("iea_webhooks_total{outcome=\"accepted\"}");
    metrics::webhook_answered(metrics::WebhookOutcome::kIgnored);
    metrics::webhook_answered(metrics::WebhookOutcome::kIgnored);
    CHECK(value("iea_webhooks_total{outcome=\"ignored\"}") == ignored + 2);
    CHECK(value("iea_webhooks_total{outcome=\"accepted\"}") == accepted);
}

TEST_CASE("metrics: webhook answer latency is a histogram in seconds", "[metrics]") {
    const auto count = value("iea_webhook_answer_duration_seconds_count");
    const auto fast = value("iea_webhook_answer_duration_seconds_bucket{le=\"0.005\"}");
    metrics::webhook_answer_took(2ms);
    CHECK(value("iea_webhook_answer_duration_seconds_count") == count + 1);
    CHECK(value("iea_webhook_answer_duration_seconds_bucket{le=\"0.005\"}") == fast + 1);
}

TEST_CASE("metrics: tasks are counted by terminal state", "[metrics]") {
    for (const auto* state : {"complete", "needs_review", "blocked", "stopped"}) {
        CHECK(sample(std::string("iea_tasks_finished_total{state=\"") + state + "\"}"));
    }
    const auto blocked = value("iea_tasks_finished_total{state=\"blocked\"}");
    metrics::task_finished(metrics::TaskState::kBlocked);
    CHECK(value("iea_tasks_finished_total{state=\"blocked\"}") == blocked + 1);
}

TEST_CASE("metrics: a step timer records when it goes out of scope", "[metrics]") {
    const std::string count = "iea_pipeline_step_duration_seconds_count{step=\"enhance\"}";
    const auto before = value(count);
    {
        const metrics::StepTimer timing(metrics::Step::kEnhance);
        CHECK(value(count) == before);
    }
    CHECK(value(count) == before + 1);

    SECTION("also when the step throws") {
        try {
            const metrics::StepTimer timing(metrics::Step::kEnhance);
            throw std::runtime_error("step failed");
        } catch (const std::runtime_error&) {
        }
        CHECK(value(count) == before + 2);
    }
}

TEST_CASE("metrics: every step is listed from the start", "[metrics]") {
    for (const auto* step :
         {"check_task", "prepare_image", "enhance", "generate", "validate", "write"}) {
        CHECK(
            sample(std::string("iea_pipeline_step_duration_seconds_count{step=\"") + step + "\"}"));
    }
}

TEST_CASE("metrics: provider calls are labelled by status or by the missing answer", "[metrics]") {
    const std::string labels = "operation=\"get_task\",provider=\"clickup\"";
    const auto latency_count =
        sample("iea_provider_call_duration_seconds_count{" + labels + "}").value_or(0);
    const auto ok = sample("iea_provider_calls_total{" + labels + ",status=\"200\"}").value_or(0);

    metrics::provider_call("clickup", "get_task", 200, 120ms);
    metrics::provider_call("clickup", "get_task", 429, 30ms);
    metrics::provider_call("clickup", "get_task", metrics::NoAnswer::kTimeout, 5s);
    metrics::provider_call("clickup", "get_task", metrics::NoAnswer::kNetwork, 1ms);

    CHECK(value("iea_provider_calls_total{" + labels + ",status=\"200\"}") == ok + 1);
    CHECK(sample("iea_provider_calls_total{" + labels + ",status=\"429\"}") >= 1);
    CHECK(sample("iea_provider_calls_total{" + labels + ",status=\"timeout\"}") >= 1);
    CHECK(sample("iea_provider_calls_total{" + labels + ",status=\"network\"}") >= 1);
    CHECK(value("iea_provider_call_duration_seconds_count{" + labels + "}") == latency_count + 4);
}

TEST_CASE("metrics: retries are counted by provider and operation", "[metrics]") {
    const std::string series =
        "iea_provider_retries_total{operation=\"poll\",provider=\"wavespeed\"}";
    const auto before = sample(series).value_or(0);
    metrics::provider_retry("wavespeed", "poll");
    CHECK(value(series) == before + 1);
}

TEST_CASE("metrics: a decode worker is busy while the guard lives", "[metrics]") {
    const auto idle = value("iea_decode_workers_busy");
    {
        const metrics::DecodeInProgress first;
        const metrics::DecodeInProgress second;
        CHECK(value("iea_decode_workers_busy") == idle + 2);
    }
    CHECK(value("iea_decode_workers_busy") == idle);
}

TEST_CASE("metrics: readings come from the registered reader at scrape time", "[metrics]") {
    double locks = 3;
    {
        const auto registration =
            metrics::read_at_scrape(metrics::Reading::kLocksHeld, [&locks] { return locks; });
        CHECK(value("iea_task_locks_held") == 3);
        locks = 5;
        CHECK(value("iea_task_locks_held") == 5);
    }

    SECTION("a reader gone shows 0") { CHECK(value("iea_task_locks_held") == 0); }

    SECTION("an older registration leaving keeps the newer reader") {
        auto older = std::make_optional(
            metrics::read_at_scrape(metrics::Reading::kTasksInFlight, [] { return 1.0; }));
        const auto newer =
            metrics::read_at_scrape(metrics::Reading::kTasksInFlight, [] { return 2.0; });
        older.reset();
        CHECK(value("iea_tasks_in_flight") == 2);
    }

    SECTION("a moved registration unregisters once, from its new owner") {
        auto first = metrics::read_at_scrape(metrics::Reading::kTasksInFlight, [] { return 7.0; });
        {
            const auto moved = std::move(first);
            CHECK(value("iea_tasks_in_flight") == 7);
        }
        CHECK(value("iea_tasks_in_flight") == 0);
    }
}

TEST_CASE("metrics: recording from many threads loses no event", "[metrics]") {
    const std::string series = "iea_webhooks_total{outcome=\"bad_request\"}";
    const auto before = value(series);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([] {
            for (int i = 0; i < 1000; ++i) {
                metrics::webhook_answered(metrics::WebhookOutcome::kBadRequest);
                metrics::provider_call("openrouter", "chat", 200, 1ms);
                const metrics::DecodeInProgress decoding;
            }
        });
    }
    for (auto& thread : threads) thread.join();
    CHECK(value(series) == before + 4000);
}

TEST_CASE("metrics: the exposition names, types and explains every family", "[metrics]") {
    // Families whose labels are free (provider calls) appear with their first series.
    metrics::provider_call("clickup", "set_status", 200, 10ms);
    metrics::provider_retry("clickup", "set_status");
    const auto text = metrics::exposition();
    for (const auto* family : {"iea_webhooks_total counter",
                               "iea_webhook_answer_duration_seconds histogram",
                               "iea_tasks_finished_total counter",
                               "iea_pipeline_step_duration_seconds histogram",
                               "iea_provider_calls_total counter",
                               "iea_provider_call_duration_seconds histogram",
                               "iea_provider_retries_total counter",
                               "iea_task_locks_held gauge",
                               "iea_tasks_in_flight gauge",
                               "iea_decode_workers_busy gauge"}) {
        INFO(family);
        CHECK_THAT(text, Catch::Contains(std::string("# TYPE ") + family));
    }
    CHECK_THAT(text, Catch::Contains("# HELP iea_webhooks_total "));
    CHECK(metrics::kContentType.starts_with("text/plain; version=0.0.4"));
}
