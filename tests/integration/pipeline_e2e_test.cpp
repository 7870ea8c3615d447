// The pipeline end to end: the service and the sandbox over 127.0.0.1, scenario-scripted.

#include <signal.h>

#include <fstream>
#include <thread>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "support/stack.hpp"

using iea::testing::Env;
using iea::testing::Stack;
using nlohmann::json;

namespace {

const char* kGreekRequest =
    "Στο banner άλλαξε το κείμενο σε \"BLACK FRIDAY\" με την ίδια γραμματοσειρά. "
    "Το 50% κάν' το 70%. Το πορτοκαλί φόντο να γίνει τιρκουάζ.";

std::string test_image(const std::string& name, int width = 640, int height = 400) {
    const auto path = iea::testing::scratch_dir("images") / name;
    std::ofstream(path, std::ios::binary) << iea::testing::make_test_png(width, height);
    return path.string();
}

json verdict(const std::string& model, int iteration, double score,
             std::vector<std::string> issues = {}, const std::string& style = "bare") {
    return {{"model", model}, {"iteration", iteration}, {"score", score},
            {"issues", issues}, {"reasoning", "scripted"}, {"style", style}};
}

std::string last_comment(const json& task) { return task.at("comments").back().at("comment_text"); }

// Requests of one kind the service made: chat calls by purpose, uploads, comments.
std::vector<json> chat_calls(Stack& stack, const std::string& purpose) {
    std::vector<json> out;
    for (const auto& request : stack.requests("openrouter")) {
        if (request.at("body").dump().find("Purpose: " + purpose) != std::string::npos) {
            out.push_back(request);
        }
    }
    return out;
}

std::vector<json> uploads(Stack& stack, const std::string& task_id) {
    std::vector<json> out;
    for (const auto& request : stack.requests("clickup")) {
        if (request.at("method") == "POST" &&
            request.at("path").get<std::string>().ends_with("/task/" + task_id + "/attachment")) {
            out.push_back(request);
        }
    }
    return out;
}

std::size_t count_comments(Stack& stack, const std::string& task_id) {
    std::size_t count = 0;
    for (const auto& request : stack.requests("clickup")) {
        if (request.at("method") == "POST" &&
            request.at("path").get<std::string>().ends_with("/task/" + task_id + "/comment")) {
            ++count;
        }
    }
    return count;
}

}  // namespace

TEST_CASE("pipeline: both models pass, the higher score wins", "[pipeline]") {
    Stack stack;
    stack.sandbox().post("/admin/scenario", {{"verdicts", {verdict("wan-2.5-edit", 0, 8.5),
                                                           verdict("nano-banana", 0, 9.5, {}, "fenced")}}});
    stack.add_task("t1", kGreekRequest, test_image("banner.png"));
    stack.tick("t1");
    const auto task = stack.wait_for_end("t1");

    CHECK(task["status"]["status"] == "complete");
    CHECK_FALSE(task["ai_edit"].get<bool>());
    const auto comment = last_comment(task);
    CHECK_THAT(comment, Catch::Contains("Model: nano-banana, review score 9.5/10, iteration 1 of 3"));
    // The result keeps its real format: nano-banana answers JPEG.
    const auto results = uploads(stack, "t1");
    REQUIRE(results.size() == 2);  // the prepared source, then the result
    const auto part = results[1]["body"]["parts"][0];
    CHECK(part["filename"] == "ai-edit_t1_nano-banana_it1.jpg");
    CHECK(part["content_type"] == "image/jpeg");
    CHECK(count_comments(stack, "t1") == 1);
}

