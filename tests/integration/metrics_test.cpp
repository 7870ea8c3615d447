// GET /metrics and GET /health/ready of the running service, over 127.0.0.1: the counters
// move with real webhooks and a real task, and the text passes `promtool check metrics`.

#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <thread>

#include "iea/webhook/signature.hpp"
#include "support/stack.hpp"

using iea::testing::http_request;
using iea::testing::ServiceProcess;
using iea::testing::Stack;
using nlohmann::json;

namespace {

namespace asio = boost::asio;

// Parsed samples of one scrape, by series ("name{labels}").
class Scrape {
  public:
    explicit Scrape(unsigned short port) {
        const auto reply = http_request(port, "GET", "/metrics");
        status = reply.status;
        content_type = reply.headers.count("content-type") ? reply.headers.at("content-type") : "";
        text = reply.body;
        std::istringstream lines(text);
        for (std::string line; std::getline(lines, line);) {
            if (line.empty() || line.starts_with('#')) continue;
            const auto space = line.rfind(' ');
            samples_[line.substr(0, space)] = std::stod(line.substr(space + 1));
        }
    }

    // 0 for a series not (yet) present: counters with free labels appear at their first event.
    [[nodiscard]] double operator[](const std::string& series) const {
        const auto found = samples_.find(series);
        return found == samples_.end() ? 0 : found->second;
    }
    [[nodiscard]] bool has(const std::string& series) const { return samples_.count(series) > 0; }

    int status = 0;
    std::string content_type;
    std::string text;

