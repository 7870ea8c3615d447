// `image-edit-agent replay TASK_ID`: one task's pipeline run by hand, for a tick whose
// webhook never arrived (webhook suspended, service down at the time) or to retry by hand.

#include <fmt/format.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <exception>
#include <optional>

#include "iea/service/commands.hpp"
#include "iea/service/wiring.hpp"
#include "iea/state/redis_client.hpp"
#include "iea/state/redis_journal.hpp"

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

/// The pipeline's ending for a state a job ended in, as the journal writes it.
std::optional<pipeline::Ending> ending_named(const std::string& state) {
    for (const auto ending : {pipeline::Ending::kCompleted, pipeline::Ending::kNeedsReview,
                              pipeline::Ending::kBlocked, pipeline::Ending::kStopped}) {
        if (pipeline::to_string(ending) == state) return ending;
    }
    return std::nullopt;
}

/// Ticks the box when asked; false when it is not ticked and `tick` is false.
asio::awaitable<bool> ready_to_edit(TaskWiring& wiring, const config::Settings& settings,
                                    const std::string& task_id, bool tick) {
    auto& clickup = wiring.clickup();
    const auto task = co_await clickup.get_task(task_id);
    if (task.is_checked(settings.ai_edit_field_id)) co_return true;
    if (!tick) co_return false;
    co_await clickup.set_checkbox(task_id, settings.ai_edit_field_id, true);
    co_return true;
}

/// Several instances (STATE_BACKEND=redis): the replay goes into the shared queue like a tick,
/// under the same rule (not while the task runs or waits), and whichever instance takes it
/// carries it out; this waits for its ending. The run is in the shared history.
asio::awaitable<std::optional<std::string>> replay_through_queue(TaskWiring& wiring,
                                                                 state::RedisClient& redis,
                                                                 state::RedisJournal& journal,
                                                                 const config::Settings& settings,
                                                                 std::string task_id, bool tick,
                                                                 std::ostream& err) {
    if (!co_await redis.wait_connected(std::chrono::seconds(5))) {
        throw std::runtime_error(journal.problem().value_or("Redis cannot be reached"));
    }
    if (!co_await ready_to_edit(wiring, settings, task_id, tick)) co_return std::nullopt;
    const auto now = std::chrono::system_clock::now();
    const auto delivery = fmt::format(
        "replay:{}",
        std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count());
    const auto queued = co_await journal.enqueue(task_id, delivery, now, true);
    if (!queued) throw std::runtime_error("Redis did not record the replay: " + queued.error().message());
    if (queued->outcome != state::Enqueued::kAccepted) co_return std::string("busy");
    err << fmt::format("replay: task {} queued as run {}; waiting for an instance to carry it out "
                       "(stopping this command leaves it queued)\n",
                       task_id, queued->job);
    asio::steady_timer pause(co_await asio::this_coro::executor);
    for (;;) {
        if (const auto state = co_await journal.state_of(queued->job);
            state && *state != journal::kRunning) {
            co_return *state;
        }
        pause.expires_after(std::chrono::milliseconds(500));
        co_await pause.async_wait(asio::use_awaitable);
    }
}

int replay_on_redis(const config::Settings& settings, const std::string& task_id, bool tick,
                    std::ostream& out, std::ostream& err) {
    asio::io_context io(1);
    const auto endpoint = state::parse_redis_url(settings.redis_url.reveal());
    state::RedisClient redis(io.get_executor(), endpoint);
    state::JobQueueOptions queue;
    queue.consumer = "replay";
    state::RedisJournal journal(redis, endpoint.redacted(), queue, settings.lock_ttl);
    TaskWiring wiring(io, settings, journal);
    redis.start();
    std::optional<std::string> state;
    std::exception_ptr failure;
    asio::co_spawn(io, replay_through_queue(wiring, redis, journal, settings, task_id, tick, err),
                   [&](std::exception_ptr error, std::optional<std::string> result) {
                       failure = error;
                       state = std::move(result);
                       io.stop();
                   });
    io.run();
    if (failure) std::rethrow_exception(failure);
    if (!state) return -1;  // not ticked
    if (*state == "busy") {
        err << fmt::format("replay: task {} is already being edited or waiting for an instance; "
                           "nothing was queued\n",
                           task_id);
        return kExitProblem;
    }
    const auto ending = ending_named(*state);
    if (!ending) {
        out << "task " << task_id << ": ended " << *state << "\n";
        return kExitProblem;
    }
    out << "task " << task_id << ": " << ending_text(*ending) << "\n";
    if (*ending == pipeline::Ending::kCompleted) return kExitOk;
    return *ending == pipeline::Ending::kStopped ? kExitNotTicked : kExitProblem;
}

// Nothing when the box is not ticked and `tick` is false.
// TODO: with the SQLite journal, replay takes no task lock, so it cannot see that a running
// service is editing the same task; both would write results (on Redis it queues instead).
asio::awaitable<std::optional<pipeline::Ending>> replay(TaskWiring& wiring,
                                                        const config::Settings& settings,
                                                        std::string task_id,
                                                        bool tick) {
    if (!co_await ready_to_edit(wiring, settings, task_id, tick)) co_return std::nullopt;
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

    const auto not_ticked = [&] {
        err << fmt::format(
            "replay: task {}: the \"AI edit\" box is not ticked. Tick it in ClickUp (a running "
            "service then starts the edit itself), or pass --tick to tick it from here when no "
            "service receives this workspace's webhooks.\n",
            task_id);
        return kExitNotTicked;
    };
    if (settings.state_backend == "redis") {
        const auto code = replay_on_redis(settings, task_id, tick, out, err);
        return code < 0 ? not_ticked() : code;
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

    if (!ending) return not_ticked();
    out << "task " << task_id << ": " << ending_text(*ending) << "\n";
    if (*ending == pipeline::Ending::kCompleted) return kExitOk;
    return *ending == pipeline::Ending::kStopped ? kExitNotTicked : kExitProblem;
}

}  // namespace iea::service