TEST_CASE("pipeline: a failed iteration feeds the review's issues into the next", "[pipeline]") {
    Stack stack;
    stack.sandbox().post("/admin/scenario",
                         {{"verdicts", {verdict("*", 1, 5, {"the 70% is still 50%"}, "prose"),
                                        verdict("wan-2.5-edit", 2, 9), verdict("*", 0, 6)}}});
    stack.add_task("t2", kGreekRequest, test_image("banner.png"));
    stack.tick("t2");
    const auto task = stack.wait_for_end("t2");

    CHECK(task["status"]["status"] == "complete");
    CHECK_THAT(last_comment(task), Catch::Contains("Model: wan-2.5-edit, review score 9/10, iteration 2 of 3"));
    const auto enhancements = chat_calls(stack, "enhancement");
    REQUIRE(enhancements.size() == 4);
    for (std::size_t i = 2; i < 4; ++i) {
        CHECK_THAT(enhancements[i]["body"].dump(), Catch::Contains("the 70% is still 50%"));
    }
    CHECK_THAT(enhancements[0]["body"].dump(), !Catch::Contains("the 70% is still 50%"));
}

TEST_CASE("pipeline: nothing passes, a person gets every attempt", "[pipeline]") {
    Stack stack(Env{{"MAX_ITERATIONS", "2"}});
    stack.sandbox().post("/admin/scenario",
                         {{"verdicts", {verdict("wan-2.5-edit", 0, 4, {"logo redrawn"}),
                                        verdict("nano-banana", 0, 7, {"font differs"})}}});
    stack.add_task("t3", kGreekRequest, test_image("banner.png"));
    stack.tick("t3");
    const auto task = stack.wait_for_end("t3");

    CHECK(task["status"]["status"] == "needs human review");
    CHECK_FALSE(task["ai_edit"].get<bool>());
    const auto comment = last_comment(task);
    CHECK_THAT(comment, Catch::Contains("after 2 iterations"));
    CHECK_THAT(comment, Catch::Contains("- iteration 1, wan-2.5-edit: score 4/10. Issues: logo redrawn"));
    CHECK_THAT(comment, Catch::Contains("- iteration 2, nano-banana: score 7/10. Issues: font differs"));
    CHECK_THAT(comment, Catch::Contains("The best attempt is attached as ai-edit_t3_nano-banana_it1_best-attempt.jpg"));
}

TEST_CASE("pipeline: one model failing every time, the other carries the task", "[pipeline]") {
    Stack stack;
    stack.sandbox().post("/admin/faults", {{"service", "wavespeed"}, {"method", "POST"},
                                           {"path", "alibaba/wan-2.5/image-edit$"},
                                           {"kind", "failed_prediction"}});
    stack.add_task("t4", kGreekRequest, test_image("banner.png"));
    stack.tick("t4");
    const auto task = stack.wait_for_end("t4");

    CHECK(task["status"]["status"] == "complete");
    const auto comment = last_comment(task);
    CHECK_THAT(comment, Catch::Contains("Model: nano-banana"));
    CHECK_THAT(comment, Catch::Contains("could not take part: wan-2.5-edit"));
}

TEST_CASE("pipeline: a corrupt attachment blocks the task with the reason", "[pipeline]") {
    Stack stack;
    const auto path = iea::testing::scratch_dir("images") / "broken.png";
    std::ofstream(path, std::ios::binary) << "\x89PNG\r\n\x1a\n this is not an image";
    stack.add_task("t5", kGreekRequest, path.string());
    stack.tick("t5");
    const auto task = stack.wait_for_end("t5");

    CHECK(task["status"]["status"] == "blocked");
    CHECK_FALSE(task["ai_edit"].get<bool>());
    CHECK_THAT(last_comment(task), Catch::Contains("broken.png"));
    CHECK(chat_calls(stack, "enhancement").empty());
}

TEST_CASE("pipeline: an empty description or no image blocks with what to fix", "[pipeline]") {
    Stack stack;
    stack.add_task("t6", "   \n  ", test_image("a.png"));
    stack.add_task("t7", "Make it blue", "");
    stack.tick("t6");
    stack.tick("t7");
    CHECK_THAT(last_comment(stack.wait_for_end("t6")), Catch::Contains("description is empty"));
    CHECK_THAT(last_comment(stack.wait_for_end("t7")), Catch::Contains("no image attached"));
}

