#include "iea/config/settings.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <set>
#include <sstream>
#include <variant>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

extern char** environ;

namespace iea::config {
namespace {

using Millis = std::chrono::milliseconds;

enum class Kind { kText, kChoice, kUrl, kSecret, kWholeNumber, kNumber, kBytes, kSeconds };

using Target = std::variant<std::string Settings::*,
                            Secret Settings::*,
                            int Settings::*,
                            std::size_t Settings::*,
                            double Settings::*,
                            Millis Settings::*>;

/// One setting: how operators name it, where it sits in YAML, its default and its form.
struct Definition {
    std::string_view env;
    std::string_view key;  // dotted YAML path; empty: environment only (secrets)
    std::string_view default_value;
    std::string_view meaning;
    Kind kind;
    Target target;
    double min = 0;
    double max = 0;
    std::string_view choices = {};  // '|'-separated, for kChoice
};

// The single definition of every setting. check-config and docs/configuration.md read it too.
const std::vector<Definition>& definitions() {
    static const std::vector<Definition> table = {
        {"APP_ENV", "app_env", "development",
         "Deployment environment; production requires every provider key", Kind::kChoice,
         &Settings::app_env, 0, 0, "development|test|staging|production"},
        {"LOG_LEVEL", "logging.level", "INFO", "Lowest log level written to stdout",
         Kind::kChoice, &Settings::log_level, 0, 0, "DEBUG|INFO|WARNING|ERROR|CRITICAL"},

        {"BIND_ADDRESS", "server.bind_address", "0.0.0.0", "Address the HTTP server listens on",
         Kind::kText, &Settings::bind_address},
        {"PORT", "server.port", "8080", "TCP port of the HTTP server (0 picks a free port)",
         Kind::kWholeNumber, &Settings::port, 0, 65535},
        {"MAX_BODY_BYTES", "server.max_body_bytes", "1048576",
         "Largest request body accepted; larger gets 413", Kind::kBytes,
         &Settings::max_body_bytes, 1024, 104857600},
        {"HEADER_TIMEOUT_SECONDS", "server.header_timeout_seconds", "10",
         "Time a client has to send a whole request", Kind::kSeconds,
         &Settings::header_timeout, 0.01, 600},
        {"IDLE_TIMEOUT_SECONDS", "server.idle_timeout_seconds", "30",
         "Time a kept-alive connection may stay silent", Kind::kSeconds, &Settings::idle_timeout,
         0.01, 3600},
        {"MAX_CONNECTIONS", "server.max_connections", "1024",
         "Connections served at once; more are closed at once", Kind::kWholeNumber,
         &Settings::max_connections, 1, 1000000},
        {"SHUTDOWN_GRACE_SECONDS", "server.shutdown_grace_seconds", "25",
         "Time given to running work after SIGTERM", Kind::kSeconds, &Settings::shutdown_grace,
         0, 3600},
        {"PUBLIC_URL", "server.public_url", "",
         "Public https URL where ClickUp reaches this service; `webhook create` registers "
         "it (a bare origin gets /webhook/clickup)", Kind::kText, &Settings::public_url},

        {"CLICKUP_API_KEY", "", "", "ClickUp API token (environment only)", Kind::kSecret,
         &Settings::clickup_api_key},
        {"CLICKUP_WEBHOOK_SECRET", "", "", "Secret of the ClickUp webhook (environment only)",
         Kind::kSecret, &Settings::clickup_webhook_secret},
        {"CLICKUP_API_BASE_URL", "clickup.api_base_url", "https://api.clickup.com/api/v2",
         "Base URL of the ClickUp API", Kind::kUrl, &Settings::clickup_api_base_url},
        {"CLICKUP_TEAM_ID", "clickup.team_id", "",
         "ClickUp workspace (team) id, for webhook management", Kind::kText,
         &Settings::clickup_team_id},
        {"CLICKUP_CUSTOM_FIELD_ID_AI_EDIT", "clickup.custom_field_id_ai_edit", "",
         "Id of the \"AI edit\" checkbox custom field", Kind::kText, &Settings::ai_edit_field_id},
        {"CLICKUP_STATUS_COMPLETE", "clickup.status_complete", "complete",
         "Status set when an edit passed", Kind::kText, &Settings::status_complete},
        {"CLICKUP_STATUS_BLOCKED", "clickup.status_blocked", "blocked",
         "Status set when a task cannot be processed", Kind::kText, &Settings::status_blocked},
        {"CLICKUP_STATUS_NEEDS_REVIEW", "clickup.status_needs_review", "Needs Human Review",
         "Status set when no edit passed", Kind::kText, &Settings::status_needs_review},

        {"CLICKUP_RATE_LIMIT_PER_MINUTE", "clickup.rate_limit_per_minute", "100",
         "ClickUp calls per minute this instance allows itself (the token's plan limit)",
         Kind::kNumber, &Settings::clickup_requests_per_minute, 1, 1000000},

        {"OPENROUTER_API_KEY", "", "", "OpenRouter API key (environment only)", Kind::kSecret,
         &Settings::openrouter_api_key},
        {"OPENROUTER_API_BASE_URL", "openrouter.api_base_url", "https://openrouter.ai/api/v1",
         "Base URL of the OpenRouter API", Kind::kUrl, &Settings::openrouter_api_base_url},
        {"OPENROUTER_MODEL", "openrouter.model", "anthropic/claude-sonnet-4.5",
         "Model used for prompt enhancement and validation", Kind::kText,
         &Settings::openrouter_model},
        {"OPENROUTER_MAX_TOKENS", "openrouter.max_tokens", "8000",
         "Output token budget per call, reasoning included", Kind::kWholeNumber,
         &Settings::openrouter_max_tokens, 256, 200000},
        {"OPENROUTER_REASONING_EFFORT", "openrouter.reasoning_effort", "medium",
         "Share of the token budget the model may spend reasoning", Kind::kChoice,
         &Settings::openrouter_reasoning_effort, 0, 0, "none|minimal|low|medium|high"},

        {"WAVESPEED_API_KEY", "", "", "WaveSpeed API key (environment only)", Kind::kSecret,
         &Settings::wavespeed_api_key},
        {"WAVESPEED_API_BASE_URL", "wavespeed.api_base_url", "https://api.wavespeed.ai/api/v3",
         "Base URL of the WaveSpeed API", Kind::kUrl, &Settings::wavespeed_api_base_url},
        {"WAVESPEED_POLL_INTERVAL_SECONDS", "wavespeed.poll_interval_seconds", "2",
         "Pause between two polls of a prediction", Kind::kSeconds,
         &Settings::wavespeed_poll_interval, 0.01, 60},

        {"IMAGE_HANDOFF", "wavespeed.image_handoff", "clickup",
         "How the image models get the prepared image: the task attachment's URL (clickup) or "
         "WaveSpeed's own media upload (wavespeed), for attachments that are not public",
         Kind::kChoice, &Settings::image_handoff, 0, 0, "clickup|wavespeed"},

        {"RATE_LIMIT_ENHANCEMENT", "rate_limits.enhancement", "3",
         "Enhancement calls in flight at once, all tasks together", Kind::kWholeNumber,
         &Settings::rate_limit_enhancement, 1, 1000},
        {"RATE_LIMIT_VALIDATION", "rate_limits.validation", "2",
         "Validation calls in flight at once, all tasks together", Kind::kWholeNumber,
         &Settings::rate_limit_validation, 1, 1000},
        {"VALIDATION_DELAY_SECONDS", "rate_limits.validation_delay_seconds", "2",
         "Pause between two validations of one task", Kind::kSeconds,
         &Settings::validation_delay, 0, 300},

        {"TIMEOUT_OPENROUTER_SECONDS", "timeouts.openrouter_seconds", "120",
         "Deadline of one OpenRouter call", Kind::kSeconds, &Settings::timeout_openrouter, 0.01,
         3600},
        {"TIMEOUT_WAVESPEED_SECONDS", "timeouts.wavespeed_seconds", "120",
         "Deadline of one WaveSpeed call", Kind::kSeconds, &Settings::timeout_wavespeed, 0.01,
         3600},
        {"TIMEOUT_WAVESPEED_POLLING_SECONDS", "timeouts.wavespeed_polling_seconds", "300",
         "Longest wait for one prediction to finish", Kind::kSeconds,
         &Settings::timeout_wavespeed_polling, 0.01, 7200},
        {"TIMEOUT_CLICKUP_SECONDS", "timeouts.clickup_seconds", "30",
         "Deadline of one ClickUp call", Kind::kSeconds, &Settings::timeout_clickup, 0.01, 3600},
        {"TASK_DEADLINE_SECONDS", "timeouts.task_deadline_seconds", "900",
         "Longest a whole task may run before it is blocked", Kind::kSeconds,
         &Settings::task_deadline, 0.01, 86400},

        {"IMAGE_MAX_DOWNLOAD_BYTES", "images.max_download_bytes", "104857600",
         "Largest attachment or model output downloaded", Kind::kBytes,
         &Settings::image_max_download_bytes, 1024, 4294967296.0},
        {"IMAGE_MAX_PIXELS", "images.max_pixels", "100000000",
         "Largest image accepted, in pixels, checked before decoding", Kind::kBytes,
         &Settings::image_max_pixels, 1, 1000000000},
        {"IMAGE_DECODE_TIMEOUT_SECONDS", "images.decode_timeout_seconds", "60",
         "Longest one image decode may take before it is killed", Kind::kSeconds,
         &Settings::image_decode_timeout, 0.1, 3600},
        {"IMAGE_MAX_CONCURRENT_DECODES", "images.max_concurrent_decodes", "2",
         "Images decoded at once (each in its own process)", Kind::kWholeNumber,
         &Settings::image_max_concurrent_decodes, 1, 64},

        {"JOURNAL_PATH", "journal.path", "data/journal.sqlite3",
         "SQLite file where accepted tasks, their checkpoints and history are kept (relative "
         "paths are from the working directory)",
         Kind::kText, &Settings::journal_path},
        {"WEBHOOK_ANSWER", "webhook.answer", "at_once",
         "When the webhook is answered: at_once (the task is recorded, then answered in "
         "milliseconds) or when_done (after the whole edit, the original service's way)",
         Kind::kChoice, &Settings::webhook_answer, 0, 0, "at_once|when_done"},
        {"HISTORY_API_TOKEN", "", "",
         "Bearer token for GET /tasks/{task_id} (environment only; unset: that endpoint is off)",
         Kind::kSecret, &Settings::history_api_token},
        {"MAX_CONCURRENT_TASKS", "workflow.max_concurrent_tasks", "16",
         "Tasks this instance runs at once; more wait their turn (in Redis mode, in the shared "
         "queue, where another instance may take them)",
         Kind::kWholeNumber, &Settings::max_concurrent_tasks, 1, 1000},

        {"STATE_BACKEND", "state.backend", "sqlite",
         "Where jobs, checkpoints, locks and deliveries are kept: sqlite (the journal file, one "
         "instance) or redis (shared by several instances; needs REDIS_URL and Redis with "
         "appendonly yes)",
         Kind::kChoice, &Settings::state_backend, 0, 0, "sqlite|redis"},
        {"REDIS_URL", "", "",
         "Redis for STATE_BACKEND=redis: redis://[[user]:password@]host[:port][/db] "
         "(environment only, as it can hold a password)",
         Kind::kSecret, &Settings::redis_url},
        {"INSTANCE_ID", "state.instance_id", "",
         "This instance's name in Redis, different for every instance (empty: host name and "
         "port); a restarted instance with the same name takes back its unfinished jobs at once",
         Kind::kText, &Settings::instance_id},
        {"JOB_CLAIM_AFTER_SECONDS", "state.job_claim_after_seconds", "60",
         "In Redis mode, how long a job may go without a sign of life from its instance before "
         "another instance takes it over (also the Redis task lock's time to live)",
         Kind::kSeconds, &Settings::job_claim_after, 1, 86400},

        {"LOCK_TTL_SECONDS", "locking.ttl_seconds", "3600",
         "Age after which a task lock counts as stale", Kind::kSeconds, &Settings::lock_ttl, 0.01,
         604800},
        {"LOCK_CLEANUP_INTERVAL", "locking.cleanup_interval", "100",
         "Lock acquisitions between two stale-lock sweeps", Kind::kWholeNumber,
         &Settings::lock_cleanup_interval, 1, 1000000},

        {"MAX_ITERATIONS", "workflow.max_iterations", "3",
         "Enhance-generate-validate rounds before human review", Kind::kWholeNumber,
         &Settings::max_iterations, 1, 20},
        {"MAX_STEP_ATTEMPTS", "workflow.max_step_attempts", "2",
         "Attempts per provider call and per step-by-step edit", Kind::kWholeNumber,
         &Settings::max_step_attempts, 1, 20},
        {"VALIDATION_PASS_THRESHOLD", "workflow.validation_pass_threshold", "8",
         "Lowest validation score (0-10) that passes", Kind::kNumber,
         &Settings::validation_pass_threshold, 0, 10},
    };
    return table;
}

std::string expected_form(const Definition& def) {
    switch (def.kind) {
        case Kind::kText:
        case Kind::kSecret:
            return "any text";
        case Kind::kChoice:
            return fmt::format("one of {}", def.choices);
        case Kind::kUrl:
            return "an http:// or https:// URL";
        case Kind::kWholeNumber:
        case Kind::kBytes:
            return fmt::format("a whole number from {} to {}", static_cast<long long>(def.min),
                               static_cast<long long>(def.max));
        case Kind::kNumber:
            return fmt::format("a number from {} to {}", def.min, def.max);
        case Kind::kSeconds:
            return fmt::format("a number of seconds from {} to {}", def.min, def.max);
    }
    return "a valid value";
}

std::optional<double> parse_number(std::string_view text) {
    double value = 0;
    const auto* end = text.data() + text.size();
    const auto [ptr, ec] = std::from_chars(text.data(), end, value);
    // "nan" and "inf" parse as doubles but are no setting's value.
    if (ec != std::errc{} || ptr != end || text.empty() || !std::isfinite(value)) {
        return std::nullopt;
    }
    return value;
}

std::optional<long long> parse_whole(std::string_view text) {
    long long value = 0;
    const auto* end = text.data() + text.size();
    const auto [ptr, ec] = std::from_chars(text.data(), end, value);
    if (ec != std::errc{} || ptr != end || text.empty()) return std::nullopt;
    return value;
}

std::string upper(std::string_view text) {
    std::string out(text);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
    return out;
}

std::string trim(std::string_view text) {
    const auto first = text.find_first_not_of(" \t\r\n");
    if (first == std::string_view::npos) return {};
    const auto last = text.find_last_not_of(" \t\r\n");
    return std::string(text.substr(first, last - first + 1));
}

/// Parses `raw` into the setting's field. Returns the problem when it cannot.
std::optional<std::string> apply(const Definition& def, const std::string& raw, Settings& out) {
    const std::string value = def.kind == Kind::kSecret ? raw : trim(raw);
    const auto bad = [&](std::string_view why) -> std::optional<std::string> {
        // Never echo a secret's value back, even in an error.
        const std::string shown = def.kind == Kind::kSecret ? "<redacted>" : "'" + value + "'";
        return fmt::format("{} {}; expected {}", shown, why, expected_form(def));
    };

    switch (def.kind) {
        case Kind::kText:
            out.*std::get<std::string Settings::*>(def.target) = value;
            return std::nullopt;
        case Kind::kSecret:
            out.*std::get<Secret Settings::*>(def.target) = Secret(value);
            return std::nullopt;
        case Kind::kUrl: {
            if (!value.starts_with("http://") && !value.starts_with("https://")) {
                return bad("is not a URL");
            }
            std::string url = value;
            while (url.ends_with('/')) url.pop_back();
            out.*std::get<std::string Settings::*>(def.target) = url;
            return std::nullopt;
        }
        case Kind::kChoice: {
            std::string wanted = upper(value);
            if (def.env == "LOG_LEVEL" && wanted == "WARN") wanted = "WARNING";
            std::string_view rest = def.choices;
            while (!rest.empty()) {
                const auto bar = rest.find('|');
                const auto choice = rest.substr(0, bar);
                if (upper(choice) == wanted) {
                    out.*std::get<std::string Settings::*>(def.target) = std::string(choice);
                    return std::nullopt;
                }
                rest = bar == std::string_view::npos ? std::string_view{} : rest.substr(bar + 1);
            }
            return bad("is not an accepted value");
        }
        case Kind::kWholeNumber:
        case Kind::kBytes: {
            const auto number = parse_whole(value);
            if (!number) return bad("is not a whole number");
            const auto as_real = static_cast<double>(*number);
            if (as_real < def.min || as_real > def.max) return bad("is out of range");
            if (def.kind == Kind::kBytes) {
                out.*std::get<std::size_t Settings::*>(def.target) =
                    static_cast<std::size_t>(*number);
            } else {
                out.*std::get<int Settings::*>(def.target) = static_cast<int>(*number);
            }
            return std::nullopt;
        }
        case Kind::kNumber: {
            const auto number = parse_number(value);
            if (!number) return bad("is not a number");
            if (*number < def.min || *number > def.max) return bad("is out of range");
            out.*std::get<double Settings::*>(def.target) = *number;
            return std::nullopt;
        }
        case Kind::kSeconds: {
            const auto number = parse_number(value);
            if (!number) return bad("is not a number of seconds");
            if (*number < def.min || *number > def.max) return bad("is out of range");
            out.*std::get<Millis Settings::*>(def.target) =
                Millis(static_cast<long long>(*number * 1000.0 + 0.5));
            return std::nullopt;
        }
    }
    return bad("cannot be read");
}

/// Looks up a dotted path ("workflow.max_iterations") in the YAML document.
YAML::Node find(const YAML::Node& root, std::string_view dotted) {
    YAML::Node node = YAML::Clone(root);
    while (!dotted.empty()) {
        const auto dot = dotted.find('.');
        const std::string part(dotted.substr(0, dot));
        if (!node.IsMap() || !node[part]) return YAML::Node(YAML::NodeType::Undefined);
        node = node[part];
        dotted = dot == std::string_view::npos ? std::string_view{} : dotted.substr(dot + 1);
    }
    return node;
}

/// Warns about keys the service does not know, so a typo does not pass silently.
void collect_unknown_keys(const YAML::Node& node,
                          const std::string& prefix,
                          const std::set<std::string, std::less<>>& known,
                          std::vector<std::string>& warnings) {
    if (!node.IsMap()) return;
    for (const auto& entry : node) {
        const auto name = entry.first.as<std::string>();
        const auto path = prefix.empty() ? name : prefix + "." + name;
        if (path == "models") continue;
        if (known.contains(path)) continue;
        const bool is_section = std::any_of(known.begin(), known.end(), [&](const auto& key) {
            return key.starts_with(path + ".");
        });
        if (is_section) {
            collect_unknown_keys(entry.second, path, known, warnings);
        } else {
            warnings.push_back(fmt::format("unknown configuration key '{}' is ignored", path));
        }
    }
}

nlohmann::json yaml_to_json(const YAML::Node& node) {
    if (node.IsMap()) {
        auto object = nlohmann::json::object();
        for (const auto& entry : node) {
            object[entry.first.as<std::string>()] = yaml_to_json(entry.second);
        }
        return object;
    }
    if (node.IsSequence()) {
        auto array = nlohmann::json::array();
        for (const auto& item : node) array.push_back(yaml_to_json(item));
        return array;
    }
    if (node.IsNull()) return nullptr;
    const auto text = node.as<std::string>();
    if (node.Tag() == "!") return text;  // quoted in YAML: keep it a string
    if (const auto whole = parse_whole(text)) return *whole;
    if (const auto number = parse_number(text)) return *number;
    if (text == "true" || text == "false") return text == "true";
    return text;
}

std::vector<ImageModel> default_models() {
    return {
        ImageModel{"wan-2.5-edit", "alibaba/wan-2.5/image-edit", 1, "models/wan-2.5-edit",
                   nlohmann::json{{"seed", -1}}, 384, 5000},
        ImageModel{"nano-banana", "google/nano-banana/edit", 2, "models/nano-banana",
                   nlohmann::json{{"output_format", "jpeg"}}, 1, 4096},
    };
}

std::vector<ImageModel> read_models(const YAML::Node& list, std::vector<std::string>& problems) {
    std::vector<ImageModel> models;
    if (!list.IsSequence()) {
        problems.emplace_back("models: expected a list of models, each with name and path");
        return models;
    }
    std::set<std::string, std::less<>> names;
    for (std::size_t i = 0; i < list.size(); ++i) {
        const auto& entry = list[i];
        const auto where = fmt::format("models[{}]", i);
        if (!entry.IsMap() || !entry["name"] || !entry["path"]) {
            problems.push_back(where + ": expected a map with at least 'name' and 'path'");
            continue;
        }
        ImageModel model;
        model.name = entry["name"].as<std::string>();
        model.path = entry["path"].as<std::string>();
        model.priority = static_cast<int>(i) + 1;
        model.guidance = "models/" + model.name;
        model.extra_input = nlohmann::json::object();
        for (const auto& field : entry) {
            const auto key = field.first.as<std::string>();
            const auto text = field.second.IsScalar() ? field.second.as<std::string>() : "";
            const auto whole = parse_whole(text);
            if (key == "name" || key == "path") continue;
            if (key == "guidance") {
                model.guidance = text;
            } else if (key == "input" && field.second.IsMap()) {
                model.extra_input = yaml_to_json(field.second);
            } else if (key == "priority" || key == "min_side" || key == "max_side") {
                if (!whole || *whole < 0 || *whole > 100000) {
                    problems.push_back(fmt::format("{}.{}: '{}' is not a whole number from 0 to "
                                                   "100000",
                                                   where, key, text));
                    continue;
                }
                const int number = static_cast<int>(*whole);
                if (key == "priority") model.priority = number;
                if (key == "min_side") model.min_side = number;
                if (key == "max_side") model.max_side = number;
            } else {
                problems.push_back(fmt::format("{}: unknown key '{}'", where, key));
            }
        }
        if (!names.insert(model.name).second) {
            problems.push_back(fmt::format("{}: model name '{}' appears twice", where, model.name));
        }
        if (model.min_side > model.max_side) {
            problems.push_back(fmt::format("{}: min_side is larger than max_side", where));
        }
        models.push_back(std::move(model));
    }
    if (models.empty() && problems.empty()) {
        problems.emplace_back("models: the list is empty; at least one image model is needed");
    }
    return models;
}

std::string describe_value(const Definition& def, const Settings& settings) {
    return std::visit(
        [&](auto member) -> std::string {
            const auto& value = settings.*member;
            using T = std::decay_t<decltype(value)>;
            if constexpr (std::is_same_v<T, Secret>) {
                return value.empty() ? "<not set>" : "<redacted>";
            } else if constexpr (std::is_same_v<T, Millis>) {
                return fmt::format("{}", static_cast<double>(value.count()) / 1000.0);
            } else {
                return fmt::format("{}", value);
            }
        },
        def.target);
}

}  // namespace

std::string_view to_string(Source source) {
    switch (source) {
        case Source::kDefault:
            return "default";
        case Source::kFile:
            return "file";
        case Source::kEnvironment:
            return "env";
    }
    return "default";
}

ConfigError::ConfigError(std::vector<std::string> problems)
    : std::runtime_error([&] {
          std::string text = "configuration is invalid:";
          for (const auto& problem : problems) text += "\n  - " + problem;
          return text;
      }()),
      problems_(std::move(problems)) {}

Environment process_environment() {
    Environment env;
    for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
        const std::string_view text(*entry);
        const auto eq = text.find('=');
        if (eq == std::string_view::npos) continue;
        env.emplace(std::string(text.substr(0, eq)), std::string(text.substr(eq + 1)));
    }
    return env;
}

