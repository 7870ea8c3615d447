#include <fstream>

#include <catch2/catch.hpp>

#include "iea/config/settings.hpp"
#include "support/harness.hpp"

using iea::config::ConfigError;
using iea::config::Environment;
using iea::config::load;
using iea::config::Source;

namespace {

std::filesystem::path write_yaml(const std::string& text) {
    const auto path = iea::testing::scratch_dir("config") / "config.yaml";
    std::ofstream(path) << text;
    return path;
}

std::string all_problems(const ConfigError& error) {
    std::string text;
    for (const auto& problem : error.problems()) text += problem + "\n";
    return text;
}

}  // namespace

TEST_CASE("config: built-in defaults match the names operators use", "[config]") {
    const auto loaded = load({write_yaml("{}"), {}});
    const auto& s = loaded.settings;
    CHECK(s.port == 8080);
    CHECK(s.log_level == "INFO");
    CHECK(s.max_iterations == 3);
    CHECK(s.max_step_attempts == 2);
    CHECK(s.validation_pass_threshold == 8);
    CHECK(s.rate_limit_enhancement == 3);
    CHECK(s.rate_limit_validation == 2);
    CHECK(s.validation_delay == std::chrono::seconds(2));
    CHECK(s.timeout_openrouter == std::chrono::seconds(120));
    CHECK(s.timeout_wavespeed_polling == std::chrono::seconds(300));
    CHECK(s.timeout_clickup == std::chrono::seconds(30));
    CHECK(s.lock_ttl == std::chrono::seconds(3600));
    CHECK(s.lock_cleanup_interval == 100);
    CHECK(s.status_complete == "complete");
    CHECK(s.status_blocked == "blocked");
    CHECK(s.status_needs_review == "Needs Human Review");
    REQUIRE(s.models.size() == 2);
    CHECK(s.models[0].name == "wan-2.5-edit");
    CHECK(s.models[1].path == "google/nano-banana/edit");
    CHECK(loaded.sources.at("MAX_ITERATIONS") == Source::kDefault);
}

TEST_CASE("config: environment beats file beats default", "[config]") {
    const auto file = write_yaml(
        "workflow:\n  max_iterations: 5\n  max_step_attempts: 4\n"
        "clickup:\n  status_complete: Done\n");
    const auto loaded = load({file, Environment{{"MAX_ITERATIONS", "7"}}});
    CHECK(loaded.settings.max_iterations == 7);
    CHECK(loaded.sources.at("MAX_ITERATIONS") == Source::kEnvironment);
    CHECK(loaded.settings.max_step_attempts == 4);
    CHECK(loaded.sources.at("MAX_STEP_ATTEMPTS") == Source::kFile);
    CHECK(loaded.settings.status_complete == "Done");
    CHECK(loaded.settings.port == 8080);
    CHECK(loaded.sources.at("PORT") == Source::kDefault);
}

TEST_CASE("config: every bad value is refused with key, problem and expected form", "[config]") {
    SECTION("a non-numeric MAX_ITERATIONS") {
        try {
            (void)load({write_yaml("{}"), Environment{{"MAX_ITERATIONS", "three"}}});
            FAIL("loaded");
        } catch (const ConfigError& e) {
            CHECK_THAT(all_problems(e),
                       Catch::Contains("MAX_ITERATIONS: 'three' is not a whole number; expected a "
                                       "whole number from 1 to 20"));
        }
    }
    SECTION("a negative timeout, from the file") {
        try {
            (void)load({write_yaml("timeouts:\n  clickup_seconds: -5\n"), {}});
            FAIL("loaded");
        } catch (const ConfigError& e) {
            CHECK_THAT(all_problems(e), Catch::Contains("timeouts.clickup_seconds in"));
            CHECK_THAT(all_problems(e), Catch::Contains("'-5' is out of range"));
        }
    }
    SECTION("all problems at once") {
        try {
            (void)load({write_yaml("{}"), Environment{{"PORT", "http"}, {"LOG_LEVEL", "loud"}}});
            FAIL("loaded");
        } catch (const ConfigError& e) {
            CHECK(e.problems().size() == 2);
            CHECK_THAT(all_problems(e), Catch::Contains("LOG_LEVEL: 'loud' is not an accepted "
                                                        "value; expected one of DEBUG|INFO"));
        }
    }
    SECTION("nan and inf are not numbers of seconds") {
        for (const auto* value : {"nan", "-nan", "NaN", "inf"}) {
            CHECK_THROWS_WITH(load({write_yaml("{}"), Environment{{"VALIDATION_DELAY_SECONDS", value}}}),
                              Catch::Contains("is not a number of seconds"));
        }
    }
    SECTION("a URL that is not one") {
        CHECK_THROWS_AS(load({write_yaml("{}"), Environment{{"CLICKUP_API_BASE_URL", "ftp://x"}}}),
                        ConfigError);
    }
    SECTION("a file that is not YAML") {
        CHECK_THROWS_WITH(load({write_yaml("a: [unclosed"), {}}), Catch::Contains("not valid YAML"));
    }
    SECTION("a missing file named on the command line") {
        CHECK_THROWS_WITH(load({"/nonexistent/config.yaml", {}}),
                          Catch::Contains("cannot be read"));
    }
}

