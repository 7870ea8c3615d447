// ClickUp API v2 webhook management fake: create, list, update and delete the webhooks of a
// workspace (ClickUp's Create/Get/Update/Delete Webhook reference pages; the contracts are
// silent on these). Registered webhooks are bookkeeping: deliveries still go to
// --service-url, signed with --webhook-secret.

#include <algorithm>
#include <set>

#include "sandbox/sandbox.hpp"
#include "sandbox/util.hpp"

// TODO: registered webhooks do not deliver and their health never changes by itself; a test
// that wants ClickUp to suspend a webhook after failed deliveries must set it by hand.

namespace iea::sandbox {
namespace {

constexpr std::string_view kTeamPrefix = "/clickup/api/v2/team/";
constexpr std::string_view kWebhookPrefix = "/clickup/api/v2/webhook/";
constexpr std::string_view kAdminPrefix = "/admin/clickup-webhooks/";

// The event names ClickUp documents for webhooks, and "*" for all of them.
const std::set<std::string, std::less<>>& known_events() {
    static const std::set<std::string, std::less<>> names = {"*",
                                                             "taskCreated",
                                                             "taskUpdated",
                                                             "taskDeleted",
                                                             "taskPriorityUpdated",
                                                             "taskStatusUpdated",
                                                             "taskAssigneeUpdated",
                                                             "taskDueDateUpdated",
                                                             "taskTagUpdated",
                                                             "taskMoved",
                                                             "taskCommentPosted",
                                                             "taskCommentUpdated",
                                                             "taskTimeEstimateUpdated",
                                                             "taskTimeTrackedUpdated",
                                                             "listCreated",
                                                             "listUpdated",
                                                             "listDeleted",
                                                             "folderCreated",
                                                             "folderUpdated",
                                                             "folderDeleted",
                                                             "spaceCreated",
                                                             "spaceUpdated",
                                                             "spaceDeleted",
                                                             "goalCreated",
                                                             "goalUpdated",
                                                             "goalDeleted",
                                                             "keyResultCreated",
                                                             "keyResultUpdated",
                                                             "keyResultDeleted"};
    return names;
}

Response clickup_error(http::Status status, std::string_view message, std::string_view ecode) {
    return http::json_response(status, {{"err", message}, {"ECODE", ecode}});
}

bool all_digits(std::string_view text) {
    return !text.empty() &&
           std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// `events` as an array of names or the single string "*" (the update example sends a string).
// Nothing when the value is malformed or names an unknown event.
std::optional<json> events_of(const json& value) {
    json out = json::array();
    if (value.is_string()) {
        out.push_back(value);
    } else if (value.is_array()) {
        out = value;
    } else {
        return std::nullopt;
    }
    for (const auto& event : out) {
        if (!event.is_string() || !known_events().contains(event.get<std::string>())) {
            return std::nullopt;
        }
    }
    return out;
}

// Scope ids arrive as integers (space, folder, list) or strings (task); answers carry
// strings or null.
std::optional<json> scope_id(const json& body, const char* key) {
    const auto it = body.find(key);
    if (it == body.end() || it->is_null()) return json(nullptr);
    if (it->is_number_integer()) return json(std::to_string(it->get<long long>()));
    if (it->is_string() && !it->get<std::string>().empty()) return *it;
    return std::nullopt;
}

}  // namespace

json Sandbox::registered_webhook_json(const RegisteredWebhook& webhook) const {
    return {{"id", webhook.id},
            {"userid", 99000001},
            {"team_id", std::stoll(webhook.team_id)},
            {"endpoint", webhook.endpoint},
            {"client_id", "SANDBOXCLIENT0000000000000000000"},
            {"events", webhook.events},
            {"task_id", webhook.task_id},
            {"list_id", webhook.list_id},
            {"folder_id", webhook.folder_id},
            {"space_id", webhook.space_id},
            {"health", {{"status", webhook.status}, {"fail_count", webhook.fail_count}}},
            {"secret", webhook.secret}};
}

void Sandbox::add_clickup_webhook_routes(http::Router& router) {
    const auto team = [this](const Request& request) -> asio::awaitable<Response> {
        co_return clickup_team_webhooks(request);
    };
    router.add_prefix(http::Method::get, std::string(kTeamPrefix), team);
    router.add_prefix(http::Method::post, std::string(kTeamPrefix), team);

    const auto one = [this](const Request& request) -> asio::awaitable<Response> {
        co_return clickup_webhook(request);
    };
    router.add_prefix(http::Method::put, std::string(kWebhookPrefix), one);
    router.add_prefix(http::Method::delete_, std::string(kWebhookPrefix), one);

    // Admin: read every registered webhook; set one's health as ClickUp would after failures.
    router.add(http::Method::get,
               "/admin/clickup-webhooks",
               [this](const Request&) -> asio::awaitable<Response> {
                   json out = json::array();
                   for (const auto& id : registered_order_) {
                       out.push_back(registered_webhook_json(registered_webhooks_.at(id)));
                   }
                   co_return http::json_response(http::Status::ok, out);
               });
    router.add_prefix(
        http::Method::post,
        std::string(kAdminPrefix),
        [this](const Request& request) -> asio::awaitable<Response> {
            const auto id = url_decode(http::path_of(request).substr(kAdminPrefix.size()));
            const auto found = registered_webhooks_.find(id);
            if (found == registered_webhooks_.end()) {
                co_return http::json_response(http::Status::not_found,
                                              {{"error", "webhook not found"}});
            }
            const auto body = json::parse(request.body(), nullptr, false);
            const auto status = body.is_object() ? body.find("status") : body.end();
            const auto count = body.is_object() ? body.find("fail_count") : body.end();
            if (!body.is_object() || status == body.end() || !status->is_string() ||
                (count != body.end() && !count->is_number_integer())) {
                co_return http::json_response(
                    http::Status::bad_request,
                    {{"error", "body must be {\"status\": text, \"fail_count\"?: integer}"}});
            }
            found->second.status = status->get<std::string>();
            if (count != body.end()) found->second.fail_count = count->get<int>();
            co_return http::json_response(http::Status::ok, registered_webhook_json(found->second));
        });
}

Response Sandbox::clickup_team_webhooks(const Request& request) {
    if (request[boost::beast::http::field::authorization].empty()) {
        return clickup_error(
            http::Status::unauthorized, "Authorization header required", "OAUTH_017");
    }
    // /team/{team_id}/webhook and nothing else under /team/.
    const auto rest = http::path_of(request).substr(kTeamPrefix.size());
    const auto slash = rest.find('/');
    const auto team_id = std::string(rest.substr(0, slash));
    if (slash == std::string_view::npos || rest.substr(slash) != "/webhook") {
        return clickup_error(http::Status::not_found, "Route not found", "APP_001");
    }
    if (!all_digits(team_id)) {
        return clickup_error(http::Status::unauthorized, "Team not authorized", "OAUTH_023");
    }

    if (request.method() == http::Method::get) {
        json list = json::array();
        for (const auto& id : registered_order_) {
            const auto& webhook = registered_webhooks_.at(id);
            if (webhook.team_id == team_id) list.push_back(registered_webhook_json(webhook));
        }
        return http::json_response(http::Status::ok, {{"webhooks", list}});
    }

    // POST: {"endpoint": url, "events": [...], "space_id"?, "folder_id"?, "list_id"?, "task_id"?}
    const auto body = json::parse(request.body(), nullptr, false);
    if (!body.is_object() || !body.contains("endpoint") || !body["endpoint"].is_string() ||
        body["endpoint"].get<std::string>().empty()) {
        return clickup_error(http::Status::bad_request, "Endpoint required", "WEBHOOK_001");
    }
    const auto events = events_of(body.value("events", json("*")));
    if (!events) return clickup_error(http::Status::bad_request, "Invalid events", "WEBHOOK_002");
    RegisteredWebhook webhook;
    for (const auto& [key, slot] : {std::pair{"space_id", &webhook.space_id},
                                    std::pair{"folder_id", &webhook.folder_id},
                                    std::pair{"list_id", &webhook.list_id},
                                    std::pair{"task_id", &webhook.task_id}}) {
        const auto id = scope_id(body, key);
        if (!id) return clickup_error(http::Status::bad_request, "Invalid location", "WEBHOOK_003");
        *slot = *id;
    }
    webhook.id = uuid();
    webhook.team_id = team_id;
    webhook.endpoint = body["endpoint"];
    webhook.events = *events;
    std::uniform_int_distribution<int> pick(0, 35);
    for (int i = 0; i < 64; ++i)
        webhook.secret += "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[pick(random_)];

    registered_order_.push_back(webhook.id);
    const auto& stored = registered_webhooks_[webhook.id] = std::move(webhook);
    return http::json_response(http::Status::ok,
                               {{"id", stored.id}, {"webhook", registered_webhook_json(stored)}});
}

Response Sandbox::clickup_webhook(const Request& request) {
    if (request[boost::beast::http::field::authorization].empty()) {
        return clickup_error(
            http::Status::unauthorized, "Authorization header required", "OAUTH_017");
    }
    const auto id = url_decode(http::path_of(request).substr(kWebhookPrefix.size()));
    const auto found = registered_webhooks_.find(id);
    if (found == registered_webhooks_.end()) {
        return clickup_error(http::Status::not_found, "Webhook not found", "WEBHOOK_404");
    }

    if (request.method() == http::Method::delete_) {
        registered_webhooks_.erase(found);
        std::erase(registered_order_, id);
        return http::json_response(http::Status::ok, json::object());
    }

    // PUT: {"endpoint", "events", "status"}; ClickUp lists all three as required.
    auto& webhook = found->second;
    const auto body = json::parse(request.body(), nullptr, false);
    if (!body.is_object() || !body.contains("endpoint") || !body["endpoint"].is_string() ||
        !body.contains("events") || !body.contains("status") || !body["status"].is_string()) {
        return clickup_error(
            http::Status::bad_request, "Endpoint, events and status required", "WEBHOOK_001");
    }
    const auto events = events_of(body["events"]);
    if (!events) return clickup_error(http::Status::bad_request, "Invalid events", "WEBHOOK_002");
    const auto status = body["status"].get<std::string>();
    if (status != "active" && status != "inactive") {
        return clickup_error(http::Status::bad_request, "Invalid status", "WEBHOOK_005");
    }
    webhook.endpoint = body["endpoint"];
    webhook.events = *events;
    webhook.status = status;
    // Setting a webhook active again starts its health afresh, as recovery does.
    if (status == "active") webhook.fail_count = 0;
    return http::json_response(http::Status::ok,
                               {{"id", webhook.id}, {"webhook", registered_webhook_json(webhook)}});
}

}  // namespace iea::sandbox
