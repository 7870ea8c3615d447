#include <catch2/catch.hpp>

#include "iea/config/settings.hpp"
#include "iea/config/settings_doc.hpp"
#include "support/harness.hpp"

using iea::config::render_configuration_markdown;

TEST_CASE("configuration doc: docs/configuration.md is what the settings table renders",
          "[config]") {
    const auto in_tree = iea::testing::read_file(IEA_SOURCE_DIR "/docs/configuration.md");
    const auto rendered = render_configuration_markdown();
    INFO(
        "docs/configuration.md is stale. Regenerate it from the repository root with:\n"
        "  build/debug/image-edit-agent settings-doc > docs/configuration.md");
    CHECK(in_tree == rendered);
}

TEST_CASE("configuration doc: every setting has a row with its variable", "[config]") {
    const auto page = render_configuration_markdown();
    for (const auto& setting : iea::config::setting_catalogue()) {
        INFO(setting.env);
        CHECK(page.find("| `" + std::string(setting.env) + "` |") != std::string::npos);
    }
}

TEST_CASE("configuration doc: secrets show neither a YAML key nor a default", "[config]") {
    const auto page = render_configuration_markdown();
    CHECK(page.find("| `CLICKUP_API_KEY` | (environment only) | (none; secret) |") !=
          std::string::npos);
}
