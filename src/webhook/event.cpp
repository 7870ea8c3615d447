#include "iea/webhook/event.hpp"

#include <algorithm>

#include <nlohmann/json.hpp>

namespace iea::webhook {
namespace {
constexpr std::size_t kMaxTaskIdLength = 64;
}  // namespace

bool looks_like_task_id(std::string_view id) {
    return !id.empty() && id.size() <= kMaxTaskIdLength &&
           std::all_of(id.begin(), id.end(), [](char c) {
               return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '_';
           });
}

namespace {

// History item ids arrive as strings; numbers are tolerated since the docs do not promise.
std::string id_text(const nlohmann::json& value) {
    if (value.is_string()) return value.get<std::string>();
    if (value.is_number_integer()) return std::to_string(value.get<long long>());
    return {};
}

bool is_ticked(const nlohmann::json& value) {
    return (value.is_string() && value.get<std::string>() == "true") ||
           (value.is_boolean() && value.get<bool>());
}

HistoryItem read_history_item(const nlohmann::json& item) {
    HistoryItem out;
    if (!item.is_object()) return out;
    if (const auto it = item.find("id"); it != item.end()) out.id = id_text(*it);
    if (const auto it = item.find("field"); it != item.end() && it->is_string()) {
        out.field = it->get<std::string>();
    }
    if (const auto it = item.find("custom_field"); it != item.end() && it->is_object()) {
        if (const auto id = it->find("id"); id != it->end() && id->is_string()) {
            out.custom_field_id = id->get<std::string>();
        }
    }
    if (const auto it = item.find("after"); it != item.end()) out.ticked_after = is_ticked(*it);
    return out;
}

}  // namespace

ParsedEvent parse_event(std::string_view body) {
    const auto json = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (json.is_discarded()) return {std::nullopt, "body is not valid JSON"};
    if (!json.is_object()) return {std::nullopt, "body is not a JSON object"};

    const auto event = json.find("event");
    if (event == json.end()) return {std::nullopt, "missing field: event"};
    if (!event->is_string()) return {std::nullopt, "field event is not a string"};
    const auto task_id = json.find("task_id");
    if (task_id == json.end()) return {std::nullopt, "missing field: task_id"};
    if (!task_id->is_string()) return {std::nullopt, "field task_id is not a string"};
    if (!looks_like_task_id(task_id->get_ref<const std::string&>())) {
        return {std::nullopt, "field task_id is not a task id"};
    }

    WebhookEvent out;
    out.event = event->get<std::string>();
    out.task_id = task_id->get<std::string>();
    if (const auto it = json.find("webhook_id"); it != json.end() && it->is_string()) {
        out.webhook_id = it->get<std::string>();
    }
    if (const auto it = json.find("history_items"); it != json.end() && it->is_array()) {
        for (const auto& item : *it) out.history_items.push_back(read_history_item(item));
    }
    return {std::move(out), {}};
}

Trigger classify(const WebhookEvent& event, std::string_view ai_edit_field_id) {
    if (event.event != "taskUpdated") {
        return {false, "event " + event.event + " is not handled", {}, {}};
    }
    if (event.history_items.empty()) return {false, "event has no history items", {}, {}};

    bool unticked = false;
    for (const auto& item : event.history_items) {
        const bool ours = item.field == "custom_field" && item.custom_field_id == ai_edit_field_id;
        if (!ours) continue;
        if (!item.ticked_after) {
            unticked = true;
            continue;
        }
        const auto& source = event.webhook_id.empty() ? event.task_id : event.webhook_id;
        return {true, {}, source + ":" + item.id, item.id};
    }
    if (unticked) return {false, "AI edit checkbox was unticked", {}, {}};
    return {false, "change does not tick the AI edit checkbox", {}, {}};
}

}  // namespace iea::webhook
