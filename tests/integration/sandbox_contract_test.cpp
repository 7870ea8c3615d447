// Contract tests for image-edit-sandbox: the real binary on 127.0.0.1, port 0, checked
// against ../shared/contracts (field names and types, status codes, error shapes), plus its
// admin API: faults, verdict scripting, webhooks and request recording.

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <catch2/catch.hpp>
#include <csignal>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "iea/webhook/signature.hpp"
#include "support/harness.hpp"

namespace {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
using iea::testing::http_request;
using iea::testing::HttpReply;
using json = nlohmann::json;
using Headers = std::map<std::string, std::string>;
using namespace std::chrono_literals;

constexpr const char* kSecret = "test-secret-1";
constexpr const char* kFieldId = "00000000-aaaa-4bbb-8ccc-000000000001";
const Headers kClickUpAuth = {{"Authorization", "pk_test_token_1"}};
const Headers kBearer = {{"Authorization", "Bearer test-key-1"},
                         {"Content-Type", "application/json"}};

// A 16x16 RGB gradient, made for these tests.
constexpr const char* kPngBase64 =
    "iVBORw0KGgoAAAANSUhEUgAAABAAAAAQCAIAAACQkWg2AAABlklEQVR42hXRURVEIQhFUSMYgQhGMAIRiGCEE8EIRiACEY"
    "hABCLMG7/"
    "ZrMt1jMEcyGAN9kAHNjgDBnfwBj6IQQ5q0IMxJnMikzXZE53Y5EyY3Mmb+"
    "CQmOalJzw8IUxBhCVtQwYQjIFzhCS6EkEIJLR9YzIUs1mIvdGGLs2"
    "BxF2/hi1jkoha9PrCZG9mszd7oxjZnw+Zu3sY3sclNbXp/"
    "QJmKKEvZiiqmHAXlKk9xJZRUSmn9gDENMZaxDTXMOAbGNZ7hRhhplNH2gcM8yGEd"
    "9kEPdjgHDvfwDn6IQx7q0OcD/wK/Sr4jv9hfkG/1N/x/Fx44BCQU9Pc94zIvclmXfdGLXc79j9/Lu/"
    "glLnmpS98PPOZDHuuxH/qwx3n/5ffxHv6I"
    "Rz7q0e8DznTEWc521DHn+D/KdZ7jTjjplNP+gWAGEqxgBxpYcOIf/AYv8CCCDCro+EAyE0lWshNNLDn5P/MmL/"
    "Ekkkwq6fxAMQspVrELLaw49S/l"
    "Fq/wIoosquj6QDMbaVazG22sOf2v8Dav8SaabKrp5geIAnAQC3NfwAAAAABJRU5ErkJggg==";

/// The sandbox binary on a free port of 127.0.0.1, with a scratch data directory.
class SandboxProcess {
  public:
    explicit SandboxProcess(const std::string& service_url = {},
                            const std::vector<std::string>& extra_args = {}) {
        std::vector<std::string> argv = {
            (iea::testing::binary_dir() / "image-edit-sandbox").string(),
            "--port",
            "0",
            "--data-dir",
            iea::testing::scratch_dir("sandbox-data").string(),
            "--webhook-secret",
            kSecret,
            "--field-id",
            kFieldId};
        if (!service_url.empty()) {
            argv.push_back("--service-url");
            argv.push_back(service_url);
        }
        argv.insert(argv.end(), extra_args.begin(), extra_args.end());
        process_ = std::make_unique<iea::testing::ChildProcess>(
            argv, std::map<std::string, std::string>{{"PATH", "/usr/bin:/bin"}});
        const auto line = process_->wait_for_line(
            [](const std::string& text) {
                return text.find("Sandbox listening") != std::string::npos;
            },
            20s);
        if (!line) throw std::runtime_error("sandbox did not start: " + process_->stderr_text());
        port_ = json::parse(*line).at("port").get<unsigned short>();
    }

    [[nodiscard]] unsigned short port() const { return port_; }
    iea::testing::ChildProcess& process() { return *process_; }

    HttpReply call(const std::string& method,
                   const std::string& target,
                   const std::string& body = {},
                   const Headers& headers = {}) const {
        return http_request(port_, method, target, body, headers);
    }

    json admin(const std::string& method,
               const std::string& target,
               const json& body = json::object()) const {
        const auto reply =
            call(method, target, body.dump(), {{"Content-Type", "application/json"}});
        INFO(reply.body);
        REQUIRE(reply.status / 100 == 2);
        return json::parse(reply.body);
    }

    json create_task(json spec) const {
        if (!spec.contains("attachments")) {
            spec["attachments"] = json::array({{{"base64", kPngBase64}, {"title", "banner.png"}}});
        }
        return admin("POST", "/admin/tasks", spec);
    }

    [[nodiscard]] std::string url_path(const std::string& url) const {
        const auto origin = "http://127.0.0.1:" + std::to_string(port_);
        REQUIRE(url.starts_with(origin));
        return url.substr(origin.size());
    }

