#pragma once

/// What every task run needs, built from the settings once: the providers, image intake,
/// prompts and the pipeline. The service and `image-edit-agent replay` build the same thing,
/// so a replayed task runs exactly as a ticked one would.

#include <boost/asio/io_context.hpp>

#include "iea/config/settings.hpp"
#include "iea/http/client.hpp"
#include "iea/image/converter.hpp"
#include "iea/journal/journal.hpp"
#include "iea/pipeline/pipeline.hpp"
#include "iea/pipeline/prompts.hpp"
#include "iea/providers/clickup.hpp"
#include "iea/providers/openrouter.hpp"
#include "iea/providers/wavespeed.hpp"

namespace iea::service {

/// Owns the objects, which refer to each other: neither copyable nor movable. `settings`,
/// `io` and `journal` must outlive it. Throws config::ConfigError when a prompt file is missing, so a
/// bad deployment stops at start, not at its first task.
class TaskWiring final {
  public:
    TaskWiring(boost::asio::io_context& io, const config::Settings& settings,
               journal::Journal& journal);
    TaskWiring(const TaskWiring&) = delete;
    TaskWiring& operator=(const TaskWiring&) = delete;

    [[nodiscard]] pipeline::Pipeline& pipeline() { return pipeline_; }
    [[nodiscard]] providers::ClickUpClient& clickup() { return clickup_; }

  private:
    pipeline::PromptBook prompts_;
    http::HttpClient http_;
    providers::ClickUpClient clickup_;
    providers::OpenRouterClient openrouter_;
    providers::WaveSpeedClient wavespeed_;
    image::ImageConverter images_;
    pipeline::Pipeline pipeline_;
};

/// The image limits of the settings.
[[nodiscard]] image::ConversionLimits conversion_limits(const config::Settings& settings);

}  // namespace iea::service
