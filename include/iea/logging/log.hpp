#pragma once

/// JSON-lines logging over spdlog: one object per line with timestamp (UTC, ISO-8601, Z),
/// level, logger, message and context fields.
///
/// Messages are short constant sentences; everything variable goes into fields with the same
/// key names everywhere (task_id, provider, stage, model, iteration, attempt, status,
/// latency_ms). Never pass a secret, a signature, an Authorization value or image bytes.
/// Logging never throws into the caller.

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>

namespace spdlog {
class logger;
namespace sinks {
class sink;
}
}  // namespace spdlog

namespace iea::logging {

enum class Level { kDebug, kInfo, kWarning, kError };

/// One context field. Holds views: the values must outlive the logging call only.
class Field final {
public:
    template <typename T>
        requires std::is_integral_v<T> && (!std::is_same_v<T, bool>)
    Field(std::string_view key, T value)
        : key_(key), kind_(Kind::kInteger), integer_(static_cast<std::int64_t>(value)) {}
    Field(std::string_view key, bool value) : key_(key), kind_(Kind::kBool), boolean_(value) {}
    Field(std::string_view key, double value) : key_(key), kind_(Kind::kReal), real_(value) {}
    Field(std::string_view key, std::string_view value)
        : key_(key), kind_(Kind::kText), text_(value) {}
    Field(std::string_view key, const char* value)
        : key_(key), kind_(Kind::kText), text_(value) {}
    Field(std::string_view key, const std::string& value)
        : key_(key), kind_(Kind::kText), text_(value) {}

    /// Appends `"key":value` (JSON) to `out`.
    void append_to(std::string& out) const;

private:
    enum class Kind { kText, kInteger, kReal, kBool };
    std::string_view key_;
    Kind kind_;
    std::string_view text_;
    std::int64_t integer_ = 0;
    double real_ = 0;
    bool boolean_ = false;
};

using Fields = std::initializer_list<Field>;

/// A named logger with optional fields attached to every line it writes.
/// Cheap to copy; safe to use from any thread.
class Logger final {
public:
    explicit Logger(std::string_view name);

    /// A logger that adds `fields` to every line, e.g. the task id of one pipeline run.
    [[nodiscard]] Logger with(Fields fields) const;

    void debug(std::string_view message, Fields fields = {}) const;
    void info(std::string_view message, Fields fields = {}) const;
    void warning(std::string_view message, Fields fields = {}) const;
    void error(std::string_view message, Fields fields = {}) const;

    [[nodiscard]] bool enabled(Level level) const;

private:
    void write(Level level, std::string_view message, Fields fields) const noexcept;

    std::shared_ptr<spdlog::logger> logger_;
    std::string context_;  // pre-rendered `,"key":value` pairs
};

/// Sets the level (DEBUG, INFO, WARNING, ERROR, CRITICAL) and the destination for every
/// logger; by default stdout. Call once at start; tests pass a capturing sink.
void setup(std::string_view level, std::shared_ptr<spdlog::sinks::sink> sink = nullptr);

/// Appends `text` to `out` as the inside of a JSON string (quotes not included).
void append_json_escaped(std::string& out, std::string_view text);

}  // namespace iea::logging