  private:
    std::unique_ptr<iea::testing::ChildProcess> process_;
    unsigned short port_ = 0;
};

/// A webhook endpoint on 127.0.0.1 that records what arrives and answers as told.
class WebhookReceiver {
  public:
    struct Received {
        std::optional<std::string> signature;
        std::string body;
    };
    /// Status and delay (ms) for the n-th delivery, counted from 0.
    using Behaviour = std::function<std::pair<int, int>(std::size_t)>;

    explicit WebhookReceiver(Behaviour behaviour)
        : behaviour_(std::move(behaviour)),
          acceptor_(io_, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
        port_ = acceptor_.local_endpoint().port();
        thread_ = std::thread([this] { serve(); });
    }

    ~WebhookReceiver() {
        stop_ = true;
        try {
            asio::io_context wake;
            asio::ip::tcp::socket socket(wake);
            socket.connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_));
        } catch (const std::exception&) {
            // Already gone: the thread exits on its own.
        }
        thread_.join();
    }

    [[nodiscard]] std::string url() const {
        return "http://127.0.0.1:" + std::to_string(port_) + "/webhook/clickup";
    }

    std::vector<Received> wait_for(std::size_t count, std::chrono::milliseconds timeout) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (std::chrono::steady_clock::now() < deadline) {
            {
                std::lock_guard lock(mutex_);
                if (received_.size() >= count) return received_;
            }
            std::this_thread::sleep_for(20ms);
        }
        std::lock_guard lock(mutex_);
        return received_;
    }

  private:
    void serve() {
        while (!stop_) {
            asio::ip::tcp::socket socket(io_);
            boost::system::error_code ec;
            acceptor_.accept(socket, ec);
            if (ec || stop_) break;
            boost::beast::flat_buffer buffer;
            bhttp::request<bhttp::string_body> request;
            bhttp::read(socket, buffer, request, ec);
            if (ec) continue;
            std::size_t index = 0;
            {
                std::lock_guard lock(mutex_);
                Received got;
                if (const auto found = request.find("X-Signature"); found != request.end()) {
                    got.signature = std::string(found->value());
                }
                got.body = request.body();
                received_.push_back(std::move(got));
                index = received_.size() - 1;
            }
            const auto [status, delay] = behaviour_(index);
            std::this_thread::sleep_for(std::chrono::milliseconds(delay));
            bhttp::response<bhttp::string_body> response{static_cast<bhttp::status>(status), 11};
            response.set(bhttp::field::content_type, "application/json");
            response.body() = R"({"status":"accepted"})";
            response.prepare_payload();
            bhttp::write(socket, response, ec);  // the sandbox may have given up: fine
        }
    }

    Behaviour behaviour_;
    asio::io_context io_;
    asio::ip::tcp::acceptor acceptor_;
    unsigned short port_ = 0;
    std::atomic<bool> stop_{false};
    std::mutex mutex_;
    std::vector<Received> received_;
    std::thread thread_;
};

std::string multipart_body(const std::string& boundary,
                           const std::string& name,
                           const std::string& filename,
                           const std::string& data) {
    return "--" + boundary + "\r\nContent-Disposition: form-data; name=\"" + name +
           "\"; filename=\"" + filename + "\"\r\nContent-Type: image/png\r\n\r\n" + data +
           "\r\n--" + boundary + "--\r\n";
}

std::string png_bytes() {
    // Decoding through the file host keeps the tests free of a base64 helper.
    static std::string bytes;
    if (bytes.empty()) {
        SandboxProcess sandbox;
        const auto task = sandbox.create_task({{"id", "png"}});
        bytes = sandbox.call("GET", sandbox.url_path(task["attachments"][0]["url"])).body;
    }
    return bytes;
}

json chat_body(const std::string& system,
               const std::string& user_text,
               const std::vector<std::string>& image_urls = {}) {
    json parts = json::array({{{"type", "text"}, {"text", user_text}}});
    for (const auto& url : image_urls)
        parts.push_back({{"type", "image_url"}, {"image_url", {{"url", url}}}});
    return {{"model", "anthropic/claude-sonnet-4.5"},
            {"max_tokens", 2000},
            {"messages",
             json::array({{{"role", "system"}, {"content", system}},
                          {{"role", "user"}, {"content", parts}}})}};
}

json poll_until_done(const SandboxProcess& sandbox,
                     const std::string& id,
                     std::vector<std::string>& seen) {
    const auto deadline = std::chrono::steady_clock::now() + 15s;
    while (std::chrono::steady_clock::now() < deadline) {
        const auto reply =
            sandbox.call("GET", "/wavespeed/api/v3/predictions/" + id + "/result", {}, kBearer);
        REQUIRE(reply.status == 200);
        const auto data = json::parse(reply.body).at("data");
        const auto status = data.at("status").get<std::string>();
        if (seen.empty() || seen.back() != status) seen.push_back(status);
        if (status == "completed" || status == "failed") return data;
        std::this_thread::sleep_for(50ms);
    }
    FAIL("prediction did not finish");
    return {};
}

