#include "iea/pipeline/report.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace iea::pipeline {
namespace {

std::string score_text(double score) {
    return std::floor(score) == score ? fmt::format("{}/10", static_cast<int>(score))
                                      : fmt::format("{:.1f}/10", score);
}

std::string attempt_line(const Attempt& attempt) {
    std::string line = fmt::format("- iteration {}, {}", attempt.iteration, attempt.model);
    if (!attempt.step.empty()) line += fmt::format(" (step: {})", attempt.step);
    if (!attempt.verdict) return line + ": no result (" + attempt.failure + ")";
    line += ": score " + score_text(attempt.verdict->score);
    if (attempt.verdict->issues.empty()) return line + ", no issues listed";
    line += ". Issues: ";
    for (std::size_t i = 0; i < attempt.verdict->issues.size(); ++i) {
        line += (i == 0 ? "" : "; ") + attempt.verdict->issues[i];
    }
    return line;
}

}  // namespace

std::string human_duration(std::chrono::seconds elapsed) {
    const auto total = elapsed.count();
    if (total < 60) return fmt::format("{} s", total);
    return fmt::format("{} min {} s", total / 60, total % 60);
}

const Attempt* best_attempt(const std::vector<Attempt>& attempts,
                            const std::vector<std::string>& priority) {
    const auto rank = [&](const std::string& model) {
        return std::find(priority.begin(), priority.end(), model) - priority.begin();
    };
    const Attempt* best = nullptr;
    for (const auto& attempt : attempts) {
        if (!attempt.verdict) continue;
        if (best == nullptr || attempt.verdict->score > best->verdict->score ||
            (attempt.verdict->score == best->verdict->score &&
             rank(attempt.model) < rank(best->model))) {
            best = &attempt;
        }
    }
    return best;
}

std::string success_comment(const SuccessReport& report) {
    const auto& winner = *report.winner;
    std::string text = fmt::format("AI edit done. The result is attached as {}.\n\n",
                                   report.file_name);
    if (winner.step.empty()) {
        text += fmt::format("Model: {}, review score {}, iteration {} of {}, total time {}.\n",
                            winner.model, score_text(winner.verdict->score),
                            report.iterations_used, report.max_iterations,
                            human_duration(report.elapsed));
    } else {
        text += fmt::format(
            "Model: {}, review score {}, made one edit at a time after {} whole-request "
            "iterations did not pass, total time {}.\n",
            winner.model, score_text(winner.verdict->score), report.max_iterations,
            human_duration(report.elapsed));
    }
    if (!winner.verdict->reasoning.empty()) {
        text += "What the review saw: " + winner.verdict->reasoning + "\n";
    }
    if (!winner.verdict->issues.empty()) {
        text += "Small points the review noted:\n";
        for (const auto& issue : winner.verdict->issues) text += "- " + issue + "\n";
    }
    if (!report.dropped_models.empty()) {
        text += "Models that could not take part: ";
        for (std::size_t i = 0; i < report.dropped_models.size(); ++i) {
            text += (i == 0 ? "" : ", ") + report.dropped_models[i];
        }
        text += ".\n";
    }
    return text;
}

std::string review_comment(const ReviewReport& report) {
    const bool tried_steps = std::any_of(report.attempts->begin(), report.attempts->end(),
                                         [](const Attempt& a) { return !a.step.empty(); });
    std::string text = fmt::format(
        "AI edit needs a person: no result reached the pass mark of {} after {} iteration{}{}.\n",
        score_text(report.threshold), report.iterations_used,
        report.iterations_used == 1 ? "" : "s",
        tried_steps ? " and a try making the edits one at a time" : "");
    if (report.best != nullptr && !report.best_file_name.empty()) {
        text += fmt::format("The best attempt is attached as {} ({}, iteration {}, score {}).\n",
                            report.best_file_name, report.best->model, report.best->iteration,
                            score_text(report.best->verdict->score));
    }
    text += "\nEvery attempt:\n";
    for (const auto& attempt : *report.attempts) text += attempt_line(attempt) + "\n";
    text += "\nEdit the request or the image and tick \"AI edit\" again to retry.\n";
    return text;
}

std::string blocked_comment(const std::string& reason, Fault fault) {
    if (fault == Fault::kTask) {
        return "AI edit could not run: " + reason +
               "\n\nFix the task and tick \"AI edit\" again to retry.\n";
    }
    return "AI edit could not run: " + reason +
           "\n\nThe task itself is fine: the edit service or one of the AI providers it uses is "
           "failing. Tick \"AI edit\" again later; if this keeps happening, tell whoever runs "
           "the service.\n";
}

}  // namespace iea::pipeline
