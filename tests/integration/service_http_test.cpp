// Black-box tests of the running service over 127.0.0.1: health, webhook intake, limits,
// keep-alive and shutdown.

#include <signal.h>

#include <fstream>
#include <map>
#include <thread>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "iea/webhook/signature.hpp"
#include "support/harness.hpp"

using iea::testing::http_request;
using iea::testing::ServiceProcess;
using nlohmann::json;

namespace {

namespace asio = boost::asio;

std::string tick_body(const std::string& task_id, const std::string& history_id) {
    return json{{"event", "taskUpdated"},
                {"task_id", task_id},
                {"webhook_id", "wh-test"},
                {"history_items",
                 {{{"id", history_id},
                   {"field", "custom_field"},
                   {"custom_field", {{"id", ServiceProcess::kFieldId}, {"type", "checkbox"}}},
                   {"before", nullptr},
                   {"after", "true"}}}}}
        .dump();
}

iea::testing::HttpReply post_signed(unsigned short port, const std::string& body) {
    return http_request(port, "POST", "/webhook/clickup", body,
                        {{"X-Signature", iea::webhook::sign(ServiceProcess::kSecret, body)},
                         {"Content-Type", "application/json"}});
}

// A raw connection, for clients that misbehave on purpose.
struct RawClient {
    asio::io_context io;
    asio::ip::tcp::socket socket{io};
    explicit RawClient(unsigned short port) {
        socket.connect({asio::ip::make_address("127.0.0.1"), port});
    }
    void send(const std::string& bytes) { asio::write(socket, asio::buffer(bytes)); }
    // Everything until the server closes, or what arrived before `limit`.
    std::string read_until_closed() {
        std::string out;
        boost::system::error_code ec;
        asio::read(socket, asio::dynamic_buffer(out), ec);
        return out;
    }
};

}  // namespace

TEST_CASE("service: health endpoints answer", "[service]") {
    ServiceProcess service;
    for (const auto* path : {"/health", "/health/"}) {
        const auto reply = http_request(service.port(), "GET", path);
        CHECK(reply.status == 200);
        const auto body = json::parse(reply.body);
        CHECK(body["status"] == "healthy");
        CHECK(body["service"] == "image-edit-agent");
        CHECK(body["version"].is_string());
        CHECK(body["timestamp"].get<std::string>().ends_with("Z"));
    }
    const auto locks = json::parse(http_request(service.port(), "GET", "/health/locks").body);
    for (const auto* key : {"total_locks", "oldest_lock_seconds", "newest_lock_seconds",
                            "average_lock_age_seconds", "stale_locks"}) {
        CHECK(locks.contains(key));
    }
}

TEST_CASE("service: webhook intake answers every case with a reason", "[service]") {
    ServiceProcess service;
    const auto port = service.port();

    SECTION("a signed tick is accepted, its redelivery is already_processing") {
        const auto body = tick_body("task1", "h1");
        const auto first = post_signed(port, body);
        CHECK(first.status == 202);
        CHECK(json::parse(first.body)["status"] == "accepted");
        CHECK(json::parse(first.body)["task_id"] == "task1");
        const auto again = post_signed(port, body);
        CHECK(again.status == 200);
        CHECK(json::parse(again.body)["status"] == "already_processing");
    }
    SECTION("forged, unsigned and re-spaced bodies get 401") {
        const auto body = tick_body("task2", "h2");
        const auto forged = http_request(port, "POST", "/webhook/clickup", body,
                                         {{"X-Signature", std::string(64, 'a')}});
        CHECK(forged.status == 401);
        CHECK(json::parse(forged.body) == json{{"status", "failed"}, {"error", "invalid signature"}});
        CHECK(http_request(port, "POST", "/webhook/clickup", body).status == 401);
        const auto respaced = json::parse(body).dump(2);
        CHECK(http_request(port, "POST", "/webhook/clickup", respaced,
                           {{"X-Signature", iea::webhook::sign(ServiceProcess::kSecret, body)}})
                  .status == 401);
    }
    SECTION("signed but malformed bodies get 400 with the reason") {
        const auto bad_json = post_signed(port, "{\"event\":");
        CHECK(bad_json.status == 400);
        CHECK(json::parse(bad_json.body)["error"] == "body is not valid JSON");
        const auto empty = post_signed(port, "");
        CHECK(empty.status == 400);
        const auto no_task = post_signed(port, R"({"event":"taskUpdated"})");
        CHECK(json::parse(no_task.body)["error"] == "missing field: task_id");
    }
    SECTION("other events and other changes are ignored with the reason") {
        const auto other = post_signed(port, R"({"event":"taskCreated","task_id":"t3"})");
        CHECK(other.status == 200);
        CHECK(json::parse(other.body)["status"] == "ignored");
        CHECK(json::parse(other.body)["reason"] == "event taskCreated is not handled");
        const auto no_items = post_signed(port, R"({"event":"taskUpdated","task_id":"t3"})");
        CHECK(json::parse(no_items.body)["status"] == "ignored");
    }
    SECTION("a body over the limit gets 413") {
        const auto reply = http_request(port, "POST", "/webhook/clickup", std::string(2 << 20, 'x'));
        CHECK(reply.status == 413);
    }
    SECTION("wrong method gets 405 with Allow; unknown path 404") {
        const auto wrong = http_request(port, "GET", "/webhook/clickup");
        CHECK(wrong.status == 405);
        CHECK(wrong.headers.at("allow") == "POST");
        CHECK(http_request(port, "GET", "/nowhere").status == 404);
        CHECK(json::parse(http_request(port, "GET", "/nowhere").body)["status"] == "failed");
    }
}

