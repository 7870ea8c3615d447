// OpenRouter chat-completions fake (contracts 2.1-2.4): validates the request the way the
// real API and its Anthropic upstream do, then answers as an enhancer, a splitter or a
// validator depending on the system prompt's "Purpose:" line.

#include <boost/beast/http/field.hpp>
#include <cmath>
#include <regex>

#include "sandbox/sandbox.hpp"
#include "sandbox/util.hpp"

namespace iea::sandbox {
namespace {

namespace bhttp = boost::beast::http;
constexpr std::size_t kMaxImageBase64 = 5 * 1024 * 1024;

Response openrouter_error(http::Status status, const std::string& message) {
    return http::json_response(
        status, {{"error", {{"code", static_cast<int>(status)}, {"message", message}}}});
}

struct Reference {
    std::string task = "";
    std::string model = "*";
    int iteration = 1;
};

Reference find_reference(const std::string& text) {
    static const std::regex line(R"(Reference: task=(\S*) model=(\S+) iteration=(\d+))");
    Reference out;
    if (std::smatch match; std::regex_search(text, match, line)) {
        out.task = match[1];
        out.model = match[2];
        out.iteration = std::stoi(match[3]);
    }
    return out;
}

bool has_line(const std::string& text, std::string_view wanted) {
    std::size_t start = 0;
    while (start <= text.size()) {
        auto end = text.find('\n', start);
        if (end == std::string::npos) end = text.size();
        auto line = std::string_view(text).substr(start, end - start);
        while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
        while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
        if (line == wanted) return true;
        start = end + 1;
    }
    return false;
}

// The person's request inside our user text: what follows "Request:" if there is such a
// line, else the whole text; Reference lines are never part of it.
std::string request_text(const std::string& user_text) {
    std::string text = user_text;
    if (const auto at = text.find("Request:"); at != std::string::npos) text = text.substr(at + 8);
    text = std::regex_replace(text, std::regex(R"(Reference: [^\n]*)"), "");
    text = std::regex_replace(text, std::regex(R"(\s+)"), " ");
    const auto first = text.find_first_not_of(' ');
    const auto last = text.find_last_not_of(' ');
    return first == std::string::npos ? std::string{} : text.substr(first, last - first + 1);
}

json split_edits(const std::string& request) {
    json edits = json::array();
    std::string current;
    const auto flush = [&] {
        const auto first = current.find_first_not_of(" \t\n");
        if (first != std::string::npos) {
            edits.push_back(current.substr(first, current.find_last_not_of(" \t\n") - first + 1));
        }
        current.clear();
    };
    for (const char c : request) {
        if (c == '.' || c == '!' || c == '?' || c == ';' || c == '\n') {
            flush();
        } else {
            current += c;
        }
    }
    flush();
    return edits;
}

std::string verdict_text(const VerdictRule& rule) {
    json verdict;
    if (std::floor(rule.score) == rule.score) {
        verdict["score"] = static_cast<int>(rule.score);
    } else {
        verdict["score"] = rule.score;
    }
    verdict["pass"] = rule.pass;
    verdict["issues"] = rule.issues;
    verdict["reasoning"] = rule.reasoning;
    const auto body = verdict.dump(2);
    if (rule.style == "fenced") return "```json\n" + body + "\n```";
    if (rule.style == "prose")
        return "I compared the edited image with the original and the request.\n\n" + body;
    return body;
}

// Checks one content part; an error message, or empty when the part is acceptable.
std::string check_part(const json& part, std::size_t& images) {
    const auto type = part.value("type", "");
    if (type == "text")
        return part.contains("text") && part["text"].is_string() ? ""
                                                                 : "text part needs a string text";
    if (type != "image_url") return "unsupported content part type";
    if (!part.contains("image_url") || !part["image_url"].is_object() ||
        !part["image_url"].contains("url") || !part["image_url"]["url"].is_string()) {
        return "image_url part needs image_url.url";
    }
    ++images;
    const auto& url = part["image_url"]["url"].get_ref<const std::string&>();
    // TODO: http(s) image URLs are accepted without being fetched, so a URL the real API could not
    // reach still passes here.
    if (url.starts_with("https://") || url.starts_with("http://")) return "";
    const auto marker = url.find(";base64,");
    if (!url.starts_with("data:image/") || marker == std::string::npos) return "invalid image URL";
    const auto payload = std::string_view(url).substr(marker + 8);
    if (payload.size() > kMaxImageBase64) {
        return "image exceeds 5 MB maximum: " + std::to_string(payload.size()) + " bytes > " +
               std::to_string(kMaxImageBase64) + " bytes";
    }
    const auto decoded = base64_decode(payload);
    if (!decoded || decoded->empty()) return "invalid base64 image data";
    return "";
}

}  // namespace

void Sandbox::add_openrouter_routes(http::Router& router) {
    router.add(http::Method::post,
               "/openrouter/api/v1/chat/completions",
               [this](const Request& request) { return openrouter_chat(request); });
}

asio::awaitable<Response> Sandbox::openrouter_chat(const Request& request) {
    const auto auth = request[bhttp::field::authorization];
    if (!auth.starts_with("Bearer ") || auth.size() <= 7) {
        co_return openrouter_error(http::Status::unauthorized, "No auth credentials found");
    }
    const auto body = json::parse(request.body(), nullptr, false);
    if (!body.is_object())
        co_return openrouter_error(http::Status::bad_request, "Invalid JSON body");
    if (!body.contains("model") || !body["model"].is_string() ||
        body["model"].get<std::string>().empty()) {
        co_return openrouter_error(http::Status::bad_request, "model is required");
    }
    if (!body.contains("messages") || !body["messages"].is_array() || body["messages"].empty()) {
        co_return openrouter_error(http::Status::bad_request, "messages must be a non-empty array");
    }

    // 1. A system prompt as a string, and a user message of parts, text first.
    std::string system_text;
    std::string user_text;
    std::size_t images = 0;
    bool user_seen = false;
    for (const auto& message : body["messages"]) {
        if (!message.is_object()) {
            co_return openrouter_error(http::Status::bad_request, "each message must be an object");
        }
        const auto role = message.value("role", "");
        if (role == "system" && message.contains("content") && message["content"].is_string()) {
            system_text += message["content"].get<std::string>();
        } else if (role == "user") {
            const auto& content = message.contains("content") ? message["content"] : json();
            if (!content.is_array() || content.empty() || content[0].value("type", "") != "text") {
                co_return openrouter_error(http::Status::bad_request,
                                           "user content must be parts with the text part first");
            }
            for (const auto& part : content) {
                if (const auto problem = check_part(part, images); !problem.empty()) {
                    co_return openrouter_error(http::Status::bad_request, problem);
                }
                if (part.value("type", "") == "text")
                    user_text += part["text"].get<std::string>() + "\n";
            }
            user_seen = true;
        }
    }
    if (system_text.empty() || !user_seen) {
        co_return openrouter_error(
            http::Status::bad_request,
            "a system message with string content and a user message are required");
    }

    // 2. Decide what is being asked, and answer it.
    const auto reference = find_reference(user_text);
    const auto request_body = request_text(user_text);
    std::string content;
    if (has_line(system_text, "Purpose: validation")) {
        VerdictRule chosen;
        for (const auto& rule : scenario_.verdicts) {
            const bool model_ok = rule.model == "*" || rule.model == reference.model;
            const bool iteration_ok = rule.iteration == 0 || rule.iteration == reference.iteration;
            if (model_ok && iteration_ok) {
                chosen = rule;
                break;
            }
        }
        content = verdict_text(chosen);
    } else if (has_line(system_text, "Purpose: split")) {
        content = split_edits(request_body).dump();
    } else {
        const auto model =
            reference.model == "*" ? std::string("the image model") : reference.model;
        content = "Edit for " + model + ": " + request_body;
    }

    // 3. Shape the answer as contract 2.2, possibly cut short by a scripted fault.
    const auto fault = request["X-Sandbox-Fault"];
    json message_content = content;
    std::string finish = "stop";
    if (fault == "finish_length") {
        message_content = content.substr(0, content.size() / 2);
        finish = "length";
    } else if (fault == "content_null") {
        message_content = nullptr;
        finish = "length";
    }
    const auto prompt_tokens =
        static_cast<std::int64_t>((system_text.size() + user_text.size()) / 4 + images * 1500);
    const auto completion_tokens = static_cast<std::int64_t>(content.size() / 4 + 1);
    co_return http::json_response(
        http::Status::ok,
        {{"id", "gen-sandbox-" + std::to_string(next_counter_++)},
         {"provider", "Anthropic"},
         {"model", body["model"]},
         {"object", "chat.completion"},
         {"created", now_ms() / 1000},
         {"choices",
          json::array({{{"index", 0},
                        {"finish_reason", finish},
                        {"native_finish_reason", finish == "stop" ? "end_turn" : "max_tokens"},
                        {"message",
                         {{"role", "assistant"},
                          {"content", message_content},
                          {"reasoning", nullptr},
                          {"refusal", nullptr}}}}})},
         {"usage",
          {{"prompt_tokens", prompt_tokens},
           {"completion_tokens", completion_tokens},
           {"total_tokens", prompt_tokens + completion_tokens},
           {"completion_tokens_details", {{"reasoning_tokens", 0}}}}}});
}

}  // namespace iea::sandbox
