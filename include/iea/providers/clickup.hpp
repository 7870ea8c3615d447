#pragma once

/// Client of the ClickUp API v2 (contracts section 1): read a task, download an attachment,
/// upload one, untick a checkbox, set the status, comment; and manage the webhooks that
/// deliver to the service (create, list, set status, delete).
///
/// Every method is a coroutine on the HttpClient's executor and throws ProviderError with
/// provider "clickup" and the method's name as operation. The token goes only to the API
/// base URL: downloads from the attachment file host never carry it. A client-side token
/// bucket keeps under ClickUp's per-token rate limit; a 429 waits for X-RateLimit-Reset and
/// holds back the other calls of this client too.

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "iea/config/settings.hpp"
#include "iea/http/client.hpp"
#include "iea/providers/retry.hpp"
#include "iea/providers/token_bucket.hpp"

namespace iea::providers {

/// A file attached to a task.
struct Attachment {
    std::string id;
    std::string title;  ///< The file name as uploaded.
    std::string url;
    std::string extension;
    std::string mimetype;  ///< Empty when ClickUp gave none.
    std::uint64_t size = 0;
    std::int64_t date_ms = 0;  ///< Upload time; ClickUp sends a number or a numeric string.
};

/// A custom field of a task, value as ClickUp sent it (not normalised: cast it yourself).
struct CustomField {
    std::string id;
    std::string name;
    std::string type;      ///< "checkbox", "text", ...
    nlohmann::json value;  ///< null when unset.
};

/// The parts of a task the service reads.
struct Task {
    std::string id;
    std::string name;
    std::string description;              ///< Plain text; empty when none.
    std::string status;                   ///< Status name, e.g. "to do".
    std::vector<Attachment> attachments;  ///< In ClickUp's order.
    std::vector<CustomField> custom_fields;

    /// True when field `field_id` holds true or "true" (the two forms ClickUp uses).
    [[nodiscard]] bool is_checked(std::string_view field_id) const;
};

/// Parses the GET /task answer; throws ProviderError kMalformedResponse when the id is missing.
[[nodiscard]] Task parse_task(const nlohmann::json& body);

/// What the upload answer says about the new attachment. All empty when ClickUp answered
/// 200 with a body that is not JSON (tolerated, as the original did).
struct UploadedAttachment {
    std::string id;
    std::string url;
    std::string title;
};

/// A comment on a task, as the comment list gives it.
struct TaskComment {
    std::string id;
    std::string text;  ///< comment_text: the plain text.
};

/// Where a webhook listens. Empty: not narrowed at that level; ClickUp allows one location
/// per level (space, folder, list, task).
struct WebhookScope {
    std::string space_id;
    std::string folder_id;
    std::string list_id;
    std::string task_id;
};

/// A registered webhook, as GET /team/{team_id}/webhook lists it. The secret is left out:
/// ClickUp repeats it in every listing, and nothing but `create` needs to show it.
struct Webhook {
    std::string id;
    std::string endpoint;
    std::vector<std::string> events;
    std::string status;  ///< health.status: "active", "failing" or "suspended".
    int fail_count = 0;  ///< health.fail_count: events dropped after five failed deliveries.
    WebhookScope scope;
};

/// What POST /team/{team_id}/webhook answers: the webhook and the secret that signs its
/// deliveries, which the operator puts in CLICKUP_WEBHOOK_SECRET.
struct CreatedWebhook {
    Webhook webhook;
    config::Secret secret;
};

/// Parses one webhook object; ids given as numbers become text. Throws ProviderError
/// kMalformedResponse, naming `operation`, when the id is missing.
[[nodiscard]] Webhook parse_webhook(const nlohmann::json& object, std::string_view operation);

struct ClickUpOptions {
    std::string base_url = "https://api.clickup.com/api/v2";
    config::Secret token;
    std::chrono::milliseconds timeout{30000};            ///< Per API call.
    std::chrono::milliseconds download_timeout{120000};  ///< Per attachment download.
    RetryPolicy retry;
    double requests_per_minute = 100;  ///< Token bucket rate; <= 0 disables it.
    double burst = 10;                 ///< Calls allowed back to back before the rate applies.
    std::size_t max_json_bytes = 16U << 20U;
    int max_download_redirects = 3;

    /// Base URL, token, timeout and attempts from Settings.
    [[nodiscard]] static ClickUpOptions from(const config::Settings& settings);
};

class ClickUpClient final {
  public:
    /// `http` must outlive the client.
    ClickUpClient(http::HttpClient& http, ClickUpOptions options);

    /// GET /task/{task_id}.
    [[nodiscard]] boost::asio::awaitable<Task> get_task(std::string task_id);

    /// Fetches an attachment's bytes from its URL, without credentials, following up to
    /// max_download_redirects redirects. Larger than `max_bytes`: kTooLarge.
    [[nodiscard]] boost::asio::awaitable<std::string> download(std::string url,
                                                               std::size_t max_bytes);

    /// POST /task/{task_id}/attachment, one multipart part named "attachment". Not
    /// idempotent: retried only when ClickUp provably did not take it (no connection, 429,
    /// 503), never after a timeout, so a duplicate attachment cannot appear.
    [[nodiscard]] boost::asio::awaitable<UploadedAttachment> upload_attachment(
        std::string task_id, std::string file_name, std::string content_type, std::string bytes);

    /// POST /task/{task_id}/field/{field_id} with {"value": checked}. Idempotent.
    [[nodiscard]] boost::asio::awaitable<void> set_checkbox(std::string task_id,
                                                            std::string field_id,
                                                            bool checked);

    /// PUT /task/{task_id} with {"status": status}. Idempotent.
    [[nodiscard]] boost::asio::awaitable<void> set_status(std::string task_id, std::string status);

    /// POST /task/{task_id}/comment with comment_text and notify_all; returns the comment
    /// id. Not idempotent: retried like upload_attachment.
    [[nodiscard]] boost::asio::awaitable<std::string> add_comment(std::string task_id,
                                                                  std::string text,
                                                                  bool notify_all);

    /// GET /task/{task_id}/comment: the newest comments (ClickUp gives 25 per page, newest
    /// first), to find out whether a comment of ours was posted before a restart.
    [[nodiscard]] boost::asio::awaitable<std::vector<TaskComment>> get_comments(
        std::string task_id);

    /// POST /team/{team_id}/webhook: a webhook for `endpoint` and `events` within `scope`.
    /// Not idempotent: retried only when ClickUp provably did not take it.
    [[nodiscard]] boost::asio::awaitable<CreatedWebhook> create_webhook(
        std::string team_id,
        std::string endpoint,
        std::vector<std::string> events,
        WebhookScope scope);

    /// GET /team/{team_id}/webhook: the webhooks this token created in the workspace.
    [[nodiscard]] boost::asio::awaitable<std::vector<Webhook>> list_webhooks(std::string team_id);

    /// PUT /webhook/{id} with the webhook's endpoint and events and the new `status`
    /// ("active" brings a failing or suspended webhook back). Idempotent.
    [[nodiscard]] boost::asio::awaitable<Webhook> set_webhook_status(Webhook webhook,
                                                                     std::string status);

    /// DELETE /webhook/{id}. Idempotent.
    [[nodiscard]] boost::asio::awaitable<void> delete_webhook(std::string webhook_id);

  private:
    [[nodiscard]] boost::asio::awaitable<http::ClientResponse> call_api(std::string_view operation,
                                                                        http::ClientRequest request,
                                                                        Idempotency idempotency);

    http::HttpClient& http_;
    ClickUpOptions options_;
    TokenBucket bucket_;
};

}  // namespace iea::providers