TEST_CASE("service: corpus payloads get the answers their manifest implies", "[service]") {
    const auto shared = iea::testing::shared_dir();
    if (!shared) {
        WARN("skipped: ../shared/corpus is not next to this clone");
        return;
    }
    ServiceProcess service(iea::testing::Env{{"CLICKUP_WEBHOOK_SECRET", "PLACEHOLDER-NOT-A-REAL-SECRET-0123456789"},
                            {"CLICKUP_CUSTOM_FIELD_ID_AI_EDIT",
                             "c0ffee00-1a2b-4c3d-8e9f-0123456789ab"}});
    const auto dir = *shared / "corpus" / "webhooks";
    const auto send = [&](const char* name) {
        const auto body = iea::testing::read_file(dir / name);
        const auto reply = http_request(
            service.port(), "POST", "/webhook/clickup", body,
            {{"X-Signature", iea::webhook::sign("PLACEHOLDER-NOT-A-REAL-SECRET-0123456789", body)}});
        return json::parse(reply.body)["status"].get<std::string>();
    };
    CHECK(send("taskupdated-checkbox-checked.json") == "accepted");
    CHECK(send("taskupdated-checkbox-checked.json") == "already_processing");
    CHECK(send("taskupdated-checkbox-unchecked.json") == "ignored");
    CHECK(send("taskupdated-description-change.json") == "ignored");
    CHECK(send("taskupdated-attachment-added.json") == "ignored");
    CHECK(send("taskstatusupdated-status-change.json") == "ignored");
}

TEST_CASE("service: one connection serves several requests (keep-alive)", "[service]") {
    ServiceProcess service;
    RawClient client(service.port());
    const std::string request = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    client.send(request + request + "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    const auto all = client.read_until_closed();
    std::size_t answers = 0;
    for (auto at = all.find("HTTP/1.1 200"); at != std::string::npos;
         at = all.find("HTTP/1.1 200", at + 1)) {
        ++answers;
    }
    CHECK(answers == 3);
}

TEST_CASE("service: a slow or silent client cannot pin a connection", "[service]") {
    ServiceProcess service(iea::testing::Env{{"HEADER_TIMEOUT_SECONDS", "0.5"}, {"IDLE_TIMEOUT_SECONDS", "0.5"}});

    SECTION("headers never finished") {
        RawClient client(service.port());
        client.send("POST /webhook/clickup HTTP/1.1\r\nHost: x\r\n");
        const auto started = std::chrono::steady_clock::now();
        client.read_until_closed();
        CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(5));
    }
    SECTION("connected and silent") {
        RawClient client(service.port());
        client.read_until_closed();  // returns once the server closes
        SUCCEED();
    }
    // The service still serves others afterwards.
    CHECK(http_request(service.port(), "GET", "/health").status == 200);
}

TEST_CASE("service: SIGTERM answers a request in flight 503 to be resent, then exits 0",
          "[service]") {
    ServiceProcess service;
    RawClient client(service.port());
    const auto body = tick_body("task-drain", "h-drain");
    const auto signature = iea::webhook::sign(ServiceProcess::kSecret, body);
    const std::string head = "POST /webhook/clickup HTTP/1.1\r\nHost: x\r\nX-Signature: " +
                             signature + "\r\nContent-Length: " + std::to_string(body.size()) +
                             "\r\n\r\n";
    client.send(head + body.substr(0, 10));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));

    service.process().signal(SIGTERM);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    client.send(body.substr(10));
    // The request gets a whole answer; since the service is stopping it takes no new work,
    // and says so in a way ClickUp retries.
    const auto answer = client.read_until_closed();
    CHECK_THAT(answer, Catch::StartsWith("HTTP/1.1 503"));
    CHECK_THAT(answer, Catch::Contains("Retry-After: 30"));
    CHECK(service.process().wait_exit(std::chrono::seconds(10)) == 0);
}

