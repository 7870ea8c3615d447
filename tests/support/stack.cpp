#include "support/stack.hpp"

#include <catch2/catch.hpp>
#include "support/redis_server.hpp"

#include <vips/vips.h>

#include <stdexcept>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

namespace iea::testing {

unsigned short free_port() {
    boost::asio::io_context io;
    boost::asio::ip::tcp::acceptor acceptor(
        io, {boost::asio::ip::make_address("127.0.0.1"), 0});
    return acceptor.local_endpoint().port();
}

std::string make_test_png(int width, int height) {
    static const bool started = VIPS_INIT("iea-tests") == 0;
    if (!started) throw std::runtime_error("libvips did not start");
    VipsImage* canvas = nullptr;
    // An orange background with a blue block and a white band: something to edit.
    double orange[] = {240, 140, 30};
    if (vips_black(&canvas, width, height, "bands", 3, nullptr) != 0) {
        throw std::runtime_error("vips_black failed");
    }
    vips_draw_rect(canvas, orange, 3, 0, 0, width, height, "fill", TRUE, nullptr);
    double blue[] = {30, 60, 200};
    vips_draw_rect(canvas, blue, 3, width / 4, height / 4, width / 2, height / 3, "fill", TRUE,
                   nullptr);
    double white[] = {255, 255, 255};
    vips_draw_rect(canvas, white, 3, 0, height * 3 / 4, width, height / 8, "fill", TRUE, nullptr);

    void* buffer = nullptr;
    size_t length = 0;
    const int failed = vips_pngsave_buffer(canvas, &buffer, &length, nullptr);
    g_object_unref(canvas);
    if (failed != 0) throw std::runtime_error("vips_pngsave_buffer failed");
    std::string png(static_cast<const char*>(buffer), length);
    g_free(buffer);
    return png;
}

SandboxProcess::SandboxProcess(std::vector<std::string> args) {
    std::vector<std::string> argv = {(binary_dir() / "image-edit-sandbox").string(), "--port", "0",
                                     "--data-dir", scratch_dir("sandbox-data").string()};
    argv.insert(argv.end(), args.begin(), args.end());
    process_ = std::make_unique<ChildProcess>(
        std::move(argv), Env{{"PATH", "/usr/bin:/bin"}});
    const auto line = process_->wait_for_line(
        [](const std::string& text) { return text.find("Sandbox listening") != std::string::npos; },
        std::chrono::seconds(20));
    if (!line) throw std::runtime_error("sandbox did not start: " + process_->stderr_text());
    port_ = nlohmann::json::parse(*line).at("port").get<unsigned short>();
}

std::string SandboxProcess::base() const { return "http://127.0.0.1:" + std::to_string(port_); }

nlohmann::json SandboxProcess::get(const std::string& path) {
    const auto reply = http_request(port_, "GET", path);
    if (reply.status >= 300) throw std::runtime_error("sandbox GET " + path + ": " + reply.body);
    return nlohmann::json::parse(reply.body);
}

nlohmann::json SandboxProcess::post(const std::string& path, const nlohmann::json& body) {
    const auto reply = http_request(port_, "POST", path, body.dump(),
                                    {{"Content-Type", "application/json"}});
    if (reply.status >= 300) throw std::runtime_error("sandbox POST " + path + ": " + reply.body);
    return reply.body.empty() ? nlohmann::json{} : nlohmann::json::parse(reply.body);
}

void SandboxProcess::remove(const std::string& path) { (void)http_request(port_, "DELETE", path); }

Stack::Stack(Env service_env, int instances) {
    std::vector<unsigned short> ports;
    std::string service_urls;
    for (int i = 0; i < std::max(1, instances); ++i) {
        ports.push_back(free_port());
        if (!service_urls.empty()) service_urls += ",";
        service_urls += "http://127.0.0.1:" + std::to_string(ports.back()) + "/webhook/clickup";
    }
    sandbox_ = std::make_unique<SandboxProcess>(std::vector<std::string>{
        "--service-url", service_urls,
        "--webhook-secret", ServiceProcess::kSecret, "--field-id", ServiceProcess::kFieldId});
    // Fast settings: the sandbox answers in milliseconds, so waits shrink to match.
    sandbox_->post("/admin/scenario", {{"wavespeed_delay_ms", 60}});
    Env common = {
        {"CLICKUP_API_KEY", "test-clickup-key-1"},
        {"OPENROUTER_API_KEY", "test-openrouter-key-1"},
        {"WAVESPEED_API_KEY", "test-wavespeed-key-1"},
        {"CLICKUP_API_BASE_URL", sandbox_->base() + "/clickup/api/v2"},
        {"OPENROUTER_API_BASE_URL", sandbox_->base() + "/openrouter/api/v1"},
        {"WAVESPEED_API_BASE_URL", sandbox_->base() + "/wavespeed/api/v3"},
        {"WAVESPEED_POLL_INTERVAL_SECONDS", "0.05"},
        {"VALIDATION_DELAY_SECONDS", "0.05"},
        {"TASK_DEADLINE_SECONDS", "60"},
        // A resumed run waits out this timeout before looking for a write of unknown outcome.
        {"TIMEOUT_CLICKUP_SECONDS", "3"},
        // The sandbox has no plan limit; the token bucket is tested on its own.
        {"CLICKUP_RATE_LIMIT_PER_MINUTE", "60000"},
    };
    // One journal for the life of the stack, so a restarted service resumes from it.
    common["JOURNAL_PATH"] = (scratch_dir("stack-journal") / "journal.sqlite3").string();
    // On Redis, the same: one server for the life of the stack. Several instances always
    // share one.
    if ((testing_on_redis() || instances > 1) && !service_env.contains("STATE_BACKEND")) {
        redis_ = std::make_shared<RedisServer>();
        for (auto& [key, value] : redis_backend_env(*redis_)) common[key] = value;
    }
    for (const auto port : ports) {
        Env env = common;
        env["PORT"] = std::to_string(port);
        // Each instance keeps its name across restarts, so it takes back its own jobs.
        env["INSTANCE_ID"] = "stack-" + std::to_string(port);
        for (auto& [key, value] : service_env) env[key] = value;
        service_envs_.push_back(env);
        services_.push_back(std::make_unique<ServiceProcess>(std::move(env)));
    }
}

int Stack::stop_service(int signal, std::size_t instance) {
    auto& process = services_.at(instance)->process();
    process.signal(signal);
    const auto code = process.wait_exit(std::chrono::seconds(60));
    if (!code) throw std::runtime_error("service did not exit after signal " + std::to_string(signal));
    return *code;
}

void Stack::start_service(std::size_t instance) {
    services_.at(instance) = std::make_unique<ServiceProcess>(service_envs_.at(instance));
}

std::string Stack::add_task(const std::string& id,
                            const std::string& description,
                            const std::string& image_file) {
    nlohmann::json task = {{"id", id}, {"name", "Task " + id}, {"description", description},
                           {"status", "to do"}};
    if (!image_file.empty()) {
        task["attachments"] = {{{"file", image_file},
                                {"title", std::filesystem::path(image_file).filename().string()}}};
    }
    return sandbox_->post("/admin/tasks", task).at("id").get<std::string>();
}

void Stack::tick(const std::string& task_id, int deliveries) {
    sandbox_->post("/admin/tasks/" + task_id + "/tick", {{"deliveries", deliveries}});
}

nlohmann::json Stack::wait_for_end(const std::string& task_id, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        auto task = sandbox_->get("/admin/tasks/" + task_id);
        const auto status = task.at("status").at("status").get<std::string>();
        if (status != "to do" && !task.value("ai_edit", true) && !task.at("comments").empty()) {
            return task;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    std::string logs;
    for (const auto& service : services_) logs += service->process().stdout_text();
    throw std::runtime_error("task " + task_id + " did not finish; service log:\n" + logs);
}

nlohmann::json Stack::requests(const std::string& service) {
    return sandbox_->get("/admin/requests?service=" + service);
}

std::size_t submissions_made(Stack& stack) {
    std::size_t submissions = 0;
    for (const auto& request : stack.requests("wavespeed")) {
        const auto path = request.at("path").get<std::string>();
        if (request.at("method") == "POST" && path.find("/predictions") == std::string::npos &&
            path.find("/media/") == std::string::npos) {
            ++submissions;
        }
    }
    return submissions;
}

std::size_t count_titled(const nlohmann::json& task, const std::string& prefix) {
    std::size_t count = 0;
    for (const auto& attachment : task.at("attachments")) {
        if (attachment.at("title").get<std::string>().starts_with(prefix)) ++count;
    }
    return count;
}

void check_ended_once(Stack& stack, const std::string& task_id, const std::string& history_token,
                      const std::vector<std::size_t>& instances) {
    INFO("task " << task_id);
    const auto task = stack.wait_for_end(task_id, std::chrono::seconds(90));
    CHECK(task.at("status").at("status") == "complete");
    CHECK_FALSE(task.at("ai_edit").get<bool>());
    CHECK(task.at("comments").size() == 1);
    CHECK(count_titled(task, "ai-source_") == 1);
    CHECK(count_titled(task, "ai-edit_") == 1);
    for (const auto instance : instances) {
        // The ending is recorded just after the last write to the task, which the sandbox may
        // show first: the history gets a moment to catch up.
        nlohmann::json runs;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        do {
            const auto reply =
                http_request(stack.service(instance).port(), "GET", "/tasks/" + task_id, {},
                             {{"Authorization", "Bearer " + history_token}});
            REQUIRE(reply.status == 200);
            runs = nlohmann::json::parse(reply.body).at("runs");
            if (runs.size() != 1 || runs[0].at("state") != "running") break;
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        } while (std::chrono::steady_clock::now() < deadline);
        REQUIRE(runs.size() == 1);
        CHECK(runs[0].at("state") == "complete");
    }
}

}  // namespace iea::testing
