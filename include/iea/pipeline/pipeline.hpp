#pragma once

/// One task's run, MISSION steps 3 to 9: check the task, prepare the image, then iterations of
/// enhance -> generate -> validate -> decide, and the report on the task. Every path ends in
/// one terminal state written to ClickUp (complete, needs review, blocked) with the checkbox
/// unticked, except a task that was unticked meanwhile, which stops quietly.

#include <cstddef>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>

#include "iea/config/settings.hpp"
#include "iea/image/converter.hpp"
#include "iea/pipeline/concurrency.hpp"
#include "iea/pipeline/prompts.hpp"
#include "iea/providers/clickup.hpp"
#include "iea/providers/openrouter.hpp"
#include "iea/providers/wavespeed.hpp"
#include "iea/service/intake.hpp"

namespace iea::pipeline {

/// What every run shares, built once at start; all must outlive the Pipeline.
struct Dependencies {
    const config::Settings& settings;
    providers::ClickUpClient& clickup;
    providers::OpenRouterClient& openrouter;
    providers::WaveSpeedClient& wavespeed;
    image::ImageConverter& images;
    const PromptBook& prompts;
};

/// How a run ended.
enum class Ending { kCompleted, kNeedsReview, kBlocked, kStopped };

/// Runs accepted tasks, each as its own coroutine on `executor`, under the global limits on
/// enhancement and validation calls. Single-threaded: use from the executor's thread.
class Pipeline final : public service::TaskRunner {
public:
    Pipeline(boost::asio::any_io_executor executor, Dependencies dependencies);

    void start(service::TaskJob job, locking::TaskLocks::Guard lock) override;

    /// Runs one task to its end (what start() spawns); exposed for `replay` and tests.
    [[nodiscard]] boost::asio::awaitable<Ending> run(service::TaskJob job);

    [[nodiscard]] std::size_t in_flight() const { return in_flight_; }

    /// Shutdown: every task still running stops where it is and ends blocked, with its box
    /// unticked and a comment that a restart interrupted it. Returns at once.
    void stop();
    [[nodiscard]] const AsyncSemaphore& enhancement_slots() const { return enhancement_slots_; }
    [[nodiscard]] const AsyncSemaphore& validation_slots() const { return validation_slots_; }

private:
    friend class TaskRun;

    boost::asio::any_io_executor executor_;
    Dependencies deps_;
    AsyncSemaphore enhancement_slots_;
    AsyncSemaphore validation_slots_;
    std::vector<std::string> model_priority_;
    std::size_t in_flight_ = 0;
    boost::asio::steady_timer stop_signal_;  // cancelled by stop(); tasks wait on it
};

/// Names of files the service uploads start with these, so they are never picked as input.
inline constexpr std::string_view kResultPrefix = "ai-edit_";
inline constexpr std::string_view kSourcePrefix = "ai-source_";

/// Image attachments to try, newest first; our own uploads and non-images left out.
[[nodiscard]] std::vector<providers::Attachment> input_candidates(
    const std::vector<providers::Attachment>& attachments);

}  // namespace iea::pipeline