std::string submit_edit(const SandboxProcess& sandbox, const std::string& image_url, bool jpeg) {
    json body = {{"prompt", "Make the sky turquoise"},
                 {"images", {image_url}},
                 {"enable_base64_output", false},
                 {"enable_sync_mode", false}};
    if (jpeg) body["output_format"] = "jpeg";
    const auto reply =
        sandbox.call("POST", "/wavespeed/api/v3/google/nano-banana/edit", body.dump(), kBearer);
    REQUIRE(reply.status == 200);
    const auto envelope = json::parse(reply.body);
    CHECK(envelope.at("code") == 200);
    CHECK(envelope.at("data").at("status") == "created");
    return envelope.at("data").at("id").get<std::string>();
}

}  // namespace

TEST_CASE("sandbox: get task answers with the contract's task shape", "[sandbox]") {
    SandboxProcess sandbox;
    sandbox.create_task({{"id", "t1"}, {"name", "Banner"}, {"description", "Make it blue"}});

    SECTION("fields and types of contract 1.3") {
        const auto reply = sandbox.call("GET", "/clickup/api/v2/task/t1", {}, kClickUpAuth);
        REQUIRE(reply.status == 200);
        const auto task = json::parse(reply.body);
        CHECK(task.at("id") == "t1");
        CHECK(task.at("description") == "Make it blue");
        CHECK(task.at("status").at("status") == "to do");
        CHECK(task.at("status").at("orderindex").is_number_integer());
        CHECK(task.at("date_created").is_string());
        CHECK(task.at("list").at("id").is_string());
        const auto& attachment = task.at("attachments").at(0);
        for (const char* key :
             {"id", "date", "title", "extension", "mimetype", "url", "url_w_query"}) {
            CHECK(attachment.at(key).is_string());
        }
        CHECK(attachment.at("size").is_number_integer());
        CHECK(attachment.at("url").get<std::string>().find("/files/") != std::string::npos);
        const auto& field = task.at("custom_fields").at(0);
        CHECK(field.at("id") == kFieldId);
        CHECK(field.at("type") == "checkbox");
        CHECK_FALSE(field.contains("value"));
    }
    SECTION("a ticked checkbox reads as the string true") {
        sandbox.admin("POST", "/admin/tasks/t1/tick");
        const auto task =
            json::parse(sandbox.call("GET", "/clickup/api/v2/task/t1", {}, kClickUpAuth).body);
        CHECK(task.at("custom_fields").at(0).at("value") == "true");
    }
    SECTION("no Authorization header: 401 OAUTH_017") {
        const auto reply = sandbox.call("GET", "/clickup/api/v2/task/t1");
        CHECK(reply.status == 401);
        CHECK(json::parse(reply.body).at("ECODE") == "OAUTH_017");
        CHECK(json::parse(reply.body).at("err").is_string());
    }
    SECTION("unknown task: 404 with err and ECODE") {
        const auto reply = sandbox.call("GET", "/clickup/api/v2/task/missing", {}, kClickUpAuth);
        CHECK(reply.status == 404);
        CHECK(json::parse(reply.body).contains("ECODE"));
    }
}

TEST_CASE("sandbox: file host serves without auth and records credentials sent", "[sandbox]") {
    SandboxProcess sandbox;
    const auto task = sandbox.create_task({{"id", "t1"}});
    const auto path = sandbox.url_path(task["attachments"][0]["url"]);

    CHECK(sandbox.call("GET", path).status == 200);
    CHECK(sandbox.call("GET", path, {}, kClickUpAuth).status == 200);
    CHECK(sandbox.call("GET", "/files/nothing/here.png").status == 404);

    const auto requests = sandbox.admin("GET", "/admin/requests?service=files");
    REQUIRE(requests.size() == 3);
    CHECK(requests[0].at("authorization") == false);
    CHECK(requests[1].at("authorization") == true);
    CHECK(requests[0].at("status") == 200);
    CHECK(requests[2].at("status") == 404);
}

TEST_CASE("sandbox: attachment upload accepts every part name the docs allow", "[sandbox]") {
    SandboxProcess sandbox;
    sandbox.create_task({{"id", "t1"}});
    const auto image = png_bytes();

    for (const std::string name : {"attachment", "attachment[]", "attachment[0]"}) {
        INFO(name);
        const auto reply =
            sandbox.call("POST",
                         "/clickup/api/v2/task/t1/attachment",
                         multipart_body("xyzBOUNDARY", name, name + ".png", image),
                         {{"Authorization", "pk_test_token_1"},
                          {"Content-Type", "multipart/form-data; boundary=xyzBOUNDARY"}});
        REQUIRE(reply.status == 200);
        const auto answer = json::parse(reply.body);
        CHECK(answer.size() == 8);
        CHECK(answer.at("version") == "0");
        CHECK(answer.at("date").is_number_integer());
        CHECK(answer.at("title") == name + ".png");
        CHECK(sandbox.call("GET", sandbox.url_path(answer.at("url"))).body == image);
    }
    const auto task =
        json::parse(sandbox.call("GET", "/clickup/api/v2/task/t1", {}, kClickUpAuth).body);
    REQUIRE(task.at("attachments").size() == 4);
    CHECK(task.at("attachments").back().at("title") == "attachment[0].png");

    const auto wrong = sandbox.call("POST",
                                    "/clickup/api/v2/task/t1/attachment",
                                    multipart_body("b", "file", "x.png", image),
                                    {{"Authorization", "pk_test_token_1"},
                                     {"Content-Type", "multipart/form-data; boundary=b"}});
    CHECK(wrong.status == 400);
}

