#pragma once

/// What the task's comments say: plain text a designer understands, no markdown.

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "iea/pipeline/verdict.hpp"

namespace iea::pipeline {

/// One model's try at one iteration (or one step of step-by-step mode).
struct Attempt {
    int iteration = 0;
    std::string model;
    std::string step;  ///< the single edit, in step-by-step mode; empty otherwise
    std::string prompt;
    std::optional<Verdict> verdict;
    std::string failure;  ///< why there is no verdict (generation failed, review unavailable)
};

/// Orders attempts as the comment lists them: by iteration, then model priority order as
/// given, and picks the best: highest score, ties to the earlier model in `priority`.
[[nodiscard]] const Attempt* best_attempt(const std::vector<Attempt>& attempts,
                                          const std::vector<std::string>& priority);

struct SuccessReport {
    std::string file_name;
    const Attempt* winner;
    int iterations_used;
    int max_iterations;
    std::chrono::seconds elapsed;
    std::vector<std::string> dropped_models;  ///< models that failed along the way
};
[[nodiscard]] std::string success_comment(const SuccessReport& report);

struct ReviewReport {
    double threshold;
    int iterations_used;
    const std::vector<Attempt>* attempts;
    const Attempt* best;         ///< may be null when no attempt got a verdict
    std::string best_file_name;  ///< empty when nothing was attached
};
[[nodiscard]] std::string review_comment(const ReviewReport& report);

/// Whose problem a blocked task is: the designer can fix the task, not the service.
enum class Fault { kTask, kService };

[[nodiscard]] std::string blocked_comment(const std::string& reason, Fault fault);

/// "1 min 42 s", "38 s".
[[nodiscard]] std::string human_duration(std::chrono::seconds elapsed);

}  // namespace iea::pipeline
