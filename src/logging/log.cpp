#include "iea/logging/log.hpp"

#include <array>
#include <mutex>

#include <fmt/format.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace iea::logging {
namespace {

// Every logger shares one sink and one level; loggers made before setup() pick them up.
struct Registry {
    std::mutex mutex;
    std::shared_ptr<spdlog::sinks::sink> sink;
    spdlog::level::level_enum level = spdlog::level::info;
};

Registry& registry() {
    static Registry instance;
    return instance;
}

constexpr std::string_view kPattern =
    R"({"timestamp":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l","logger":"%n",%v})";

std::unique_ptr<spdlog::formatter> json_formatter() {
    return std::make_unique<spdlog::pattern_formatter>(std::string(kPattern),
                                                       spdlog::pattern_time_type::utc);
}

std::shared_ptr<spdlog::logger> logger_named(std::string_view name) {
    auto& reg = registry();
    std::scoped_lock lock(reg.mutex);
    if (auto existing = spdlog::get(std::string(name))) return existing;
    if (!reg.sink) {
        reg.sink = std::make_shared<spdlog::sinks::stdout_sink_mt>();
        reg.sink->set_formatter(json_formatter());
    }
    auto created = std::make_shared<spdlog::logger>(std::string(name), reg.sink);
    created->set_level(reg.level);
    spdlog::register_logger(created);
    return created;
}

spdlog::level::level_enum to_spdlog(Level level) {
    switch (level) {
        case Level::kDebug:
            return spdlog::level::debug;
        case Level::kInfo:
            return spdlog::level::info;
        case Level::kWarning:
            return spdlog::level::warn;
        case Level::kError:
            return spdlog::level::err;
    }
    return spdlog::level::info;
}

}  // namespace

void append_json_escaped(std::string& out, std::string_view text) {
    static constexpr std::array<char, 16> kHex = {'0', '1', '2', '3', '4', '5', '6', '7',
                                                  '8', '9', 'a', 'b', 'c', 'd', 'e', 'f'};
    for (const char c : text) {
        const auto byte = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (c == '\n') {
            out += "\\n";
        } else if (byte < 0x20 || byte == 0x7f) {
            out += "\\u00";
            out += kHex[byte >> 4U];
            out += kHex[byte & 0xfU];
        } else {
            out += c;
        }
    }
}

void Field::append_to(std::string& out) const {
    out += ",\"";
    append_json_escaped(out, key_);
    out += "\":";
    switch (kind_) {
        case Kind::kText:
            out += '"';
            append_json_escaped(out, text_);
            out += '"';
            break;
        case Kind::kInteger:
            fmt::format_to(std::back_inserter(out), "{}", integer_);
            break;
        case Kind::kReal:
            fmt::format_to(std::back_inserter(out), "{}", real_);
            break;
        case Kind::kBool:
            out += boolean_ ? "true" : "false";
            break;
    }
}

Logger::Logger(std::string_view name) : logger_(logger_named(name)) {}

Logger Logger::with(Fields fields) const {
    Logger child = *this;
    for (const auto& field : fields) field.append_to(child.context_);
    return child;
}

bool Logger::enabled(Level level) const { return logger_->should_log(to_spdlog(level)); }

void Logger::debug(std::string_view message, Fields fields) const {
    write(Level::kDebug, message, fields);
}
void Logger::info(std::string_view message, Fields fields) const {
    write(Level::kInfo, message, fields);
}
void Logger::warning(std::string_view message, Fields fields) const {
    write(Level::kWarning, message, fields);
}
void Logger::error(std::string_view message, Fields fields) const {
    write(Level::kError, message, fields);
}

void Logger::write(Level level, std::string_view message, Fields fields) const noexcept {
    const auto spd_level = to_spdlog(level);
    if (!logger_->should_log(spd_level)) return;
    try {
        std::string line = "\"message\":\"";
        append_json_escaped(line, message);
        line += '"';
        line += context_;
        for (const auto& field : fields) field.append_to(line);
        logger_->log(spd_level, "{}", line);
    } catch (...) {
        // A log line that cannot be written must never take the caller down with it.
    }
}

void setup(std::string_view level, std::shared_ptr<spdlog::sinks::sink> sink) {
    auto& reg = registry();
    std::scoped_lock lock(reg.mutex);
    if (level == "DEBUG") {
        reg.level = spdlog::level::debug;
    } else if (level == "WARNING") {
        reg.level = spdlog::level::warn;
    } else if (level == "ERROR") {
        reg.level = spdlog::level::err;
    } else if (level == "CRITICAL") {
        reg.level = spdlog::level::critical;
    } else {
        reg.level = spdlog::level::info;
    }
    if (sink) reg.sink = std::move(sink);
    if (!reg.sink) reg.sink = std::make_shared<spdlog::sinks::stdout_sink_mt>();
    reg.sink->set_formatter(json_formatter());
    // Loggers made earlier follow the new sink and level.
    spdlog::apply_all([&](const std::shared_ptr<spdlog::logger>& existing) {
        existing->sinks().assign(1, reg.sink);
        existing->set_level(reg.level);
    });
}

}  // namespace iea::logging
