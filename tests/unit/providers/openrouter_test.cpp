#include "iea/providers/openrouter.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "fixtures.hpp"

using namespace std::chrono_literals;
using fixtures::error_of;
using iea::providers::ChatRequest;
using iea::providers::ErrorKind;
using iea::providers::OpenRouterClient;
using iea::providers::OpenRouterOptions;
using iea::testing::json_step;
using iea::testing::RawAction;
using iea::testing::RawServer;
using iea::testing::run_task;
using iea::testing::ScriptedServer;
using iea::testing::Step;
using nlohmann::json;

namespace {

constexpr const char* kRoute = "POST /api/v1/chat/completions";

std::string answer(const json& content, const std::string& finish = "stop") {
    return json{{"id", "gen-1"},
                {"model", "anthropic/claude-sonnet-4.5"},
                {"choices",
                 {{{"index", 0},
                   {"finish_reason", finish},
                   {"message", {{"role", "assistant"}, {"content", content}}}}}},
                {"usage", {{"prompt_tokens", 120}, {"completion_tokens", 30}}}}
        .dump();
}

OpenRouterOptions options_for(const std::string& base_url) {
    OpenRouterOptions out;
    out.base_url = base_url + "/api/v1";
    out.key = iea::config::Secret(fixtures::kToken);
    out.model = "anthropic/claude-sonnet-4.5";
    out.max_tokens = 6000;
    out.reasoning_effort = "low";
    out.timeout = 2s;
    out.retry = fixtures::fast_retries(3);
    return out;
}

struct Fixture {
    boost::asio::io_context io;
    ScriptedServer api{io};
    iea::http::HttpClient http{io.get_executor()};
    OpenRouterClient client{http, options_for(api.base_url())};
};

ChatRequest simple() {
    ChatRequest request;
    request.system = "You rewrite edit requests.";
    request.user = "Make the background turquoise";
    return request;
}

}  // namespace

TEST_CASE("openrouter: chat sends text first, then images as data URLs", "[providers]") {
    Fixture f;
    f.api.script(kRoute, {json_step(200, answer("A turquoise background"))});
    auto request = simple();
    request.images = {{"image/png", "abc"}, {"image/jpeg", std::string("\xff\xd8\xff", 3)}};
    request.temperature = 0.2;

    const auto reply = run_task(f.io, f.client.chat(request));

    CHECK(reply.text == "A turquoise background");
    CHECK(reply.model == "anthropic/claude-sonnet-4.5");
    CHECK(reply.finish_reason == "stop");
    CHECK(reply.prompt_tokens == 120);
    CHECK(reply.completion_tokens == 30);

    const auto seen = f.api.requests_for(kRoute);
    REQUIRE(seen.size() == 1);
    CHECK(seen[0].header("authorization") == std::string("Bearer ") + fixtures::kToken);
    CHECK(seen[0].header("content-type") == "application/json");
    const auto body = json::parse(seen[0].body);
    CHECK(body.at("model") == "anthropic/claude-sonnet-4.5");
    CHECK(body.at("max_tokens") == 6000);
    CHECK(body.at("reasoning") == json{{"effort", "low"}});
    CHECK(body.at("temperature") == 0.2);
    const auto& messages = body.at("messages");
    REQUIRE(messages.size() == 2);
    CHECK(messages[0] == json{{"role", "system"}, {"content", "You rewrite edit requests."}});
    const auto& parts = messages[1].at("content");
    REQUIRE(parts.size() == 3);
    CHECK(parts[0] == json{{"type", "text"}, {"text", "Make the background turquoise"}});
    CHECK(parts[1].at("image_url").at("url") == "data:image/png;base64,YWJj");
    CHECK(parts[2].at("image_url").at("url") == "data:image/jpeg;base64,/9j/");
}