  private:
    std::map<std::string, double> samples_;
};

std::string webhooks(const std::string& outcome) {
    return "iea_webhooks_total{outcome=\"" + outcome + "\"}";
}

std::string calls(const std::string& provider,
                  const std::string& operation,
                  const std::string& status) {
    return "iea_provider_calls_total{operation=\"" + operation + "\",provider=\"" + provider +
           "\",status=\"" + status + "\"}";
}

iea::testing::HttpReply post_signed(unsigned short port, const std::string& body) {
    return http_request(port,
                        "POST",
                        "/webhook/clickup",
                        body,
                        {{"X-Signature", iea::webhook::sign(ServiceProcess::kSecret, body)},
                         {"Content-Type", "application/json"}});
}

// A signed change of the task's name: well formed, but not a tick.
std::string rename_body(const std::string& task_id) {
    return json{{"event", "taskUpdated"},
                {"task_id", task_id},
                {"webhook_id", "wh-metrics"},
                {"history_items",
                 {{{"id", "h-rename"}, {"field", "name"}, {"before", "a"}, {"after", "b"}}}}}
        .dump();
}

std::string test_image() {
    const auto path = iea::testing::scratch_dir("metrics") / "banner.png";
    std::ofstream(path, std::ios::binary) << iea::testing::make_test_png(640, 400);
    return path.string();
}

// Exit code and output of `promtool check metrics` fed `text`; nothing when promtool is absent.
std::optional<std::pair<int, std::string>> promtool_check(const std::string& text) {
    if (std::system("command -v promtool > /dev/null 2>&1") != 0) return std::nullopt;
    const auto path = iea::testing::scratch_dir("promtool") / "scrape.txt";
    std::ofstream(path, std::ios::binary) << text;
    const auto command = "promtool check metrics < '" + path.string() + "' 2>&1";
    FILE* pipe = ::popen(command.c_str(), "r");
    REQUIRE(pipe != nullptr);
    std::string output;
    char buffer[4096];
    for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) {
        output.append(buffer, n);
    }
    const int status = ::pclose(pipe);
    return std::pair{WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

}  // namespace

TEST_CASE("metrics: a real task and its webhooks move the counters", "[metrics]") {
    Stack stack;
    const auto port = stack.service().port();
    // One passing failure of ClickUp, retried: a 503 answer and a retry to count.
    stack.sandbox().post("/admin/faults",
                         {{"service", "clickup"},
                          {"method", "GET"},
                          {"path", "/task/m1$"},
                          {"kind", "status"},
                          {"status", 503},
                          {"times", 1}});
    const Scrape before(port);
    REQUIRE(before.status == 200);

    // A forged, a malformed, an ignored webhook; then a tick delivered twice.
    CHECK(http_request(port,
                       "POST",
                       "/webhook/clickup",
                       rename_body("m1"),
                       {{"X-Signature", std::string(64, 'a')}})
              .status == 401);
    CHECK(post_signed(port, "{\"event\":").status == 400);
    CHECK(post_signed(port, rename_body("m1")).status == 200);
    stack.add_task("m1", "Make the sky purple and keep everything else", test_image());
    stack.tick("m1", 2);
    const auto task = stack.wait_for_end("m1");
    CHECK(task["status"]["status"] == "complete");

    // The last writes happen before the lock goes: wait (bounded) for the task to leave.
    auto after = std::make_unique<Scrape>(port);
    for (int i = 0; i < 100 && (*after)["iea_tasks_in_flight"] > 0; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        after = std::make_unique<Scrape>(port);
    }
    const auto delta = [&](const std::string& series) { return (*after)[series] - before[series]; };

    // Webhooks by outcome, and the answer latency of every one. (No SECTIONs: each would run
    // the whole task again.)
    {
        CHECK(delta(webhooks("rejected_signature")) == 1);
        CHECK(delta(webhooks("bad_request")) == 1);
        CHECK(delta(webhooks("ignored")) >= 1);
        CHECK(delta(webhooks("accepted")) == 1);
        CHECK(delta(webhooks("already_processing")) >= 1);
        CHECK(delta(webhooks("unavailable")) == 0);
        CHECK(delta("iea_webhook_answer_duration_seconds_count") >= 5);
    }

    // Provider calls by status, and the retry.
    {
        CHECK(delta(calls("clickup", "get_task", "503")) == 1);
        CHECK(delta(calls("clickup", "get_task", "200")) >= 1);
        CHECK(delta("iea_provider_retries_total{operation=\"get_task\",provider=\"clickup\"}") ==
              1);
        CHECK(delta(calls("openrouter", "chat", "200")) >= 2);
        CHECK(delta(calls("wavespeed", "submit", "200")) >= 1);
        CHECK(delta(calls("clickup", "set_status", "200")) == 1);
        CHECK(delta("iea_provider_call_duration_seconds_count{operation=\"chat\","
                    "provider=\"openrouter\"}") >= 2);
    }

    // The task's end and its steps.
    {
        CHECK(delta("iea_tasks_finished_total{state=\"complete\"}") == 1);
        CHECK(delta("iea_tasks_finished_total{state=\"blocked\"}") == 0);
        for (const auto* step :
             {"check_task", "prepare_image", "enhance", "generate", "validate", "write"}) {
            INFO(step);
            CHECK(delta(std::string("iea_pipeline_step_duration_seconds_count{step=\"") + step +
                        "\"}") >= 1);
        }
    }

    // Gauges back at rest.
    {
        CHECK((*after)["iea_tasks_in_flight"] == 0);
        CHECK((*after)["iea_task_locks_held"] == 0);
        CHECK((*after)["iea_decode_workers_busy"] == 0);
    }

    // The text passes promtool.
    {
        CHECK_THAT(after->content_type, Catch::StartsWith("text/plain; version=0.0.4"));
        const auto check = promtool_check(after->text);
        if (!check) {
            WARN("promtool is not installed (Debian package prometheus): format not checked");
            return;
        }
        INFO(check->second);
        CHECK(check->first == 0);
    }
}

TEST_CASE("metrics: the gauges show a task while it runs", "[metrics]") {
    Stack stack;
    const auto port = stack.service().port();
    // The prompt writer answers slowly, so the task is caught in flight.
    stack.sandbox().post(
        "/admin/faults",
        {{"service", "openrouter"}, {"kind", "latency"}, {"latency_ms", 1500}, {"times", 1}});
    stack.add_task("m2", "Make the sky purple", test_image());
    stack.tick("m2");

    std::optional<Scrape> during;
    for (int i = 0; i < 100; ++i) {
        during.emplace(port);
        if ((*during)["iea_tasks_in_flight"] == 1) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    CHECK((*during)["iea_tasks_in_flight"] == 1);
    CHECK((*during)["iea_task_locks_held"] == 1);
    (void)stack.wait_for_end("m2");
}

TEST_CASE("readiness: ready while serving and the configuration checked", "[metrics]") {
    ServiceProcess service;
    const auto reply = http_request(service.port(), "GET", "/health/ready");
    CHECK(reply.status == 200);
    const auto body = json::parse(reply.body);
    CHECK(body["ready"] == true);
    CHECK(body["reasons"] == json::array());
    CHECK(body["checks"]["configuration"] == "ok");
    // Liveness stays the cheap answer it was.
    CHECK(http_request(service.port(), "GET", "/health").status == 200);
}

TEST_CASE("readiness: not ready once shutdown began", "[metrics]") {
    ServiceProcess service;
    // A request already begun keeps its connection through the shutdown; it is finished
    // after the SIGTERM and answered by a service that is stopping.
    asio::io_context io;
    asio::ip::tcp::socket socket(io);
    socket.connect({asio::ip::make_address("127.0.0.1"), service.port()});
    asio::write(socket, asio::buffer(std::string("GET /health/ready HTTP/1.1\r\nHost: x\r\n")));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));

    service.process().signal(SIGTERM);
    REQUIRE(service.process().wait_for_line(
        [](const std::string& line) {
            return line.find("Shutdown requested") != std::string::npos;
        },
        std::chrono::seconds(10)));
    asio::write(socket, asio::buffer(std::string("\r\n")));
    std::string answer;
    boost::system::error_code ec;
    asio::read(socket, asio::dynamic_buffer(answer), ec);

    CHECK_THAT(answer, Catch::StartsWith("HTTP/1.1 503"));
    CHECK_THAT(answer, Catch::Contains(R"("ready":false)"));
    CHECK_THAT(answer, Catch::Contains("shutting down"));
    CHECK(service.process().wait_exit(std::chrono::seconds(10)) == 0);
}