TEST_CASE("pipeline: a 429 storm from OpenRouter is waited out", "[pipeline]") {
    Stack stack(Env{{"MAX_STEP_ATTEMPTS", "4"}});
    stack.sandbox().post("/admin/faults", {{"service", "openrouter"}, {"kind", "status"},
                                           {"status", 429}, {"retry_after", 1}, {"times", 3}});
    stack.add_task("t8", kGreekRequest, test_image("banner.png"));
    stack.tick("t8");
    const auto task = stack.wait_for_end("t8");
    CHECK(task["status"]["status"] == "complete");

    // After each 429 the next call came at least the asked second later.
    const auto calls = stack.requests("openrouter");
    REQUIRE(calls.size() >= 4);
    for (std::size_t i = 0; i + 1 < calls.size(); ++i) {
        if (calls[i]["status"] != 429) continue;
        bool waited = false;
        for (std::size_t j = i + 1; j < calls.size(); ++j) {
            if (calls[j]["started_ms"].get<long long>() - calls[i]["finished_ms"].get<long long>() >= 950) {
                waited = true;
            }
        }
        CHECK(waited);
    }
}

TEST_CASE("pipeline: five duplicate webhooks start exactly one run", "[pipeline]") {
    Stack stack;
    stack.add_task("t9", kGreekRequest, test_image("banner.png"));
    stack.tick("t9", 5);
    const auto task = stack.wait_for_end("t9");
    CHECK(task["status"]["status"] == "complete");
    CHECK(uploads(stack, "t9").size() == 2);
    CHECK(count_comments(stack, "t9") == 1);
    // Every delivery, our own writes' webhooks included, was answered 2xx in time.
    for (const auto& delivery : stack.sandbox().get("/admin/webhooks")) {
        CHECK(delivery["status"].get<int>() / 100 == 2);
        CHECK(delivery["latency_ms"].get<double>() < 1000);
    }
}

TEST_CASE("pipeline: ten tasks at once all complete within the call limits", "[pipeline]") {
    Stack stack(Env{{"RATE_LIMIT_ENHANCEMENT", "3"}, {"RATE_LIMIT_VALIDATION", "2"}});
    stack.sandbox().post("/admin/scenario", {{"latency_ms", 30}});
    for (int i = 0; i < 10; ++i) {
        stack.add_task("m" + std::to_string(i), kGreekRequest, test_image("banner.png"));
    }
    for (int i = 0; i < 10; ++i) stack.tick("m" + std::to_string(i));
    for (int i = 0; i < 10; ++i) {
        CHECK(stack.wait_for_end("m" + std::to_string(i), std::chrono::seconds(120))["status"]["status"] ==
              "complete");
    }

    // The most calls of one kind that were ever in flight at once.
    const auto peak = [&](const std::string& purpose) {
        std::vector<std::pair<long long, int>> edges;
        for (const auto& call : chat_calls(stack, purpose)) {
            edges.emplace_back(call["started_ms"].get<long long>(), +1);
            edges.emplace_back(call["finished_ms"].get<long long>(), -1);
        }
        std::sort(edges.begin(), edges.end());  // an end sorts before a start at the same ms
        int now = 0;
        int most = 0;
        for (const auto& edge : edges) most = std::max(most, now += edge.second);
        return most;
    };
    CHECK(peak("enhancement") <= 3);
    CHECK(peak("validation") <= 2);
    CHECK(peak("enhancement") >= 2);  // the limit, not a queue of one, shaped the run
}

TEST_CASE("pipeline: no credential reaches the file host", "[pipeline]") {
    Stack stack;
    stack.add_task("t10", kGreekRequest, test_image("banner.png"));
    stack.tick("t10");
    (void)stack.wait_for_end("t10");
    const auto files = stack.requests("files");
    REQUIRE_FALSE(files.empty());
    for (const auto& request : files) CHECK_FALSE(request["authorization"].get<bool>());
}

TEST_CASE("pipeline: a real corpus image and a Greek request", "[pipeline]") {
    const auto shared = iea::testing::shared_dir();
    if (!shared) {
        WARN("skipped: ../shared/corpus is not next to this clone");
        return;
    }
    const auto requests = json::parse(iea::testing::read_file(*shared / "corpus/requests/requests.json"));
    Stack stack;
    int index = 0;
    for (const auto& request : requests["requests"]) {
        if (request["edits"].get<int>() == 0) continue;
        const auto id = "c" + std::to_string(index++);
        stack.add_task(id, request["text"], (*shared / "corpus/images" / request["image"].get<std::string>()).string());
        stack.tick(id);
    }
    for (int i = 0; i < index; ++i) {
        const auto task = stack.wait_for_end("c" + std::to_string(i), std::chrono::seconds(120));
        INFO(task.dump());
        CHECK(task["status"]["status"] == "complete");
    }
}

