#include <catch2/catch.hpp>

#include "iea/providers/clickup.hpp"

using iea::providers::parse_webhook;
using iea::providers::ProviderError;
using nlohmann::json;

TEST_CASE("clickup webhooks: parses a webhook object as the API reference shows it",
          "[providers]") {
    const auto object = json::parse(R"({
        "id": "4b67ac88-e506-4a29-9d42-26e504e3435e", "userid": 183, "team_id": 108,
        "endpoint": "https://edit.example.invalid/webhook/clickup", "client_id": "X",
        "events": ["taskUpdated"], "task_id": null, "list_id": null, "folder_id": null,
        "space_id": 790, "health": {"status": "failing", "fail_count": 7},
        "secret": "test-secret-1"})");
    const auto webhook = parse_webhook(object, "list_webhooks");
    CHECK(webhook.id == "4b67ac88-e506-4a29-9d42-26e504e3435e");
    CHECK(webhook.endpoint == "https://edit.example.invalid/webhook/clickup");
    CHECK(webhook.events == std::vector<std::string>{"taskUpdated"});
    CHECK(webhook.status == "failing");
    CHECK(webhook.fail_count == 7);
    SECTION("a numeric scope id becomes text; null stays empty") {
        CHECK(webhook.scope.space_id == "790");
        CHECK(webhook.scope.list_id.empty());
    }
}

TEST_CASE("clickup webhooks: events given as one string are kept", "[providers]") {
    const auto webhook = parse_webhook(json{{"id", "w1"}, {"events", "*"}}, "set_webhook_status");
    CHECK(webhook.events == std::vector<std::string>{"*"});
    CHECK(webhook.status.empty());
}

TEST_CASE("clickup webhooks: a webhook without an id is a malformed answer", "[providers]") {
    CHECK_THROWS_AS(parse_webhook(json{{"endpoint", "https://x.invalid"}}, "list_webhooks"),
                    ProviderError);
    CHECK_THROWS_WITH(parse_webhook(json::array(), "list_webhooks"),
                      Catch::Contains("webhook without an id"));
}
