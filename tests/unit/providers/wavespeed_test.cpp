#include "iea/providers/wavespeed.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "fixtures.hpp"

using namespace std::chrono_literals;
using fixtures::error_of;
using iea::providers::ErrorKind;
using iea::providers::PredictionStatus;
using iea::providers::WaveSpeedClient;
using iea::providers::WaveSpeedOptions;
using iea::testing::json_step;
using iea::testing::RawAction;
using iea::testing::RawServer;
using iea::testing::run_task;
using iea::testing::ScriptedServer;
using iea::testing::Step;
using nlohmann::json;

namespace {

constexpr const char* kSubmit = "POST /api/v3/alibaba/wan-2.5/image-edit";
constexpr const char* kPoll = "GET /api/v3/predictions/p1/result";

std::string envelope(const std::string& status,
                     const json& outputs = json::array(),
                     const std::string& error = "") {
    return json{{"code", 200},
                {"message", "success"},
                {"data",
                 {{"id", "p1"},
                  {"model", "alibaba/wan-2.5/image-edit"},
                  {"outputs", outputs},
                  {"status", status},
                  {"error", error},
                  {"has_nsfw_contents", json::array()}}}}
        .dump();
}

WaveSpeedOptions options_for(const std::string& base_url) {
    WaveSpeedOptions out;
    out.base_url = base_url + "/api/v3";
    out.key = iea::config::Secret(fixtures::kToken);
    out.timeout = 2s;
    out.poll_timeout = 1s;
    out.retry = fixtures::fast_retries(3);
    return out;
}

struct Fixture {
    boost::asio::io_context io;
    ScriptedServer api{io};
    iea::http::HttpClient http{io.get_executor()};
    WaveSpeedClient client{http, options_for(api.base_url())};
};

json edit_input() {
    return {{"images", {"http://127.0.0.1:1/in.png"}},
            {"prompt", "turquoise background"},
            {"enable_base64_output", false},
            {"enable_sync_mode", false},
            {"seed", -1}};
}

}  // namespace

TEST_CASE("wavespeed: submit posts the input to the model path", "[providers]") {
    Fixture f;
    f.api.script(kSubmit, {json_step(200, envelope("created"))});

    CHECK(run_task(f.io, f.client.submit("alibaba/wan-2.5/image-edit", edit_input())) == "p1");

    const auto seen = f.api.requests_for(kSubmit);
    REQUIRE(seen.size() == 1);
    CHECK(seen[0].header("authorization") == std::string("Bearer ") + fixtures::kToken);
    CHECK(seen[0].header("content-type") == "application/json");
    CHECK(json::parse(seen[0].body) == edit_input());
}

TEST_CASE("wavespeed: a submission is never sent twice once it may have been taken",
          "[providers]") {
    Fixture f;
    SECTION("timeout") {
        auto options = options_for(f.api.base_url());
        options.timeout = 300ms;
        WaveSpeedClient quick(f.http, options);
        f.api.script(kSubmit, {Step{200, envelope("created"), {}, 1s}});
        CHECK(error_of(f.io, quick.submit("alibaba/wan-2.5/image-edit", edit_input())).kind() ==
              ErrorKind::kTimeout);
        CHECK(f.api.requests().size() == 1);
    }
    SECTION("500 and 502") {
        f.api.script(kSubmit, {json_step(502, R"({"code":502,"message":"bad gateway"})")});
        CHECK(
            error_of(f.io, f.client.submit("alibaba/wan-2.5/image-edit", edit_input())).status() ==
            502);
        CHECK(f.api.requests().size() == 1);
    }
    SECTION("code other than 200 inside HTTP 200") {
        f.api.script(kSubmit, {json_step(200, R"({"code":400,"message":"prompt required"})")});
        const auto failure =
            error_of(f.io, f.client.submit("alibaba/wan-2.5/image-edit", edit_input()));
        CHECK(failure.kind() == ErrorKind::kBadRequest);
        CHECK(failure.provider_message() == "code 400: prompt required");
    }
    SECTION("but a refusal (429, 503) proves it was not taken") {
        f.api.script(
            kSubmit,
            {Step{429, R"({"code":429,"message":"tier limit"})", {{"Retry-After", "1"}}, {}},
             json_step(503, "{}"),
             json_step(200, envelope("created"))});
        CHECK(run_task(f.io, f.client.submit("alibaba/wan-2.5/image-edit", edit_input())) == "p1");
        const auto seen = f.api.requests();
        REQUIRE(seen.size() == 3);
        CHECK(fixtures::gap_ms(seen[0], seen[1]) >= 1000);
    }
    SECTION("a model path that is not a plain path is refused before sending") {
        CHECK(error_of(f.io, f.client.submit("../admin?x=1", edit_input())).kind() ==
              ErrorKind::kBadRequest);
        CHECK(f.api.requests().empty());
    }
}

