#include "iea/service/readiness.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>

using iea::service::Readiness;
using nlohmann::json;

namespace {

std::optional<std::string> passes() { return std::nullopt; }

// GET /health/ready through a router that has only that route.
iea::http::Response ask(const Readiness& readiness) {
    iea::http::Router router;
    iea::service::add_readiness_route(router, readiness);
    iea::http::Request request{iea::http::Method::get, "/health/ready", 11};
    boost::asio::io_context io;
    auto answer = boost::asio::co_spawn(io, router.route(request), boost::asio::use_future);
    io.run();
    return answer.get();
}

}  // namespace

TEST_CASE("readiness: ready when every check passes", "[service]") {
    Readiness readiness;
    readiness.add_check("configuration", passes);
    readiness.add_check("journal", passes);

    const auto report = readiness.evaluate();
    CHECK(report.ready);
    CHECK(report.reasons.empty());
    REQUIRE(report.checks.size() == 2);
    CHECK(report.checks[0] == std::pair<std::string, std::string>{"configuration", "ok"});

    const auto response = ask(readiness);
    CHECK(response.result() == iea::http::Status::ok);
    const auto body = json::parse(response.body());
    CHECK(body["ready"] == true);
    CHECK(body["checks"]["journal"] == "ok");
}

TEST_CASE("readiness: a failing check makes it not ready and says why", "[service]") {
    Readiness readiness;
    readiness.add_check("configuration", passes);
    readiness.add_check("journal", [] { return std::optional<std::string>("disk full"); });

    const auto report = readiness.evaluate();
    CHECK_FALSE(report.ready);
    CHECK(report.reasons == std::vector<std::string>{"journal: disk full"});

    const auto response = ask(readiness);
    CHECK(response.result() == iea::http::Status::service_unavailable);
    const auto body = json::parse(response.body());
    CHECK(body["ready"] == false);
    CHECK(body["reasons"] == json::array({"journal: disk full"}));
    CHECK(body["checks"]["configuration"] == "ok");
}

TEST_CASE("readiness: a check that throws fails with its text", "[service]") {
    Readiness readiness;
    readiness.add_check("journal", []() -> std::optional<std::string> {
        throw std::runtime_error("cannot open journal.db");
    });
    readiness.add_check("silent", [] { return std::optional<std::string>(""); });
    const auto report = readiness.evaluate();
    CHECK_FALSE(report.ready);
    CHECK(report.reasons ==
          std::vector<std::string>{"journal: cannot open journal.db", "silent: failed"});
}

TEST_CASE("readiness: not ready once shutting down", "[service]") {
    Readiness readiness;
    readiness.add_check("configuration", passes);
    CHECK_FALSE(readiness.shutting_down());
    readiness.set_shutting_down();
    CHECK(readiness.shutting_down());

    const auto report = readiness.evaluate();
    CHECK_FALSE(report.ready);
    CHECK(report.reasons == std::vector<std::string>{"shutting down"});
    CHECK(ask(readiness).result() == iea::http::Status::service_unavailable);
}

TEST_CASE("readiness: no checks and not stopping is ready", "[service]") {
    const Readiness readiness;
    CHECK(readiness.evaluate().ready);
}
