#pragma once

// Shared bits of the provider client tests: fast retry policies, catching the ProviderError
// of a coroutine, timing gaps between recorded requests, HTTP-dates.

#include <catch2/catch.hpp>
#include <chrono>
#include <ctime>
#include <stdexcept>
#include <string>

#include "iea/providers/errors.hpp"
#include "iea/providers/retry.hpp"
#include "support/loopback.hpp"

namespace fixtures {

namespace asio = boost::asio;
using iea::providers::ProviderError;
using namespace std::chrono_literals;

inline constexpr const char* kToken = "test-secret-1";

inline iea::providers::RetryPolicy fast_retries(int attempts = 3) {
    iea::providers::RetryPolicy policy;
    policy.max_attempts = attempts;
    policy.base_delay = 10ms;
    policy.max_delay = 40ms;
    policy.max_retry_after = 5s;
    return policy;
}

template <typename T>
ProviderError error_of(asio::io_context& io, asio::awaitable<T> task) {
    try {
        iea::testing::run_task(io, std::move(task));
    } catch (const ProviderError& error) {
        return error;
    }
    throw std::runtime_error("expected a ProviderError, the call succeeded");
}

inline long long gap_ms(const iea::testing::Recorded& first, const iea::testing::Recorded& second) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(second.at - first.at).count();
}

/// IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT".
inline std::string http_date(std::chrono::system_clock::time_point when) {
    const std::time_t seconds = std::chrono::system_clock::to_time_t(when);
    std::tm utc{};
    gmtime_r(&seconds, &utc);
    char text[64];
    std::strftime(text, sizeof text, "%a, %d %b %Y %H:%M:%S GMT", &utc);
    return text;
}

/// The next whole unix second at least `ahead` from now.
inline long long unix_seconds_ahead(std::chrono::seconds ahead) {
    const auto now = std::chrono::system_clock::now() + ahead;
    return std::chrono::ceil<std::chrono::seconds>(now.time_since_epoch()).count();
}

}  // namespace fixtures
