// Never lose a task: the service is killed (SIGKILL) or stopped (SIGTERM) at randomly chosen
// steps while several tasks are in flight, restarted, and every task must still end exactly
// once, with one source upload, one result upload and one comment, as the sandbox records.
//
// The random choices come from a seed printed at the start; IEA_CRASH_SEED=<n> repeats a run.

#include <signal.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <random>
#include <thread>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "iea/webhook/signature.hpp"
#include "support/stack.hpp"

using iea::testing::Env;
using iea::testing::ServiceProcess;
using iea::testing::Stack;
using nlohmann::json;

namespace {

constexpr const char* kHistoryToken = "test-history-token-1";
constexpr const char* kHistoryAuthorization = "Bearer test-history-token-1";

std::string test_image() {
    const auto path = iea::testing::scratch_dir("crash-images") / "banner.png";
    std::ofstream(path, std::ios::binary) << iea::testing::make_test_png(640, 400);
    return path.string();
}

std::uint32_t crash_seed() {
    if (const char* given = std::getenv("IEA_CRASH_SEED"); given != nullptr && *given != '\0') {
        return static_cast<std::uint32_t>(std::stoul(given));
    }
    return std::random_device{}();
}

/// Log lines that mark a finished step of a run.
std::size_t steps_logged(const std::string& log) {
    static const char* kSteps[] = {"\"Image prepared\"", "\"Prompt enhanced\"", "\"Edit generated\"",
                                   "\"Edit reviewed\"",  "\"Task completed\"",  "\"Task resumed\""};
    std::size_t count = 0;
    for (const char* step : kSteps) {
        for (auto at = log.find(step); at != std::string::npos; at = log.find(step, at + 1)) {
            ++count;
        }
    }
    return count;
}

/// Waits until the service has logged `steps` more step lines (or a while has passed).
void wait_for_steps(Stack& stack, std::size_t steps) {
    const auto start = steps_logged(stack.service().process().stdout_text());
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline &&
           steps_logged(stack.service().process().stdout_text()) < start + steps) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
}

/// Every task ended once: one terminal state, one run in the journal, one of each write.
void check_each_task_ended_once(Stack& stack, const std::vector<std::string>& tasks) {
    for (const auto& id : tasks) iea::testing::check_ended_once(stack, id, kHistoryToken);
}

Stack crash_stack() {
    Stack stack(Env{{"HISTORY_API_TOKEN", kHistoryToken}, {"SHUTDOWN_GRACE_SECONDS", "2"}});
    // Slow enough that a kill lands in the middle of things; the first reviews fail, so the
    // tasks go through two iterations.
    const json first_reviews_fail = {
        {{"model", "*"}, {"iteration", 1}, {"score", 5}, {"pass", false}}};
    stack.sandbox().post("/admin/scenario",
                         {{"wavespeed_delay_ms", 300}, {"verdicts", first_reviews_fail}});
    return stack;
}

void crash_repeatedly(int signal, int expected_exit) {
    const auto seed = crash_seed();
    std::cout << "crash test seed: " << seed << " (IEA_CRASH_SEED=" << seed << " repeats it)\n";
    INFO("seed " << seed);
    std::mt19937 random(seed);
    std::uniform_int_distribution<std::size_t> steps_before_kill(1, 10);

    auto stack = crash_stack();
    std::vector<std::string> tasks;
    for (int i = 1; i <= 4; ++i) {
        tasks.push_back(stack.add_task("k" + std::to_string(i), "Make the background teal.",
                                       test_image()));
    }
    for (const auto& id : tasks) stack.tick(id);

    for (int round = 1; round <= 3; ++round) {
        const auto steps = steps_before_kill(random);
        wait_for_steps(stack, steps);
        std::cout << "stop " << round << " with signal " << signal << " after " << steps
                  << " more steps\n";
        CHECK(stack.stop_service(signal) == expected_exit);
        stack.start_service();
    }
    check_each_task_ended_once(stack, tasks);
}

