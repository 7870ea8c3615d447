// ClickUp API v2 fake (contracts 1.3-1.9) and the unauthenticated file host (1.4).

#include <algorithm>
#include <boost/beast/http/field.hpp>
#include <fstream>
#include <sstream>

#include "sandbox/sandbox.hpp"
#include "sandbox/util.hpp"

namespace iea::sandbox {
namespace {

namespace bhttp = boost::beast::http;
constexpr std::string_view kTaskPrefix = "/clickup/api/v2/task/";

Response clickup_error(http::Status status, std::string_view message, std::string_view ecode) {
    return http::json_response(status, {{"err", message}, {"ECODE", ecode}});
}

std::vector<std::string> split_path(std::string_view rest) {
    std::vector<std::string> out;
    while (!rest.empty()) {
        const auto slash = rest.find('/');
        out.push_back(url_decode(rest.substr(0, slash)));
        if (slash == std::string_view::npos) break;
        rest.remove_prefix(slash + 1);
    }
    return out;
}

bool is_attachment_part(const std::string& name) {
    if (name == "attachment" || name == "attachment[]") return true;
    if (!name.starts_with("attachment[") || !name.ends_with("]")) return false;
    const auto index = std::string_view(name).substr(11, name.size() - 12);
    return !index.empty() &&
           std::all_of(index.begin(), index.end(), [](char c) { return c >= '0' && c <= '9'; });
}

json status_change_object(const json& status) {
    return {{"status", status.at("status")},
            {"color", status.at("color")},
            {"orderindex", status.at("orderindex")},
            {"type", status.at("type")}};
}

}  // namespace

void Sandbox::add_clickup_routes(http::Router& router) {
    const auto handler = [this](const Request& request) { return clickup_task(request); };
    for (const auto method :
         {http::Method::get, http::Method::post, http::Method::put, http::Method::delete_}) {
        router.add_prefix(method, std::string(kTaskPrefix), handler);
    }
}

void Sandbox::add_file_routes(http::Router& router) {
    // Served without any auth check. Whether an Authorization header came along is recorded
    // by the session, so tests can prove credentials never reach the file host.
    router.add_prefix(
        http::Method::get, "/files/", [this](const Request& request) -> asio::awaitable<Response> {
            const auto found = files_.find(url_decode(http::path_of(request)));
            if (found == files_.end()) {
                Response missing{http::Status::not_found, 11};
                missing.set(bhttp::field::content_type, "text/plain");
                missing.body() = "Not found";
                co_return missing;
            }
            std::ifstream in(found->second, std::ios::binary);
            std::ostringstream bytes;
            bytes << in.rdbuf();
            Response response{http::Status::ok, 11};
            response.set(bhttp::field::content_type,
                         mimetype_for(extension_of(found->second.string())));
            response.body() = bytes.str();
            co_return response;
        });
}

asio::awaitable<Response> Sandbox::clickup_task(const Request& request) {
    // TODO: any non-empty token is accepted; a test cannot yet make ClickUp refuse a wrong or
    // revoked token (OAUTH_019) except through a status fault.
    if (request[bhttp::field::authorization].empty()) {
        co_return clickup_error(
            http::Status::unauthorized, "Authorization header required", "OAUTH_017");
    }
    const auto path = http::path_of(request);
    const auto segments = split_path(path.substr(kTaskPrefix.size()));
    Task* task = segments.empty() ? nullptr : find_task(segments[0]);
    if (!task) co_return clickup_error(http::Status::not_found, "Task not found", "ITEM_013");

    const auto method = request.method();
    const bool emit = scenario_.api_webhooks && !options_.service_url.empty();

    // GET /task/{id}
    if (segments.size() == 1 && method == http::Method::get) {
        auto body = task_json(*task);
        if (request.target().find("include_markdown_description=true") != std::string_view::npos) {
            body["markdown_description"] = task->description;
        }
        co_return http::json_response(http::Status::ok, body);
    }

    // PUT /task/{id} {"status": "..."}
    if (segments.size() == 1 && method == http::Method::put) {
        const auto body = json::parse(request.body(), nullptr, false);
        if (!body.is_object()) {
            co_return clickup_error(
                http::Status::bad_request, "Body must be a JSON object", "INPUT_001");
        }
        if (body.contains("name") && body["name"].is_string()) task->name = body["name"];
        if (body.contains("description") && body["description"].is_string()) {
            task->description = body["description"];
        }
        if (body.contains("status")) {
            if (!body["status"].is_string()) {
                co_return clickup_error(
                    http::Status::bad_request, "Status must be a string", "INPUT_002");
            }
            const auto before = status_change_object(task_json(*task).at("status"));
            task->status = lower(body["status"].get<std::string>());
            task->updated = now_ms();
            task->status_changes.push_back(
                {{"status", task->status}, {"date", task->updated}, {"via_api", true}});
            if (emit) {
                const auto after = status_change_object(task_json(*task).at("status"));
                auto item = history_item("status", before, after, true);
                item["data"] = {{"status_type", after.at("type")}};
                // TODO: real ClickUp may also send a taskUpdated event with field status for the
                // same change (unconfirmed); only taskStatusUpdated is sent.
                emit_webhook(*task, "taskStatusUpdated", std::move(item), {});
            }
        }
        co_return http::json_response(http::Status::ok, task_json(*task));
    }

    // POST /task/{id}/attachment (multipart: attachment, attachment[] or attachment[N])
    if (segments.size() == 2 && segments[1] == "attachment" && method == http::Method::post) {
        const auto parts = parse_multipart(request[bhttp::field::content_type], request.body());
        if (!parts) {
            co_return clickup_error(
                http::Status::bad_request, "Body must be multipart/form-data", "UPLOAD_001");
        }
        std::optional<Attachment> first;
        for (const auto& part : *parts) {
            if (!is_attachment_part(part.name)) continue;
            task->attachments.push_back(
                store_file(part.filename.empty() ? "upload" : part.filename, part.data, true));
            if (!first) first = task->attachments.back();
        }
        if (!first) {
            co_return clickup_error(
                http::Status::bad_request, "No attachment supplied", "UPLOAD_002");
        }
        task->updated = now_ms();
        const bool image = first->mimetype.starts_with("image/");
        const json answer = {{"id", first->id},
                             {"version", "0"},
                             {"date", first->date},
                             {"title", first->title},
                             {"extension", first->extension},
                             {"thumbnail_small", image ? json(first->url) : json(nullptr)},
                             {"thumbnail_large", image ? json(first->url) : json(nullptr)},
                             {"url", first->url}};
        if (emit)
            emit_webhook(
                *task, "taskUpdated", history_item("attachments", nullptr, answer, true), {});
        co_return http::json_response(http::Status::ok, answer);
    }

    // POST|DELETE /task/{id}/field/{field_id} {"value": bool}
    if (segments.size() == 3 && segments[1] == "field" &&
        (method == http::Method::post || method == http::Method::delete_)) {
        if (segments[2] != options_.field_id) {
            co_return clickup_error(
                http::Status::bad_request, "Custom field not found", "FIELD_033");
        }
        bool ticked = false;
        if (method == http::Method::post) {
            const auto body = json::parse(request.body(), nullptr, false);
            if (!body.is_object() || !body.contains("value")) {
                co_return clickup_error(
                    http::Status::bad_request, "Value is required", "FIELD_010");
            }
            const auto& value = body["value"];
            ticked = value == true || value == "true";
            if (!value.is_boolean() && !value.is_string()) {
                co_return clickup_error(
                    http::Status::bad_request, "Value must be a boolean", "FIELD_011");
            }
        }
        const bool before = task->ai_edit;
        task->ai_edit = ticked;
        task->updated = now_ms();
        task->field_changes.push_back({{"field_id", segments[2]},
                                       {"value", ticked},
                                       {"date", task->updated},
                                       {"via_api", true}});
        if (emit) {
            auto item = history_item("custom_field",
                                     before ? json("true") : json(nullptr),
                                     ticked ? json("true") : json(nullptr),
                                     true);
            emit_webhook(*task, "taskUpdated", std::move(item), {});
        }
        co_return http::json_response(http::Status::ok, json::object());
    }

    // GET /task/{id}/comment: newest first, one page of 25, as ClickUp lists them.
    if (segments.size() == 2 && segments[1] == "comment" && method == http::Method::get) {
        auto comments = json::array();
        for (auto it = task->comments.rbegin();
             it != task->comments.rend() && comments.size() < 25; ++it) {
            comments.push_back({{"id", it->id},
                                {"comment", json::array({{{"text", it->text}}})},
                                {"comment_text", it->text},
                                {"date", std::to_string(it->date)},
                                {"resolved", false},
                                {"reply_count", 0}});
        }
        co_return http::json_response(http::Status::ok, {{"comments", std::move(comments)}});
    }

    // POST /task/{id}/comment {"comment_text": "...", "notify_all": bool}
    if (segments.size() == 2 && segments[1] == "comment" && method == http::Method::post) {
        const auto body = json::parse(request.body(), nullptr, false);
        if (!body.is_object() || !body.contains("comment_text") ||
            !body["comment_text"].is_string()) {
            co_return clickup_error(http::Status::bad_request, "Comment text required", "COMM_002");
        }
        Comment comment;
        comment.id = std::to_string(90000000000LL + next_counter_++);
        comment.hist_id = next_history_id();
        comment.text = body["comment_text"];
        comment.notify_all = body.value("notify_all", false);
        comment.date = now_ms();
        task->comments.push_back(comment);
        if (emit) {
            auto item = history_item("comment", nullptr, comment.id, true);
            item["comment"] = {{"id", comment.id},
                               {"text_content", comment.text},
                               {"comment", json::array({{{"text", comment.text}}})},
                               {"date", std::to_string(comment.date)}};
            emit_webhook(*task, "taskCommentPosted", std::move(item), {});
        }
        co_return http::json_response(
            http::Status::ok,
            {{"id", comment.id}, {"hist_id", comment.hist_id}, {"date", comment.date}});
    }

    // ClickUp answers a route it does not know with an HTML page.
    Response response{http::Status::not_found, 11};
    response.set(bhttp::field::content_type, "text/html; charset=utf-8");
    response.body() = "<!DOCTYPE html><html><body><pre>Cannot " +
                      std::string(request.method_string()) + " " + std::string(path) +
                      "</pre></body></html>";
    co_return response;
}

}  // namespace iea::sandbox
