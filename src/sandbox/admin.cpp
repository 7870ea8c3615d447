// The admin API: seed tasks, script the scenario and faults, tick checkboxes, read back
// every request and webhook delivery. Test-facing; documented in docs/sandbox.md.

#include <algorithm>
#include <functional>

#include "sandbox/sandbox.hpp"
#include "sandbox/util.hpp"

namespace iea::sandbox {
namespace {

using Body = std::function<Response(const Request&)>;

// Admin handlers are synchronous; bad input of any kind is the caller's mistake: 400.
http::Handler guarded(Body body) {
    return [body = std::move(body)](const Request& request) -> asio::awaitable<Response> {
        try {
            co_return body(request);
        } catch (const std::exception& e) {
            co_return http::json_response(http::Status::bad_request, {{"error", e.what()}});
        }
    };
}

json parse_body(const Request& request) {
    if (request.body().empty()) return json::object();
    return json::parse(request.body());
}

std::string query_value(const Request& request, std::string_view key) {
    const std::string_view target = request.target();
    const auto at = target.find('?');
    if (at == std::string_view::npos) return {};
    auto query = target.substr(at + 1);
    while (!query.empty()) {
        const auto amp = query.find('&');
        const auto pair = query.substr(0, amp);
        const auto eq = pair.find('=');
        if (pair.substr(0, eq) == key && eq != std::string_view::npos)
            return url_decode(pair.substr(eq + 1));
        if (amp == std::string_view::npos) break;
        query.remove_prefix(amp + 1);
    }
    return {};
}

Response not_found(std::string_view what) {
    return http::json_response(http::Status::not_found,
                               {{"error", std::string(what) + " not found"}});
}

json delivery_json(const Delivery& d) {
    return {{"seq", d.seq},
            {"task_id", d.task_id},
            {"event", d.event},
            {"field", d.field},
            {"history_item_id", d.history_item_id},
            {"copy", d.copy},
            {"attempt", d.attempt},
            {"signature", d.signature_mode},
            {"sent_ms", d.sent_ms},
            {"status", d.status},
            {"latency_ms", d.latency_ms},
            {"timed_out", d.timed_out},
            {"answer", d.answer},
            {"error", d.error}};
}

}  // namespace

void Sandbox::add_admin_routes(http::Router& router) {
    router.add(http::Method::get, "/admin/info", guarded([this](const Request&) {
                   return http::json_response(
                       http::Status::ok,
                       {{"port", port_},
                        {"webhook_id", webhook_id_},
                        {"field_id", options_.field_id},
                        {"service_url", options_.service_url},
                        {"data_dir", options_.data_dir.string()},
                        {"clickup_base_url", base_url() + "/clickup/api/v2"},
                        {"openrouter_base_url", base_url() + "/openrouter/api/v1"},
                        {"wavespeed_base_url", base_url() + "/wavespeed/api/v3"}});
               }));

    router.add(http::Method::post, "/admin/tasks", guarded([this](const Request& request) {
                   return http::json_response(http::Status::created,
                                              admin_task_json(create_task(parse_body(request))));
               }));
    router.add(http::Method::get, "/admin/tasks", guarded([this](const Request&) {
                   json out = json::array();
                   for (const auto& id : task_order_) out.push_back(admin_task_json(tasks_.at(id)));
                   return http::json_response(http::Status::ok, out);
               }));
    router.add_prefix(
        http::Method::get, "/admin/tasks/", guarded([this](const Request& request) {
            const auto id =
                url_decode(http::path_of(request).substr(std::string_view("/admin/tasks/").size()));
            const Task* task = find_task(id);
            return task ? http::json_response(http::Status::ok, admin_task_json(*task))
                        : not_found("task");
        }));

    // POST /admin/tasks/{id}/tick and /untick: a person changes the AI-edit checkbox.
    router.add_prefix(
        http::Method::post, "/admin/tasks/", guarded([this](const Request& request) {
            const auto rest =
                http::path_of(request).substr(std::string_view("/admin/tasks/").size());
            const auto slash = rest.find('/');
            const auto action =
                slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);
            Task* task = find_task(url_decode(rest.substr(0, slash)));
            if (!task) return not_found("task");
            if (action != "tick" && action != "untick") return not_found("action");

            const auto body = parse_body(request);
            WebhookOptions options;
            options.deliveries = std::clamp(body.value("deliveries", 1), 1, 20);
            options.spacing_ms = std::max(0, body.value("spacing_ms", 0));
            options.signature = body.value("signature", "valid");
            if (options.signature != "valid" && options.signature != "wrong_secret" &&
                options.signature != "missing" && options.signature != "altered") {
                throw std::invalid_argument(
                    "signature must be valid, wrong_secret, missing or altered");
            }
            const bool ticked = action == "tick";
            const bool before = task->ai_edit;
            task->ai_edit = ticked;
            task->updated = now_ms();
            task->field_changes.push_back({{"field_id", options_.field_id},
                                           {"value", ticked},
                                           {"date", task->updated},
                                           {"via_api", false}});
            json answer = {{"task_id", task->id}, {"webhook_id", webhook_id_}, {"sent", false}};
            if (!options_.service_url.empty()) {
                auto item = history_item("custom_field",
                                         before ? json("true") : json(nullptr),
                                         ticked ? json("true") : json(nullptr),
                                         false);
                answer["history_item_id"] =
                    emit_webhook(*task, "taskUpdated", std::move(item), options);
                answer["sent"] = true;
                answer["deliveries"] = options.deliveries;
            }
            return http::json_response(http::Status::ok, answer);
        }));