TEST_CASE("wavespeed: a dropped submit connection is not resubmitted", "[providers]") {
    boost::asio::io_context io;
    iea::http::HttpClient http(io.get_executor());
    RawServer server(io, [](const auto&) { return RawAction{RawAction::Kind::kClose, {}}; });
    WaveSpeedClient client(http, options_for(server.base_url()));

    CHECK(error_of(io, client.submit("alibaba/wan-2.5/image-edit", edit_input())).kind() ==
          ErrorKind::kConnection);
    CHECK(server.requests().size() == 1);
}

TEST_CASE("wavespeed: wait_for polls until the prediction finishes", "[providers]") {
    Fixture f;
    SECTION("completed, through passing poll failures, without resubmitting") {
        f.api.script(kPoll,
                     {json_step(200, envelope("created")),
                      json_step(200, envelope("processing")),
                      json_step(503, "{}"),
                      json_step(503, "{}"),
                      json_step(503, "{}"),
                      json_step(200, envelope("completed", {"http://127.0.0.1:1/o.jpeg"}))});
        const auto prediction = run_task(f.io, f.client.wait_for("p1", 20ms, 10s));
        CHECK(prediction.status == PredictionStatus::kCompleted);
        CHECK(prediction.outputs == std::vector<std::string>{"http://127.0.0.1:1/o.jpeg"});
        CHECK(f.api.requests_for(kPoll).size() == 6);
        CHECK(f.api.requests_for(kSubmit).empty());
        CHECK(f.api.requests()[0].header("authorization") ==
              std::string("Bearer ") + fixtures::kToken);
    }
    SECTION("failed is a result, with WaveSpeed's reason") {
        f.api.script(kPoll, {json_step(200, envelope("failed", json::array(), "NSFW detected"))});
        const auto prediction = run_task(f.io, f.client.wait_for("p1", 20ms, 10s));
        CHECK(prediction.status == PredictionStatus::kFailed);
        CHECK(prediction.error == "NSFW detected");
    }
    SECTION("gives up at the polling timeout") {
        f.api.script(kPoll, {json_step(200, envelope("processing"))});
        const auto failure = error_of(f.io, f.client.wait_for("p1", 50ms, 300ms));
        CHECK(failure.kind() == ErrorKind::kTimeout);
        CHECK(failure.operation() == "wait_for");
        CHECK(f.api.requests().size() >= 2);
    }
}

TEST_CASE("wavespeed: wait_for stops at errors that are not passing", "[providers]") {
    Fixture f;
    SECTION("401") {
        f.api.script(kPoll, {json_step(401, R"({"code":401,"message":"invalid key"})")});
        CHECK(error_of(f.io, f.client.wait_for("p1", 20ms, 10s)).kind() ==
              ErrorKind::kAuthentication);
    }
    SECTION("404") {
        f.api.script(kPoll, {json_step(404, R"({"code":404,"message":"no such prediction"})")});
        CHECK(error_of(f.io, f.client.wait_for("p1", 20ms, 10s)).kind() == ErrorKind::kNotFound);
    }
    SECTION("code 500 inside HTTP 200") {
        f.api.script(kPoll, {json_step(200, R"({"code":500,"message":"internal"})")});
        CHECK(error_of(f.io, f.client.wait_for("p1", 20ms, 10s)).kind() ==
              ErrorKind::kProviderError);
    }
    SECTION("completed without outputs") {
        f.api.script(kPoll, {json_step(200, envelope("completed"))});
        CHECK(error_of(f.io, f.client.wait_for("p1", 20ms, 10s)).kind() ==
              ErrorKind::kMalformedResponse);
    }
    CHECK(f.api.requests().size() == 1);
}

TEST_CASE("wavespeed: outputs are downloaded without credentials", "[providers]") {
    Fixture f;
    ScriptedServer cdn(f.io);
    cdn.script("GET /o.jpeg", {Step{200, "JPEGBYTES", {{"Content-Type", "image/jpeg"}}, {}}});

    CHECK(run_task(f.io, f.client.download_output(cdn.base_url() + "/o.jpeg", 1000)) ==
          "JPEGBYTES");
    REQUIRE(cdn.requests().size() == 1);
    CHECK_FALSE(cdn.requests()[0].has_header("authorization"));

    SECTION("a missing output is not found") {
        CHECK(
            error_of(f.io, f.client.download_output(cdn.base_url() + "/gone.jpeg", 1000)).kind() ==
            ErrorKind::kNotFound);
    }
}

TEST_CASE("wavespeed: upload_media sends the file in field file", "[providers]") {
    Fixture f;
    f.api.script(
        "POST /api/v3/media/upload/binary",
        {json_step(200, R"({"code":200,"data":{"download_url":"http://127.0.0.1:1/m.png"}})")});

    CHECK(run_task(f.io, f.client.upload_media("PNG", "in.png", "image/png")) ==
          "http://127.0.0.1:1/m.png");

    const auto seen = f.api.requests_for("POST /api/v3/media/upload/binary");
    REQUIRE(seen.size() == 1);
    CHECK(seen[0].header("content-type").starts_with("multipart/form-data; boundary="));
    CHECK(seen[0].body.find("name=\"file\"; filename=\"in.png\"") != std::string::npos);
    CHECK(seen[0].header("authorization") == std::string("Bearer ") + fixtures::kToken);
}
