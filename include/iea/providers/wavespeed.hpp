#pragma once

/// Client of WaveSpeed AI v3 (contracts section 3): submit an image edit, poll it, fetch the
/// outputs, upload input media.
///
/// Throws ProviderError with provider "wavespeed". Every prediction costs money, so a
/// submission is never repeated once WaveSpeed may have taken it: submit() retries only
/// when the server provably did not (no connection, 429, 503), never after a timeout.
/// Waiting retries the poll, never the submission; the caller keeps the prediction id and
/// can resume waiting later.

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "iea/config/settings.hpp"
#include "iea/http/client.hpp"
#include "iea/providers/retry.hpp"

namespace iea::providers {

enum class PredictionStatus { kCreated, kProcessing, kCompleted, kFailed };

[[nodiscard]] std::string_view to_string(PredictionStatus status);

struct Prediction {
    std::string id;
    PredictionStatus status = PredictionStatus::kCreated;
    std::vector<std::string> outputs;  ///< Output URLs, once completed.
    std::string error;                 ///< WaveSpeed's reason, when failed.
};

/// Reads the {"code","message","data"} envelope of submit and poll answers. A `code` other
/// than 200 is an error even inside HTTP 200 (lesson 25); so is a missing data.id.
[[nodiscard]] Prediction parse_prediction(std::string_view operation, const nlohmann::json& body);

struct WaveSpeedOptions {
    std::string base_url = "https://api.wavespeed.ai/api/v3";
    config::Secret key;
    std::chrono::milliseconds timeout{120000};           ///< Submit and upload calls.
    std::chrono::milliseconds poll_timeout{30000};       ///< One poll request.
    std::chrono::milliseconds download_timeout{120000};  ///< One output download.
    std::chrono::milliseconds poll_interval{2000};       ///< Default for wait_for.
    std::chrono::milliseconds polling_timeout{300000};   ///< Default for wait_for.
    std::size_t max_json_bytes = 4U << 20U;
    int max_download_redirects = 3;
    RetryPolicy retry;

    /// Base URL, key, timeouts, poll interval and attempts from Settings.
    [[nodiscard]] static WaveSpeedOptions from(const config::Settings& settings);
};

class WaveSpeedClient final {
  public:
    /// `http` must outlive the client.
    WaveSpeedClient(http::HttpClient& http, WaveSpeedOptions options);

    /// POST /{model_path} with `input` (prompt, images, model extras) as the body; returns
    /// the prediction id. Not idempotent (see above).
    [[nodiscard]] boost::asio::awaitable<std::string> submit(std::string model_path,
                                                             nlohmann::json input);

    /// GET /predictions/{id}/result once (with the usual retries of a read).
    [[nodiscard]] boost::asio::awaitable<Prediction> poll(std::string prediction_id);

    /// Polls every `interval` until the prediction is completed or failed (both returned as
    /// values) or `timeout` passes (kTimeout). A poll that fails transiently (network error,
    /// timeout, 5xx, 429) is polled again; 401, 404 or an envelope code other than 200 end
    /// the wait with that error.
    [[nodiscard]] boost::asio::awaitable<Prediction> wait_for(std::string prediction_id,
                                                              std::chrono::milliseconds interval,
                                                              std::chrono::milliseconds timeout);

    /// Fetches an output URL without credentials (the CDN is not the API).
    [[nodiscard]] boost::asio::awaitable<std::string> download_output(std::string url,
                                                                      std::size_t max_bytes);

    /// POST /media/upload/binary, multipart field "file"; returns data.download_url. A
    /// repeated upload only leaves an unused file, so it is retried like a read.
    [[nodiscard]] boost::asio::awaitable<std::string> upload_media(std::string bytes,
                                                                   std::string file_name,
                                                                   std::string content_type);

  private:
    [[nodiscard]] boost::asio::awaitable<nlohmann::json> call_api(std::string_view operation,
                                                                  http::ClientRequest request,
                                                                  Idempotency idempotency);

    http::HttpClient& http_;
    WaveSpeedOptions options_;
};

}  // namespace iea::providers