TEST_CASE("openrouter: the body follows configuration", "[providers]") {
    auto options = options_for("http://127.0.0.1:1");
    auto request = simple();

    SECTION("effort none sends no reasoning, no temperature unless asked") {
        options.reasoning_effort = "none";
        const auto body = iea::providers::build_chat_body(options, request);
        CHECK_FALSE(body.contains("reasoning"));
        CHECK_FALSE(body.contains("temperature"));
        CHECK_FALSE(body.contains("provider"));
    }
    SECTION("per-call max_tokens and provider routing") {
        request.max_tokens = 500;
        options.provider_routing = {{"order", {"Anthropic"}}, {"allow_fallbacks", false}};
        const auto body = iea::providers::build_chat_body(options, request);
        CHECK(body.at("max_tokens") == 500);
        CHECK(body.at("provider").at("order") == json{"Anthropic"});
    }
}

TEST_CASE("openrouter: content as parts is joined", "[providers]") {
    Fixture f;
    f.api.script(kRoute,
                 {json_step(200,
                            answer(json{{{"type", "text"}, {"text", "Hello "}},
                                        {{"type", "text"}, {"text", "world"}}}))});
    CHECK(run_task(f.io, f.client.chat(simple())).text == "Hello world");
}

TEST_CASE("openrouter: cut-off and empty answers are truncated, not short", "[providers]") {
    Fixture f;
    SECTION("finish_reason length") {
        f.api.script(kRoute, {json_step(200, answer("{\"score\": 8, \"iss", "length"))});
        const auto failure = error_of(f.io, f.client.chat(simple()));
        CHECK(failure.kind() == ErrorKind::kTruncatedAnswer);
    }
    SECTION("null content") {
        f.api.script(kRoute, {json_step(200, answer(nullptr))});
        CHECK(error_of(f.io, f.client.chat(simple())).kind() == ErrorKind::kTruncatedAnswer);
    }
    // The same request would be cut off again: no second attempt.
    CHECK(f.api.requests().size() == 1);
}

TEST_CASE("openrouter: errors inside a 200 body are errors", "[providers]") {
    Fixture f;
    SECTION("top-level error with a passing code is retried") {
        f.api.script(kRoute,
                     {json_step(200, R"({"error":{"code":502,"message":"upstream down"}})"),
                      json_step(200, answer("ok"))});
        CHECK(run_task(f.io, f.client.chat(simple())).text == "ok");
        CHECK(f.api.requests().size() == 2);
    }
    SECTION("top-level error with a request code is not") {
        f.api.script(kRoute,
                     {json_step(200, R"({"error":{"code":400,"message":"image_too_large"}})")});
        const auto failure = error_of(f.io, f.client.chat(simple()));
        CHECK(failure.kind() == ErrorKind::kBadRequest);
        CHECK(failure.provider_message() == "image_too_large");
        CHECK(f.api.requests().size() == 1);
    }
    SECTION("a choice that ended in error") {
        f.api.script(kRoute, {json_step(200, answer("partial", "error"))});
        CHECK(error_of(f.io, f.client.chat(simple())).kind() == ErrorKind::kProviderError);
    }
    SECTION("malformed JSON") {
        f.api.script(kRoute, {json_step(200, "{\"choices\": [")});
        CHECK(error_of(f.io, f.client.chat(simple())).kind() == ErrorKind::kMalformedResponse);
    }
}

