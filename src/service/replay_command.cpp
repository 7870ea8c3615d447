// `image-edit-agent replay TASK_ID`: one task's pipeline run by hand, for a tick whose
// webhook never arrived (webhook suspended, service down at the time) or to retry by hand.

#include <fmt/format.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <exception>
#include <optional>

#include "iea/service/commands.hpp"
#include "iea/service/wiring.hpp"

namespace iea::service {
namespace {

namespace asio = boost::asio;
constexpr int kExitNotTicked = 3;
constexpr std::string_view kUsage = "usage: image-edit-agent replay TASK_ID [--tick]\n";

std::string_view ending_text(pipeline::Ending ending) {
    switch (ending) {
        case pipeline::Ending::kCompleted:
            return "completed: the edit passed review and is attached to the task";
        case pipeline::Ending::kNeedsReview:
            return "needs review: no edit passed; the task's comment lists every attempt";
        case pipeline::Ending::kBlocked:
            return "blocked: the task's comment says why";
        case pipeline::Ending::kStopped:
            return "stopped: the box was unticked while it ran; nothing was written";
        case pipeline::Ending::kInterrupted:
            return "interrupted: it stays in the journal and resumes when the service starts";
    }
    return "ended";
}

// Nothing when the box is not ticked and `tick` is false.
// TODO: replay takes no task lock, so it cannot see that a running service is editing the same
// task; both would write results. Take the shared lock once Redis mode (STATE_BACKEND=redis) lands.
asio::awaitable<std::optional<pipeline::Ending>> replay(TaskWiring& wiring,
                                                        const config::Settings& settings,
                                                        std::string task_id,
                                                        bool tick) {
    auto& clickup = wiring.clickup();
    const auto task = co_await clickup.get_task(task_id);
    if (!task.is_checked(settings.ai_edit_field_id)) {
        if (!tick) co_return std::nullopt;
        co_await clickup.set_checkbox(task_id, settings.ai_edit_field_id, true);
    }
    // An empty delivery id: the journal gives the replay one of its own.
    const TaskJob job{task_id, {}, std::chrono::system_clock::now()};
    co_return co_await wiring.pipeline().run(job);
}

}  // namespace

int run_replay_command(const config::Settings& settings,
                       const std::vector<std::string>& arguments,
                       std::ostream& out,
                       std::ostream& err) {
    std::string task_id;
    bool tick = false;
    for (const auto& argument : arguments) {
        if (argument == "--tick") {
            tick = true;
        } else if (argument.starts_with("--") || !task_id.empty() || argument.empty()) {
            err << "replay: unexpected argument '" << argument << "'\n" << kUsage;
            return kExitUsage;
        } else {
            task_id = argument;
        }
    }
    if (task_id.empty()) {
        err << "replay: which task? Give its id (the last part of the task's URL)\n" << kUsage;
        return kExitUsage;
    }
    for (const auto& [name, missing] :
         {std::pair{"CLICKUP_API_KEY", settings.clickup_api_key.empty()},
          std::pair{"CLICKUP_CUSTOM_FIELD_ID_AI_EDIT", settings.ai_edit_field_id.empty()}}) {
        if (missing) {
            err << "replay: " << name << " is not set\n";
            return kExitUsage;
        }
    }

    asio::io_context io(1);
    // The replay is a run like any other: it goes in the journal and its history.
    const auto journal = journal::SqliteJournal::open(settings.journal_path);
    TaskWiring wiring(io, settings, *journal);
    std::optional<pipeline::Ending> ending;
    std::exception_ptr failure;
    asio::co_spawn(io,
                   replay(wiring, settings, task_id, tick),
                   [&](std::exception_ptr error, std::optional<pipeline::Ending> result) {
                       failure = error;
                       ending = result;
                       io.stop();  // pooled connections would otherwise keep the loop alive
                   });
    io.run();
    if (failure) std::rethrow_exception(failure);

    if (!ending) {
        err << fmt::format(
            "replay: task {}: the \"AI edit\" box is not ticked. Tick it in ClickUp (a running "
            "service then starts the edit itself), or pass --tick to tick it from here when no "
            "service receives this workspace's webhooks.\n",
            task_id);
        return kExitNotTicked;
    }
    out << "task " << task_id << ": " << ending_text(*ending) << "\n";
    if (*ending == pipeline::Ending::kCompleted) return kExitOk;
    return *ending == pipeline::Ending::kStopped ? kExitNotTicked : kExitProblem;
}

}  // namespace iea::service
