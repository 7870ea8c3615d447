// `image-edit-agent webhook ...`: the ClickUp webhooks that deliver to this service, managed
// from a terminal or a cron job instead of hand-written curl calls.

#include <fmt/format.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <exception>
#include <optional>
#include <stdexcept>

#include "iea/http/client.hpp"
#include "iea/providers/clickup.hpp"
#include "iea/service/commands.hpp"

namespace iea::service {
namespace {

namespace asio = boost::asio;
using providers::Webhook;

constexpr std::string_view kWebhookPath = "/webhook/clickup";
constexpr std::string_view kUsage =
    "usage: image-edit-agent webhook create [--endpoint URL] [--space ID] [--folder ID] "
    "[--list ID]\n"
    "       image-edit-agent webhook list\n"
    "       image-edit-agent webhook delete WEBHOOK_ID\n"
    "       image-edit-agent webhook health [--endpoint URL] [--reactivate]\n";

struct WebhookArguments {
    std::string subcommand;
    std::string endpoint;
    providers::WebhookScope scope;
    bool reactivate = false;
    std::vector<std::string> positional;
};

WebhookArguments parse_arguments(const std::vector<std::string>& arguments) {
    if (arguments.empty()) throw std::invalid_argument("which webhook command?");
    WebhookArguments parsed;
    parsed.subcommand = arguments[0];
    for (std::size_t i = 1; i < arguments.size(); ++i) {
        const auto& flag = arguments[i];
        const auto value = [&]() -> std::string {
            if (i + 1 >= arguments.size() || arguments[i + 1].empty()) {
                throw std::invalid_argument(flag + " needs a value");
            }
            return arguments[++i];
        };
        if (flag == "--endpoint") {
            parsed.endpoint = value();
        } else if (flag == "--space") {
            parsed.scope.space_id = value();
        } else if (flag == "--folder") {
            parsed.scope.folder_id = value();
        } else if (flag == "--list") {
            parsed.scope.list_id = value();
        } else if (flag == "--reactivate") {
            parsed.reactivate = true;
        } else if (flag.starts_with("--")) {
            throw std::invalid_argument("unknown option " + flag);
        } else {
            parsed.positional.push_back(flag);
        }
    }
    return parsed;
}

// A bare origin (the usual PUBLIC_URL) gets the webhook path; a URL with a path is kept.
std::string webhook_endpoint(std::string url) {
    if (!url.starts_with("https://") && !url.starts_with("http://")) {
        throw std::invalid_argument("the endpoint must be an http(s) URL: " + url);
    }
    const auto host_start = url.find("://") + 3;
    const auto path_start = url.find('/', host_start);
    if (path_start == std::string::npos || path_start == url.size() - 1) {
        if (path_start != std::string::npos) url.pop_back();
        url += kWebhookPath;
    }
    return url;
}

std::string without_trailing_slash(std::string url) {
    while (url.size() > 1 && url.back() == '/') url.pop_back();
    return url;
}

std::string joined(const std::vector<std::string>& items) {
    std::string out;
    for (const auto& item : items) out += (out.empty() ? "" : ",") + item;
    return out.empty() ? "*" : out;
}

std::string scope_text(const providers::WebhookScope& scope) {
    std::string out;
    const auto add = [&](std::string_view level, const std::string& id) {
        if (!id.empty()) out += fmt::format("{}{} {}", out.empty() ? "" : ", ", level, id);
    };
    add("space", scope.space_id);
    add("folder", scope.folder_id);
    add("list", scope.list_id);
    add("task", scope.task_id);
    return out.empty() ? "whole workspace" : out;
}

bool healthy(const Webhook& webhook) {
    return webhook.status == "active" && webhook.fail_count == 0;
}

// What the operator needs to know about an unhealthy webhook (ClickUp's webhook health page).
std::string why_unhealthy(const Webhook& webhook) {
    if (webhook.status == "suspended") {
        return "suspended: ClickUp stopped sending events to it (fail_count reached 100, or the "
               "endpoint answered 410); ticks made since then never reached the service";
    }
    if (webhook.status == "failing") {
        return fmt::format(
            "failing, fail_count {}: deliveries got no 2xx answer within 7 s; each count is "
            "an event ClickUp gave up on after five tries",
            webhook.fail_count);
    }
    return fmt::format("status '{}', fail_count {}", webhook.status, webhook.fail_count);
}

// Runs one exchange with ClickUp on a loop of its own and returns its result.
template <typename Result, typename Work>
Result with_clickup(const config::Settings& settings, Work work) {
    asio::io_context io(1);
    http::HttpClient http(io.get_executor());
    providers::ClickUpClient clickup(http, providers::ClickUpOptions::from(settings));
    std::optional<Result> result;
    std::exception_ptr failure;
    asio::co_spawn(io, work(clickup), [&](std::exception_ptr error, Result value) {
        failure = error;
        if (!error) result = std::move(value);
        io.stop();  // pooled connections would otherwise keep the loop alive
    });
    io.run();
    if (failure) std::rethrow_exception(failure);
    return std::move(*result);
}

int create(const config::Settings& settings,
           const WebhookArguments& args,
           std::ostream& out,
           std::ostream& err) {
    const auto chosen = args.endpoint.empty() ? settings.public_url : args.endpoint;
    if (chosen.empty()) {
        err << "webhook create: give --endpoint URL or set PUBLIC_URL to where ClickUp "
               "reaches this service\n";
        return kExitUsage;
    }
    const auto endpoint = webhook_endpoint(chosen);

    // Two webhooks to one endpoint would deliver every tick twice, under different ids.
    const auto existing = with_clickup<std::vector<Webhook>>(
        settings, [&](auto& clickup) { return clickup.list_webhooks(settings.clickup_team_id); });
    for (const auto& webhook : existing) {
        if (without_trailing_slash(webhook.endpoint) == without_trailing_slash(endpoint)) {
            err << fmt::format(
                "webhook create: webhook {} already delivers to {}; delete it first with "
                "`image-edit-agent webhook delete {}`, or keep using it\n",
                webhook.id,
                endpoint,
                webhook.id);
            return kExitProblem;
        }
    }

    const auto created = with_clickup<providers::CreatedWebhook>(settings, [&](auto& clickup) {
        return clickup.create_webhook(
            settings.clickup_team_id, endpoint, {"taskUpdated"}, args.scope);
    });
    out << fmt::format("Created webhook {}\n  endpoint: {}\n  events:   {}\n  scope:    {}\n",
                       created.webhook.id,
                       created.webhook.endpoint,
                       joined(created.webhook.events),
                       scope_text(created.webhook.scope));
    // Shown once, on the operator's terminal, and nowhere else: never logged.
    out << "Put this in the service's environment and restart it; it is not shown again:\n"
        << "CLICKUP_WEBHOOK_SECRET=" << created.secret.reveal() << "\n";
    return kExitOk;
}

int list(const config::Settings& settings, std::ostream& out) {
    const auto webhooks = with_clickup<std::vector<Webhook>>(
        settings, [&](auto& clickup) { return clickup.list_webhooks(settings.clickup_team_id); });
    if (webhooks.empty()) {
        out << "No webhooks created with this token in workspace " << settings.clickup_team_id
            << "\n";
        return kExitOk;
    }
    out << fmt::format("{:<38} {:<10} {:>10}  {}\n", "ID", "STATUS", "FAIL_COUNT", "ENDPOINT");
    for (const auto& webhook : webhooks) {
        out << fmt::format("{:<38} {:<10} {:>10}  {}  (events {}; {})\n",
                           webhook.id,
                           webhook.status,
                           webhook.fail_count,
                           webhook.endpoint,
                           joined(webhook.events),
                           scope_text(webhook.scope));
    }
    return kExitOk;
}

int remove(const config::Settings& settings,
           const WebhookArguments& args,
           std::ostream& out,
           std::ostream& err) {
    if (args.positional.size() != 1) {
        err << "webhook delete: give exactly one WEBHOOK_ID (see `webhook list`)\n";
        return kExitUsage;
    }
    const auto& id = args.positional[0];
    with_clickup<bool>(settings, [&](auto& clickup) -> asio::awaitable<bool> {
        co_await clickup.delete_webhook(id);
        co_return true;
    });
    out << "Deleted webhook " << id << "\n";
    return kExitOk;
}

int health(const config::Settings& settings,
           const WebhookArguments& args,
           std::ostream& out,
           std::ostream& err) {
    auto webhooks = with_clickup<std::vector<Webhook>>(
        settings, [&](auto& clickup) { return clickup.list_webhooks(settings.clickup_team_id); });
    const auto chosen = args.endpoint.empty() ? settings.public_url : args.endpoint;
    if (!chosen.empty()) {
        const auto endpoint = without_trailing_slash(webhook_endpoint(chosen));
        std::erase_if(webhooks, [&](const Webhook& webhook) {
            return without_trailing_slash(webhook.endpoint) != endpoint;
        });
        if (webhooks.empty()) {
            err << "webhook health: no webhook delivers to " << endpoint
                << "; create one with `image-edit-agent webhook create`\n";
            return kExitProblem;
        }
    } else if (webhooks.empty()) {
        err << "webhook health: no webhook created with this token in workspace "
            << settings.clickup_team_id << "\n";
        return kExitProblem;
    }

    bool any_unhealthy = false;
    for (const auto& webhook : webhooks) {
        if (healthy(webhook)) {
            out << fmt::format(
                "ok          {}  {}  active, fail_count 0\n", webhook.id, webhook.endpoint);
            continue;
        }
        any_unhealthy = true;
        out << fmt::format(
            "UNHEALTHY   {}  {}  {}\n", webhook.id, webhook.endpoint, why_unhealthy(webhook));
        if (!args.reactivate) continue;
        try {
            const auto after = with_clickup<Webhook>(settings, [&](auto& clickup) {
                return clickup.set_webhook_status(webhook, "active");
            });
            out << fmt::format("reactivated {}  now {}, fail_count {}\n",
                               after.id,
                               after.status,
                               after.fail_count);
        } catch (const providers::ProviderError& error) {
            err << "webhook health: could not reactivate " << webhook.id << ": " << error.what()
                << "\n";
        }
    }
    if (any_unhealthy && !args.reactivate) {
        out << "Fix what makes deliveries fail (see docs/operations.md), then run "
               "`image-edit-agent webhook health --reactivate`.\n";
    }
    return any_unhealthy ? kExitProblem : kExitOk;
}

}  // namespace

int run_webhook_command(const config::Settings& settings,
                        const std::vector<std::string>& arguments,
                        std::ostream& out,
                        std::ostream& err) {
    WebhookArguments args;
    try {
        args = parse_arguments(arguments);
    } catch (const std::invalid_argument& error) {
        err << "webhook: " << error.what() << "\n" << kUsage;
        return kExitUsage;
    }
    if (settings.clickup_api_key.empty()) {
        err << "webhook: CLICKUP_API_KEY is not set\n";
        return kExitUsage;
    }
    if (args.subcommand != "delete" && settings.clickup_team_id.empty()) {
        err << "webhook: CLICKUP_TEAM_ID is not set (the workspace id: the number after "
               "app.clickup.com/ in the browser)\n";
        return kExitUsage;
    }
    try {
        if (args.subcommand == "create") return create(settings, args, out, err);
        if (args.subcommand == "list") return list(settings, out);
        if (args.subcommand == "delete") return remove(settings, args, out, err);
        if (args.subcommand == "health") return health(settings, args, out, err);
    } catch (const std::invalid_argument& error) {
        err << "webhook " << args.subcommand << ": " << error.what() << "\n";
        return kExitUsage;
    } catch (const providers::ProviderError& error) {
        err << "webhook " << args.subcommand << ": ClickUp call failed: " << error.what() << "\n";
        return kExitProblem;
    }
    err << "webhook: unknown command '" << args.subcommand << "'\n" << kUsage;
    return kExitUsage;
}

}  // namespace iea::service
