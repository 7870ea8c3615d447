#include <chrono>

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "iea/metrics/metrics.hpp"
#include "iea/service/app.hpp"

namespace iea::service {

nlohmann::json health_body() {
    const auto now = std::chrono::floor<std::chrono::milliseconds>(std::chrono::system_clock::now());
    return {{"status", "healthy"},
            {"timestamp", fmt::format("{:%Y-%m-%dT%H:%M:%S}Z", now)},
            {"service", "image-edit-agent"},
            {"version", IEA_VERSION}};
}

void add_health_routes(http::Router& router, const locking::TaskLocks& locks,
                       QueueReading queue) {
    const auto health = [queue](const http::Request&) -> boost::asio::awaitable<http::Response> {
        auto body = health_body();
        if (queue) body["queue"] = queue();
        co_return http::json_response(http::Status::ok, body);
    };
    router.add(http::Method::get, "/health", health);
    router.add(http::Method::get, "/health/", health);

    router.add(http::Method::get, "/health/locks",
               [&locks](const http::Request&) -> boost::asio::awaitable<http::Response> {
                   const auto stats = locks.stats();
                   co_return http::json_response(
                       http::Status::ok,
                       {{"total_locks", stats.total_locks},
                        {"oldest_lock_seconds", stats.oldest_lock_seconds},
                        {"newest_lock_seconds", stats.newest_lock_seconds},
                        {"average_lock_age_seconds", stats.average_lock_age_seconds},
                        {"stale_locks", stats.stale_locks}});
               });
}

void add_metrics_route(http::Router& router) {
    router.add(http::Method::get,
               "/metrics",
               [](const http::Request&) -> boost::asio::awaitable<http::Response> {
                   http::Response response{http::Status::ok, 11};
                   response.set(boost::beast::http::field::content_type, metrics::kContentType);
                   response.body() = metrics::exposition();
                   co_return response;
               });
}

}  // namespace iea::service