std::string tick_body(const std::string& task_id) {
    return json{{"event", "taskUpdated"},
                {"task_id", task_id},
                {"webhook_id", "wh-crash-test"},
                {"history_items",
                 {{{"id", "9001"},
                   {"field", "custom_field"},
                   {"custom_field", {{"id", ServiceProcess::kFieldId}, {"type", "checkbox"}}},
                   {"before", nullptr},
                   {"after", "true"}}}}}
        .dump();
}

}  // namespace

TEST_CASE("crash: SIGKILL at random steps loses no task and repeats no write", "[crash]") {
    crash_repeatedly(SIGKILL, 128 + SIGKILL);
}

TEST_CASE("crash: SIGTERM at random steps loses no task and repeats no write", "[crash]") {
    crash_repeatedly(SIGTERM, 0);
}

TEST_CASE("crash: SIGTERM answers webhooks 503 and the next start finishes the task",
          "[crash]") {
    Stack stack(Env{{"SHUTDOWN_GRACE_SECONDS", "2"}, {"HISTORY_API_TOKEN", kHistoryToken}});
    stack.sandbox().post("/admin/scenario", {{"wavespeed_delay_ms", 6000}});
    stack.add_task("s1", "Make the background teal.", test_image());
    stack.tick("s1");
    // Wait until a paid generation is under way, then stop the service.
    for (int i = 0; i < 400 && stack.requests("wavespeed").empty(); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    REQUIRE_FALSE(stack.requests("wavespeed").empty());
    stack.service().process().signal(SIGTERM);
    REQUIRE(stack.service().process().wait_for_line(
        [](const std::string& line) { return line.find("Shutdown requested") != std::string::npos; },
        std::chrono::seconds(10)));

    // While it stops, a new tick is turned away so that ClickUp sends it again later.
    const auto body = tick_body("s2");
    const auto refused = iea::testing::http_request(
        stack.service().port(), "POST", "/webhook/clickup", body,
        {{"X-Signature", iea::webhook::sign(ServiceProcess::kSecret, body)},
         {"Content-Type", "application/json"}});
    CHECK(refused.status == 503);
    CHECK(refused.headers.count("retry-after") == 1);

    CHECK(stack.service().process().wait_exit(std::chrono::seconds(30)) == 0);
    // Nothing was written to the task on the way out: it is still ticked and silent.
    const auto stopped = stack.sandbox().get("/admin/tasks/s1");
    CHECK(stopped.at("ai_edit").get<bool>());
    CHECK(stopped.at("comments").empty());
    CHECK(stopped.at("status").at("status") == "to do");

    stack.start_service();
    const auto task = stack.wait_for_end("s1");
    CHECK(task.at("status").at("status") == "complete");
    CHECK(task.at("comments").size() == 1);
    // The generation paid for before the stop was waited for, not bought again.
    CHECK(iea::testing::submissions_made(stack) == 2);  // one per model
}

TEST_CASE("crash: an ending ClickUp refused to take is carried out at the next start",
          "[crash]") {
    Stack stack(Env{{"HISTORY_API_TOKEN", kHistoryToken}});
    stack.add_task("r1", "Make the background teal.", test_image());
    // The key is refused for the comment (as if revoked just then): the ending cannot be told.
    stack.sandbox().post("/admin/faults", {{"service", "clickup"},
                                           {"method", "POST"},
                                           {"path", "/task/r1/comment$"},
                                           {"kind", "status"},
                                           {"status", 401}});
    stack.tick("r1");
    REQUIRE(stack.service().process().wait_for_line(
        [](const std::string& line) { return line.find("not fully written") != std::string::npos; },
        std::chrono::seconds(60)));
    const auto reply = iea::testing::http_request(stack.service().port(), "GET", "/tasks/r1", {},
                                                  {{"Authorization", kHistoryAuthorization}});
    CHECK(json::parse(reply.body).at("runs")[0].at("state") == "running");

    // The operator fixes the key and restarts: only the missing comment is written.
    stack.sandbox().remove("/admin/faults");
    CHECK(stack.stop_service(SIGTERM) == 0);
    stack.start_service();
    const auto task = stack.wait_for_end("r1");
    CHECK(task.at("status").at("status") == "complete");
    CHECK(task.at("comments").size() == 1);
    CHECK(iea::testing::count_titled(task, "ai-edit_") == 1);
}
