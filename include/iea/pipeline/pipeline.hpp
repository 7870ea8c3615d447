#pragma once

/// One task's run, MISSION steps 3 to 9: check the task, prepare the image, then iterations of
/// enhance -> generate -> validate -> decide, and the report on the task. Every path ends in
/// one terminal state written to ClickUp (complete, needs review, blocked) with the checkbox
/// unticked, except a task that was unticked meanwhile, which stops quietly.
///
/// Every run is a job in the journal. Each step's outcome is recorded as it happens; a run
/// interrupted by a crash or a shutdown is resumed on the next start, reusing what was
/// recorded (nothing paid for twice), and each write to the task happens once.

#include <cstddef>
#include <functional>
#include <memory>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>

#include "iea/config/settings.hpp"
#include "iea/image/converter.hpp"
#include "iea/journal/journal.hpp"
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
    journal::Journal& journal;
};

/// How a run ended. kInterrupted is the only one that is not an end: the job stays in the
/// journal and is resumed on the next start.
enum class Ending { kCompleted, kNeedsReview, kBlocked, kStopped, kInterrupted };

/// The journal's name of an ending ("complete", "needs_review", "blocked", "stopped").
[[nodiscard]] std::string_view to_string(Ending ending);

/// A job resumed this many times in a row without recording a single new step ends blocked:
/// something in the job itself keeps bringing the service down.
inline constexpr int kMaxStalledResumes = 5;

/// Runs accepted tasks, each as its own coroutine on `executor`, under the global limits on
/// enhancement and validation calls. Single-threaded: use from the executor's thread.
class Pipeline final : public service::TaskRunner {
public:
    Pipeline(boost::asio::any_io_executor executor, Dependencies dependencies);

    /// Records the job in the journal, then runs it in the background (or, with
    /// `wait_for_end`, until it ends).
    [[nodiscard]] boost::asio::awaitable<service::Admission> admit(
        service::TaskJob job, locking::TaskLocks::Guard lock, bool wait_for_end) override;

    /// Called when a run started by resume() stops, before its lock is released: with its
    /// ending, or kInterrupted when it stopped for a shutdown.
    using OnEnd = std::function<boost::asio::awaitable<void>(Ending)>;

    /// Picks up a job a restart interrupted (or the queue handed over), from its last
    /// checkpoint; returns at once. Once `given_up` turns true (the job went to another
    /// instance), the run stops at its next checkpoint and ends kInterrupted.
    void resume(journal::JobRecord job, locking::TaskLocks::Guard lock, OnEnd on_end = {},
                std::shared_ptr<const bool> given_up = {});

    /// Runs one task to its end as a new journal job, without a lock; for `replay` and tests.
    [[nodiscard]] boost::asio::awaitable<Ending> run(service::TaskJob job);

    /// Runs taken, whether running or waiting for one of the MAX_CONCURRENT_TASKS slots.
    [[nodiscard]] std::size_t in_flight() const { return in_flight_; }
    /// Of those, the ones running and the ones waiting for a slot.
    [[nodiscard]] std::size_t running() const { return task_slots_.in_use(); }
    [[nodiscard]] std::size_t waiting() const { return in_flight_ - running(); }
    /// Slots free for one more run to start at once.
    [[nodiscard]] std::size_t free_slots() const;

    /// Shutdown, first phase: every run stops at its next checkpoint (before it starts any new
    /// step) and stays in the journal for the next start. Returns at once.
    void pause();
    [[nodiscard]] bool pausing() const { return pausing_; }
    /// Shutdown, last phase: runs still going are cut off where they are. Returns at once.
    void stop();
    [[nodiscard]] const AsyncSemaphore& enhancement_slots() const { return enhancement_slots_; }
    [[nodiscard]] const AsyncSemaphore& validation_slots() const { return validation_slots_; }

private:
    friend class TaskRun;

    boost::asio::any_io_executor executor_;
    Dependencies deps_;
    AsyncSemaphore enhancement_slots_;
    AsyncSemaphore validation_slots_;
    AsyncSemaphore task_slots_;
    std::vector<std::string> model_priority_;
    void spawn(service::TaskJob job, locking::TaskLocks::Guard lock,
               std::vector<std::pair<std::string, nlohmann::json>> recorded, int resumes,
               int stalled_resumes, OnEnd on_end, std::shared_ptr<const bool> given_up);

    std::size_t in_flight_ = 0;
    bool pausing_ = false;
    boost::asio::steady_timer stop_signal_;  // cancelled by stop(); tasks wait on it
};

/// Names of files the service uploads start with these, so they are never picked as input.
inline constexpr std::string_view kResultPrefix = "ai-edit_";
inline constexpr std::string_view kSourcePrefix = "ai-source_";

/// Image attachments to try, newest first; our own uploads and non-images left out.
[[nodiscard]] std::vector<providers::Attachment> input_candidates(
    const std::vector<providers::Attachment>& attachments);

}  // namespace iea::pipeline
