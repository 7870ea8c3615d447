// `image-edit-agent webhook ...` and `replay` run as an operator would, against the sandbox's
// ClickUp, OpenRouter and WaveSpeed on 127.0.0.1.

#include <catch2/catch.hpp>
#include <fstream>

#include "support/harness.hpp"
#include "support/stack.hpp"

namespace {

using iea::testing::ChildProcess;
using iea::testing::Env;
using iea::testing::SandboxProcess;

constexpr const char* kTeamId = "9000001";
constexpr const char* kFieldId = "00000000-aaaa-4bbb-8ccc-000000000001";
constexpr const char* kEndpoint = "https://edit.example.invalid/webhook/clickup";

struct Run {
    int exit_code = -1;
    std::string out;
    std::string err;
};

Env command_env(const SandboxProcess& sandbox) {
    return {{"PATH", "/usr/bin:/bin"},
            {"CLICKUP_API_KEY", "test-clickup-key-1"},
            {"CLICKUP_TEAM_ID", kTeamId},
            {"CLICKUP_CUSTOM_FIELD_ID_AI_EDIT", kFieldId},
            {"OPENROUTER_API_KEY", "test-openrouter-key-1"},
            {"WAVESPEED_API_KEY", "test-wavespeed-key-1"},
            {"CLICKUP_API_BASE_URL", sandbox.base() + "/clickup/api/v2"},
            {"OPENROUTER_API_BASE_URL", sandbox.base() + "/openrouter/api/v1"},
            {"WAVESPEED_API_BASE_URL", sandbox.base() + "/wavespeed/api/v3"},
            {"WAVESPEED_POLL_INTERVAL_SECONDS", "0.05"},
            {"VALIDATION_DELAY_SECONDS", "0.05"},
            {"CLICKUP_RATE_LIMIT_PER_MINUTE", "60000"},
            // A replay is journaled like any run: in a scratch file, not the build folder.
            {"JOURNAL_PATH",
             (iea::testing::scratch_dir("commands-journal") / "journal.sqlite3").string()}};
}

Run run_agent(const Env& env, std::vector<std::string> arguments) {
    std::vector<std::string> argv = {(iea::testing::binary_dir() / "image-edit-agent").string(),
                                     "--config",
                                     std::string(IEA_SOURCE_DIR) + "/config/config.yaml"};
    argv.insert(argv.end(), arguments.begin(), arguments.end());
    ChildProcess child(std::move(argv), env);
    const auto code = child.wait_exit(std::chrono::seconds(120));
    REQUIRE(code);
    return {*code, child.stdout_text(), child.stderr_text()};
}

std::string only_webhook_id(SandboxProcess& sandbox) {
    const auto registered = sandbox.get("/admin/clickup-webhooks");
    REQUIRE(registered.size() == 1);
    return registered[0].at("id").get<std::string>();
}

}  // namespace

TEST_CASE("webhook create: registers taskUpdated for the endpoint and prints the secret once",
          "[commands]") {
    SandboxProcess sandbox;
    const auto env = command_env(sandbox);

    const auto created = run_agent(
        env, {"webhook", "create", "--endpoint", "https://edit.example.invalid", "--list", "901"});
    REQUIRE(created.exit_code == 0);
    const auto registered = sandbox.get("/admin/clickup-webhooks");
    REQUIRE(registered.size() == 1);
    CHECK(registered[0].at("endpoint") == kEndpoint);
    CHECK(registered[0].at("events") == nlohmann::json::array({"taskUpdated"}));
    CHECK(registered[0].at("list_id") == "901");
    const auto secret = registered[0].at("secret").get<std::string>();
    CHECK(created.out.find("CLICKUP_WEBHOOK_SECRET=" + secret + "\n") != std::string::npos);
    CHECK(created.err.find(secret) == std::string::npos);

    SECTION("a second webhook for the same endpoint is refused") {
        const auto again = run_agent(env, {"webhook", "create", "--endpoint", kEndpoint});
        CHECK(again.exit_code == 1);
        CHECK(again.err.find("already delivers to") != std::string::npos);
        CHECK(sandbox.get("/admin/clickup-webhooks").size() == 1);
    }
    SECTION("list shows id, status and fail_count, never the secret") {
        const auto listed = run_agent(env, {"webhook", "list"});
        CHECK(listed.exit_code == 0);
        CHECK(listed.out.find(registered[0].at("id").get<std::string>()) != std::string::npos);
        CHECK(listed.out.find("active") != std::string::npos);
        CHECK(listed.out.find(secret) == std::string::npos);
    }
    SECTION("delete removes it; deleting it again is an error") {
        const auto id = registered[0].at("id").get<std::string>();
        CHECK(run_agent(env, {"webhook", "delete", id}).exit_code == 0);
        CHECK(sandbox.get("/admin/clickup-webhooks").empty());
        const auto again = run_agent(env, {"webhook", "delete", id});
        CHECK(again.exit_code == 1);
        CHECK(again.err.find("404") != std::string::npos);
    }
}

TEST_CASE("webhook create: the endpoint comes from PUBLIC_URL when no flag gives it",
          "[commands]") {
    SandboxProcess sandbox;
    auto env = command_env(sandbox);
    SECTION("PUBLIC_URL set") {
        env["PUBLIC_URL"] = "https://edit.example.invalid/";
        REQUIRE(run_agent(env, {"webhook", "create"}).exit_code == 0);
        CHECK(sandbox.get("/admin/clickup-webhooks")[0].at("endpoint") == kEndpoint);
    }
    SECTION("neither: a usage error, nothing created") {
        const auto run = run_agent(env, {"webhook", "create"});
        CHECK(run.exit_code == 2);
        CHECK(run.err.find("PUBLIC_URL") != std::string::npos);
        CHECK(sandbox.get("/admin/clickup-webhooks").empty());
    }
}

