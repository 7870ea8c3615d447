#include "iea/pipeline/verdict.hpp"

#include <charconv>
#include <cmath>

#include <nlohmann/json.hpp>

namespace iea::pipeline {
namespace {

std::optional<double> number_prefix(std::string_view text) {
    while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
    double value = 0;
    const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{}) return std::nullopt;
    std::string_view rest(ptr, static_cast<std::size_t>(text.data() + text.size() - ptr));
    while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
    // "8/10" is a score out of ten; "8 / 10" too. Anything else after the number is not.
    if (rest.starts_with("/")) {
        rest.remove_prefix(1);
        const auto out_of = number_prefix(rest);
        if (!out_of || *out_of <= 0) return std::nullopt;
        return value * 10.0 / *out_of;
    }
    if (!rest.empty()) return std::nullopt;
    return value;
}

std::optional<double> read_score(const nlohmann::json& value) {
    if (value.is_number()) return value.get<double>();
    if (value.is_string()) return number_prefix(value.get_ref<const std::string&>());
    return std::nullopt;
}

std::string issue_text(const nlohmann::json& issue) {
    if (issue.is_string()) return issue.get<std::string>();
    if (issue.is_object()) {
        for (const auto* key : {"description", "issue", "text", "message"}) {
            if (const auto it = issue.find(key); it != issue.end() && it->is_string()) {
                return it->get<std::string>();
            }
        }
    }
    return issue.dump();
}

}  // namespace

std::optional<std::string> extract_json(std::string_view text, char opening) {
    const char closing = opening == '{' ? '}' : ']';
    for (auto start = text.find(opening); start != std::string_view::npos;
         start = text.find(opening, start + 1)) {
        int depth = 0;
        bool in_string = false;
        bool escaped = false;
        for (auto i = start; i < text.size(); ++i) {
            const char c = text[i];
            if (in_string) {
                if (escaped) {
                    escaped = false;
                } else if (c == '\\') {
                    escaped = true;
                } else if (c == '"') {
                    in_string = false;
                }
                continue;
            }
            if (c == '"') {
                in_string = true;
            } else if (c == opening) {
                ++depth;
            } else if (c == closing && --depth == 0) {
                const auto candidate = text.substr(start, i - start + 1);
                if (nlohmann::json::accept(candidate)) return std::string(candidate);
                break;
            }
        }
    }
    return std::nullopt;
}

ParsedVerdict parse_verdict(std::string_view answer, double threshold) {
    const auto json_text = extract_json(answer);
    if (!json_text) return {std::nullopt, "the validator's answer holds no JSON verdict"};
    const auto json = nlohmann::json::parse(*json_text);

    const auto score_field = json.find("score");
    if (score_field == json.end()) return {std::nullopt, "the validator's verdict has no score"};
    const auto score = read_score(*score_field);
    if (!score || !std::isfinite(*score)) {
        return {std::nullopt, "the validator's score is not a number: " + score_field->dump()};
    }
    if (*score < 0 || *score > 10) {
        return {std::nullopt, "the validator's score is outside 0-10: " + score_field->dump()};
    }

    Verdict verdict;
    verdict.score = *score;
    verdict.passed = *score >= threshold;
    if (const auto it = json.find("issues"); it != json.end()) {
        if (it->is_array()) {
            for (const auto& issue : *it) verdict.issues.push_back(issue_text(issue));
        } else if (it->is_string() && !it->get_ref<const std::string&>().empty()) {
            verdict.issues.push_back(it->get<std::string>());
        }
    }
    if (const auto it = json.find("reasoning"); it != json.end() && it->is_string()) {
        verdict.reasoning = it->get<std::string>();
    }
    return {verdict, {}};
}

}  // namespace iea::pipeline
