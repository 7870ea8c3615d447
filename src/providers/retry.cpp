#include "iea/providers/retry.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <vector>

#include "iea/metrics/metrics.hpp"

namespace iea::providers {
namespace {

using std::chrono::milliseconds;
using SystemClock = std::chrono::system_clock;

std::string_view trim(std::string_view text) {
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front())) != 0) {
        text.remove_prefix(1);
    }
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back())) != 0) {
        text.remove_suffix(1);
    }
    return text;
}

std::optional<long long> parse_integer(std::string_view text) {
    text = trim(text);
    long long value = 0;
    const auto* end = text.data() + text.size();
    const auto [ptr, ec] = std::from_chars(text.data(), end, value);
    if (text.empty() || ec != std::errc{} || ptr != end) return std::nullopt;
    return value;
}

std::optional<unsigned> month_number(std::string_view name) {
    static constexpr std::array<std::string_view, 12> kMonths = {
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    for (std::size_t i = 0; i < kMonths.size(); ++i) {
        if (kMonths[i] == name) return static_cast<unsigned>(i + 1);
    }
    return std::nullopt;
}

// Splits on spaces, dashes, commas and colons: every HTTP-date form becomes a token list.
std::vector<std::string_view> date_tokens(std::string_view text) {
    std::vector<std::string_view> out;
    std::size_t start = 0;
    for (std::size_t i = 0; i <= text.size(); ++i) {
        if (i == text.size() || text[i] == ' ' || text[i] == '-' || text[i] == ',' ||
            text[i] == ':') {
            if (i > start) out.push_back(text.substr(start, i - start));
            start = i + 1;
        }
    }
    return out;
}

milliseconds until(SystemClock::time_point when, SystemClock::time_point now) {
    return when <= now ? milliseconds{0} : std::chrono::ceil<milliseconds>(when - now);
}

}  // namespace

RetryPolicy RetryPolicy::from(const config::Settings& settings) {
    RetryPolicy policy;
    if (settings.max_step_attempts > 0) policy.max_attempts = settings.max_step_attempts;
    return policy;
}

bool should_retry(const ProviderError& error, Idempotency idempotency) {
    if (!error.transient()) return false;
    return idempotency == Idempotency::kIdempotent || !error.may_have_been_processed();
}

milliseconds retry_delay(const RetryPolicy& policy,
                         int failed_attempt,
                         const ProviderError& error,
                         std::mt19937_64& random) {
    if (const auto asked = error.retry_after(); asked && asked->count() > 0) {
        return std::min(*asked, policy.max_retry_after);
    }
    const int doublings = std::clamp(failed_attempt - 1, 0, 20);
    const milliseconds::rep backoff = std::min<milliseconds::rep>(
        policy.base_delay.count() << doublings, policy.max_delay.count());
    const milliseconds::rep half = backoff / 2;
    std::uniform_int_distribution<milliseconds::rep> jitter(0, half);
    return milliseconds{backoff - half + jitter(random)};
}

std::optional<SystemClock::time_point> parse_http_date(std::string_view text) {
    // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT   -> Sun 06 Nov 1994 08 49 37 GMT
    // RFC 850:     Sunday, 06-Nov-94 08:49:37 GMT  -> Sunday 06 Nov 94 08 49 37 GMT
    // asctime:     Sun Nov  6 08:49:37 1994        -> Sun Nov 6 08 49 37 1994
    const auto tokens = date_tokens(trim(text));
    if (tokens.size() < 7) return std::nullopt;
    std::optional<long long> day;
    std::optional<unsigned> month;
    std::optional<long long> year;
    std::size_t time_at = 0;
    if (month_number(tokens[1])) {
        month = month_number(tokens[1]);
        day = parse_integer(tokens[2]);
        time_at = 3;
        year = parse_integer(tokens[6]);
    } else {
        day = parse_integer(tokens[1]);
        month = month_number(tokens[2]);
        year = parse_integer(tokens[3]);
        time_at = 4;
        if (tokens.size() < 8 || tokens[7] != "GMT") return std::nullopt;
    }
    const auto hour = parse_integer(tokens[time_at]);
    const auto minute = parse_integer(tokens[time_at + 1]);
    const auto second = parse_integer(tokens[time_at + 2]);
    if (!day || !month || !year || !hour || !minute || !second) return std::nullopt;
    if (*year < 100) *year += *year < 70 ? 2000 : 1900;  // RFC 850 two-digit years

    const std::chrono::year_month_day date{std::chrono::year{static_cast<int>(*year)},
                                           std::chrono::month{*month},
                                           std::chrono::day{static_cast<unsigned>(*day)}};
    if (!date.ok() || *hour > 23 || *minute > 59 || *second > 60) return std::nullopt;
    return std::chrono::sys_days{date} + std::chrono::hours{*hour} + std::chrono::minutes{*minute} +
           std::chrono::seconds{*second};
}

std::optional<milliseconds> parse_retry_after(std::string_view value, SystemClock::time_point now) {
    if (const auto seconds = parse_integer(value)) {
        if (*seconds < 0) return std::nullopt;
        return std::chrono::seconds{*seconds};
    }
    if (const auto when = parse_http_date(value)) return until(*when, now);
    return std::nullopt;
}

std::optional<milliseconds> parse_rate_limit_reset(std::string_view value,
                                                   SystemClock::time_point now) {
    const auto seconds = parse_integer(value);
    if (!seconds || *seconds < 0) return std::nullopt;
    return until(SystemClock::time_point{std::chrono::seconds{*seconds}}, now);
}

namespace detail {

std::mt19937_64& retry_random() {
    thread_local std::mt19937_64 random{std::random_device{}()};
    return random;
}

const logging::Logger& provider_log() {
    static const logging::Logger logger("providers");
    return logger;
}

void record_failed_attempt(const CallInfo& info,
                           const ProviderError& error,
                           std::chrono::steady_clock::duration elapsed,
                           bool retrying) {
    // A status means the provider answered (a 2xx whose body broke the contract included).
    if (error.status() > 0) {
        metrics::provider_call(info.provider, info.operation, error.status(), elapsed);
    } else {
        const auto why = error.kind() == ErrorKind::kTimeout ? metrics::NoAnswer::kTimeout
                                                             : metrics::NoAnswer::kNetwork;
        metrics::provider_call(info.provider, info.operation, why, elapsed);
    }
    if (retrying) metrics::provider_retry(info.provider, info.operation);
}

}  // namespace detail

}  // namespace iea::providers