TEST_CASE("sandbox: field, status and comment writes answer as the contract says", "[sandbox]") {
    SandboxProcess sandbox;
    sandbox.create_task({{"id", "t1"}, {"ai_edit", true}});

    SECTION("set custom field answers {}") {
        const auto reply = sandbox.call("POST",
                                        std::string("/clickup/api/v2/task/t1/field/") + kFieldId,
                                        R"({"value":false})",
                                        kClickUpAuth);
        CHECK(reply.status == 200);
        CHECK(json::parse(reply.body) == json::object());
        CHECK(sandbox.admin("GET", "/admin/tasks/t1").at("ai_edit") == false);
    }
    SECTION("status update answers the task object") {
        const auto reply = sandbox.call(
            "PUT", "/clickup/api/v2/task/t1", R"({"status":"Complete"})", kClickUpAuth);
        CHECK(reply.status == 200);
        CHECK(json::parse(reply.body).at("status").at("status") == "complete");
        CHECK(json::parse(reply.body).at("status").at("type") == "closed");
    }
    SECTION("comment answers id, hist_id and date") {
        const auto reply = sandbox.call("POST",
                                        "/clickup/api/v2/task/t1/comment",
                                        R"({"comment_text":"Done","notify_all":true})",
                                        kClickUpAuth);
        REQUIRE(reply.status == 200);
        const auto answer = json::parse(reply.body);
        CHECK(answer.at("id").is_string());
        CHECK(answer.at("hist_id").is_string());
        CHECK(answer.at("date").is_number_integer());
        const auto state = sandbox.admin("GET", "/admin/tasks/t1");
        CHECK(state.at("comments").at(0).at("comment_text") == "Done");
        CHECK(state.at("comments").at(0).at("notify_all") == true);
    }
    SECTION("comment without comment_text is refused with err and ECODE") {
        const auto reply = sandbox.call(
            "POST", "/clickup/api/v2/task/t1/comment", R"({"notify_all":true})", kClickUpAuth);
        CHECK(reply.status == 400);
        CHECK(json::parse(reply.body).contains("ECODE"));
    }
}

TEST_CASE("sandbox: clickup webhook management answers as the API reference says",
          "[sandbox]") {
    SandboxProcess sandbox;
    const std::string team = "/clickup/api/v2/team/9000001/webhook";
    const auto created = sandbox.call(
        "POST",
        team,
        R"({"endpoint":"https://edit.example.invalid/hook","events":"*","space_id":790})",
        kClickUpAuth);
    REQUIRE(created.status == 200);
    const auto answer = json::parse(created.body);
    const auto& webhook = answer.at("webhook");
    CHECK(answer.at("id") == webhook.at("id"));
    CHECK(webhook.at("team_id") == 9000001);
    CHECK(webhook.at("events") == json::array({"*"}));
    CHECK(webhook.at("space_id") == "790");
    CHECK(webhook.at("list_id").is_null());
    CHECK(webhook.at("health") == json{{"status", "active"}, {"fail_count", 0}});
    CHECK(webhook.at("secret").get<std::string>().size() == 64);
    const auto id = webhook.at("id").get<std::string>();

    SECTION("list holds it, only under its own team") {
        CHECK(json::parse(sandbox.call("GET", team, {}, kClickUpAuth).body).at("webhooks").size() ==
              1);
        const auto other = sandbox.call("GET", "/clickup/api/v2/team/42/webhook", {}, kClickUpAuth);
        CHECK(json::parse(other.body).at("webhooks").empty());
    }
    SECTION("update needs endpoint, events and status; active resets fail_count") {
        sandbox.admin("POST", "/admin/clickup-webhooks/" + id,
                      {{"status", "suspended"}, {"fail_count", 100}});
        const auto partial = sandbox.call("PUT", "/clickup/api/v2/webhook/" + id,
                                          R"({"status":"active"})", kClickUpAuth);
        CHECK(partial.status == 400);
        CHECK(json::parse(partial.body).contains("ECODE"));
        const auto body = json{{"endpoint", "https://edit.example.invalid/hook"},
                               {"events", {"taskUpdated"}},
                               {"status", "active"}};
        const auto updated =
            sandbox.call("PUT", "/clickup/api/v2/webhook/" + id, body.dump(), kClickUpAuth);
        REQUIRE(updated.status == 200);
        CHECK(json::parse(updated.body).at("webhook").at("health") ==
              json{{"status", "active"}, {"fail_count", 0}});
    }
    SECTION("delete answers {}, then the id is unknown") {
        const auto target = "/clickup/api/v2/webhook/" + id;
        const auto removed = sandbox.call("DELETE", target, {}, kClickUpAuth);
        CHECK(removed.status == 200);
        CHECK(json::parse(removed.body) == json::object());
        const auto again = sandbox.call("DELETE", target, {}, kClickUpAuth);
        CHECK(again.status == 404);
        CHECK(json::parse(again.body).at("ECODE") == "WEBHOOK_404");
    }
    SECTION("refusals: no token, no endpoint, unknown event") {
        CHECK(sandbox.call("GET", team).status == 401);
        CHECK(sandbox.call("POST", team, R"({"events":["taskUpdated"]})", kClickUpAuth).status ==
              400);
        CHECK(sandbox
                  .call("POST", team, R"({"endpoint":"https://x.invalid","events":["taskEaten"]})",
                        kClickUpAuth)
                  .status == 400);
    }
}

