#include "redis_support.hpp"

#include <openssl/rand.h>

#include <array>
#include <stdexcept>

namespace iea::state {

boost::system::error_code unusable_reply(const logging::Logger& log,
                                         std::string_view operation,
                                         const RedisReply& reply) {
    if (reply.is_error()) {
        // Redis's error texts name the command and the problem, never values we sent.
        log.warning("Redis refused an operation",
                    {{"operation", operation}, {"error", reply.text}});
        return make_error_code(RedisErrc::kServerError);
    }
    log.warning("Redis answer not understood",
                {{"operation", operation}, {"kind", static_cast<int>(reply.kind)}});
    return make_error_code(RedisErrc::kUnexpectedReply);
}

std::string random_token() {
    std::array<unsigned char, 16> bytes{};
    if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
        throw std::runtime_error("state: no random bytes for a lock token");
    }
    constexpr std::string_view kHex = "0123456789abcdef";
    std::string out;
    for (const auto byte : bytes) {
        out += kHex[byte >> 4U];
        out += kHex[byte & 0x0fU];
    }
    return out;
}

std::int64_t unix_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

}  // namespace iea::state