    router.add(http::Method::post, "/admin/scenario", guarded([this](const Request& request) {
                   apply_scenario(parse_body(request));
                   return http::json_response(http::Status::ok, {{"status", "ok"}});
               }));
    router.add(http::Method::get, "/admin/scenario", guarded([this](const Request&) {
                   json verdicts = json::array();
                   for (const auto& v : scenario_.verdicts) {
                       verdicts.push_back({{"model", v.model},
                                           {"iteration", v.iteration},
                                           {"score", v.score},
                                           {"pass", v.pass},
                                           {"issues", v.issues},
                                           {"reasoning", v.reasoning},
                                           {"style", v.style}});
                   }
                   return http::json_response(
                       http::Status::ok,
                       {{"verdicts", verdicts},
                        {"wavespeed_delay_ms", scenario_.wavespeed_delay_ms},
                        {"latency_ms", scenario_.latency_ms},
                        {"webhook_timeout_ms", scenario_.webhook_timeout_ms},
                        {"webhook_retry_ms", scenario_.webhook_retry_ms},
                        {"webhook_max_retries", scenario_.webhook_max_retries},
                        {"api_webhooks", scenario_.api_webhooks}});
               }));

    router.add(http::Method::post, "/admin/faults", guarded([this](const Request& request) {
                   auto rule = parse_fault(parse_body(request));
                   rule.id = next_fault_id_++;
                   faults_.push_back(std::move(rule));
                   return http::json_response(http::Status::created, {{"id", faults_.back().id}});
               }));
    router.add(http::Method::get, "/admin/faults", guarded([this](const Request&) {
                   json out = json::array();
                   for (const auto& rule : faults_) {
                       out.push_back({{"id", rule.id},
                                      {"rule", rule.source},
                                      {"hits", rule.hits},
                                      {"remaining", rule.times}});
                   }
                   return http::json_response(http::Status::ok, out);
               }));
    router.add(http::Method::delete_, "/admin/faults", guarded([this](const Request&) {
                   faults_.clear();
                   return http::json_response(http::Status::ok, {{"status", "ok"}});
               }));

    router.add(http::Method::get, "/admin/requests", guarded([this](const Request& request) {
                   const auto service = query_value(request, "service");
                   json out = json::array();
                   for (const auto& entry : requests_) {
                       if (service.empty() || entry.at("service") == service) out.push_back(entry);
                   }
                   std::sort(out.begin(), out.end(), [](const json& a, const json& b) {
                       return a.at("seq") < b.at("seq");
                   });
                   return http::json_response(http::Status::ok, out);
               }));
    router.add(http::Method::get, "/admin/webhooks", guarded([this](const Request&) {
                   json out = json::array();
                   for (const auto& delivery : deliveries_) out.push_back(delivery_json(delivery));
                   return http::json_response(http::Status::ok, out);
               }));
    router.add(http::Method::post, "/admin/reset", guarded([this](const Request&) {
                   reset();
                   return http::json_response(http::Status::ok, {{"status", "ok"}});
               }));
}

}  // namespace iea::sandbox