TEST_CASE("sandbox: openrouter checks the request shape", "[sandbox]") {
    SandboxProcess sandbox;
    const std::string png_url = std::string("data:image/png;base64,") + kPngBase64;
    const auto post = [&](const json& body, const Headers& headers = kBearer) {
        return sandbox.call("POST", "/openrouter/api/v1/chat/completions", body.dump(), headers);
    };

    SECTION("a good request gets the contract 2.2 answer") {
        const auto reply =
            post(chat_body("You rewrite requests.", "Request: make it blue", {png_url}));
        REQUIRE(reply.status == 200);
        const auto answer = json::parse(reply.body);
        CHECK(answer.at("object") == "chat.completion");
        CHECK(answer.at("choices").at(0).at("finish_reason") == "stop");
        CHECK(answer.at("choices").at(0).at("message").at("content").is_string());
        CHECK(answer.at("usage").at("total_tokens").is_number_integer());
    }
    SECTION("no bearer token: 401 in the error form") {
        const auto reply = post(chat_body("s", "u"), {{"Content-Type", "application/json"}});
        CHECK(reply.status == 401);
        CHECK(json::parse(reply.body).at("error").at("code") == 401);
    }
    SECTION("image part before the text part: 400") {
        auto body = chat_body("s", "u", {png_url});
        std::swap(body["messages"][1]["content"][0], body["messages"][1]["content"][1]);
        CHECK(post(body).status == 400);
    }
    SECTION("undecodable data URL: 400") {
        CHECK(post(chat_body("s", "u", {"data:image/png;base64,@@@@"})).status == 400);
    }
    SECTION("image over 5 MB of base64: 400 naming the limit") {
        const auto reply = post(chat_body(
            "s", "u", {"data:image/png;base64," + std::string(5 * 1024 * 1024 + 4, 'A')}));
        CHECK(reply.status == 400);
        CHECK(
            json::parse(reply.body).at("error").at("message").get<std::string>().find("5242880") !=
            std::string::npos);
    }
}

TEST_CASE("sandbox: openrouter answers by purpose and scripted verdicts", "[sandbox]") {
    SandboxProcess sandbox;
    const auto ask = [&](const std::string& system, const std::string& user) {
        const auto reply = sandbox.call(
            "POST", "/openrouter/api/v1/chat/completions", chat_body(system, user).dump(), kBearer);
        REQUIRE(reply.status == 200);
        return json::parse(reply.body)["choices"][0]["message"]["content"].get<std::string>();
    };
    sandbox.admin(
        "POST",
        "/admin/scenario",
        {{"verdicts",
          {{{"model", "nano-banana"},
            {"iteration", 1},
            {"score", 5},
            {"pass", false},
            {"issues", {"font differs"}},
            {"style", "fenced"}},
           {{"model", "*"}, {"iteration", 2}, {"score", 9}, {"pass", true}, {"style", "prose"}},
           {{"model", "*"}, {"score", 8.5}, {"pass", true}, {"style", "bare"}}}}});

    SECTION("enhancement echoes the request for the model") {
        const auto text =
            ask("You write prompts.",
                "Reference: task=t1 model=wan-2.5-edit iteration=1\nRequest: make it blue");
        CHECK(text == "Edit for wan-2.5-edit: make it blue");
    }
    SECTION("split answers one edit per sentence") {
        const auto text = ask("Purpose: split\nSplit it.",
                              "Request: Make it blue. Write SALE; change 50% to 70%");
        CHECK(json::parse(text) ==
              json::array({"Make it blue", "Write SALE", "change 50% to 70%"}));
    }
    SECTION("fenced verdict for the first model and iteration") {
        const auto text =
            ask("Purpose: validation", "Reference: task=t1 model=nano-banana iteration=1");
        REQUIRE(text.starts_with("```json\n"));
        const auto verdict = json::parse(text.substr(8, text.rfind("```") - 8));
        CHECK(verdict.at("score") == 5);
        CHECK(verdict.at("pass") == false);
        CHECK(verdict.at("issues") == json::array({"font differs"}));
    }
    SECTION("prose before the JSON on iteration 2") {
        const auto text =
            ask("Purpose: validation", "Reference: task=t1 model=nano-banana iteration=2");
        REQUIRE(text.find('{') > 0);
        CHECK(json::parse(text.substr(text.find('{'))).at("score") == 9);
    }
    SECTION("bare JSON as the fallback, also without a Reference line") {
        CHECK(json::parse(ask("Purpose: validation", "no reference")).at("score") == 8.5);
    }
}