LoadedSettings load(const LoadOptions& options) {
    LoadedSettings loaded;
    std::vector<std::string> problems;

    // 1. The YAML file: the one named, or config/config.yaml when it exists.
    YAML::Node root;
    std::filesystem::path file = options.file;
    if (file.empty() && std::filesystem::exists("config/config.yaml")) {
        file = "config/config.yaml";
    }
    if (!file.empty()) {
        try {
            root = YAML::LoadFile(file.string());
        } catch (const YAML::BadFile&) {
            throw ConfigError({fmt::format("{}: the file cannot be read", file.string())});
        } catch (const YAML::Exception& e) {
            throw ConfigError({fmt::format("{}: not valid YAML: {}", file.string(), e.what())});
        }
        if (!root.IsNull() && !root.IsMap()) {
            throw ConfigError({fmt::format("{}: expected a map of sections at the top",
                                           file.string())});
        }
        loaded.file = file;
    }
    loaded.settings.config_dir =
        file.empty() ? std::filesystem::path("config") : file.parent_path();

    // 2. Each setting: environment, then file, then default.
    std::set<std::string, std::less<>> known_keys;
    for (const auto& def : definitions()) {
        if (!def.key.empty()) known_keys.emplace(def.key);

        std::string raw(def.default_value);
        Source source = Source::kDefault;
        std::string where(def.env);
        if (const auto it = options.environment.find(def.env); it != options.environment.end()) {
            raw = it->second;
            source = Source::kEnvironment;
        } else if (!def.key.empty()) {
            if (const auto node = find(root, def.key); node.IsDefined() && !node.IsNull()) {
                if (!node.IsScalar()) {
                    problems.push_back(fmt::format("{} in {}: expected a single value; expected {}",
                                                   def.key, file.string(), expected_form(def)));
                    continue;
                }
                raw = node.as<std::string>();
                source = Source::kFile;
                where = fmt::format("{} in {}", def.key, file.string());
            }
        }
        if (const auto problem = apply(def, raw, loaded.settings)) {
            problems.push_back(fmt::format("{}: {}", where, *problem));
        }
        loaded.sources.emplace(std::string(def.env), source);
    }

    // 3. Image models: the file's list replaces the built-in one.
    if (const auto list = root.IsMap() ? root["models"] : YAML::Node(); list && !list.IsNull()) {
        loaded.settings.models = read_models(list, problems);
        loaded.sources.emplace("models", Source::kFile);
    } else {
        loaded.settings.models = default_models();
        loaded.sources.emplace("models", Source::kDefault);
    }

    if (root.IsMap()) collect_unknown_keys(root, "", known_keys, loaded.warnings);

    // 4. Production refuses to start without its credentials.
    if (loaded.settings.is_production()) {
        for (const auto& def : definitions()) {
            if (def.kind != Kind::kSecret) continue;
            if ((loaded.settings.*std::get<Secret Settings::*>(def.target)).empty()) {
                problems.push_back(fmt::format(
                    "{}: not set; APP_ENV=production needs it in the environment", def.env));
            }
        }
        if (loaded.settings.ai_edit_field_id.empty()) {
            problems.emplace_back(
                "CLICKUP_CUSTOM_FIELD_ID_AI_EDIT: not set; APP_ENV=production needs the id of "
                "the \"AI edit\" checkbox field");
        }
    }

    if (!problems.empty()) throw ConfigError(std::move(problems));
    return loaded;
}

