#pragma once

/// ClickUp webhook bodies: parsing into a typed event, and the rule that decides whether
/// an event asks for an edit. No I/O.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace iea::webhook {

/// One entry of `history_items`: what changed on the task.
struct HistoryItem {
    std::string id;
    std::string field;            ///< e.g. "custom_field", "status", "content"
    std::string custom_field_id;  ///< set when field == "custom_field"
    bool ticked_after = false;    ///< `after` is "true" or true
};

struct WebhookEvent {
    std::string event;
    std::string task_id;
    std::string webhook_id;  ///< may be empty; ClickUp always sends it
    std::vector<HistoryItem> history_items;
};

/// Either an event or the reason the body is not one (for a 400 answer).
struct ParsedEvent {
    std::optional<WebhookEvent> event;
    std::string error;
};

/// True for what ClickUp task ids look like: 1 to 64 letters, digits, '-' or '_'. Task ids
/// end up in API paths, so nothing else is let through.
[[nodiscard]] bool looks_like_task_id(std::string_view id);

/// Parses a webhook body. Requires `event` and `task_id` as strings; a task id must look
/// like one (letters, digits, '-' and '_'), since it ends up in API paths.
[[nodiscard]] ParsedEvent parse_event(std::string_view body);

/// What an event asks of us.
struct Trigger {
    bool start = false;
    std::string reason;       ///< why it is ignored, when !start
    std::string delivery_id;  ///< webhook_id:history_item_id of the tick, when start
    std::string history_item_id;
};

/// Work starts only for a taskUpdated event carrying a history item that ticks the
/// configured AI-edit checkbox. Everything else, our own writes included, is ignored.
[[nodiscard]] Trigger classify(const WebhookEvent& event, std::string_view ai_edit_field_id);

}  // namespace iea::webhook
