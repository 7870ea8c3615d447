#pragma once

/// The prompts sent to the LLM, assembled from files under config/: the shared instructions
/// in config/prompts/ and each image model's guidance in config/models/<name>/.

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "iea/config/settings.hpp"

namespace iea::pipeline {

/// What the validator found in an earlier attempt, fed back into the next enhancement.
struct Feedback {
    std::string previous_prompt;
    std::vector<std::string> issues;
    std::string reasoning;
};

class PromptBook final {
public:
    /// Reads every file once. Throws config::ConfigError naming a missing or empty file.
    static PromptBook load(const std::filesystem::path& config_dir,
                           const std::vector<config::ImageModel>& models);

    /// System prompt of the enhancement call for one model: shared rules + its guidance.
    [[nodiscard]] std::string enhancement_system(const std::string& model_name) const;
    /// User text of the enhancement call; with feedback when refining a failed attempt.
    [[nodiscard]] std::string enhancement_user(const std::string& request,
                                               const Feedback* feedback) const;

    [[nodiscard]] const std::string& validation_system() const { return validation_; }
    /// User text of a validation call. The Reference line names the attempt, so a
    /// reviewer (or our sandbox) can tell attempts apart.
    [[nodiscard]] std::string validation_user(const std::string& request,
                                              const std::string& task_id,
                                              const std::string& model_name,
                                              int iteration) const;

    [[nodiscard]] const std::string& split_system() const { return split_; }

private:
    std::string enhancement_;
    std::string refinement_;
    std::string validation_;
    std::string split_;
    std::map<std::string, std::string> guidance_;
};

/// Replaces every `{name}` in `text` with its value; throws std::logic_error when a
/// placeholder is left unfilled, so a template is never sent half-formatted.
[[nodiscard]] std::string fill(std::string text, const std::map<std::string, std::string>& values);

}  // namespace iea::pipeline
