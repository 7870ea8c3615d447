#pragma once

/// What a Redis command gives back: a typed reply, or an error code saying why there is none.
///
/// A reply Redis sends as an error (`-WRONGTYPE ...`) is still a reply (kind kError): the
/// server answered. An error code means there is no answer: Redis was unreachable, the
/// connection broke before the answer came, or the answer had a shape we did not expect.

#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace iea::state {

/// Why a Redis operation has no usable answer.
enum class RedisErrc {
    /// Not connected, or the connection broke or timed out with the command in flight. A
    /// command that failed this way after it was sent may or may not have run on the server.
    kUnavailable = 1,
    /// The server answered with an error where the operation expected data.
    kServerError,
    /// The answer did not have the shape the operation expected.
    kUnexpectedReply,
};

const boost::system::error_category& redis_category() noexcept;
boost::system::error_code make_error_code(RedisErrc code) noexcept;

/// A value, or the error code that says why there is none. `.value()` throws
/// boost::system::system_error for callers that prefer an exception.
template <typename T>
using RedisResult = boost::system::result<T>;

/// A failed RedisResult of any type, from its error code: `co_return failed(error);`.
/// (A bare error code cannot be returned where the value type is bool: it converts to both.)
struct RedisFailure {
    boost::system::error_code error;

    template <typename T>
    operator RedisResult<T>() const {  // NOLINT(google-explicit-constructor): the point of it
        return RedisResult<T>(boost::system::in_place_error, error);
    }
};

inline RedisFailure failed(boost::system::error_code error) { return RedisFailure{error}; }

/// One RESP2 reply.
struct RedisReply {
    enum class Kind { kNil, kInteger, kString, kStatus, kArray, kError };

    Kind kind = Kind::kNil;
    std::int64_t integer = 0;
    std::string text;  ///< Bulk string, status line (`OK`) or error message.
    std::vector<RedisReply> elements;

    [[nodiscard]] bool is_nil() const { return kind == Kind::kNil; }
    [[nodiscard]] bool is_error() const { return kind == Kind::kError; }
    [[nodiscard]] bool is_string() const { return kind == Kind::kString; }
    [[nodiscard]] bool is_integer() const { return kind == Kind::kInteger; }
    [[nodiscard]] bool is_array() const { return kind == Kind::kArray; }
    /// A `+OK` status line.
    [[nodiscard]] bool is_ok() const { return kind == Kind::kStatus && text == "OK"; }
    /// An error reply whose code (first word) is `code`, e.g. "NOSCRIPT".
    [[nodiscard]] bool is_error_code(std::string_view code) const;
};

}  // namespace iea::state

template <>
struct boost::system::is_error_code_enum<iea::state::RedisErrc> : std::true_type {};
