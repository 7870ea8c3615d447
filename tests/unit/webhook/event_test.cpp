#include <catch2/catch.hpp>

#include "iea/webhook/event.hpp"
#include "support/harness.hpp"

using iea::webhook::classify;
using iea::webhook::parse_event;

namespace {
constexpr const char* kField = "c0ffee00-1a2b-4c3d-8e9f-0123456789ab";  // the corpus payloads'

std::string tick_body(const std::string& after_json, const std::string& field_id = kField) {
    return R"({"event":"taskUpdated","task_id":"86abc","webhook_id":"wh-1","history_items":[)"
           R"({"id":"111","field":"custom_field","custom_field":{"id":")" +
           field_id + R"(","type":"checkbox"},"before":null,"after":)" + after_json + "}]}";
}
}  // namespace

TEST_CASE("event: malformed bodies are refused with a reason", "[webhook]") {
    CHECK(parse_event("{not json").error == "body is not valid JSON");
    CHECK(parse_event("[1,2]").error == "body is not a JSON object");
    CHECK(parse_event("").error == "body is not valid JSON");
    CHECK(parse_event(R"({"task_id":"a"})").error == "missing field: event");
    CHECK(parse_event(R"({"event":"taskUpdated"})").error == "missing field: task_id");
    CHECK(parse_event(R"({"event":"taskUpdated","task_id":12})").error ==
          "field task_id is not a string");
    CHECK(parse_event(R"({"event":7,"task_id":"a"})").error == "field event is not a string");
    CHECK(parse_event(R"({"event":"taskUpdated","task_id":"../team/1"})").error ==
          "field task_id is not a task id");
}

TEST_CASE("event: only a tick of the configured checkbox starts work", "[webhook]") {
    SECTION("string true ticks") {
        const auto trigger = classify(*parse_event(tick_body(R"("true")")).event, kField);
        CHECK(trigger.start);
        CHECK(trigger.delivery_id == "wh-1:111");
    }
    SECTION("boolean true ticks") {
        CHECK(classify(*parse_event(tick_body("true")).event, kField).start);
    }
    SECTION("null, false and \"false\" do not") {
        for (const auto* after : {"null", "false", R"("false")"}) {
            const auto trigger = classify(*parse_event(tick_body(after)).event, kField);
            CHECK_FALSE(trigger.start);
            CHECK(trigger.reason == "AI edit checkbox was unticked");
        }
    }
    SECTION("another checkbox does not") {
        const auto trigger = classify(*parse_event(tick_body("true", "other")).event, kField);
        CHECK_FALSE(trigger.start);
        CHECK(trigger.reason == "change does not tick the AI edit checkbox");
    }
    SECTION("other events are ignored by name") {
        const auto event = parse_event(R"({"event":"taskCreated","task_id":"a"})").event;
        CHECK(classify(*event, kField).reason == "event taskCreated is not handled");
    }
    SECTION("no history items") {
        const auto event = parse_event(R"({"event":"taskUpdated","task_id":"a"})").event;
        CHECK(classify(*event, kField).reason == "event has no history items");
    }
}

TEST_CASE("event: corpus payloads parse and classify as their manifest says", "[webhook]") {
    const auto shared = iea::testing::shared_dir();
    if (!shared) {
        WARN("skipped: ../shared/corpus is not next to this clone");
        return;
    }
    const auto dir = *shared / "corpus" / "webhooks";
    const auto classify_file = [&](const char* name) {
        const auto parsed = parse_event(iea::testing::read_file(dir / name));
        REQUIRE(parsed.event);
        CHECK(parsed.event->task_id == "86c3kq7wz");
        return classify(*parsed.event, kField);
    };

    const auto ticked = classify_file("taskupdated-checkbox-checked.json");
    CHECK(ticked.start);
    CHECK(ticked.delivery_id == "3f6c2b1e-8d4a-4c7e-9b2f-5a1d0e7c4b92:4581920374651203845");
    CHECK_FALSE(classify_file("taskupdated-checkbox-unchecked.json").start);
    CHECK_FALSE(classify_file("taskupdated-description-change.json").start);
    CHECK_FALSE(classify_file("taskupdated-attachment-added.json").start);
    CHECK(classify_file("taskstatusupdated-status-change.json").reason ==
          "event taskStatusUpdated is not handled");
}
