#include "iea/service/readiness.hpp"

#include <nlohmann/json.hpp>

namespace iea::service {

void Readiness::add_check(std::string name, Check check) {
    checks_.emplace_back(std::move(name), std::move(check));
}

void Readiness::set_shutting_down() { shutting_down_.store(true); }

bool Readiness::shutting_down() const { return shutting_down_.load(); }

ReadinessReport Readiness::evaluate() const {
    ReadinessReport report;
    if (shutting_down()) {
        report.ready = false;
        report.reasons.emplace_back("shutting down");
    }
    for (const auto& [name, check] : checks_) {
        std::optional<std::string> problem;
        try {
            problem = check();
        } catch (const std::exception& error) {
            problem = error.what();
        }
        // An empty reason would read as a pass in the answer: give it words.
        if (problem && problem->empty()) problem = "failed";
        if (problem) {
            report.ready = false;
            report.reasons.push_back(name + ": " + *problem);
        }
        report.checks.emplace_back(name, problem.value_or("ok"));
    }
    return report;
}

void add_readiness_route(http::Router& router, const Readiness& readiness) {
    router.add(http::Method::get,
               "/health/ready",
               [&readiness](const http::Request&) -> boost::asio::awaitable<http::Response> {
                   const auto report = readiness.evaluate();
                   nlohmann::json checks = nlohmann::json::object();
                   for (const auto& [name, result] : report.checks) checks[name] = result;
                   co_return http::json_response(
                       report.ready ? http::Status::ok : http::Status::service_unavailable,
                       {{"ready", report.ready}, {"reasons", report.reasons}, {"checks", checks}});
               });
}

}  // namespace iea::service
