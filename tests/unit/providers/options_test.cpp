#include <catch2/catch.hpp>

#include "iea/config/settings.hpp"
#include "iea/providers/clickup.hpp"
#include "iea/providers/openrouter.hpp"
#include "iea/providers/wavespeed.hpp"

using namespace std::chrono_literals;

namespace {

iea::config::Settings settings() {
    iea::config::Settings out;
    out.clickup_api_base_url = "http://127.0.0.1:9001/api/v2";
    out.clickup_api_key = iea::config::Secret("test-secret-1");
    out.timeout_clickup = 7s;
    out.openrouter_api_base_url = "http://127.0.0.1:9002/api/v1";
    out.openrouter_api_key = iea::config::Secret("test-secret-2");
    out.openrouter_model = "test/model";
    out.openrouter_max_tokens = 3000;
    out.openrouter_reasoning_effort = "none";
    out.timeout_openrouter = 90s;
    out.wavespeed_api_base_url = "http://127.0.0.1:9003/api/v3";
    out.wavespeed_api_key = iea::config::Secret("test-secret-3");
    out.wavespeed_poll_interval = 500ms;
    out.timeout_wavespeed = 60s;
    out.timeout_wavespeed_polling = 200s;
    out.max_step_attempts = 4;
    return out;
}

}  // namespace

TEST_CASE("options: every client takes its settings from Settings", "[providers]") {
    const auto source = settings();

    const auto clickup = iea::providers::ClickUpOptions::from(source);
    CHECK(clickup.base_url == "http://127.0.0.1:9001/api/v2");
    CHECK(clickup.token.reveal() == "test-secret-1");
    CHECK(clickup.timeout == 7s);
    CHECK(clickup.retry.max_attempts == 4);
    CHECK(clickup.requests_per_minute == 100);

    const auto openrouter = iea::providers::OpenRouterOptions::from(source);
    CHECK(openrouter.base_url == "http://127.0.0.1:9002/api/v1");
    CHECK(openrouter.key.reveal() == "test-secret-2");
    CHECK(openrouter.model == "test/model");
    CHECK(openrouter.max_tokens == 3000);
    CHECK(openrouter.reasoning_effort == "none");
    CHECK(openrouter.timeout == 90s);
    CHECK(openrouter.retry.max_attempts == 4);

    const auto wavespeed = iea::providers::WaveSpeedOptions::from(source);
    CHECK(wavespeed.base_url == "http://127.0.0.1:9003/api/v3");
    CHECK(wavespeed.key.reveal() == "test-secret-3");
    CHECK(wavespeed.poll_interval == 500ms);
    CHECK(wavespeed.timeout == 60s);
    CHECK(wavespeed.polling_timeout == 200s);
    CHECK(wavespeed.retry.max_attempts == 4);
}