TEST_CASE("openrouter: HTTP errors and their retries", "[providers]") {
    Fixture f;
    SECTION("401 is not retried and never shows the key") {
        f.api.script(
            kRoute,
            {json_step(401, R"({"error":{"code":401,"message":"No auth credentials found"}})")});
        const auto failure = error_of(f.io, f.client.chat(simple()));
        CHECK(failure.kind() == ErrorKind::kAuthentication);
        CHECK(std::string(failure.what()) ==
              "openrouter: chat: HTTP 401 authentication failed: No auth credentials found");
        CHECK(std::string(failure.what()).find(fixtures::kToken) == std::string::npos);
        CHECK(f.api.requests().size() == 1);
    }
    SECTION("a key echoed back by the server is redacted") {
        f.api.script(
            kRoute,
            {json_step(403, R"({"error":{"code":403,"message":"key test-secret-1 flagged"}})")});
        const auto failure = error_of(f.io, f.client.chat(simple()));
        CHECK(failure.kind() == ErrorKind::kAuthentication);
        CHECK(failure.provider_message() == "key [redacted] flagged");
        CHECK(std::string(failure.what()).find(fixtures::kToken) == std::string::npos);
    }
    SECTION("503 until the attempts run out") {
        f.api.script(kRoute, {json_step(503, R"({"error":{"code":503,"message":"no provider"}})")});
        const auto failure = error_of(f.io, f.client.chat(simple()));
        CHECK(failure.status() == 503);
        CHECK(f.api.requests().size() == 3);
    }
    SECTION("429 with Retry-After in seconds is waited out") {
        f.api.script(kRoute,
                     {Step{429,
                           R"({"error":{"code":429,"message":"slow down"}})",
                           {{"Retry-After", "1"}},
                           {}},
                      json_step(200, answer("ok"))});
        CHECK(run_task(f.io, f.client.chat(simple())).text == "ok");
        const auto seen = f.api.requests();
        REQUIRE(seen.size() == 2);
        CHECK(fixtures::gap_ms(seen[0], seen[1]) >= 1000);
    }
    SECTION("429 with Retry-After as an HTTP-date is waited out") {
        const auto when = std::chrono::system_clock::now() + 2s;
        f.api.script(kRoute,
                     {Step{429, "{}", {{"Retry-After", fixtures::http_date(when)}}, {}},
                      json_step(200, answer("ok"))});
        CHECK(run_task(f.io, f.client.chat(simple())).text == "ok");
        REQUIRE(f.api.requests().size() == 2);
        // HTTP-dates have whole seconds: the retry came no earlier than that second.
        CHECK(std::chrono::system_clock::now() >= std::chrono::floor<std::chrono::seconds>(when));
    }
    SECTION("a slow answer times out and is retried") {
        auto options = options_for(f.api.base_url());
        options.timeout = 300ms;
        OpenRouterClient quick(f.http, options);
        f.api.script(kRoute, {Step{200, answer("late"), {}, 1s}});
        const auto failure = error_of(f.io, quick.chat(simple()));
        CHECK(failure.kind() == ErrorKind::kTimeout);
        CHECK(failure.status() == 0);
        CHECK(f.api.requests().size() == 3);
    }
}

TEST_CASE("openrouter: socket faults are connection errors and retried", "[providers]") {
    boost::asio::io_context io;
    iea::http::HttpClient http(io.get_executor());

    SECTION("truncated body") {
        RawServer server(io, [](const auto&) {
            return RawAction{RawAction::Kind::kWriteAndClose,
                             "HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{\"choices\":"};
        });
        OpenRouterClient client(http, options_for(server.base_url()));
        CHECK(error_of(io, client.chat(simple())).kind() == ErrorKind::kConnection);
        CHECK(server.requests().size() == 3);
    }
    SECTION("dropped connection") {
        RawServer server(io, [](const auto&) { return RawAction{RawAction::Kind::kClose, {}}; });
        OpenRouterClient client(http, options_for(server.base_url()));
        CHECK(error_of(io, client.chat(simple())).kind() == ErrorKind::kConnection);
        CHECK(server.requests().size() == 3);
    }
    SECTION("answer larger than the cap") {
        RawServer server(io, [](const auto&) {
            return RawAction{RawAction::Kind::kWrite,
                             iea::testing::raw_response(200, std::string(4096, ' '))};
        });
        auto options = options_for(server.base_url());
        options.max_response_bytes = 1024;
        OpenRouterClient client(http, options);
        CHECK(error_of(io, client.chat(simple())).kind() == ErrorKind::kTooLarge);
        CHECK(server.requests().size() == 1);
    }
}
