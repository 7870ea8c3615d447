#include "iea/pipeline/prompts.hpp"

#include <algorithm>
#include <fstream>
#include <regex>
#include <sstream>
#include <stdexcept>

#include <fmt/format.h>

namespace iea::pipeline {
namespace {

std::string read_text(const std::filesystem::path& path, std::vector<std::string>& problems) {
    std::ifstream in(path);
    if (!in) {
        problems.push_back(fmt::format("{}: prompt file is missing", path.string()));
        return {};
    }
    std::ostringstream out;
    out << in.rdbuf();
    auto text = out.str();
    if (text.find_first_not_of(" \t\r\n") == std::string::npos) {
        problems.push_back(fmt::format("{}: prompt file is empty", path.string()));
    }
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    return text;
}

std::string bullet_list(const std::vector<std::string>& items) {
    if (items.empty()) return "- (no specific issue was listed)";
    std::string out;
    for (const auto& item : items) out += (out.empty() ? "- " : "\n- ") + item;
    return out;
}

}  // namespace

std::string fill(std::string text, const std::map<std::string, std::string>& values) {
    // Values are inserted after scanning, so braces inside a request are never expanded.
    std::string out;
    std::size_t at = 0;
    while (at < text.size()) {
        const auto open = text.find('{', at);
        if (open == std::string::npos) break;
        const auto close = text.find('}', open);
        if (close == std::string::npos) break;
        const auto name = text.substr(open + 1, close - open - 1);
        const bool is_placeholder =
            !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
                return (c >= 'a' && c <= 'z') || c == '_';
            });
        out.append(text, at, open - at);
        if (!is_placeholder) {
            out += '{';
            at = open + 1;
            continue;
        }
        const auto value = values.find(name);
        if (value == values.end()) throw std::logic_error("prompt placeholder not filled: " + name);
        out += value->second;
        at = close + 1;
    }
    out.append(text, at);
    return out;
}

PromptBook PromptBook::load(const std::filesystem::path& config_dir,
                            const std::vector<config::ImageModel>& models) {
    std::vector<std::string> problems;
    PromptBook book;
    const auto prompts = config_dir / "prompts";
    book.enhancement_ = read_text(prompts / "enhancement.md", problems);
    book.refinement_ = read_text(prompts / "refinement.md", problems);
    book.validation_ = read_text(prompts / "validation.md", problems);
    book.split_ = read_text(prompts / "split.md", problems);

    for (const auto& model : models) {
        const auto folder = config_dir / model.guidance;
        std::vector<std::filesystem::path> files;
        if (std::filesystem::is_directory(folder)) {
            for (const auto& entry : std::filesystem::directory_iterator(folder)) {
                if (entry.path().extension() == ".md") files.push_back(entry.path());
            }
        }
        std::sort(files.begin(), files.end());
        if (files.empty()) {
            problems.push_back(fmt::format("{}: no guidance (.md) files for model {}",
                                           folder.string(), model.name));
            continue;
        }
        std::string guidance;
        for (const auto& file : files) guidance += read_text(file, problems) + "\n\n";
        book.guidance_[model.name] = guidance;
    }
    if (!problems.empty()) throw config::ConfigError(problems);
    return book;
}

std::string PromptBook::enhancement_system(const std::string& model_name) const {
    const auto guidance = guidance_.find(model_name);
    return enhancement_ + "\n\n# The model you write for: " + model_name + "\n\n" +
           (guidance == guidance_.end() ? std::string{} : guidance->second);
}

std::string PromptBook::enhancement_user(const std::string& request,
                                         const Feedback* feedback) const {
    std::string text = "The designer's request:\n\n" + request;
    if (feedback != nullptr) {
        text += "\n\n" + fill(refinement_, {{"previous_prompt", feedback->previous_prompt},
                                            {"issues", bullet_list(feedback->issues)},
                                            {"reasoning", feedback->reasoning.empty()
                                                              ? "(none given)"
                                                              : feedback->reasoning}});
    }
    return text;
}

std::string PromptBook::validation_user(const std::string& request,
                                        const std::string& task_id,
                                        const std::string& model_name,
                                        int iteration) const {
    return fmt::format(
        "The designer's request:\n\n{}\n\nImage 1 is the original, image 2 the edit.\n"
        "Reference: task={} model={} iteration={}",
        request, task_id, model_name, iteration);
}

}  // namespace iea::pipeline
