#pragma once

/// image-edit-sandbox: loopback fakes of ClickUp, OpenRouter and WaveSpeed plus a file host,
/// written from ../shared/contracts (never from our clients), with an admin API that seeds
/// tasks, scripts verdicts and faults, ticks checkboxes and reads back every request.
///
/// Everything runs on one io_context thread; only image editing (libvips) runs on a worker
/// pool and hands its bytes back. All state below is touched from the io thread only.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

#include "iea/http/server.hpp"
#include "iea/logging/log.hpp"

namespace iea::sandbox {

namespace asio = boost::asio;
using json = nlohmann::json;
using http::Request;
using http::Response;

/// Command line and environment, resolved once at start.
struct Options {
    std::string bind = "127.0.0.1";
    unsigned short port = 0;
    std::filesystem::path data_dir;
    std::string scenario_file;
    /// Where webhooks go; a bare origin gets /webhook/clickup. Several URLs separated by
    /// commas stand for instances behind one load balancer: sends go round-robin.
    std::string service_url;
    std::string webhook_secret = "test-secret-1";
    std::string field_id = "00000000-aaaa-4bbb-8ccc-000000000001";
};

/// Parses argv and the environment (flags win). Throws std::invalid_argument on bad input.
[[nodiscard]] Options parse_options(int argc, char** argv);

/// One parsed part of a multipart/form-data body.
struct Part {
    std::string name;
    std::string filename;
    std::string content_type;
    std::string data;
};

/// Splits a multipart body; nothing when the content type has no boundary or the body is
/// not well formed.
[[nodiscard]] std::optional<std::vector<Part>> parse_multipart(std::string_view content_type,
                                                               std::string_view body);

/// A deterministic, visible edit: colours inverted, a magenta border drawn. PNG unless
/// `jpeg`. Throws std::runtime_error when the input is not a readable image. Thread-safe.
[[nodiscard]] std::string edit_image(const std::string& input, bool jpeg);

struct Attachment {
    std::string id;  ///< "<uuid>.<ext>"
    std::string title;
    std::string extension;
    std::string mimetype;
    std::string url;
    std::int64_t date = 0;
    std::size_t size = 0;
    bool via_api = false;  ///< Uploaded through POST /task/{id}/attachment.
};

struct Comment {
    std::string id;
    std::string hist_id;
    std::string text;
    std::int64_t date = 0;
    bool notify_all = false;
};

struct Task {
    std::string id;
    std::string name;
    std::string description;
    std::string status = "to do";
    std::int64_t created = 0;
    std::int64_t updated = 0;
    bool ai_edit = false;
    std::vector<Attachment> attachments;  ///< Oldest first: the newest upload is last.
    std::vector<Comment> comments;
    std::vector<json> status_changes;  ///< {"status","date","via_api"}
    std::vector<json> field_changes;   ///< {"field_id","value","date","via_api"}
};

struct VerdictRule {
    std::string model = "*";
    int iteration = 0;  ///< 0 matches every iteration.
    double score = 9;
    bool pass = true;
    json issues = json::array();
    std::string reasoning = "The edit matches the request.";
    std::string style = "bare";  ///< bare | fenced | prose
};

struct Scenario {
    std::vector<VerdictRule> verdicts;
    int wavespeed_delay_ms = 1500;  ///< created -> processing at a third, completed at the end
    int latency_ms = 0;             ///< Added to every provider and file answer.
    int webhook_timeout_ms = 7000;  ///< An answer slower than this counts as failed.
    int webhook_retry_ms = 1000;    ///< Pause before each redelivery.
    int webhook_max_retries = 5;
    bool api_webhooks = true;  ///< Emit webhooks for the service's own writes.
};

enum class FaultKind {
    kStatus,            ///< status code, provider-shaped error body, optional headers
    kHtml404,           ///< 404 with an HTML page (ClickUp on a wrong method/path)
    kLatency,           ///< answer normally after latency_ms
    kDrop,              ///< close the connection without answering
    kTruncate,          ///< full Content-Length, half the body, then close
    kMalformedJson,     ///< 200 with a body that is not JSON
    kErrorIn200,        ///< OpenRouter top-level error / WaveSpeed code != 200, HTTP 200
    kFailedPrediction,  ///< WaveSpeed submit accepted, prediction ends "failed"
    kOutput404,         ///< WaveSpeed prediction completes with outputs that 404
    kFinishLength,      ///< OpenRouter content cut in half, finish_reason "length"
    kContentNull,       ///< OpenRouter content null, finish_reason "length"
};

struct FaultRule {
    int id = 0;
    std::string service;  ///< clickup|openrouter|wavespeed|files, empty = any
    std::string method;   ///< empty = any
    std::string path;     ///< ECMAScript regex searched in the full request path
    std::regex path_regex;
    FaultKind kind = FaultKind::kStatus;
    int times = -1;  ///< Remaining applications; -1 = always.
    int hits = 0;
    int status = 500;
    std::optional<int> retry_after;
    std::optional<std::int64_t> ratelimit_reset;
    std::string message;
    int latency_ms = 0;
    json source;  ///< The rule as given, for GET /admin/faults.
};

/// Builds a rule from its JSON form; throws std::invalid_argument naming the bad key.
[[nodiscard]] FaultRule parse_fault(const json& spec);

struct Prediction {
    std::string id;
    std::string model;
    std::string image_url;
    bool jpeg = false;
    std::int64_t created = 0;
    std::optional<FaultKind> fault;
    std::vector<std::string> outputs;
    std::string error;
    bool finished = false;
    bool working = false;  ///< libvips edit in flight
};

/// A webhook registered through the ClickUp webhook API (POST /team/{team_id}/webhook).
/// Bookkeeping only: deliveries still go to --service-url, signed with --webhook-secret.
struct RegisteredWebhook {
    std::string id;
    std::string team_id;
    std::string endpoint;
    json events = json::array();
    json space_id;  ///< null when not scoped; ids as strings otherwise
    json folder_id;
    json list_id;
    json task_id;
    std::string status = "active";  ///< active | failing | suspended | inactive
    int fail_count = 0;
    std::string secret;
};

/// A webhook delivery attempt as recorded for GET /admin/webhooks.
struct Delivery {
    int seq = 0;
    std::string task_id;
    std::string event;
    std::string field;
    std::string history_item_id;
    int copy = 1;     ///< 1..deliveries for duplicates of one change
    int attempt = 1;  ///< 1 = first send, 2.. = redeliveries
    std::string signature_mode;
    std::int64_t sent_ms = 0;
    int status = 0;  ///< 0 = no answer (timeout or connection error)
    std::int64_t latency_ms = 0;
    bool timed_out = false;
    std::string answer;  ///< The service's response body, cut at 1 KiB.
    std::string error;
};

class Sandbox final {
  public:
    Sandbox(asio::io_context& io, Options options);
    ~Sandbox();

