#include "iea/providers/clickup.hpp"

#include <algorithm>
#include <charconv>

#include "support.hpp"

// GCC 12 at -O2 reports -Wmismatched-new-delete on Asio coroutine frames of the webhook calls
// in this file (the frame comes from Asio's recycling operator new and goes back through the
// matching operator delete; the warning is a known false positive for coroutine frames).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace iea::providers {
namespace {

namespace bhttp = boost::beast::http;
constexpr std::string_view kProvider = "clickup";

// ClickUp is loose about types: ids and dates arrive as strings or numbers.
std::string text_of(const nlohmann::json& object, std::string_view key) {
    const auto it = object.find(key);
    if (it == object.end() || it->is_null()) return {};
    if (it->is_string()) return it->get<std::string>();
    if (it->is_number() || it->is_boolean()) return it->dump();
    return {};
}

template <typename Integer>
Integer integer_of(const nlohmann::json& object, std::string_view key) {
    const auto it = object.find(key);
    if (it == object.end()) return 0;
    if (it->is_number_integer() || it->is_number_unsigned()) return it->get<Integer>();
    if (it->is_number_float()) return static_cast<Integer>(it->get<double>());
    if (it->is_string()) {
        const auto& text = it->get_ref<const std::string&>();
        Integer value = 0;
        const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
        return ec == std::errc{} ? value : 0;
    }
    return 0;
}

// {"err": "...", "ECODE": "..."} when JSON; otherwise the start of whatever came back.
std::string error_message(const http::ClientResponse& response, const config::Secret& token) {
    const auto json = nlohmann::json::parse(response.body, nullptr, false);
    std::string message;
    if (json.is_object()) {
        message = text_of(json, "err");
        if (message.empty()) message = text_of(json, "error");
        if (const auto code = text_of(json, "ECODE"); !code.empty()) {
            message += " (" + code + ")";
        }
    }
    if (message.empty()) message = response.body;
    return scrub(message, token.reveal(), 300);
}

http::ClientRequest json_request(bhttp::verb method, std::string url, const nlohmann::json& body) {
    http::ClientRequest request;
    request.method = method;
    request.url = std::move(url);
    request.headers.emplace_back("Content-Type", "application/json");
    request.body = body.dump();
    return request;
}

// The OpenAPI description types space, folder and list ids as integers in requests: send a
// numeric id as a number, anything else as given, and let ClickUp judge it.
nlohmann::json id_value(const std::string& id) {
    const bool numeric =
        !id.empty() && id.size() < 19 &&
        std::all_of(id.begin(), id.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (!numeric) return id;
    return std::stoll(id);
}

std::string webhook_url(std::string_view base, std::string_view webhook_id) {
    return support::join_url(base, "/webhook/" + http::encode_path_segment(webhook_id));
}

std::string team_webhooks_url(std::string_view base, std::string_view team_id) {
    return support::join_url(base, "/team/" + http::encode_path_segment(team_id) + "/webhook");
}

// Create and update answer {"id": ..., "webhook": {...}}.
const nlohmann::json& webhook_object(const nlohmann::json& body, std::string_view operation) {
    if (body.is_object()) {
        if (const auto it = body.find("webhook"); it != body.end() && it->is_object()) return *it;
    }
    auto details = support::details(kProvider, operation);
    details.kind = ErrorKind::kMalformedResponse;
    details.message = "answer without a webhook object";
    throw ProviderError(std::move(details));
}

}  // namespace

Webhook parse_webhook(const nlohmann::json& object, std::string_view operation) {
    if (!object.is_object() || text_of(object, "id").empty()) {
        auto details = support::details(kProvider, operation);
        details.kind = ErrorKind::kMalformedResponse;
        details.message = "webhook without an id";
        throw ProviderError(std::move(details));
    }
    Webhook webhook;
    webhook.id = text_of(object, "id");
    webhook.endpoint = text_of(object, "endpoint");
    if (const auto events = object.find("events"); events != object.end()) {
        if (events->is_array()) {
            for (const auto& event : *events) {
                if (event.is_string()) webhook.events.push_back(event.get<std::string>());
            }
        } else if (events->is_string()) {
            webhook.events.push_back(events->get<std::string>());
        }
    }
    if (const auto health = object.find("health"); health != object.end() && health->is_object()) {
        webhook.status = text_of(*health, "status");
        webhook.fail_count = integer_of<int>(*health, "fail_count");
    }
    webhook.scope = {text_of(object, "space_id"), text_of(object, "folder_id"),
                     text_of(object, "list_id"), text_of(object, "task_id")};
    return webhook;
}

bool Task::is_checked(std::string_view field_id) const {
    const auto it = std::find_if(custom_fields.begin(),
                                 custom_fields.end(),
                                 [&](const CustomField& field) { return field.id == field_id; });
    if (it == custom_fields.end()) return false;
    return it->value == true || it->value == "true";
}

Task parse_task(const nlohmann::json& body) {
    if (!body.is_object() || text_of(body, "id").empty()) {
        auto details = support::details(kProvider, "get_task");
        details.kind = ErrorKind::kMalformedResponse;
        details.message = "task without an id";
        throw ProviderError(std::move(details));
    }
    Task task;
    task.id = text_of(body, "id");
    task.name = text_of(body, "name");
    task.description = text_of(body, "description");
    if (const auto status = body.find("status"); status != body.end()) {
        task.status = status->is_object() ? text_of(*status, "status") : text_of(body, "status");
    }
    if (const auto list = body.find("attachments"); list != body.end() && list->is_array()) {
        for (const auto& item : *list) {
            if (!item.is_object()) continue;
            task.attachments.push_back({text_of(item, "id"),
                                        text_of(item, "title"),
                                        text_of(item, "url"),
                                        text_of(item, "extension"),
                                        text_of(item, "mimetype"),
                                        integer_of<std::uint64_t>(item, "size"),
                                        integer_of<std::int64_t>(item, "date")});
        }
    }
    if (const auto list = body.find("custom_fields"); list != body.end() && list->is_array()) {
        for (const auto& item : *list) {
            if (!item.is_object()) continue;
            task.custom_fields.push_back({text_of(item, "id"),
                                          text_of(item, "name"),
                                          text_of(item, "type"),
                                          item.value("value", nlohmann::json())});
        }
    }
    return task;
}

ClickUpOptions ClickUpOptions::from(const config::Settings& settings) {
    ClickUpOptions options;
    if (!settings.clickup_api_base_url.empty()) options.base_url = settings.clickup_api_base_url;
    options.token = settings.clickup_api_key;
    if (settings.timeout_clickup.count() > 0) options.timeout = settings.timeout_clickup;
    options.retry = RetryPolicy::from(settings);
    if (settings.clickup_requests_per_minute > 0) {
        options.requests_per_minute = settings.clickup_requests_per_minute;
    }
    return options;
}

// TODO: The token bucket lives in this process; several instances sharing one token each
// allow the full rate, so past one instance ClickUp's 429 handling is what keeps us in line.
ClickUpClient::ClickUpClient(http::HttpClient& http, ClickUpOptions options)
    : http_(http),
      options_(std::move(options)),
      bucket_(options_.requests_per_minute, options_.burst) {}

boost::asio::awaitable<http::ClientResponse> ClickUpClient::call_api(std::string_view operation,
                                                                     http::ClientRequest request,
                                                                     Idempotency idempotency) {
    // A personal token goes bare, without a scheme (contracts 1.1).
    request.headers.emplace_back("Authorization", options_.token.reveal());
    request.timeout = options_.timeout;
    request.max_response_bytes = options_.max_json_bytes;
    request.idempotent = idempotency == Idempotency::kIdempotent;

    co_return co_await with_retries<http::ClientResponse>(
        options_.retry,
        {kProvider, operation, idempotency},
        [&](int attempt) -> boost::asio::awaitable<http::ClientResponse> {
            co_await bucket_.acquire();
            const auto started = std::chrono::steady_clock::now();
            http::ClientResponse response;
            try {
                response = co_await http_.send(request);
            } catch (const http::ClientError& error) {
                throw support::from_transport(kProvider, operation, error);
            }
            if (response.status / 100 != 2) {
                auto details = support::from_status(
                    kProvider, operation, response, error_message(response, options_.token));
                // Everyone using this token must wait, not only this call.
                if (details.status == 429 && details.retry_after) {
                    bucket_.pause_for(
                        std::min(*details.retry_after, options_.retry.max_retry_after));
                }
                throw ProviderError(std::move(details));
            }
            support::log_success(kProvider, operation, attempt, response.status, started);
            co_return response;
        });
}

boost::asio::awaitable<Task> ClickUpClient::get_task(std::string task_id) {
    http::ClientRequest request;
    request.url =
        support::join_url(options_.base_url, "/task/" + http::encode_path_segment(task_id));
    const auto response =
        co_await call_api("get_task", std::move(request), Idempotency::kIdempotent);
    co_return parse_task(support::parse_json(kProvider, "get_task", response));
}

boost::asio::awaitable<std::string> ClickUpClient::download(std::string url,
                                                            std::size_t max_bytes) {
    // The file host is not the API: no Authorization header, no token bucket (lesson 15).
    http::ClientRequest request;
    request.url = std::move(url);
    request.timeout = options_.download_timeout;
    request.max_response_bytes = max_bytes;
    request.max_redirects = options_.max_download_redirects;

    co_return co_await support::download(http_,
                                         {kProvider, "download", Idempotency::kIdempotent},
                                         options_.retry,
                                         std::move(request));
}

boost::asio::awaitable<UploadedAttachment> ClickUpClient::upload_attachment(
    std::string task_id, std::string file_name, std::string content_type, std::string bytes) {
    auto multipart = support::multipart_file("attachment", file_name, content_type, bytes);
    http::ClientRequest request;
    request.method = bhttp::verb::post;
    request.url = support::join_url(options_.base_url,
                                    "/task/" + http::encode_path_segment(task_id) + "/attachment");
    request.headers.emplace_back("Content-Type", multipart.content_type);
    request.body = std::move(multipart.body);
    const auto response =
        co_await call_api("upload_attachment", std::move(request), Idempotency::kNonIdempotent);

    // ClickUp has been seen answering 200 with a body that is not JSON; the file is there.
    UploadedAttachment uploaded;
    const auto json = nlohmann::json::parse(response.body, nullptr, false);
    if (!json.is_object()) {
        detail::provider_log().warning("Upload answer was not JSON",
                                       {{"provider", kProvider},
                                        {"operation", "upload_attachment"},
                                        {"status", response.status}});
        co_return uploaded;
    }
    uploaded.id = text_of(json, "id");
    uploaded.url = text_of(json, "url");
    uploaded.title = text_of(json, "title");
    co_return uploaded;
}

boost::asio::awaitable<void> ClickUpClient::set_checkbox(std::string task_id,
                                                         std::string field_id,
                                                         bool checked) {
    auto request =
        json_request(bhttp::verb::post,
                     support::join_url(options_.base_url,
                                       "/task/" + http::encode_path_segment(task_id) + "/field/" +
                                           http::encode_path_segment(field_id)),
                     {{"value", checked}});
    co_await call_api("set_checkbox", std::move(request), Idempotency::kIdempotent);
}

boost::asio::awaitable<void> ClickUpClient::set_status(std::string task_id, std::string status) {
    auto request = json_request(
        bhttp::verb::put,
        support::join_url(options_.base_url, "/task/" + http::encode_path_segment(task_id)),
        {{"status", status}});
    co_await call_api("set_status", std::move(request), Idempotency::kIdempotent);
}

boost::asio::awaitable<std::string> ClickUpClient::add_comment(std::string task_id,
                                                               std::string text,
                                                               bool notify_all) {
    auto request =
        json_request(bhttp::verb::post,
                     support::join_url(options_.base_url,
                                       "/task/" + http::encode_path_segment(task_id) + "/comment"),
                     {{"comment_text", text}, {"notify_all", notify_all}});
    const auto response =
        co_await call_api("add_comment", std::move(request), Idempotency::kNonIdempotent);
    const auto json = support::parse_json(kProvider, "add_comment", response);
    auto id = json.is_object() ? text_of(json, "id") : std::string{};
    if (id.empty()) {
        auto details = support::details(kProvider, "add_comment");
        details.kind = ErrorKind::kMalformedResponse;
        details.status = static_cast<int>(response.status);
        details.message = "answer without a comment id";
        throw ProviderError(std::move(details));
    }
    co_return id;
}

boost::asio::awaitable<std::vector<TaskComment>> ClickUpClient::get_comments(std::string task_id) {
    http::ClientRequest request;
    request.url = support::join_url(options_.base_url,
                                    "/task/" + http::encode_path_segment(task_id) + "/comment");
    const auto response =
        co_await call_api("get_comments", std::move(request), Idempotency::kIdempotent);
    const auto json = support::parse_json(kProvider, "get_comments", response);
    std::vector<TaskComment> comments;
    if (json.is_object() && json.contains("comments") && json["comments"].is_array()) {
        for (const auto& item : json["comments"]) {
            if (!item.is_object()) continue;
            comments.push_back({text_of(item, "id"), text_of(item, "comment_text")});
        }
    }
    co_return comments;
}

boost::asio::awaitable<CreatedWebhook> ClickUpClient::create_webhook(
    std::string team_id,
    std::string endpoint,
    std::vector<std::string> events,
    WebhookScope scope) {
    nlohmann::json body{{"endpoint", endpoint}, {"events", events}};
    if (!scope.space_id.empty()) body["space_id"] = id_value(scope.space_id);
    if (!scope.folder_id.empty()) body["folder_id"] = id_value(scope.folder_id);
    if (!scope.list_id.empty()) body["list_id"] = id_value(scope.list_id);
    if (!scope.task_id.empty()) body["task_id"] = scope.task_id;
    auto request =
        json_request(bhttp::verb::post, team_webhooks_url(options_.base_url, team_id), body);
    const auto response =
        co_await call_api("create_webhook", std::move(request), Idempotency::kNonIdempotent);

    const auto json = support::parse_json(kProvider, "create_webhook", response);
    const auto& object = webhook_object(json, "create_webhook");
    CreatedWebhook created{parse_webhook(object, "create_webhook"),
                           config::Secret(text_of(object, "secret"))};
    if (created.secret.empty()) {
        auto details = support::details(kProvider, "create_webhook");
        details.kind = ErrorKind::kMalformedResponse;
        details.message = "webhook created without a secret: delete it and create it again";
        throw ProviderError(std::move(details));
    }
    co_return created;
}

boost::asio::awaitable<std::vector<Webhook>> ClickUpClient::list_webhooks(std::string team_id) {
    http::ClientRequest request;
    request.url = team_webhooks_url(options_.base_url, team_id);
    const auto response =
        co_await call_api("list_webhooks", std::move(request), Idempotency::kIdempotent);
    const auto json = support::parse_json(kProvider, "list_webhooks", response);
    const auto list = json.is_object() ? json.find("webhooks") : json.end();
    if (!json.is_object() || list == json.end() || !list->is_array()) {
        auto details = support::details(kProvider, "list_webhooks");
        details.kind = ErrorKind::kMalformedResponse;
        details.message = "answer without a webhooks array";
        throw ProviderError(std::move(details));
    }
    std::vector<Webhook> webhooks;
    for (const auto& item : *list) webhooks.push_back(parse_webhook(item, "list_webhooks"));
    co_return webhooks;
}

boost::asio::awaitable<Webhook> ClickUpClient::set_webhook_status(Webhook webhook,
                                                                  std::string status) {
    // The update needs endpoint and events too; sending the webhook's own keeps them as they
    // are.
    auto request = json_request(
        bhttp::verb::put,
        webhook_url(options_.base_url, webhook.id),
        {{"endpoint", webhook.endpoint}, {"events", webhook.events}, {"status", status}});
    const auto response =
        co_await call_api("set_webhook_status", std::move(request), Idempotency::kIdempotent);
    const auto json = support::parse_json(kProvider, "set_webhook_status", response);
    co_return parse_webhook(webhook_object(json, "set_webhook_status"), "set_webhook_status");
}

boost::asio::awaitable<void> ClickUpClient::delete_webhook(std::string webhook_id) {
    http::ClientRequest request;
    request.method = bhttp::verb::delete_;
    request.url = webhook_url(options_.base_url, webhook_id);
    co_await call_api("delete_webhook", std::move(request), Idempotency::kIdempotent);
}

}  // namespace iea::providers
