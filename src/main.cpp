// image-edit-agent: command-line entry. Wiring only; the work lives in the library.

#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include <spdlog/sinks/stdout_sinks.h>

#include "iea/config/settings.hpp"
#include "iea/config/settings_doc.hpp"
#include "iea/image/convert_command.hpp"
#include "iea/logging/log.hpp"
#include "iea/pipeline/prompts.hpp"
#include "iea/service/app.hpp"
#include "iea/service/commands.hpp"
#include "iea/state/redis_client.hpp"
#include "iea/webhook/signature.hpp"

namespace {

constexpr std::string_view kUsage = R"(usage: image-edit-agent [COMMAND] [--config PATH]

commands:
  serve          run the service (default)
  check-config   print the effective settings and where each comes from
  sign           read a webhook body on stdin, print its X-Signature
  convert IN OUT.png [--for-validation]
                 convert an image the way the service prepares attachments
  settings-doc   print docs/configuration.md, rendered from the settings table
  webhook create [--endpoint URL] [--space ID] [--folder ID] [--list ID]
                 register the ClickUp webhook for this service (PUBLIC_URL or --endpoint)
                 and print the CLICKUP_WEBHOOK_SECRET to set
  webhook list   the workspace's webhooks with status and fail_count
  webhook delete WEBHOOK_ID
  webhook health [--endpoint URL] [--reactivate]
                 exit 1 when a webhook is failing or suspended; --reactivate turns it back on
  replay TASK_ID [--tick]
                 run the edit for one task now, as a tick would, and print how it ended
  --version      print the version
)";

struct CommandLine {
    std::string command = "serve";
    std::vector<std::string> arguments;
    std::string config_file;
};

CommandLine parse_command_line(int argc, char** argv) {
    CommandLine out;
    bool command_seen = false;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--config") {
            if (i + 1 >= argc) throw std::invalid_argument("--config needs a file path");
            out.config_file = argv[++i];
        } else if (!command_seen) {
            out.command = arg;
            command_seen = true;
        } else {
            out.arguments.push_back(arg);
        }
    }
    return out;
}

iea::config::LoadedSettings load_settings(const CommandLine& line) {
    return iea::config::load({line.config_file, iea::config::process_environment()});
}

int serve(const CommandLine& line) {
    const auto loaded = load_settings(line);
    iea::logging::setup(loaded.settings.log_level);
    const iea::logging::Logger log("service");
    for (const auto& warning : loaded.warnings) log.warning("Configuration warning", {{"detail", warning}});

    if (const auto problems = iea::config::problems_for_serving(loaded.settings);
        !problems.empty()) {
        throw iea::config::ConfigError(problems);
    }
    return iea::service::run_service(loaded.settings);
}

int check_config(const CommandLine& line) {
    const auto loaded = load_settings(line);
    std::cout << iea::config::describe(loaded);
    for (const auto& warning : loaded.warnings) std::cout << "warning: " << warning << "\n";
    auto problems = iea::config::problems_for_serving(loaded.settings);
    // `serve` reads the prompt files first thing; a missing one is a reason it would not start.
    try {
        (void)iea::pipeline::PromptBook::load(loaded.settings.config_dir, loaded.settings.models);
    } catch (const iea::config::ConfigError& error) {
        problems.insert(problems.end(), error.problems().begin(), error.problems().end());
    }
    if (loaded.settings.state_backend == "redis" && !loaded.settings.redis_url.empty()) {
        try {
            (void)iea::state::parse_redis_url(loaded.settings.redis_url.reveal());
        } catch (const std::invalid_argument& error) {
            problems.emplace_back(error.what());
        }
    }
    for (const auto& problem : problems) std::cout << "not ready to serve: " << problem << "\n";
    // The configuration only: Redis and the providers are not contacted.
    if (problems.empty()) std::cout << "ready to serve (configuration only; nothing was contacted)\n";
    return problems.empty() ? 0 : 1;
}

// Operator commands print their answers on stdout; their logs go to stderr.
void log_to_stderr(std::string_view level) {
    iea::logging::setup(level, std::make_shared<spdlog::sinks::stderr_sink_mt>());
}

int webhook(const CommandLine& line) {
    const auto loaded = load_settings(line);
    log_to_stderr("WARNING");  // a provider's success lines would only clutter the terminal
    return iea::service::run_webhook_command(loaded.settings, line.arguments, std::cout,
                                             std::cerr);
}

int replay(const CommandLine& line) {
    const auto loaded = load_settings(line);
    log_to_stderr(loaded.settings.log_level);
    return iea::service::run_replay_command(loaded.settings, line.arguments, std::cout,
                                            std::cerr);
}

int sign() {
    const auto env = iea::config::process_environment();
    const auto secret = env.find("CLICKUP_WEBHOOK_SECRET");
    if (secret == env.end() || secret->second.empty()) {
        std::cerr << "sign: CLICKUP_WEBHOOK_SECRET is not set\n";
        return 2;
    }
    const std::string body{std::istreambuf_iterator<char>(std::cin),
                           std::istreambuf_iterator<char>()};
    std::cout << iea::webhook::sign(secret->second, body) << "\n";
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        const auto line = parse_command_line(argc, argv);
        if (line.command == "serve") return serve(line);
        if (line.command == "check-config") return check_config(line);
        if (line.command == "sign") return sign();
        if (line.command == "convert") return iea::image::run_convert_command(line.arguments);
        if (line.command == "webhook") return webhook(line);
        if (line.command == "replay") return replay(line);
        if (line.command == "settings-doc") {
            std::cout << iea::config::render_configuration_markdown();
            return 0;
        }
        if (line.command == "--version" || line.command == "version") {
            std::cout << "image-edit-agent " << IEA_VERSION << "\n";
            return 0;
        }
        if (line.command == "--help" || line.command == "-h" || line.command == "help") {
            std::cout << kUsage;
            return 0;
        }
        std::cerr << "image-edit-agent: unknown command '" << line.command << "'\n" << kUsage;
        return 2;
    } catch (const iea::config::ConfigError& e) {
        std::cerr << "image-edit-agent: " << e.what() << "\n";
        return 78;  // EX_CONFIG
    } catch (const std::exception& e) {
        std::cerr << "image-edit-agent: " << e.what() << "\n";
        return 1;
    }
}
