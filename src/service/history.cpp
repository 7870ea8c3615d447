#include <openssl/crypto.h>

#include <cctype>

#include "iea/service/app.hpp"
#include "iea/webhook/event.hpp"

namespace iea::service {
namespace {

namespace bhttp = boost::beast::http;

bool token_matches(std::string_view authorization, const std::string& token) {
    // The scheme's name is case-insensitive (RFC 9110); the token is not.
    constexpr std::string_view kScheme = "bearer ";
    if (authorization.size() < kScheme.size()) return false;
    for (std::size_t i = 0; i < kScheme.size(); ++i) {
        if (std::tolower(static_cast<unsigned char>(authorization[i])) != kScheme[i]) return false;
    }
    const auto given = authorization.substr(kScheme.size());
    // Same time wherever the first difference is.
    return given.size() == token.size() &&
           CRYPTO_memcmp(given.data(), token.data(), token.size()) == 0;
}

}  // namespace

void add_history_routes(http::Router& router, journal::Journal& journal,
                        const config::Secret& token) {
    router.add_prefix(
        http::Method::get, "/tasks/",
        [&journal, &token](const http::Request& request) -> boost::asio::awaitable<http::Response> {
            if (token.empty()) {
                co_return http::error_response(
                    http::Status::forbidden,
                    "the task history is off; set HISTORY_API_TOKEN to turn it on");
            }
            if (!token_matches(request[bhttp::field::authorization], token.reveal())) {
                auto refused = http::error_response(http::Status::unauthorized,
                                                    "a valid bearer token is required");
                refused.set(bhttp::field::www_authenticate, "Bearer");
                co_return refused;
            }
            std::string_view path = request.target();
            path = path.substr(0, path.find('?'));
            const auto task_id = path.substr(std::string_view("/tasks/").size());
            if (!webhook::looks_like_task_id(task_id)) {
                co_return http::error_response(http::Status::bad_request,
                                               "the path must be /tasks/{task_id}");
            }
            auto history = co_await journal.task_history(std::string(task_id));
            co_return http::json_response(http::Status::ok, history);
        });
}

}  // namespace iea::service
