#include "iea/service/app.hpp"
#include "iea/service/intake.hpp"
#include "iea/service/readiness.hpp"

namespace iea::service {

http::Router make_router(const locking::TaskLocks& locks, WebhookIntake& intake,
                         journal::Journal& journal, const config::Secret& history_token,
                         Readiness& readiness, QueueReading queue) {
    http::Router router;
    add_health_routes(router, locks, std::move(queue));
    add_readiness_route(router, readiness);
    add_metrics_route(router);
    add_history_routes(router, journal, history_token);
    router.add(http::Method::post, "/webhook/clickup", [&intake](const http::Request& request) {
        return intake.handle(request);
    });
    return router;
}

}  // namespace iea::service
