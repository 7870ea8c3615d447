#include <catch2/catch.hpp>

#include "iea/pipeline/verdict.hpp"

using iea::pipeline::extract_json;
using iea::pipeline::parse_verdict;

TEST_CASE("verdict: read from what models really send", "[pipeline]") {
    SECTION("bare JSON") {
        const auto parsed = parse_verdict(R"({"score":9,"pass":true,"issues":[],"reasoning":"ok"})", 8);
        REQUIRE(parsed.verdict);
        CHECK(parsed.verdict->score == 9);
        CHECK(parsed.verdict->passed);
        CHECK(parsed.verdict->reasoning == "ok");
    }
    SECTION("inside a code fence after prose") {
        const auto parsed = parse_verdict(
            "Here is my assessment.\n```json\n{\"score\": 7.5, \"issues\": [\"logo moved\"]}\n```\n"
            "Let me know.", 8);
        REQUIRE(parsed.verdict);
        CHECK(parsed.verdict->score == 7.5);
        CHECK_FALSE(parsed.verdict->passed);
        CHECK(parsed.verdict->issues == std::vector<std::string>{"logo moved"});
    }
    SECTION("score as a string, and as N/10") {
        CHECK(parse_verdict(R"({"score":"8"})", 8).verdict->passed);
        CHECK(parse_verdict(R"({"score":"8/10"})", 8).verdict->score == 8);
        CHECK(parse_verdict(R"({"score":"4 / 5"})", 8).verdict->score == 8);
    }
    SECTION("braces inside strings do not confuse the extraction") {
        const auto parsed = parse_verdict(R"(x {"score":9,"reasoning":"kept {brand} text"} y)", 8);
        REQUIRE(parsed.verdict);
        CHECK(parsed.verdict->reasoning == "kept {brand} text");
    }
    SECTION("issues as objects and extra fields") {
        const auto parsed = parse_verdict(
            R"({"score":3,"confidence":0.9,"issues":[{"description":"wrong font"},{"severity":2}]})", 8);
        REQUIRE(parsed.verdict);
        CHECK(parsed.verdict->issues.at(0) == "wrong font");
        CHECK(parsed.verdict->issues.size() == 2);
    }
}

TEST_CASE("verdict: pass follows the threshold, not the model's word", "[pipeline]") {
    CHECK_FALSE(parse_verdict(R"({"score":6,"pass":true,"pass_fail":"PASS"})", 8).verdict->passed);
    CHECK(parse_verdict(R"({"score":8.0,"pass":false})", 8).verdict->passed);
    CHECK(parse_verdict(R"({"score":8.5})", 9).verdict->passed == false);
}

TEST_CASE("verdict: unreadable answers are errors, never passes", "[pipeline]") {
    CHECK(parse_verdict("I think it looks great!", 8).error ==
          "the validator's answer holds no JSON verdict");
    CHECK(parse_verdict(R"({"pass":true})", 8).error == "the validator's verdict has no score");
    CHECK_THAT(parse_verdict(R"({"score":"excellent"})", 8).error,
               Catch::Contains("not a number"));
    CHECK_THAT(parse_verdict(R"({"score":11})", 8).error, Catch::Contains("outside 0-10"));
    CHECK_THAT(parse_verdict(R"({"score":-1})", 8).error, Catch::Contains("outside 0-10"));
    CHECK(parse_verdict(R"({"score": 9, "issues": [)", 8).error ==
          "the validator's answer holds no JSON verdict");
}

TEST_CASE("verdict: arrays can be extracted too", "[pipeline]") {
    CHECK(extract_json("Steps:\n[\"a\", \"b\"] done", '[') == R"(["a", "b"])");
    CHECK_FALSE(extract_json("no json here", '['));
}
