// Several instances behind one URL, sharing a real redis-server: the sandbox sends ClickUp's
// webhooks to them in turn, as a load balancer would. Every tick must run exactly once, on
// whichever instance, and survive the death of an instance or a restart of Redis.

#include <signal.h>

#include <cstdlib>
#include <fstream>
#include <thread>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "support/redis_server.hpp"
#include "support/stack.hpp"

using iea::testing::Env;
using iea::testing::Stack;
using nlohmann::json;

namespace {

constexpr const char* kHistoryToken = "test-history-token-1";

std::string test_image() {
    const auto path = iea::testing::scratch_dir("multi-images") / "banner.png";
    std::ofstream(path, std::ios::binary) << iea::testing::make_test_png(640, 400);
    return path.string();
}

std::size_t count_in(const std::string& text, const std::string& needle) {
    std::size_t count = 0;
    for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
        ++count;
    }
    return count;
}

json history(Stack& stack, std::size_t instance, const std::string& task_id) {
    const auto reply = iea::testing::http_request(
        stack.service(instance).port(), "GET", "/tasks/" + task_id, {},
        {{"Authorization", std::string("Bearer ") + kHistoryToken}});
    REQUIRE(reply.status == 200);
    return json::parse(reply.body);
}

/// The task ended complete with one of each write, and the live instances show one run.
void ended_once(Stack& stack, const std::string& task_id,
                const std::vector<std::size_t>& live = {0, 1}) {
    iea::testing::check_ended_once(stack, task_id, kHistoryToken, live);
}

std::string log_of(Stack& stack, std::size_t instance) {
    return stack.service(instance).process().stdout_text();
}

/// Waits until one instance has logged `line`; returns which, or nothing.
std::optional<std::size_t> wait_for_log(Stack& stack, const std::string& line) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < deadline) {
        for (std::size_t instance = 0; instance < 2; ++instance) {
            if (log_of(stack, instance).find(line) != std::string::npos) return instance;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return std::nullopt;
}

}  // namespace

TEST_CASE("20 copies of one tick spread over two instances start exactly one run") {
    IEA_REQUIRE_REDIS_SERVER();
    Stack stack(Env{{"HISTORY_API_TOKEN", kHistoryToken}}, 2);
    const auto id = stack.add_task("m1", "Make the background teal.", test_image());
    stack.tick(id, 20);
    ended_once(stack, id);

    // Only one instance ran it.
    CHECK(count_in(log_of(stack, 0) + log_of(stack, 1), "\"Task started\"") == 1);
}

TEST_CASE("Ticks of 10 tasks spread over two instances all complete, each exactly once") {
    IEA_REQUIRE_REDIS_SERVER();
    // Three at a time each: the queue holds the rest, and both instances must take part.
    Stack stack(Env{{"HISTORY_API_TOKEN", kHistoryToken}, {"MAX_CONCURRENT_TASKS", "3"}}, 2);
    stack.sandbox().post("/admin/scenario", {{"wavespeed_delay_ms", 300}});
    std::vector<std::string> tasks;
    for (int i = 1; i <= 10; ++i) {
        tasks.push_back(
            stack.add_task("t" + std::to_string(i), "Make the background teal.", test_image()));
    }
    for (const auto& id : tasks) stack.tick(id);
    for (const auto& id : tasks) ended_once(stack, id);

    const auto started_a = count_in(log_of(stack, 0), "\"Task started\"");
    const auto started_b = count_in(log_of(stack, 1), "\"Task started\"");
    CHECK(started_a + started_b == 10);
    CHECK(started_a >= 1);
    CHECK(started_b >= 1);
}

