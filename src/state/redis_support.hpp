#pragma once

// Small helpers shared by the Redis-backed primitives.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "iea/logging/log.hpp"
#include "iea/state/redis_reply.hpp"

namespace iea::state {

/// Logs an answer the operation cannot use (an error reply names its Redis error) and turns
/// it into kServerError or kUnexpectedReply.
boost::system::error_code unusable_reply(const logging::Logger& log,
                                         std::string_view operation,
                                         const RedisReply& reply);

/// The same, as a failed result of any type.
inline RedisFailure failed_reply(const logging::Logger& log,
                                 std::string_view operation,
                                 const RedisReply& reply) {
    return failed(unusable_reply(log, operation, reply));
}

/// 128 random bits as 32 hex digits.
std::string random_token();

/// Wall-clock milliseconds since the Unix epoch.
std::int64_t unix_ms();

/// A duration as Redis wants it in PX and BLOCK arguments.
inline std::string ms_text(std::chrono::milliseconds duration) {
    return std::to_string(duration.count());
}

}  // namespace iea::state