TEST_CASE("webhook health: exits non-zero for a failing or suspended webhook and can reactivate it",
          "[commands]") {
    SandboxProcess sandbox;
    const auto env = command_env(sandbox);
    REQUIRE(run_agent(env, {"webhook", "create", "--endpoint", kEndpoint}).exit_code == 0);
    const auto id = only_webhook_id(sandbox);

    CHECK(run_agent(env, {"webhook", "health"}).exit_code == 0);

    SECTION("suspended") {
        sandbox.post("/admin/clickup-webhooks/" + id,
                     {{"status", "suspended"}, {"fail_count", 100}});
        const auto checked = run_agent(env, {"webhook", "health"});
        CHECK(checked.exit_code == 1);
        CHECK(checked.out.find("suspended") != std::string::npos);
        CHECK(sandbox.get("/admin/clickup-webhooks")[0].at("health").at("status") == "suspended");

        // Reactivating still exits 1: ClickUp never resends the events it dropped.
        const auto repaired = run_agent(env, {"webhook", "health", "--reactivate"});
        CHECK(repaired.exit_code == 1);
        CHECK(repaired.out.find("reactivated") != std::string::npos);
        const auto health = sandbox.get("/admin/clickup-webhooks")[0].at("health");
        CHECK(health.at("status") == "active");
        CHECK(health.at("fail_count") == 0);
        CHECK(sandbox.get("/admin/clickup-webhooks")[0].at("events") ==
              nlohmann::json::array({"taskUpdated"}));
        CHECK(run_agent(env, {"webhook", "health"}).exit_code == 0);
    }
    SECTION("failing") {
        sandbox.post("/admin/clickup-webhooks/" + id, {{"status", "failing"}, {"fail_count", 3}});
        const auto checked = run_agent(env, {"webhook", "health"});
        CHECK(checked.exit_code == 1);
        CHECK(checked.out.find("fail_count 3") != std::string::npos);
    }
    SECTION("no webhook delivers to the given endpoint") {
        const auto checked =
            run_agent(env, {"webhook", "health", "--endpoint", "https://other.example.invalid"});
        CHECK(checked.exit_code == 1);
        CHECK(checked.err.find("no webhook delivers to") != std::string::npos);
    }
}

TEST_CASE("webhook: missing settings and bad arguments are usage errors", "[commands]") {
    SandboxProcess sandbox;
    auto env = command_env(sandbox);
    CHECK(run_agent(env, {"webhook", "bogus"}).exit_code == 2);
    CHECK(run_agent(env, {"webhook", "create", "--list"}).exit_code == 2);
    CHECK(run_agent(env, {"webhook", "delete"}).exit_code == 2);
    env.erase("CLICKUP_TEAM_ID");
    const auto run = run_agent(env, {"webhook", "list"});
    CHECK(run.exit_code == 2);
    CHECK(run.err.find("CLICKUP_TEAM_ID") != std::string::npos);
}

TEST_CASE("replay: runs a ticked task's edit to its end and prints the ending", "[commands]") {
    SandboxProcess sandbox({"--field-id", kFieldId});
    sandbox.post("/admin/scenario", {{"wavespeed_delay_ms", 60}});
    const auto image = iea::testing::scratch_dir("replay") / "banner.png";
    {
        std::ofstream file(image, std::ios::binary);
        file << iea::testing::make_test_png(320, 200);
    }
    const auto env = command_env(sandbox);

    SECTION("ticked: completed, result attached, box unticked") {
        sandbox.post("/admin/tasks",
                     {{"id", "t-replay"},
                      {"description", "Make the background green"},
                      {"ai_edit", true},
                      {"attachments", {{{"file", image.string()}}}}});
        const auto run = run_agent(env, {"replay", "t-replay"});
        CHECK(run.exit_code == 0);
        CHECK(run.out.find("task t-replay: completed") != std::string::npos);
        const auto task = sandbox.get("/admin/tasks/t-replay");
        CHECK(task.at("status").at("status") == "complete");
        CHECK_FALSE(task.at("ai_edit").get<bool>());
        CHECK(task.at("comments").size() == 1);
    }
    SECTION("not ticked: nothing runs, exit 3, and --tick runs it") {
        sandbox.post("/admin/tasks",
                     {{"id", "t-idle"},
                      {"description", "Make the background green"},
                      {"attachments", {{{"file", image.string()}}}}});
        const auto refused = run_agent(env, {"replay", "t-idle"});
        CHECK(refused.exit_code == 3);
        CHECK(refused.err.find("not ticked") != std::string::npos);
        CHECK(sandbox.get("/admin/tasks/t-idle").at("comments").empty());

        const auto ticked = run_agent(env, {"replay", "t-idle", "--tick"});
        CHECK(ticked.exit_code == 0);
        CHECK(sandbox.get("/admin/tasks/t-idle").at("status").at("status") == "complete");
    }
    SECTION("a task without an image ends blocked: exit 1") {
        sandbox.post(
            "/admin/tasks",
            {{"id", "t-empty"}, {"description", "Make the background green"}, {"ai_edit", true}});
        const auto run = run_agent(env, {"replay", "t-empty"});
        CHECK(run.exit_code == 1);
        CHECK(run.out.find("blocked") != std::string::npos);
    }
    SECTION("no task id: usage error") { CHECK(run_agent(env, {"replay"}).exit_code == 2); }
}