TEST_CASE("An instance killed in the middle of a task: the other takes it over and finishes it") {
    IEA_REQUIRE_REDIS_SERVER();
    Stack stack(Env{{"HISTORY_API_TOKEN", kHistoryToken}}, 2);
    // Slow generations, so that the kill lands while a paid generation is under way.
    stack.sandbox().post("/admin/scenario", {{"wavespeed_delay_ms", 1500}});
    const auto id = stack.add_task("k1", "Make the background teal.", test_image());
    stack.tick(id);

    const auto runner = wait_for_log(stack, "\"Prompt enhanced\"");
    REQUIRE(runner);
    const auto other = 1 - *runner;
    // Killed once both generations are paid for and recorded: a kill between WaveSpeed taking
    // a submission and its id being recorded would buy it again (a known limit).
    for (int i = 0; i < 400 && iea::testing::submissions_made(stack) < 2; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    CHECK(stack.stop_service(SIGKILL, *runner) == 128 + SIGKILL);

    ended_once(stack, id, {other});
    const auto runs = history(stack, other, id).at("runs");
    CHECK(runs[0].at("resumes").get<int>() >= 1);
    CHECK(log_of(stack, other).find("\"Task resumed\"") != std::string::npos);
    // The generations paid for before the kill are polled again, not submitted again.
    CHECK(iea::testing::submissions_made(stack) == 2);  // one per configured model, once
}

TEST_CASE("An instance stopped for a deploy hands its unfinished task to the other at once") {
    IEA_REQUIRE_REDIS_SERVER();
    // The takeover of a dead instance's job waits a minute: a handed-back one must not.
    Stack stack(Env{{"HISTORY_API_TOKEN", kHistoryToken}, {"JOB_CLAIM_AFTER_SECONDS", "60"}}, 2);
    stack.sandbox().post("/admin/scenario", {{"wavespeed_delay_ms", 800}});
    const auto id = stack.add_task("s1", "Make the background teal.", test_image());
    stack.tick(id);

    const auto runner = wait_for_log(stack, "\"Prompt enhanced\"");
    REQUIRE(runner);
    const auto other = 1 - *runner;
    CHECK(stack.stop_service(SIGTERM, *runner) == 0);
    CHECK(log_of(stack, *runner).find("\"Unfinished task handed back to the queue\"") !=
          std::string::npos);

    ended_once(stack, id, {other});
    CHECK(log_of(stack, other).find("\"Task resumed\"") != std::string::npos);
}

TEST_CASE("A run whose task lock another instance took stops and leaves the task to it") {
    IEA_REQUIRE_REDIS_SERVER();
    Stack stack(Env{{"HISTORY_API_TOKEN", kHistoryToken}}, 2);
    stack.sandbox().post("/admin/scenario", {{"wavespeed_delay_ms", 2500}});
    const auto id = stack.add_task("l1", "Make the background teal.", test_image());
    stack.tick(id);
    const auto runner = wait_for_log(stack, "\"Prompt enhanced\"");
    REQUIRE(runner);

    // What a Redis outage longer than the lock's life can lead to: the lock expired and
    // someone else holds it now.
    const auto redis_cli = "redis-cli -p " + std::to_string(stack.redis()->port()) + " ";
    REQUIRE(std::system((redis_cli + "SET iea:lock:l1 someone-else/1 > /dev/null").c_str()) == 0);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (log_of(stack, *runner).find("Task taken over by another instance") == std::string::npos &&
           std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    CHECK(log_of(stack, *runner).find("Task taken over by another instance") != std::string::npos);
    // The other holder goes away; the job is claimed (by either instance) and finished, once,
    // and the run that lost its lock did not go on.
    REQUIRE(std::system((redis_cli + "DEL iea:lock:l1 > /dev/null").c_str()) == 0);
    ended_once(stack, id);
    const auto both = log_of(stack, 0) + log_of(stack, 1);
    INFO(both);
    CHECK(count_in(both, "\"Task left to the instance that holds its lock now\"") == 1);
    CHECK(count_in(both, "\"Task resumed\"") == 1);
    CHECK(count_in(both, "\"Task completed\"") == 1);
    CHECK(iea::testing::submissions_made(stack) == 2);
}

TEST_CASE("replay on Redis queues the task for the instances and prints its ending") {
    IEA_REQUIRE_REDIS_SERVER();
    Stack stack(Env{{"HISTORY_API_TOKEN", kHistoryToken}}, 2);
    // A ticked task whose webhook never arrived.
    stack.sandbox().post("/admin/tasks", {{"id", "p1"},
                                          {"description", "Make the background teal."},
                                          {"ai_edit", true},
                                          {"attachments", {{{"file", test_image()}}}}});
    const auto base = stack.sandbox().base();
    const Env env = {{"PATH", "/usr/bin:/bin"},
                     {"STATE_BACKEND", "redis"},
                     {"REDIS_URL", stack.redis()->url()},
                     {"CLICKUP_API_KEY", "test-clickup-key-1"},
                     {"CLICKUP_CUSTOM_FIELD_ID_AI_EDIT", iea::testing::ServiceProcess::kFieldId},
                     {"OPENROUTER_API_KEY", "test-openrouter-key-1"},
                     {"WAVESPEED_API_KEY", "test-wavespeed-key-1"},
                     {"CLICKUP_API_BASE_URL", base + "/clickup/api/v2"},
                     {"OPENROUTER_API_BASE_URL", base + "/openrouter/api/v1"},
                     {"WAVESPEED_API_BASE_URL", base + "/wavespeed/api/v3"}};
    const auto replay = [&] {
        iea::testing::ChildProcess child(
            {(iea::testing::binary_dir() / "image-edit-agent").string(), "--config",
             std::string(IEA_SOURCE_DIR) + "/config/config.yaml", "replay", "p1"},
            env);
        const auto code = child.wait_exit(std::chrono::seconds(60));
        REQUIRE(code);
        return std::pair{*code, child.stdout_text() + child.stderr_text()};
    };
    const auto [code, output] = replay();
    INFO(output);
    CHECK(code == 0);
    CHECK(output.find("task p1: completed") != std::string::npos);
    ended_once(stack, "p1");
    const auto runs = history(stack, 0, "p1").at("runs");
    CHECK(runs[0].at("delivery_id").get<std::string>().starts_with("replay:"));
    CHECK(runs[0].at("instance").get<std::string>().starts_with("stack-"));
}

TEST_CASE("Two live instances given one INSTANCE_ID: only one takes tasks, the other says why") {
    IEA_REQUIRE_REDIS_SERVER();
    Stack stack(Env{{"HISTORY_API_TOKEN", kHistoryToken}, {"INSTANCE_ID", "same-name"}}, 2);
    const auto idle = wait_for_log(stack, "Another live instance uses this INSTANCE_ID");
    REQUIRE(idle);
    const auto ready = iea::testing::http_request(stack.service(*idle).port(), "GET",
                                                  "/health/ready");
    CHECK(ready.status == 503);
    CHECK(ready.body.find("INSTANCE_ID") != std::string::npos);

    std::vector<std::string> tasks;
    for (int i = 1; i <= 3; ++i) {
        tasks.push_back(
            stack.add_task("n" + std::to_string(i), "Make the background teal.", test_image()));
    }
    for (const auto& id : tasks) stack.tick(id);
    for (const auto& id : tasks) ended_once(stack, id);
    CHECK(count_in(log_of(stack, *idle), "\"Task started\"") == 0);
}

/// When `message` was first logged in `log` (its ISO timestamp, which sorts as text).
std::string first_logged(const std::string& log, const std::string& message) {
    const auto at = log.find("\"message\":\"" + message + "\"");
    if (at == std::string::npos) return {};
    const auto line = log.rfind("{\"timestamp\":\"", at);
    return log.substr(line + 14, 24);
}

TEST_CASE("A process stopping for a deploy keeps its INSTANCE_ID until its runs are handed back") {
    IEA_REQUIRE_REDIS_SERVER();
    // Both processes are one instance: the second waits for the name, as a deploy's new
    // process does while the old one stops.
    Stack stack(Env{{"HISTORY_API_TOKEN", kHistoryToken}, {"INSTANCE_ID", "deploy"},
                    {"JOB_CLAIM_AFTER_SECONDS", "60"}},
                2);
    stack.sandbox().post("/admin/scenario", {{"wavespeed_delay_ms", 2000}});
    const auto id = stack.add_task("o1", "Make the background teal.", test_image());
    stack.tick(id);
    const auto old_process = wait_for_log(stack, "\"Prompt enhanced\"");
    REQUIRE(old_process);
    const auto new_process = 1 - *old_process;
    CHECK(stack.stop_service(SIGTERM, *old_process) == 0);

    ended_once(stack, id, {new_process});
    const auto handed_back =
        first_logged(log_of(stack, *old_process), "Unfinished task handed back to the queue");
    const auto resumed = first_logged(log_of(stack, new_process), "Task resumed");
    INFO("handed back at " << handed_back << ", resumed at " << resumed);
    REQUIRE_FALSE(handed_back.empty());
    REQUIRE_FALSE(resumed.empty());
    CHECK(resumed >= handed_back);
    CHECK(iea::testing::submissions_made(stack) == 2);
}

TEST_CASE("Redis restarted in the middle of runs: nothing lost, nothing done twice") {
    IEA_REQUIRE_REDIS_SERVER();
    Stack stack(Env{{"HISTORY_API_TOKEN", kHistoryToken}}, 2);
    stack.sandbox().post("/admin/scenario", {{"wavespeed_delay_ms", 500}});
    std::vector<std::string> tasks;
    for (int i = 1; i <= 4; ++i) {
        tasks.push_back(
            stack.add_task("r" + std::to_string(i), "Make the background teal.", test_image()));
    }
    for (const auto& id : tasks) stack.tick(id);
    REQUIRE(wait_for_log(stack, "\"Prompt enhanced\""));

    // A crash of Redis itself; its append-only file brings back everything it acknowledged.
    stack.redis()->kill();
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    // Meanwhile a new tick cannot be recorded: 503, so that ClickUp sends it again.
    const auto ready = iea::testing::http_request(stack.service(0).port(), "GET", "/health/ready");
    CHECK(ready.status == 503);
    CHECK(ready.body.find("Redis") != std::string::npos);
    stack.redis()->start();

    for (const auto& id : tasks) ended_once(stack, id);
}

TEST_CASE("A tick arriving while Redis is down is answered 503 and taken when ClickUp sends it again") {
    IEA_REQUIRE_REDIS_SERVER();
    Stack stack(Env{{"HISTORY_API_TOKEN", kHistoryToken}}, 2);
    stack.sandbox().post("/admin/scenario", {{"webhook_retry_ms", 1000}});
    const auto id = stack.add_task("d1", "Make the background teal.", test_image());

    stack.redis()->stop();
    stack.tick(id);
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    stack.redis()->start();

    ended_once(stack, id);
    bool refused = false;
    for (const auto& delivery : stack.sandbox().get("/admin/webhooks")) {
        if (delivery.value("status", 0) == 503) refused = true;
    }
    CHECK(refused);
    // Said once per outage, not once per request.
    CHECK(count_in(log_of(stack, 0), "\"Redis unreachable\"") <= 2);
}
