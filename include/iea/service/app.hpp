#pragma once

/// Wiring of the running service: HTTP routes, intake, locks, signals.

#include "iea/config/settings.hpp"
#include "iea/http/server.hpp"
#include "iea/locking/task_locks.hpp"

namespace iea::service {

/// Adds GET /health, /health/ and /health/locks.
void add_health_routes(http::Router& router, const locking::TaskLocks& locks);

/// Adds GET /metrics: every metric in the Prometheus text format.
void add_metrics_route(http::Router& router);

/// The `/health` body: status, timestamp, service and version.
[[nodiscard]] nlohmann::json health_body();

/// Serves until SIGTERM or SIGINT, then drains within the grace period. Returns the exit
/// code: 0 after a clean shutdown.
[[nodiscard]] int run_service(const config::Settings& settings);

}  // namespace iea::service