TEST_CASE("service: logs are JSON lines and never carry the secret", "[service]") {
    ServiceProcess service(iea::testing::Env{{"LOG_LEVEL", "DEBUG"}});
    (void)post_signed(service.port(), tick_body("task-log", "h-log"));
    (void)http_request(service.port(), "POST", "/webhook/clickup", tick_body("x", "y"),
                       {{"X-Signature", std::string(64, 'b')}});
    service.process().signal(SIGTERM);
    REQUIRE(service.process().wait_exit(std::chrono::seconds(10)) == 0);

    const auto out = service.process().stdout_text();
    CHECK_THAT(out, !Catch::Contains(ServiceProcess::kSecret));
    CHECK_THAT(out, !Catch::Contains(std::string(64, 'b')));
    std::istringstream lines(out);
    int count = 0;
    for (std::string line; std::getline(lines, line); ++count) {
        const auto entry = json::parse(line);
        CHECK(entry.contains("timestamp"));
        CHECK(entry["timestamp"].get<std::string>().ends_with("Z"));
        CHECK(entry.contains("level"));
        CHECK(entry.contains("logger"));
        CHECK(entry.contains("message"));
    }
    CHECK(count >= 3);
    CHECK_THAT(out, Catch::Contains(R"("message":"Webhook accepted","task_id":"task-log")"));
}

TEST_CASE("service: the task history needs its bearer token and a task id", "[service]") {
    SECTION("off unless a token is configured") {
        ServiceProcess service;
        const auto reply = http_request(service.port(), "GET", "/tasks/abc123");
        CHECK(reply.status == 403);
        CHECK_THAT(reply.body, Catch::Contains("HISTORY_API_TOKEN"));
    }
    SECTION("with a token") {
        ServiceProcess service(iea::testing::Env{{"HISTORY_API_TOKEN", "test-history-token-2"}});
        const std::map<std::string, std::string> bearer = {
            {"Authorization", "Bearer test-history-token-2"}};
        CHECK(http_request(service.port(), "GET", "/tasks/abc123").status == 401);
        CHECK(http_request(service.port(), "GET", "/tasks/abc123", {},
                           {{"Authorization", "Bearer test-history-token-3"}})
                  .status == 401);
        CHECK(http_request(service.port(), "GET", "/tasks/a%2Fb", {}, bearer).status == 400);

        // A tick is in the history at once, before its run has got anywhere.
        REQUIRE(post_signed(service.port(), tick_body("hist1", "h-hist")).status == 202);
        const auto reply = http_request(service.port(), "GET", "/tasks/hist1", {}, bearer);
        REQUIRE(reply.status == 200);
        const auto history = json::parse(reply.body);
        CHECK(history.at("task_id") == "hist1");
        REQUIRE(history.at("runs").size() == 1);
        CHECK(history.at("runs")[0].at("delivery_id") == "wh-test:h-hist");
        CHECK(http_request(service.port(), "GET", "/tasks/unknown", {}, bearer).body ==
              R"({"runs":[],"task_id":"unknown"})");
        // The scheme's name is case-insensitive.
        CHECK(http_request(service.port(), "GET", "/tasks/hist1", {},
                           {{"Authorization", "bearer test-history-token-2"}})
                  .status == 200);
    }
}

TEST_CASE("service: a bad REDIS_URL stops the start with the reason, never the password",
          "[service]") {
    try {
        iea::testing::ServiceProcess service(
            iea::testing::Env{{"STATE_BACKEND", "redis"},
                              {"REDIS_URL", "redis://:test-password-1@127.0.0.1:notaport"}});
        FAIL("the service started");
    } catch (const std::exception& error) {
        const std::string what = error.what();
        CHECK(what.find("REDIS_URL") != std::string::npos);
        CHECK(what.find("test-password-1") == std::string::npos);
    }
}

TEST_CASE("service: a journal that cannot be used stops the start with the reason", "[service]") {
    if (iea::testing::testing_on_redis()) {
        WARN("the SQLite journal is not used with STATE_BACKEND=redis: skipped");
        return;
    }
    const auto blocker = iea::testing::scratch_dir("journal-refused") / "a-file";
    std::ofstream(blocker) << "not a folder";
    CHECK_THROWS_WITH(
        ServiceProcess(iea::testing::Env{{"JOURNAL_PATH", (blocker / "journal.sqlite3").string()}}),
        Catch::Contains("the journal") && Catch::Contains("cannot be created"));
}