TEST_CASE("sandbox: wavespeed prediction runs created, processing, completed with a real edit",
          "[sandbox]") {
    SandboxProcess sandbox;
    sandbox.admin("POST", "/admin/scenario", {{"wavespeed_delay_ms", 600}});
    const auto task = sandbox.create_task({{"id", "t1"}});
    const auto input_url = task["attachments"][0]["url"].get<std::string>();
    const auto input = sandbox.call("GET", sandbox.url_path(input_url)).body;

    std::vector<std::string> seen;
    const auto data = poll_until_done(sandbox, submit_edit(sandbox, input_url, false), seen);
    CHECK(seen == std::vector<std::string>{"created", "processing", "completed"});
    REQUIRE(data.at("outputs").size() == 1);
    const auto output = sandbox.call("GET", sandbox.url_path(data["outputs"][0]));
    CHECK(output.status == 200);
    CHECK(output.body.starts_with("\x89PNG"));
    CHECK(output.body != input);

    SECTION("the same input gives the same output") {
        std::vector<std::string> again;
        const auto second = poll_until_done(sandbox, submit_edit(sandbox, input_url, false), again);
        CHECK(sandbox.call("GET", sandbox.url_path(second["outputs"][0])).body == output.body);
    }
    SECTION("output_format jpeg gives a JPEG") {
        std::vector<std::string> again;
        const auto jpeg = poll_until_done(sandbox, submit_edit(sandbox, input_url, true), again);
        CHECK(
            sandbox.call("GET", sandbox.url_path(jpeg["outputs"][0])).body.starts_with("\xFF\xD8"));
    }
    SECTION("an image that is not on the sandbox's file host is never fetched") {
        std::vector<std::string> again;
        const auto failed =
            poll_until_done(sandbox, submit_edit(sandbox, "http://127.0.0.2/x.png", false), again);
        CHECK(failed.at("status") == "failed");
        CHECK_FALSE(failed.at("error").get<std::string>().empty());
    }
    SECTION("no bearer token: 401") {
        CHECK(sandbox.call("GET", "/wavespeed/api/v3/predictions/x/result").status == 401);
    }
    SECTION("media upload answers a download_url on the file host") {
        const auto reply = sandbox.call(
            "POST",
            "/wavespeed/api/v3/media/upload/binary",
            multipart_body("b", "file", "in.png", input),
            {{"Authorization", "Bearer k"}, {"Content-Type", "multipart/form-data; boundary=b"}});
        REQUIRE(reply.status == 200);
        const auto answer = json::parse(reply.body);
        CHECK(answer.at("code") == 200);
        CHECK(sandbox.call("GET", sandbox.url_path(answer["data"]["download_url"])).body == input);
    }
}

TEST_CASE("sandbox: scripted faults", "[sandbox]") {
    SandboxProcess sandbox;
    sandbox.create_task({{"id", "t1"}});
    const auto add_fault = [&](const json& rule) { sandbox.admin("POST", "/admin/faults", rule); };
    const auto chat = [&] {
        return sandbox.call("POST",
                            "/openrouter/api/v1/chat/completions",
                            chat_body("s", "Request: x").dump(),
                            kBearer);
    };

    SECTION("429 with Retry-After in OpenRouter's error form, twice, then normal") {
        add_fault({{"service", "openrouter"}, {"status", 429}, {"retry_after", 3}, {"times", 2}});
        for (int i = 0; i < 2; ++i) {
            auto reply = chat();
            CHECK(reply.status == 429);
            CHECK(reply.headers["retry-after"] == "3");
            CHECK(json::parse(reply.body).at("error").at("code") == 429);
        }
        CHECK(chat().status == 200);
    }
    SECTION("ClickUp 429 with X-RateLimit-Reset and err/ECODE") {
        add_fault({{"service", "clickup"},
                   {"path", "/task/t1$"},
                   {"status", 429},
                   {"ratelimit_reset_in", 2}});
        auto reply = sandbox.call("GET", "/clickup/api/v2/task/t1", {}, kClickUpAuth);
        CHECK(reply.status == 429);
        CHECK_FALSE(reply.headers["x-ratelimit-reset"].empty());
        CHECK(json::parse(reply.body).contains("ECODE"));
    }
    SECTION("HTML 404") {
        add_fault({{"service", "clickup"}, {"kind", "html_404"}});
        const auto reply = sandbox.call("GET", "/clickup/api/v2/task/t1", {}, kClickUpAuth);
        CHECK(reply.status == 404);
        CHECK(reply.body.starts_with("<!DOCTYPE html>"));
    }
    SECTION("added latency") {
        add_fault({{"service", "openrouter"}, {"kind", "latency"}, {"latency_ms", 400}});
        const auto started = std::chrono::steady_clock::now();
        CHECK(chat().status == 200);
        CHECK(std::chrono::steady_clock::now() - started >= 400ms);
    }
    SECTION("dropped connection") {
        add_fault({{"service", "openrouter"}, {"kind", "drop"}});
        CHECK_THROWS(chat());
        CHECK(sandbox.admin("GET", "/admin/requests?service=openrouter")[0].at("dropped") == true);
    }
    SECTION("truncated body") {
        add_fault({{"service", "openrouter"}, {"kind", "truncate"}});
        CHECK_THROWS(chat());
    }
    SECTION("malformed JSON") {
        add_fault({{"service", "openrouter"}, {"kind", "malformed_json"}});
        const auto reply = chat();
        CHECK(reply.status == 200);
        CHECK(json::parse(reply.body, nullptr, false).is_discarded());
    }
    SECTION("error inside a 200 body") {
        add_fault({{"service", "openrouter"}, {"kind", "error_in_200"}});
        add_fault({{"service", "wavespeed"}, {"kind", "error_in_200"}, {"status", 500}});
        const auto reply = chat();
        CHECK(reply.status == 200);
        CHECK(json::parse(reply.body).at("error").at("code") == 502);
        const auto ws = sandbox.call("GET", "/wavespeed/api/v3/predictions/x/result", {}, kBearer);
        CHECK(ws.status == 200);
        CHECK(json::parse(ws.body).at("code") == 500);
    }
    SECTION("cut-off answers: finish_reason length, content null") {
        add_fault({{"service", "openrouter"}, {"kind", "finish_length"}, {"times", 1}});
        add_fault({{"service", "openrouter"}, {"kind", "content_null"}, {"times", 1}});
        const auto first = json::parse(chat().body)["choices"][0];
        CHECK(first.at("finish_reason") == "length");
        const auto second = json::parse(chat().body)["choices"][0];
        CHECK(second.at("message").at("content").is_null());
    }
    SECTION("failed prediction and outputs that 404") {
        sandbox.admin("POST", "/admin/scenario", {{"wavespeed_delay_ms", 100}});
        const auto url =
            sandbox.admin("GET", "/admin/tasks/t1")["attachments"][0]["url"].get<std::string>();
        add_fault({{"service", "wavespeed"},
                   {"method", "POST"},
                   {"kind", "failed_prediction"},
                   {"times", 1}});
        add_fault(
            {{"service", "wavespeed"}, {"method", "POST"}, {"kind", "output_404"}, {"times", 1}});
        std::vector<std::string> seen;
        const auto failed = poll_until_done(sandbox, submit_edit(sandbox, url, false), seen);
        CHECK(failed.at("status") == "failed");
        CHECK_FALSE(failed.at("error").get<std::string>().empty());
        const auto missing = poll_until_done(sandbox, submit_edit(sandbox, url, false), seen);
        REQUIRE(missing.at("status") == "completed");
        CHECK(sandbox.call("GET", sandbox.url_path(missing["outputs"][0])).status == 404);
    }
    SECTION("file host 403, and DELETE clears every rule") {
        const auto path =
            sandbox.url_path(sandbox.admin("GET", "/admin/tasks/t1")["attachments"][0]["url"]);
        add_fault({{"service", "files"}, {"status", 403}});
        CHECK(sandbox.call("GET", path).status == 403);
        sandbox.admin("DELETE", "/admin/faults");
        CHECK(sandbox.call("GET", path).status == 200);
    }
}

