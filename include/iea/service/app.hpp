#pragma once

/// Wiring of the running service: HTTP routes, intake, locks, signals.

#include <functional>

#include <nlohmann/json.hpp>

#include "iea/config/settings.hpp"
#include "iea/http/server.hpp"
#include "iea/journal/journal.hpp"
#include "iea/locking/task_locks.hpp"

namespace iea::service {

/// The job queue's depth as /health shows it ("queue"), read when asked.
using QueueReading = std::function<nlohmann::json()>;

/// Adds GET /health, /health/ and /health/locks.
void add_health_routes(http::Router& router, const locking::TaskLocks& locks,
                       QueueReading queue = {});

/// Adds GET /metrics: every metric in the Prometheus text format.
void add_metrics_route(http::Router& router);

/// Adds GET /tasks/{task_id}: the task's runs from the journal, for a bearer of `token`.
/// `journal` and `token` must outlive the router.
void add_history_routes(http::Router& router, journal::Journal& journal,
                        const config::Secret& token);

class WebhookIntake;
class Readiness;

/// Every route the service serves. The OpenAPI test builds its router with this too, so
/// docs/openapi.yaml is checked against the real list.
[[nodiscard]] http::Router make_router(const locking::TaskLocks& locks, WebhookIntake& intake,
                                       journal::Journal& journal,
                                       const config::Secret& history_token,
                                       Readiness& readiness, QueueReading queue = {});

/// The `/health` body: status, timestamp, service and version.
[[nodiscard]] nlohmann::json health_body();

/// Serves until SIGTERM or SIGINT, then drains within the grace period. Returns the exit
/// code: 0 after a clean shutdown.
[[nodiscard]] int run_service(const config::Settings& settings);

}  // namespace iea::service
