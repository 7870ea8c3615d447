#include <catch2/catch.hpp>

#include "iea/pipeline/prompts.hpp"
#include "iea/pipeline/report.hpp"

using namespace iea::pipeline;

namespace {
Attempt scored(int iteration, std::string model, double score, std::vector<std::string> issues = {}) {
    Attempt attempt;
    attempt.iteration = iteration;
    attempt.model = std::move(model);
    attempt.verdict = Verdict{score, score >= 8, std::move(issues), "looks right"};
    return attempt;
}
}  // namespace

TEST_CASE("report: the best attempt is the highest score, ties to model priority", "[pipeline]") {
    const std::vector<std::string> priority = {"wan-2.5-edit", "nano-banana"};
    std::vector<Attempt> attempts = {scored(1, "nano-banana", 9), scored(1, "wan-2.5-edit", 9),
                                     scored(1, "wan-2.5-edit", 7)};
    CHECK(best_attempt(attempts, priority) == &attempts[1]);
    attempts.push_back(scored(2, "nano-banana", 9.5));
    CHECK(best_attempt(attempts, priority) == &attempts[3]);

    Attempt failed;
    failed.model = "x";
    failed.failure = "generation failed";
    CHECK(best_attempt({failed}, priority) == nullptr);
}

TEST_CASE("report: comments say what happened in plain words", "[pipeline]") {
    SECTION("success names model, score, iteration and time") {
        const auto winner = scored(2, "nano-banana", 9);
        const auto text = success_comment({"ai-edit_t1_nano-banana_it2.jpg", &winner, 2, 3,
                                           std::chrono::seconds(102), {"wan-2.5-edit (timed out)"}});
        CHECK_THAT(text, Catch::Contains("ai-edit_t1_nano-banana_it2.jpg"));
        CHECK_THAT(text, Catch::Contains("Model: nano-banana, review score 9/10, iteration 2 of 3, "
                                         "total time 1 min 42 s."));
        CHECK_THAT(text, Catch::Contains("could not take part: wan-2.5-edit (timed out)"));
        CHECK_THAT(text, !Catch::Contains("**"));
    }
    SECTION("review lists every attempt in order with its issues") {
        std::vector<Attempt> attempts = {scored(1, "wan-2.5-edit", 6, {"logo moved", "typo"}),
                                         scored(1, "nano-banana", 7.5)};
        Attempt failed;
        failed.iteration = 2;
        failed.model = "wan-2.5-edit";
        failed.failure = "the image model failed: timeout";
        attempts.push_back(failed);
        const auto text = review_comment({8, 2, &attempts, &attempts[1], "best.png"});
        CHECK_THAT(text, Catch::Contains("after 2 iterations"));
        CHECK_THAT(text, Catch::Contains("- iteration 1, wan-2.5-edit: score 6/10. Issues: logo "
                                         "moved; typo"));
        CHECK_THAT(text, Catch::Contains("- iteration 1, nano-banana: score 7.5/10"));
        CHECK_THAT(text, Catch::Contains("- iteration 2, wan-2.5-edit: no result (the image model "
                                         "failed: timeout)"));
        CHECK_THAT(text, Catch::Contains("attached as best.png"));
    }
    SECTION("blocked says why and what to do") {
        CHECK_THAT(blocked_comment("the task has no image attached.", Fault::kTask),
                   Catch::StartsWith("AI edit could not run: the task has no image attached."));
        CHECK_THAT(blocked_comment("the task has no image attached.", Fault::kTask),
                   Catch::Contains("Fix the task"));
        CHECK_THAT(blocked_comment("WaveSpeed kept failing.", Fault::kService),
                   Catch::Contains("The task itself is fine"));
    }
}

TEST_CASE("prompts: templates are filled completely or not at all", "[pipeline]") {
    CHECK(fill("a {x} b {y}", {{"x", "1"}, {"y", "{z}"}}) == "a 1 b {z}");
    CHECK(fill("JSON {\"score\": 1} stays", {}) == "JSON {\"score\": 1} stays");
    CHECK_THROWS_WITH(fill("a {missing}", {}), Catch::Contains("missing"));
}

TEST_CASE("prompts: the shipped prompt files load and fill", "[pipeline]") {
    const auto loaded = iea::config::load({std::filesystem::path(IEA_SOURCE_DIR) / "config/config.yaml", {}});
    const auto book = PromptBook::load(loaded.settings.config_dir, loaded.settings.models);
    const auto system = book.enhancement_system("wan-2.5-edit");
    CHECK_THAT(system, Catch::Contains("Wan 2.5"));
    CHECK_THAT(book.enhancement_system("nano-banana"), Catch::Contains("Nano Banana"));
    CHECK_THAT(book.validation_system(), Catch::Contains("Purpose: validation"));
    CHECK_THAT(book.split_system(), Catch::Contains("Purpose: split"));

    const Feedback feedback{"old prompt", {"logo changed", "typo in ΝΕΑ"}, "close"};
    const auto user = book.enhancement_user("Άλλαξε το 50% σε 70%", &feedback);
    CHECK_THAT(user, Catch::Contains("Άλλαξε το 50% σε 70%"));
    CHECK_THAT(user, Catch::Contains("- logo changed\n- typo in ΝΕΑ"));
    CHECK_THAT(user, Catch::Contains("old prompt"));
    CHECK_THAT(book.validation_user("req", "t1", "nano-banana", 2),
               Catch::Contains("Reference: task=t1 model=nano-banana iteration=2"));
}
