#include "iea/service/wiring.hpp"

namespace iea::service {

image::ConversionLimits conversion_limits(const config::Settings& settings) {
    image::ConversionLimits limits;
    limits.max_download_bytes = settings.image_max_download_bytes;
    limits.max_pixels = settings.image_max_pixels;
    limits.decode_wall_time = settings.image_decode_timeout;
    limits.max_concurrent_decodes = static_cast<unsigned>(settings.image_max_concurrent_decodes);
    return limits;
}

TaskWiring::TaskWiring(boost::asio::io_context& io, const config::Settings& settings,
                       journal::Journal& journal)
    // Prompts first: a missing guidance file stops the start, not a task.
    : prompts_(pipeline::PromptBook::load(settings.config_dir, settings.models)),
      http_(io.get_executor()),
      clickup_(http_, providers::ClickUpOptions::from(settings)),
      openrouter_(http_, providers::OpenRouterOptions::from(settings)),
      wavespeed_(http_, providers::WaveSpeedOptions::from(settings)),
      images_(io.get_executor(), conversion_limits(settings)),
      pipeline_(io.get_executor(),
                {settings, clickup_, openrouter_, wavespeed_, images_, prompts_, journal}) {}

}  // namespace iea::service
