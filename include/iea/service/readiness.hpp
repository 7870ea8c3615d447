#pragma once

/// Whether the service can take work now, for load balancers and deploys (GET /health/ready),
/// as opposed to /health, which only says the process answers.
///
/// The service registers its checks at start (configuration valid, journal writable, ...);
/// each request runs them all, so a check must be cheap and must not block. Use from the I/O
/// thread, except `set_shutting_down`, which any thread may call.

#include <atomic>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "iea/http/server.hpp"

namespace iea::service {

/// The answer of every check at one moment.
struct ReadinessReport {
    bool ready = true;
    /// "name: reason" for every failing check, "shutting down" first when it applies.
    std::vector<std::string> reasons;
    /// Every check by name, with "ok" or its reason.
    std::vector<std::pair<std::string, std::string>> checks;
};

class Readiness final {
  public:
    /// Nothing when the check passes; otherwise why not, in a short phrase.
    using Check = std::function<std::optional<std::string>()>;

    /// Adds a check; `name` (e.g. "journal") names it in the answer. A check that throws
    /// fails with the exception's text.
    void add_check(std::string name, Check check);

    /// From now on the service is not ready: it is stopping and takes no new work.
    void set_shutting_down();
    [[nodiscard]] bool shutting_down() const;

    /// Runs every check.
    [[nodiscard]] ReadinessReport evaluate() const;

  private:
    std::vector<std::pair<std::string, Check>> checks_;
    std::atomic<bool> shutting_down_{false};
};

/// Adds GET /health/ready: 200 {"ready":true,...} or 503 {"ready":false,"reasons":[...]},
/// both with every check's result. `readiness` must outlive the router.
void add_readiness_route(http::Router& router, const Readiness& readiness);

}  // namespace iea::service