TEST_CASE("config: production refuses to start without secrets and field id", "[config]") {
    try {
        (void)load({write_yaml("{}"), Environment{{"APP_ENV", "production"},
                                                  {"OPENROUTER_API_KEY", "test-key-1"}}});
        FAIL("loaded");
    } catch (const ConfigError& e) {
        const auto text = all_problems(e);
        CHECK_THAT(text, Catch::Contains("CLICKUP_API_KEY: not set"));
        CHECK_THAT(text, Catch::Contains("CLICKUP_WEBHOOK_SECRET: not set"));
        CHECK_THAT(text, Catch::Contains("WAVESPEED_API_KEY: not set"));
        CHECK_THAT(text, Catch::Contains("CLICKUP_CUSTOM_FIELD_ID_AI_EDIT: not set"));
        CHECK_THAT(text, !Catch::Contains("OPENROUTER_API_KEY: not set"));
    }
}

TEST_CASE("config: unknown YAML keys are warned about by name", "[config]") {
    const auto loaded =
        load({write_yaml("workflow:\n  max_iteration: 4\nprocessing:\n  x: 1\n"), {}});
    REQUIRE(loaded.warnings.size() == 2);
    CHECK_THAT(loaded.warnings[0] + loaded.warnings[1], Catch::Contains("'workflow.max_iteration'"));
    CHECK_THAT(loaded.warnings[0] + loaded.warnings[1], Catch::Contains("'processing'"));
    CHECK(loaded.settings.max_iterations == 3);
}

TEST_CASE("config: secrets come from the environment only and are never shown", "[config]") {
    const auto file = write_yaml("clickup:\n  api_key: test-file-key-1\n");
    const auto loaded = load({file, Environment{{"CLICKUP_WEBHOOK_SECRET", "test-secret-1"}}});
    CHECK(loaded.settings.clickup_api_key.empty());
    CHECK(loaded.settings.clickup_webhook_secret.reveal() == "test-secret-1");
    CHECK_THAT(loaded.warnings.at(0), Catch::Contains("clickup.api_key"));

    const auto text = iea::config::describe(loaded);
    CHECK_THAT(text, !Catch::Contains("test-secret-1"));
    CHECK_THAT(text, Catch::Contains("CLICKUP_WEBHOOK_SECRET"));
    CHECK_THAT(text, Catch::Contains("<redacted>"));
}

TEST_CASE("config: image models come from the file", "[config]") {
    SECTION("a list replaces the built-in one") {
        const auto loaded = load({write_yaml("models:\n"
                                             "  - name: seedream\n"
                                             "    path: bytedance/seedream-v4/edit\n"
                                             "    max_side: 4096\n"
                                             "    input:\n      size: \"2048*2048\"\n"),
                                  {}});
        REQUIRE(loaded.settings.models.size() == 1);
        CHECK(loaded.settings.models[0].max_side == 4096);
        CHECK(loaded.settings.models[0].guidance == "models/seedream");
        CHECK(loaded.settings.models[0].extra_input.at("size") == "2048*2048");
    }
    SECTION("a model without a path is refused") {
        CHECK_THROWS_WITH(load({write_yaml("models:\n  - name: x\n"), {}}),
                          Catch::Contains("models[0]: expected a map with at least 'name' and "
                                          "'path'"));
    }
    SECTION("duplicate names are refused") {
        CHECK_THROWS_WITH(load({write_yaml("models:\n  - {name: a, path: p}\n  - {name: a, path: "
                                           "q}\n"),
                                {}}),
                          Catch::Contains("appears twice"));
    }
}

TEST_CASE("config: fractional seconds are kept to the millisecond", "[config]") {
    const auto loaded = load({write_yaml("{}"), Environment{{"VALIDATION_DELAY_SECONDS", "0.25"}}});
    CHECK(loaded.settings.validation_delay == std::chrono::milliseconds(250));
}
