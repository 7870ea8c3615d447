#pragma once

/// Client of OpenRouter's chat completions (contracts section 2): a system prompt, a user
/// text and images in, the model's text out.
///
/// Throws ProviderError with provider "openrouter" and operation "chat". Errors that
/// OpenRouter delivers inside an HTTP 200 body are errors here too. An answer cut off by the
/// token limit (finish_reason "length") or with no content is kTruncatedAnswer, never a
/// short answer. A chat call has no side effect besides its cost, so it is retried like an
/// idempotent call (timeouts included); a truncated answer is not retried.

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "iea/config/settings.hpp"
#include "iea/http/client.hpp"
#include "iea/providers/retry.hpp"

namespace iea::providers {

/// An image sent inline as a base64 data URL.
struct ChatImage {
    std::string mime_type;  ///< "image/png", "image/jpeg", ...
    std::string bytes;
};

struct ChatRequest {
    std::string system;  ///< Omitted when empty.
    std::string user;    ///< Sent as the first content part, before the images.
    std::vector<ChatImage> images;
    std::optional<int> max_tokens;      ///< Overrides the configured max_tokens.
    std::optional<double> temperature;  ///< Sent only when set.
};

struct ChatAnswer {
    std::string text;
    std::string model;  ///< The model that answered (may differ after a fallback).
    std::string finish_reason;
    int prompt_tokens = 0;
    int completion_tokens = 0;
};

struct OpenRouterOptions {
    std::string base_url = "https://openrouter.ai/api/v1";
    config::Secret key;
    std::string model = "anthropic/claude-sonnet-4.5";
    int max_tokens = 8000;
    std::string reasoning_effort = "medium";     ///< "none" (or empty) sends no reasoning object.
    nlohmann::json provider_routing;             ///< The "provider" object; null sends none.
    std::string app_title = "image-edit-agent";  ///< X-Title attribution header.
    std::chrono::milliseconds timeout{120000};
    std::size_t max_response_bytes = 8U << 20U;
    RetryPolicy retry;

    /// Base URL, key, model, max_tokens, reasoning effort, timeout and attempts from Settings.
    [[nodiscard]] static OpenRouterOptions from(const config::Settings& settings);
};

/// The JSON body for `request` under `options` (exposed for tests).
[[nodiscard]] nlohmann::json build_chat_body(const OpenRouterOptions& options,
                                             const ChatRequest& request);

/// Reads a 200 body: an `error` member, a choice with an error or finish_reason "error",
/// "length", or no content all throw ProviderError.
[[nodiscard]] ChatAnswer parse_chat_answer(const nlohmann::json& body);

class OpenRouterClient final {
  public:
    /// `http` must outlive the client.
    OpenRouterClient(http::HttpClient& http, OpenRouterOptions options);

    /// POST /chat/completions.
    [[nodiscard]] boost::asio::awaitable<ChatAnswer> chat(ChatRequest request);

  private:
    http::HttpClient& http_;
    OpenRouterOptions options_;
};

}  // namespace iea::providers