TEST_CASE("sandbox: webhooks are signed, duplicated and redelivered", "[sandbox]") {
    // The first delivery fails with 500, the second is too slow, the rest succeed at once.
    WebhookReceiver receiver([](std::size_t n) -> std::pair<int, int> {
        if (n == 0) return {500, 0};
        if (n == 1) return {200, 600};
        return {200, 0};
    });
    SandboxProcess sandbox(receiver.url());
    sandbox.admin(
        "POST", "/admin/scenario", {{"webhook_timeout_ms", 300}, {"webhook_retry_ms", 50}});
    sandbox.create_task({{"id", "t1"}});

    const auto tick =
        sandbox.admin("POST", "/admin/tasks/t1/tick", {{"deliveries", 2}, {"spacing_ms", 1500}});
    const auto got = receiver.wait_for(4, 10s);
    REQUIRE(got.size() >= 4);
    for (const auto& delivery : got) {
        REQUIRE(delivery.signature);
        CHECK(iea::webhook::verify_signature(kSecret, delivery.body, *delivery.signature) ==
              iea::webhook::Verification::kValid);
        CHECK(delivery.body == got[0].body);
    }
    const auto payload = json::parse(got[0].body);
    CHECK(payload.at("event") == "taskUpdated");
    CHECK(payload.at("task_id") == "t1");
    CHECK(payload.at("webhook_id") == tick.at("webhook_id"));
    const auto& item = payload.at("history_items").at(0);
    CHECK(item.at("id") == tick.at("history_item_id"));
    CHECK(item.at("field") == "custom_field");
    CHECK(item.at("after") == "true");
    CHECK(item.at("custom_field").at("id") == kFieldId);
    CHECK(item.at("user").at("id").is_number_integer());

    std::this_thread::sleep_for(300ms);
    const auto log = sandbox.admin("GET", "/admin/webhooks");
    REQUIRE(log.size() >= 4);
    CHECK(log[0].at("status") == 500);
    CHECK(log[1].at("timed_out") == true);
    CHECK(log[1].at("attempt") == 2);
    CHECK(log[2].at("status") == 200);
    CHECK(log[2].at("attempt") == 3);
    CHECK(log[3].at("copy") == 2);
    CHECK(log[3].at("latency_ms").is_number_integer());

    SECTION("the service's own untick comes back as a webhook with after null") {
        sandbox.call("POST",
                     std::string("/clickup/api/v2/task/t1/field/") + kFieldId,
                     R"({"value":false})",
                     kClickUpAuth);
        const auto more = receiver.wait_for(5, 5s);
        REQUIRE(more.size() >= 5);
        const auto own = json::parse(more.back().body).at("history_items").at(0);
        CHECK(own.at("field") == "custom_field");
        CHECK(own.at("after").is_null());
        CHECK(own.at("id") != item.at("id"));
    }
}

