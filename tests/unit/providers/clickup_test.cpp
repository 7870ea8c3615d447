#include "iea/providers/clickup.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "fixtures.hpp"

using namespace std::chrono_literals;
using fixtures::error_of;
using iea::providers::ClickUpClient;
using iea::providers::ClickUpOptions;
using iea::providers::ErrorKind;
using iea::testing::json_step;
using iea::testing::run_task;
using iea::testing::ScriptedServer;
using iea::testing::Step;
using nlohmann::json;

namespace {

constexpr const char* kTaskJson = R"({
  "id": "t1", "name": "Banner", "description": "make it turquoise",
  "status": {"status": "to do", "color": "#000"},
  "attachments": [
    {"id": "a1.png", "title": "banner.png", "url": "http://127.0.0.1:1/f/banner.png",
     "extension": "png", "mimetype": "image/png", "size": 1234, "date": "1700000000000"},
    {"id": "a2.psd", "title": "src.psd", "url": "http://127.0.0.1:1/f/src.psd",
     "extension": "psd", "mimetype": null, "size": "99", "date": 1700000001000}
  ],
  "custom_fields": [
    {"id": "f-checked", "name": "AI Edit", "type": "checkbox", "value": "true"},
    {"id": "f-bool", "name": "Other", "type": "checkbox", "value": true},
    {"id": "f-unset", "name": "Unset", "type": "checkbox"},
    {"id": "f-false", "name": "False", "type": "checkbox", "value": "false"}
  ]})";

struct Fixture {
    boost::asio::io_context io;
    ScriptedServer api{io};
    iea::http::HttpClient http{io.get_executor()};
    ClickUpClient client{http, options()};

    ClickUpOptions options(double per_minute = 0) {
        ClickUpOptions out;
        out.base_url = api.base_url() + "/api/v2";
        out.token = iea::config::Secret(fixtures::kToken);
        out.timeout = 2s;
        out.retry = fixtures::fast_retries(3);
        out.requests_per_minute = per_minute;
        return out;
    }
};

}  // namespace

TEST_CASE("clickup: get_task reads the task and sends the bare token", "[providers]") {
    Fixture f;
    f.api.script("GET /api/v2/task/t1", {json_step(200, kTaskJson)});

    const auto task = run_task(f.io, f.client.get_task("t1"));

    CHECK(task.id == "t1");
    CHECK(task.name == "Banner");
    CHECK(task.description == "make it turquoise");
    CHECK(task.status == "to do");
    REQUIRE(task.attachments.size() == 2);
    CHECK(task.attachments[0].title == "banner.png");
    CHECK(task.attachments[0].mimetype == "image/png");
    CHECK(task.attachments[0].size == 1234);
    CHECK(task.attachments[0].date_ms == 1700000000000);
    CHECK(task.attachments[1].mimetype.empty());
    CHECK(task.attachments[1].size == 99);
    CHECK(task.attachments[1].date_ms == 1700000001000);
    CHECK(task.is_checked("f-checked"));
    CHECK(task.is_checked("f-bool"));
    CHECK_FALSE(task.is_checked("f-unset"));
    CHECK_FALSE(task.is_checked("f-false"));
    CHECK_FALSE(task.is_checked("no-such-field"));

    const auto seen = f.api.requests_for("GET /api/v2/task/t1");
    REQUIRE(seen.size() == 1);
    CHECK(seen[0].header("authorization") == fixtures::kToken);
}

TEST_CASE("clickup: download sends no credentials to the file host", "[providers]") {
    Fixture f;
    ScriptedServer files(f.io);
    files.script("GET /f/banner.png", {Step{200, "PNGBYTES", {{"Content-Type", "image/png"}}, {}}});

    const auto bytes = run_task(f.io, f.client.download(files.base_url() + "/f/banner.png", 1000));

    CHECK(bytes == "PNGBYTES");
    REQUIRE(files.requests().size() == 1);
    CHECK_FALSE(files.requests()[0].has_header("authorization"));

    SECTION("a file over the cap is refused") {
        const auto failure =
            error_of(f.io, f.client.download(files.base_url() + "/f/banner.png", 4));
        CHECK(failure.kind() == ErrorKind::kTooLarge);
        CHECK(failure.operation() == "download");
    }
}

