#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <set>

#include "iea/service/app.hpp"
#include "iea/service/intake.hpp"
#include "iea/service/readiness.hpp"
#include "support/harness.hpp"

namespace {

using Routes = std::set<std::string>;

// Accepts nothing: the router is only described, never called.
class NoRunner final : public iea::service::TaskRunner {
  public:
    boost::asio::awaitable<iea::service::Admission> admit(iea::service::TaskJob,
                                                          iea::locking::TaskLocks::Guard,
                                                          bool) override {
        co_return iea::service::Admission{};
    }
};

// "METHOD path" for every operation of docs/openapi.yaml, written the way
// http::Router::describe() writes it: a path ending in a {parameter} is a prefix route.
Routes documented_routes() {
    const auto document = YAML::LoadFile(IEA_SOURCE_DIR "/docs/openapi.yaml");
    Routes routes;
    for (const auto& path : document["paths"]) {
        auto name = path.first.as<std::string>();
        if (name.ends_with("}")) name = name.substr(0, name.rfind('{')) + "*";
        for (const auto& operation : path.second) {
            auto method = operation.first.as<std::string>();
            if (method == "parameters" || method == "summary" || method == "description") {
                continue;
            }
            std::transform(method.begin(), method.end(), method.begin(), [](unsigned char c) {
                return static_cast<char>(std::toupper(c));
            });
            routes.insert(method + " " + name);
        }
    }
    return routes;
}

Routes served_routes() {
    iea::locking::TaskLocks locks(std::chrono::hours(1), 100);
    iea::locking::DeliveryLog deliveries(std::chrono::hours(1));
    NoRunner runner;
    iea::service::WebhookIntake intake({"test-secret-1", "field-1"}, locks, deliveries, runner);
    const auto journal =
        iea::journal::SqliteJournal::open(iea::testing::scratch_dir("openapi") / "journal.sqlite3");
    const iea::config::Secret no_token;
    iea::service::Readiness readiness;
    const auto router = iea::service::make_router(locks, intake, *journal, no_token, readiness);
    const auto described = router.describe();
    return {described.begin(), described.end()};
}

}  // namespace

TEST_CASE("openapi: docs/openapi.yaml lists exactly the routes the service serves", "[service]") {
    auto documented = documented_routes();
    const auto served = served_routes();

    CHECK(documented == served);
}

TEST_CASE("openapi: the webhook intake and liveness routes are documented", "[service]") {
    const auto documented = documented_routes();
    CHECK(documented.contains("POST /webhook/clickup"));
    CHECK(documented.contains("GET /health"));
    CHECK(documented.contains("GET /tasks/*"));
}
