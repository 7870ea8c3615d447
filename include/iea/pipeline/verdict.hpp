#pragma once

/// The vision model's verdict on one edit, and how we read it from what models really send.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace iea::pipeline {

struct Verdict {
    double score = 0;  ///< 0 to 10
    bool passed = false;  ///< score >= threshold; never the model's own pass/fail word
    std::vector<std::string> issues;
    std::string reasoning;
};

/// Either a verdict or why the answer could not be read as one.
struct ParsedVerdict {
    std::optional<Verdict> verdict;
    std::string error;
};

/// Finds the JSON verdict in a model answer: bare, inside a code fence, or after or before
/// prose. Accepts the score as a number or a string ("8", "8.5", "8/10"), issues as strings
/// or objects with a description. An unreadable or out-of-range score is an error, never a
/// pass. `passed` follows `threshold` only.
[[nodiscard]] ParsedVerdict parse_verdict(std::string_view answer, double threshold);

/// The first balanced JSON object or array in `text` (fences and prose around it ignored).
[[nodiscard]] std::optional<std::string> extract_json(std::string_view text, char opening = '{');

}  // namespace iea::pipeline