TEST_CASE("clickup: upload_attachment sends one multipart part named attachment", "[providers]") {
    Fixture f;
    const auto answer = R"({"id":"u1.png","version":"0","date":1,"title":"result.png",
        "extension":"png","thumbnail_small":null,"thumbnail_large":null,
        "url":"http://127.0.0.1:1/u1.png"})";
    f.api.script("POST /api/v2/task/t1/attachment", {json_step(200, answer)});

    const auto uploaded = run_task(
        f.io,
        f.client.upload_attachment("t1", "result.png", "image/png", std::string("\x89PNG\0x", 6)));

    CHECK(uploaded.id == "u1.png");
    CHECK(uploaded.url == "http://127.0.0.1:1/u1.png");
    CHECK(uploaded.title == "result.png");
    const auto seen = f.api.requests_for("POST /api/v2/task/t1/attachment");
    REQUIRE(seen.size() == 1);
    const auto content_type = seen[0].header("content-type");
    REQUIRE(content_type.starts_with("multipart/form-data; boundary="));
    const auto boundary = content_type.substr(content_type.find('=') + 1);
    const auto& body = seen[0].body;
    CHECK(body.starts_with("--" + boundary + "\r\n"));
    CHECK(
        body.find("Content-Disposition: form-data; name=\"attachment\"; filename=\"result.png\"") !=
        std::string::npos);
    CHECK(body.find("Content-Type: image/png\r\n\r\n") != std::string::npos);
    CHECK(body.find(std::string("\x89PNG\0x", 6)) != std::string::npos);
    CHECK(body.ends_with("\r\n--" + boundary + "--\r\n"));
    CHECK(seen[0].header("authorization") == fixtures::kToken);

    SECTION("a 200 that is not JSON is tolerated with an empty URL") {
        f.api.script("POST /api/v2/task/t2/attachment", {Step{200, "OK", {}, {}}});
        const auto odd =
            run_task(f.io, f.client.upload_attachment("t2", "a.png", "image/png", "x"));
        CHECK(odd.url.empty());
    }
}

TEST_CASE("clickup: writes send the contract's paths and bodies", "[providers]") {
    Fixture f;
    f.api.script("POST /api/v2/task/t1/field/f-checked", {json_step(200, "{}")});
    f.api.script("PUT /api/v2/task/t1", {json_step(200, kTaskJson)});
    f.api.script("POST /api/v2/task/t1/comment",
                 {json_step(200, R"({"id":"c9","hist_id":"h1","date":1})")});

    run_task(f.io, f.client.set_checkbox("t1", "f-checked", false));
    run_task(f.io, f.client.set_status("t1", "Needs Human Review"));
    const auto comment = run_task(f.io, f.client.add_comment("t1", "Done: score 9", true));

    CHECK(comment == "c9");
    // Three calls, one kept-alive connection.
    CHECK(f.http.connections_opened() == 1);
    const auto field = f.api.requests_for("POST /api/v2/task/t1/field/f-checked");
    REQUIRE(field.size() == 1);
    CHECK(json::parse(field[0].body) == json{{"value", false}});
    CHECK(field[0].header("content-type") == "application/json");
    const auto status = f.api.requests_for("PUT /api/v2/task/t1");
    REQUIRE(status.size() == 1);
    CHECK(json::parse(status[0].body) == json{{"status", "Needs Human Review"}});
    const auto posted = f.api.requests_for("POST /api/v2/task/t1/comment");
    REQUIRE(posted.size() == 1);
    CHECK(json::parse(posted[0].body) ==
          json{{"comment_text", "Done: score 9"}, {"notify_all", true}});
}

