#pragma once

/// The retry policy shared by the ClickUp, OpenRouter and WaveSpeed clients.
///
/// A call is attempted at most `max_attempts` times. Between attempts it waits with
/// exponential backoff and jitter, or, when the provider said how long to wait
/// (Retry-After in seconds or as an HTTP-date, ClickUp's X-RateLimit-Reset), that long,
/// capped by `max_retry_after`.
///
/// What is retried: transient failures (connection errors, timeouts, 429, 502/503/504 and
/// errors a provider documents as passing). Non-idempotent calls (a ClickUp upload or
/// comment, a WaveSpeed submit) cost money or leave duplicates when repeated, so they are
/// retried only when the failure proves the server did nothing: the connection was never
/// made, or the server answered 429/503. A timeout or a broken connection after the request
/// went out is never retried for them: the caller gets the error and decides.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <utility>

#include "iea/config/settings.hpp"
#include "iea/logging/log.hpp"
#include "iea/providers/errors.hpp"

namespace iea::providers {

struct RetryPolicy {
    int max_attempts = 2;                              ///< Attempts per call, the first included.
    std::chrono::milliseconds base_delay{500};         ///< First backoff; doubles each attempt.
    std::chrono::milliseconds max_delay{20000};        ///< Cap of one backoff.
    std::chrono::milliseconds max_retry_after{60000};  ///< Cap of a provider-requested wait.

    /// max_attempts from Settings.max_step_attempts; the rest are defaults.
    [[nodiscard]] static RetryPolicy from(const config::Settings& settings);
};

/// Whether repeating a call is harmless.
enum class Idempotency { kIdempotent, kNonIdempotent };

/// True when `error` is worth another attempt of a call of this idempotency.
[[nodiscard]] bool should_retry(const ProviderError& error, Idempotency idempotency);

/// The wait before attempt `failed_attempt + 1`: the provider's requested wait (capped) when
/// there is one, otherwise base_delay * 2^(failed_attempt-1), capped, with "equal jitter"
/// (half fixed, half random) so that parallel callers spread out.
[[nodiscard]] std::chrono::milliseconds retry_delay(const RetryPolicy& policy,
                                                    int failed_attempt,
                                                    const ProviderError& error,
                                                    std::mt19937_64& random);

/// Parses an HTTP-date (IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT"; also RFC 850 and
/// asctime forms). Nothing when it is not one.
[[nodiscard]] std::optional<std::chrono::system_clock::time_point> parse_http_date(
    std::string_view text);

/// A Retry-After value (delay in seconds, or an HTTP-date) as a wait from `now`; a date in
/// the past gives zero. Nothing when absent or unparsable.
[[nodiscard]] std::optional<std::chrono::milliseconds> parse_retry_after(
    std::string_view value, std::chrono::system_clock::time_point now);

/// ClickUp's X-RateLimit-Reset (unix time in seconds) as a wait from `now`.
[[nodiscard]] std::optional<std::chrono::milliseconds> parse_rate_limit_reset(
    std::string_view value, std::chrono::system_clock::time_point now);

/// Names a call for logs and errors.
struct CallInfo {
    std::string_view provider;
    std::string_view operation;
    Idempotency idempotency = Idempotency::kIdempotent;
};

namespace detail {
std::mt19937_64& retry_random();
const logging::Logger& provider_log();
/// Counts a failed attempt in the metrics (status, latency) and, when `retrying`, the retry.
/// TODO: a failed ClickUp attempt's time includes its wait for the rate limiter, a successful
/// one's does not; time both from the request going out.
void record_failed_attempt(const CallInfo& info,
                           const ProviderError& error,
                           std::chrono::steady_clock::duration elapsed,
                           bool retrying);
}  // namespace detail

/// Runs `call(attempt)` (attempt counts from 1; it returns an awaitable<T>) until it succeeds,
/// fails with an error that should not be retried, or the attempts are used up; then the
/// last ProviderError propagates. Waits on the calling coroutine's executor. Logs each retry
/// as a warning with provider, operation, attempt, status and latency_ms. Failed attempts are
/// counted in the metrics here; successful ones where their HTTP status is known
/// (support::log_success).
template <typename T, typename Call>
boost::asio::awaitable<T> with_retries(RetryPolicy policy, CallInfo info, Call call) {
    const auto executor = co_await boost::asio::this_coro::executor;
    const int attempts = policy.max_attempts < 1 ? 1 : policy.max_attempts;
    for (int attempt = 1;; ++attempt) {
        const auto started = std::chrono::steady_clock::now();
        std::optional<ProviderError> failure;
        try {
            co_return co_await call(attempt);
        } catch (const ProviderError& error) {
            const bool retrying = attempt < attempts && should_retry(error, info.idempotency);
            detail::record_failed_attempt(
                info, error, std::chrono::steady_clock::now() - started, retrying);
            if (!retrying) throw;
            failure.emplace(error);
        }

        // Awaiting is not allowed inside a handler, so the wait happens here.
        const auto latency = std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::steady_clock::now() - started);
        const auto wait = retry_delay(policy, attempt, *failure, detail::retry_random());
        detail::provider_log().warning("Provider call failed, retrying",
                                       {{"provider", info.provider},
                                        {"operation", info.operation},
                                        {"attempt", attempt},
                                        {"status", failure->status()},
                                        {"kind", to_string(failure->kind())},
                                        {"latency_ms", latency.count()},
                                        {"wait_ms", wait.count()}});
        boost::asio::steady_timer timer(executor, wait);
        co_await timer.async_wait(boost::asio::use_awaitable);
    }
}

}  // namespace iea::providers
