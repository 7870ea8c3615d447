#include "iea/providers/retry.hpp"

#include <catch2/catch.hpp>

#include "fixtures.hpp"
#include "iea/providers/token_bucket.hpp"

using namespace std::chrono_literals;
using iea::providers::ErrorDetails;
using iea::providers::ErrorKind;
using iea::providers::Idempotency;
using iea::providers::ProviderError;
using std::chrono::milliseconds;
using std::chrono::system_clock;

namespace {

ProviderError error(ErrorKind kind, bool transient, bool processed) {
    ErrorDetails details;
    details.provider = "clickup";
    details.operation = "get_task";
    details.kind = kind;
    details.transient = transient;
    details.may_have_been_processed = processed;
    return ProviderError(details);
}

}  // namespace

TEST_CASE("retry: parses HTTP-dates in all three forms", "[providers]") {
    const auto expected = system_clock::time_point{784111777s};  // 1994-11-06 08:49:37 UTC
    CHECK(iea::providers::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == expected);
    CHECK(iea::providers::parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT") == expected);
    CHECK(iea::providers::parse_http_date("Sun Nov  6 08:49:37 1994") == expected);
    CHECK_FALSE(iea::providers::parse_http_date("yesterday"));
    CHECK_FALSE(iea::providers::parse_http_date("Sun, 31 Feb 1994 08:49:37 GMT"));
}

TEST_CASE("retry: reads Retry-After and X-RateLimit-Reset as waits", "[providers]") {
    const auto now = system_clock::time_point{1'700'000'000s};
    SECTION("Retry-After in seconds") {
        CHECK(iea::providers::parse_retry_after("7", now) == milliseconds{7000});
        CHECK(iea::providers::parse_retry_after(" 0 ", now) == milliseconds{0});
        CHECK_FALSE(iea::providers::parse_retry_after("-3", now));
        CHECK_FALSE(iea::providers::parse_retry_after("", now));
        CHECK_FALSE(iea::providers::parse_retry_after("soon", now));
    }
    SECTION("Retry-After as an HTTP-date, past dates mean now") {
        const auto date = fixtures::http_date(now + 30s);
        CHECK(iea::providers::parse_retry_after(date, now) == milliseconds{30000});
        CHECK(iea::providers::parse_retry_after(fixtures::http_date(now - 30s), now) ==
              milliseconds{0});
    }
    SECTION("X-RateLimit-Reset in unix seconds") {
        CHECK(iea::providers::parse_rate_limit_reset("1700000012", now) == milliseconds{12000});
        CHECK(iea::providers::parse_rate_limit_reset("1600000000", now) == milliseconds{0});
        CHECK_FALSE(iea::providers::parse_rate_limit_reset("abc", now));
    }
}

TEST_CASE("retry: what is retried for idempotent and non-idempotent calls", "[providers]") {
    const auto sent_and_broke = error(ErrorKind::kTimeout, true, true);
    const auto refused = error(ErrorKind::kConnection, true, false);
    const auto bad_request = error(ErrorKind::kBadRequest, false, false);

    CHECK(iea::providers::should_retry(sent_and_broke, Idempotency::kIdempotent));
    CHECK_FALSE(iea::providers::should_retry(sent_and_broke, Idempotency::kNonIdempotent));
    CHECK(iea::providers::should_retry(refused, Idempotency::kNonIdempotent));
    CHECK_FALSE(iea::providers::should_retry(bad_request, Idempotency::kIdempotent));
}

TEST_CASE("retry: backoff grows, stays capped, honours the provider's wait", "[providers]") {
    iea::providers::RetryPolicy policy;
    policy.base_delay = 100ms;
    policy.max_delay = 1000ms;
    policy.max_retry_after = 5000ms;
    std::mt19937_64 random{42};
    const auto plain = error(ErrorKind::kConnection, true, true);

    for (int i = 0; i < 50; ++i) {
        const auto first = iea::providers::retry_delay(policy, 1, plain, random);
        CHECK(first >= 50ms);
        CHECK(first <= 100ms);
        const auto third = iea::providers::retry_delay(policy, 3, plain, random);
        CHECK(third >= 200ms);
        CHECK(third <= 400ms);
        CHECK(iea::providers::retry_delay(policy, 30, plain, random) <= 1000ms);
    }

    ErrorDetails asked;
    asked.retry_after = 3000ms;
    CHECK(iea::providers::retry_delay(policy, 1, ProviderError(asked), random) == 3000ms);
    asked.retry_after = 60000ms;
    CHECK(iea::providers::retry_delay(policy, 1, ProviderError(asked), random) == 5000ms);
}

TEST_CASE("retry: errors name provider and operation and never a key", "[providers]") {
    ErrorDetails details;
    details.provider = "clickup";
    details.operation = "get_task";
    details.kind = ErrorKind::kAuthentication;
    details.status = 401;
    details.message = iea::providers::scrub("token test-secret-1 is invalid", "test-secret-1");
    const ProviderError failure(details);
    CHECK(std::string(failure.what()) ==
          "clickup: get_task: HTTP 401 authentication failed: token [redacted] is invalid");
    CHECK(iea::providers::scrub(std::string(600, 'a'), "", 10) == "aaaaaaaaaa...");
}

TEST_CASE("retry: the token bucket spaces calls beyond the burst", "[providers]") {
    boost::asio::io_context io;
    iea::providers::TokenBucket bucket(600, 1);  // one call every 100 ms
    const auto started = std::chrono::steady_clock::now();
    iea::testing::run_task(io, [&]() -> boost::asio::awaitable<void> {
        for (int i = 0; i < 4; ++i) co_await bucket.acquire();
    }());
    CHECK(std::chrono::steady_clock::now() - started >= 290ms);

    bucket.pause_for(500ms);
    CHECK(bucket.wait_now() >= 400ms);
}