TEST_CASE("clickup: error answers become typed errors", "[providers]") {
    Fixture f;

    SECTION("401 with err and ECODE is not retried and names no key") {
        f.api.script(
            "GET /api/v2/task/t1",
            {json_step(401, R"({"err":"Token invalid test-secret-1","ECODE":"OAUTH_025"})")});
        const auto failure = error_of(f.io, f.client.get_task("t1"));
        CHECK(failure.kind() == ErrorKind::kAuthentication);
        CHECK(failure.status() == 401);
        CHECK(std::string(failure.what()) ==
              "clickup: get_task: HTTP 401 authentication failed: Token invalid [redacted] "
              "(OAUTH_025)");
        CHECK(f.api.requests().size() == 1);
    }
    SECTION("404 with an HTML body") {
        f.api.script("GET /api/v2/task/gone",
                     {Step{404, "<html>Cannot GET</html>", {{"Content-Type", "text/html"}}, {}}});
        const auto failure = error_of(f.io, f.client.get_task("gone"));
        CHECK(failure.kind() == ErrorKind::kNotFound);
        CHECK(failure.provider_message() == "<html>Cannot GET</html>");
    }
    SECTION("500 on a read is retried up to the attempt limit") {
        f.api.script("GET /api/v2/task/t1", {json_step(500, R"({"err":"boom","ECODE":"X_1"})")});
        CHECK(error_of(f.io, f.client.get_task("t1")).kind() == ErrorKind::kProviderError);
        CHECK(f.api.requests().size() == 3);
    }
    SECTION("502 and 503 are retried up to the attempt limit") {
        f.api.script("GET /api/v2/task/t1", {json_step(502, "{}"), json_step(503, "{}")});
        const auto failure = error_of(f.io, f.client.get_task("t1"));
        CHECK(failure.status() == 503);
        CHECK(failure.kind() == ErrorKind::kProviderError);
        CHECK(f.api.requests().size() == 3);
    }
    SECTION("malformed JSON in a 200") {
        f.api.script("GET /api/v2/task/t1", {json_step(200, R"({"id":"t1",)")});
        CHECK(error_of(f.io, f.client.get_task("t1")).kind() == ErrorKind::kMalformedResponse);
    }
    SECTION("a comment answer without an id") {
        f.api.script("POST /api/v2/task/t1/comment", {json_step(200, "{}")});
        CHECK(error_of(f.io, f.client.add_comment("t1", "x", false)).kind() ==
              ErrorKind::kMalformedResponse);
    }
}

TEST_CASE("clickup: a 429 waits for X-RateLimit-Reset", "[providers]") {
    Fixture f;
    const auto reset = fixtures::unix_seconds_ahead(1s);
    f.api.script("GET /api/v2/task/t1",
                 {Step{429,
                       R"({"err":"Rate limit reached","ECODE":"APP_002"})",
                       {{"X-RateLimit-Limit", "100"},
                        {"X-RateLimit-Remaining", "0"},
                        {"X-RateLimit-Reset", std::to_string(reset)}},
                       {}},
                  json_step(200, kTaskJson)});

    CHECK(run_task(f.io, f.client.get_task("t1")).id == "t1");

    const auto seen = f.api.requests();
    REQUIRE(seen.size() == 2);
    const auto reset_at = std::chrono::system_clock::time_point{std::chrono::seconds{reset}};
    // The second attempt came no earlier than the reset time.
    CHECK(std::chrono::system_clock::now() >= reset_at);
    CHECK(fixtures::gap_ms(seen[0], seen[1]) >= 900);
}

TEST_CASE("clickup: non-idempotent writes are not blindly retried", "[providers]") {
    Fixture f;

    SECTION("an upload refused with 503 is sent again") {
        f.api.script("POST /api/v2/task/t1/attachment",
                     {json_step(503, "{}"), json_step(200, R"({"id":"u","url":"http://x/u"})")});
        CHECK(run_task(f.io, f.client.upload_attachment("t1", "a.png", "image/png", "x")).id ==
              "u");
        CHECK(f.api.requests().size() == 2);
    }
    SECTION("an upload that timed out is not sent again") {
        auto options = f.options();
        options.timeout = 300ms;
        ClickUpClient quick(f.http, options);
        f.api.script("POST /api/v2/task/t1/attachment",
                     {Step{200, "{}", {}, 1s}, json_step(200, R"({"id":"u"})")});
        const auto failure =
            error_of(f.io, quick.upload_attachment("t1", "a.png", "image/png", "x"));
        CHECK(failure.kind() == ErrorKind::kTimeout);
        CHECK(f.api.requests().size() == 1);
    }
    SECTION("a comment answered 502 is not sent again") {
        f.api.script("POST /api/v2/task/t1/comment", {json_step(502, "{}")});
        CHECK(error_of(f.io, f.client.add_comment("t1", "x", true)).status() == 502);
        CHECK(f.api.requests().size() == 1);
    }
}

TEST_CASE("clickup: the token bucket paces API calls", "[providers]") {
    Fixture f;
    auto options = f.options(600);  // one call every 100 ms once the burst is spent
    options.burst = 1;
    ClickUpClient paced(f.http, options);
    f.api.script("GET /api/v2/task/t1", {json_step(200, kTaskJson)});

    for (int i = 0; i < 4; ++i) run_task(f.io, paced.get_task("t1"));

    const auto seen = f.api.requests();
    REQUIRE(seen.size() == 4);
    CHECK(fixtures::gap_ms(seen[0], seen[3]) >= 290);
}