TEST_CASE("pipeline: several edits that fail together pass one at a time", "[pipeline]") {
    Stack stack(Env{{"MAX_ITERATIONS", "2"}});
    // Whole-request rounds (iterations 1 and 2) fail; single edits and the final check pass.
    stack.sandbox().post("/admin/scenario",
                         {{"verdicts", {verdict("*", 1, 5, {"two of three edits missing"}),
                                        verdict("*", 2, 6, {"one edit missing"}),
                                        verdict("*", 0, 9)}}});
    stack.add_task("s1", kGreekRequest, test_image("banner.png"));
    stack.tick("s1");
    const auto task = stack.wait_for_end("s1");

    CHECK(task["status"]["status"] == "complete");
    CHECK_THAT(last_comment(task), Catch::Contains("made one edit at a time"));
    CHECK(chat_calls(stack, "split").size() == 1);
    // Three single edits, each reviewed against its own text, then the whole request again.
    const auto validations = chat_calls(stack, "validation");
    REQUIRE(validations.size() == 2 * 2 + 3 * 2 + 1);
    const auto step_review = validations[4]["body"].dump();
    CHECK_THAT(step_review, Catch::Contains("BLACK FRIDAY"));
    CHECK_THAT(step_review, !Catch::Contains("70%"));
    CHECK_THAT(validations.back()["body"].dump(), Catch::Contains("70%"));
    CHECK_THAT(validations.back()["body"].dump(), Catch::Contains("iteration=6"));
}

TEST_CASE("pipeline: a task past its deadline is blocked and says so", "[pipeline]") {
    Stack stack(Env{{"TASK_DEADLINE_SECONDS", "1"}});
    stack.sandbox().post("/admin/scenario", {{"wavespeed_delay_ms", 5000}});
    stack.add_task("d1", kGreekRequest, test_image("banner.png"));
    stack.tick("d1");
    const auto task = stack.wait_for_end("d1");
    CHECK(task["status"]["status"] == "blocked");
    CHECK_FALSE(task["ai_edit"].get<bool>());
    CHECK_THAT(last_comment(task), Catch::Contains("took longer than the 1 s allowed"));
}

TEST_CASE("pipeline: with IMAGE_HANDOFF=wavespeed the models get WaveSpeed's copy", "[pipeline]") {
    Stack stack(Env{{"IMAGE_HANDOFF", "wavespeed"}});
    stack.add_task("h1", kGreekRequest, test_image("banner.png"));
    stack.tick("h1");
    CHECK(stack.wait_for_end("h1")["status"]["status"] == "complete");
    bool uploaded = false;
    for (const auto& request : stack.requests("wavespeed")) {
        if (request["path"].get<std::string>().ends_with("/media/upload/binary")) uploaded = true;
    }
    CHECK(uploaded);
}

TEST_CASE("pipeline: WEBHOOK_ANSWER=when_done answers after the edit, as the original did",
          "[pipeline]") {
    Stack stack(Env{{"WEBHOOK_ANSWER", "when_done"}});
    stack.add_task("w1", kGreekRequest, test_image("banner.png"));
    stack.tick("w1");
    CHECK(stack.wait_for_end("w1")["status"]["status"] == "complete");
    bool answered_done = false;
    for (int i = 0; i < 100 && !answered_done; ++i) {
        for (const auto& delivery : stack.sandbox().get("/admin/webhooks")) {
            if (delivery.at("task_id") == "w1" && delivery.at("status") == 200 &&
                delivery.at("answer").get<std::string>().find("\"ending\":\"complete\"") !=
                    std::string::npos) {
                answered_done = true;
            }
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    CHECK(answered_done);
}