TEST_CASE("sandbox: signature modes break the signature on request", "[sandbox]") {
    WebhookReceiver receiver([](std::size_t) -> std::pair<int, int> { return {200, 0}; });
    SandboxProcess sandbox(receiver.url());
    sandbox.create_task({{"id", "t1"}});
    sandbox.admin("POST", "/admin/tasks/t1/tick", {{"signature", "wrong_secret"}});
    sandbox.admin("POST", "/admin/tasks/t1/tick", {{"signature", "missing"}});
    sandbox.admin("POST", "/admin/tasks/t1/tick", {{"signature", "altered"}});
    const auto got = receiver.wait_for(3, 5s);
    REQUIRE(got.size() == 3);
    int invalid = 0;
    for (const auto& delivery : got) {
        if (!delivery.signature ||
            iea::webhook::verify_signature(kSecret, delivery.body, *delivery.signature) !=
                iea::webhook::Verification::kValid) {
            ++invalid;
        }
    }
    CHECK(invalid == 3);
}

TEST_CASE("sandbox: every request is recorded in order without secrets or image bytes",
          "[sandbox]") {
    SandboxProcess sandbox;
    sandbox.create_task({{"id", "t1"}});
    const std::string png_url = std::string("data:image/png;base64,") + kPngBase64;
    sandbox.call("GET", "/clickup/api/v2/task/t1", {}, kClickUpAuth);
    sandbox.call("POST",
                 "/openrouter/api/v1/chat/completions",
                 chat_body("s", "u", {png_url}).dump(),
                 kBearer);
    sandbox.call("POST",
                 "/clickup/api/v2/task/t1/attachment",
                 multipart_body("b", "attachment", "a.png", "xyz"),
                 {{"Authorization", "pk_test_token_1"},
                  {"Content-Type", "multipart/form-data; boundary=b"}});

    const auto all = sandbox.admin("GET", "/admin/requests");
    REQUIRE(all.size() == 3);
    CHECK(all[0].at("seq") < all[1].at("seq"));
    CHECK(all[0].at("service") == "clickup");
    CHECK(all[0].at("authorization") == true);
    CHECK(all[0].at("finished_ms") >= all[0].at("started_ms"));
    CHECK(all.dump().find("pk_test_token_1") == std::string::npos);
    CHECK(all.dump().find("test-key-1") == std::string::npos);
    const auto url =
        all[1]["body"]["messages"][1]["content"][1]["image_url"]["url"].get<std::string>();
    CHECK(url.size() < 100);
    CHECK(url.find("len=") != std::string::npos);
    CHECK(all[2]["body"]["parts"][0].at("name") == "attachment");
    CHECK(all[2]["body"]["parts"][0].at("size") == 3);
    CHECK(sandbox.admin("GET", "/admin/requests?service=openrouter").size() == 1);

    sandbox.admin("POST", "/admin/reset");
    CHECK(sandbox.admin("GET", "/admin/requests").empty());
}

TEST_CASE("sandbox: a scenario file seeds tasks and rules at start and on reset", "[sandbox]") {
    const auto file = iea::testing::scratch_dir("scenario") / "scenario.json";
    const json scenario = {
        {"tasks",
         {{{"id", "seeded"},
           {"description", "Make it blue"},
           {"ai_edit", true},
           {"attachments", {{{"base64", kPngBase64}, {"title", "a.png"}}}}}}},
        {"faults", {{{"service", "clickup"}, {"method", "PUT"}, {"status", 503}}}},
        {"verdicts", {{{"model", "*"}, {"score", 3}, {"pass", false}}}}};
    std::ofstream(file) << scenario.dump();
    SandboxProcess sandbox({}, {"--scenario", file.string()});

    const auto check = [&] {
        const auto task = sandbox.call("GET", "/clickup/api/v2/task/seeded", {}, kClickUpAuth);
        REQUIRE(task.status == 200);
        CHECK(json::parse(task.body)["custom_fields"][0]["value"] == "true");
        CHECK(
            sandbox
                .call(
                    "PUT", "/clickup/api/v2/task/seeded", R"({"status":"complete"})", kClickUpAuth)
                .status == 503);
        CHECK(sandbox.admin("GET", "/admin/scenario")["verdicts"][0]["score"] == 3);
    };
    check();
    sandbox.admin("POST", "/admin/tasks", {{"id", "extra"}});
    sandbox.admin("POST", "/admin/reset");
    check();
    CHECK(sandbox.call("GET", "/clickup/api/v2/task/extra", {}, kClickUpAuth).status == 404);
}

TEST_CASE("sandbox: SIGTERM stops it with exit code 0", "[sandbox]") {
    SandboxProcess sandbox;
    sandbox.process().signal(SIGTERM);
    CHECK(sandbox.process().wait_exit(10s) == 0);
}
