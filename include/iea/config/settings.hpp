#pragma once

/// Typed service configuration, loaded once at start and passed down (never global).
///
/// Priority, highest first: environment variables, the YAML file, built-in defaults.
/// Secrets are read from the environment only and are held in `Secret`, which has no
/// way to be printed by accident.

#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace iea::config {

/// A credential. Its value is only reachable through `reveal()`, so a log line or a
/// format call cannot print it without saying so.
class Secret final {
public:
    Secret() = default;
    explicit Secret(std::string value) : value_(std::move(value)) {}

    [[nodiscard]] const std::string& reveal() const { return value_; }
    [[nodiscard]] bool empty() const { return value_.empty(); }

private:
    std::string value_;
};

/// One image-edit model on WaveSpeed, as configured under `models:`.
struct ImageModel {
    std::string name;            ///< Our short name, e.g. "wan-2.5-edit"; used in logs and file names.
    std::string path;            ///< WaveSpeed model path, e.g. "alibaba/wan-2.5/image-edit".
    int priority = 0;            ///< Lower wins a tie between equal scores.
    std::string guidance;        ///< Folder under config/ with this model's prompt guidance.
    nlohmann::json extra_input;  ///< Extra body fields sent with every submission.
    int min_side = 1;            ///< Smallest input side the model accepts, in pixels.
    int max_side = 8192;         ///< Largest input side the model accepts, in pixels.
};

/// Where a setting's effective value came from.
enum class Source { kDefault, kFile, kEnvironment };

std::string_view to_string(Source source);

struct Settings {
    // Environment and process.
    std::string app_env = "development";
    std::string log_level = "INFO";

    // server
    std::string bind_address;
    int port = 0;
    std::size_t max_body_bytes = 0;
    std::chrono::milliseconds header_timeout{};
    std::chrono::milliseconds idle_timeout{};
    int max_connections = 0;
    std::chrono::milliseconds shutdown_grace{};
    std::string public_url;  ///< Where ClickUp reaches this service; used by `webhook create`.

    // clickup
    Secret clickup_api_key;
    Secret clickup_webhook_secret;
    std::string clickup_api_base_url;
    std::string clickup_team_id;
    std::string ai_edit_field_id;
    std::string status_complete;
    std::string status_blocked;
    std::string status_needs_review;
    double clickup_requests_per_minute = 0;

    // openrouter
    Secret openrouter_api_key;
    std::string openrouter_api_base_url;
    std::string openrouter_model;
    int openrouter_max_tokens = 0;
    std::string openrouter_reasoning_effort;

    // wavespeed
    Secret wavespeed_api_key;
    std::string wavespeed_api_base_url;
    std::chrono::milliseconds wavespeed_poll_interval{};
    std::string image_handoff;  ///< "clickup" (attachment URL) or "wavespeed" (media upload)

    // rate_limits
    int rate_limit_enhancement = 0;
    int rate_limit_validation = 0;
    std::chrono::milliseconds validation_delay{};

    // timeouts
    std::chrono::milliseconds timeout_openrouter{};
    std::chrono::milliseconds timeout_wavespeed{};
    std::chrono::milliseconds timeout_wavespeed_polling{};
    std::chrono::milliseconds timeout_clickup{};
    std::chrono::milliseconds task_deadline{};

    // journal
    std::string journal_path;   ///< SQLite journal of jobs, checkpoints and history
    std::string webhook_answer;  ///< "at_once" or "when_done"
    Secret history_api_token;

    // state shared between instances
    std::string state_backend;  ///< "sqlite" (one instance) or "redis" (several)
    Secret redis_url;           ///< redis://[[user]:password@]host[:port][/db]
    std::string instance_id;    ///< This instance's name in Redis; empty: host name and port
    int max_concurrent_tasks = 0;
    std::chrono::milliseconds job_claim_after{};

    // locking
    std::chrono::milliseconds lock_ttl{};
    int lock_cleanup_interval = 0;

    // workflow
    int max_iterations = 0;
    int max_step_attempts = 0;
    double validation_pass_threshold = 0;

    // images
    std::size_t image_max_download_bytes = 0;
    std::size_t image_max_pixels = 0;
    std::chrono::milliseconds image_decode_timeout{};
    int image_max_concurrent_decodes = 0;

    // image models, in configured order
    std::vector<ImageModel> models;

    /// Folder that relative paths in the configuration (guidance folders) are read from.
    std::filesystem::path config_dir;

    [[nodiscard]] bool is_production() const { return app_env == "production"; }
};

/// Every problem found while loading, each a full sentence naming the key.
class ConfigError final : public std::runtime_error {
public:
    explicit ConfigError(std::vector<std::string> problems);
    [[nodiscard]] const std::vector<std::string>& problems() const { return problems_; }

private:
    std::vector<std::string> problems_;
};

/// Reads environment variables; a seam so tests need not touch the process environment.
using Environment = std::map<std::string, std::string, std::less<>>;

/// The current process environment, limited to names this service knows.
Environment process_environment();

struct LoadOptions {
    /// YAML file to read; when empty, `config/config.yaml` is used if it exists.
    std::filesystem::path file;
    Environment environment;
};

/// Result of loading: the settings, where each came from, and warnings (unknown keys).
struct LoadedSettings {
    Settings settings;
    std::map<std::string, Source, std::less<>> sources;  ///< Keyed by environment name.
    std::vector<std::string> warnings;
    std::filesystem::path file;  ///< The YAML file read, empty when none.
};

/// Loads and validates. Throws ConfigError listing every bad value at once.
[[nodiscard]] LoadedSettings load(const LoadOptions& options);

/// Checks what serving webhooks needs beyond well-formed values (secrets, field id).
/// Returns the problems; empty when the service can start.
[[nodiscard]] std::vector<std::string> problems_for_serving(const Settings& settings);

/// One line per setting: env name, effective value (secrets redacted), source.
[[nodiscard]] std::string describe(const LoadedSettings& loaded);

/// Static description of every setting, for check-config and generated documentation.
struct SettingInfo {
    std::string_view env;
    std::string_view key;  ///< Dotted YAML path, empty for environment-only settings.
    std::string_view default_value;
    std::string_view meaning;
    bool secret;
};
[[nodiscard]] std::vector<SettingInfo> setting_catalogue();

}  // namespace iea::config