    /// Binds, loads the scenario file, starts accepting. Throws when the port is taken.
    void start();
    void stop();
    [[nodiscard]] unsigned short port() const { return port_; }

  private:
    struct Exchange;  // one request in flight, see listener.cpp

    // listener.cpp: accept loop, session, faults, recording
    asio::awaitable<void> accept_loop();
    asio::awaitable<void> session(asio::ip::tcp::socket socket);
    asio::awaitable<std::optional<Response>> answer(Request& request, Exchange& exchange);
    std::optional<FaultRule> match_fault(std::string_view service, const Request& request);
    void record(const Request& request, const Exchange& exchange);

    // Routes, one file per fake.
    void add_clickup_routes(http::Router& router);
    void add_openrouter_routes(http::Router& router);
    void add_wavespeed_routes(http::Router& router);
    void add_file_routes(http::Router& router);
    void add_clickup_webhook_routes(http::Router& router);  // clickup_webhooks.cpp
    void add_admin_routes(http::Router& router);

    asio::awaitable<Response> clickup_task(const Request& request);
    Response clickup_team_webhooks(const Request& request);
    Response clickup_webhook(const Request& request);
    [[nodiscard]] json registered_webhook_json(const RegisteredWebhook& webhook) const;
    asio::awaitable<Response> openrouter_chat(const Request& request);
    asio::awaitable<Response> wavespeed_submit(const Request& request);
    asio::awaitable<Response> wavespeed_poll(const Request& request);
    asio::awaitable<Response> wavespeed_upload(const Request& request);
    asio::awaitable<void> finish_prediction(std::string id);

    // State helpers (state.cpp).
    Task& create_task(const json& spec);
    Task* find_task(std::string_view id);
    Attachment store_file(std::string_view title, std::string_view data, bool via_api);
    [[nodiscard]] json task_json(const Task& task) const;
    [[nodiscard]] json admin_task_json(const Task& task) const;
    [[nodiscard]] std::string base_url() const;
    [[nodiscard]] std::string file_path_for_url(std::string_view url) const;
    void apply_scenario(const json& spec);
    void reset();
    std::string uuid();
    std::string next_history_id();

    // webhooks.cpp
    struct WebhookOptions {
        int deliveries = 1;
        int spacing_ms = 0;
        std::string signature = "valid";  // valid | wrong_secret | missing | altered
    };
    json history_item(const std::string& field, json before, json after, bool by_service);
    /// Sends `event` for `task` to the service URL with retries; returns the history item id.
    std::string emit_webhook(const Task& task,
                             const std::string& event,
                             json item,
                             const WebhookOptions& options);
    asio::awaitable<void> deliver(std::string body, Delivery base, std::chrono::milliseconds wait);
    asio::awaitable<Delivery> send_once(const std::string& body, Delivery record);

    asio::io_context& io_;
    Options options_;
    logging::Logger log_{"sandbox"};
    asio::ip::tcp::acceptor acceptor_;
    asio::thread_pool workers_{1};
    http::Router router_;
    unsigned short port_ = 0;
    bool stopping_ = false;

    Scenario scenario_;
    std::map<std::string, Task> tasks_;
    std::vector<std::string> task_order_;
    std::map<std::string, std::filesystem::path> files_;  ///< URL path -> file on disk
    std::map<std::string, Prediction> predictions_;
    std::vector<FaultRule> faults_;
    std::vector<json> requests_;
    std::vector<Delivery> deliveries_;
    std::map<std::string, RegisteredWebhook> registered_webhooks_;  ///< by id
    std::vector<std::string> registered_order_;
    std::string webhook_id_;
    int next_fault_id_ = 1;
    int next_request_seq_ = 1;
    int next_delivery_seq_ = 1;
    std::int64_t next_counter_ = 1;
    std::mt19937_64 random_;
};

/// Where webhooks go: loopback only.
struct ServiceUrl {
    unsigned short port = 0;
    std::string target;
};

/// Parses http://127.0.0.1:P[/path] (or localhost); a bare origin gets /webhook/clickup.
/// Throws std::invalid_argument for any other host or scheme.
[[nodiscard]] ServiceUrl parse_service_url(const std::string& url);

/// The URLs of a comma-separated --service-url, each parsed as above.
[[nodiscard]] std::vector<ServiceUrl> parse_service_urls(const std::string& urls);

/// Milliseconds since the Unix epoch.
[[nodiscard]] std::int64_t now_ms();

/// "<prefix>…[len=N]" for data URLs longer than a short prefix; anything else unchanged.
[[nodiscard]] json summarize_json(const json& value);

}  // namespace iea::sandbox