std::vector<std::string> problems_for_serving(const Settings& settings) {
    std::vector<std::string> problems;
    if (settings.clickup_webhook_secret.empty()) {
        problems.emplace_back(
            "CLICKUP_WEBHOOK_SECRET: not set; without it no webhook can be verified");
    }
    if (settings.ai_edit_field_id.empty()) {
        problems.emplace_back(
            "CLICKUP_CUSTOM_FIELD_ID_AI_EDIT: not set; without it no tick can be recognised");
    }
    if (settings.state_backend == "redis" && settings.redis_url.empty()) {
        problems.emplace_back("REDIS_URL: not set; STATE_BACKEND=redis needs it");
    }
    return problems;
}

std::string describe(const LoadedSettings& loaded) {
    std::ostringstream out;
    out << "# Effective configuration"
        << (loaded.file.empty() ? " (no config file)" : " from " + loaded.file.string()) << "\n";
    for (const auto& def : definitions()) {
        const auto source = loaded.sources.find(def.env);
        out << fmt::format("{:<34} = {:<40} ({})\n", def.env,
                           describe_value(def, loaded.settings),
                           to_string(source == loaded.sources.end() ? Source::kDefault
                                                                    : source->second));
    }
    const auto models_source = loaded.sources.find("models");
    out << fmt::format("models ({}):\n", to_string(models_source == loaded.sources.end()
                                                        ? Source::kDefault
                                                        : models_source->second));
    for (const auto& model : loaded.settings.models) {
        out << fmt::format("  - {} -> {} (priority {}, input {}..{} px, guidance {}, extra {})\n",
                           model.name, model.path, model.priority, model.min_side,
                           model.max_side, model.guidance, model.extra_input.dump());
    }
    return out.str();
}

std::vector<SettingInfo> setting_catalogue() {
    std::vector<SettingInfo> out;
    for (const auto& def : definitions()) {
        out.push_back({def.env, def.key, def.default_value, def.meaning,
                       def.kind == Kind::kSecret});
    }
    return out;
}

}  // namespace iea::config
