#include "support/harness.hpp"
#include "support/redis_server.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

namespace iea::testing {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;

std::optional<std::filesystem::path> shared_dir() {
    const auto dir = std::filesystem::path(IEA_SOURCE_DIR).parent_path() / "shared";
    if (std::filesystem::is_directory(dir / "corpus")) return dir;
    return std::nullopt;
}

std::filesystem::path binary_dir() { return IEA_BINARY_DIR; }

std::string read_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read " + path.string());
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

std::filesystem::path scratch_dir(const std::string& name) {
    static std::random_device seed;
    const auto dir = binary_dir() / "test-scratch" /
                     (name + "-" + std::to_string(::getpid()) + "-" + std::to_string(seed()));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    return dir;
}

HttpReply http_request(unsigned short port,
                       const std::string& method,
                       const std::string& target,
                       const std::string& body,
                       const std::map<std::string, std::string>& headers,
                       std::chrono::milliseconds timeout) {
    asio::io_context io;
    beast::tcp_stream stream(io);
    stream.expires_after(timeout);
    stream.connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));

    bhttp::request<bhttp::string_body> request{bhttp::string_to_verb(method), target, 11};
    request.set(bhttp::field::host, "127.0.0.1");
    for (const auto& [name, value] : headers) request.set(name, value);
    request.body() = body;
    request.prepare_payload();
    bhttp::write(stream, request);

    beast::flat_buffer buffer;
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(64 * 1024 * 1024);
    bhttp::read(stream, buffer, parser);
    const auto& response = parser.get();

    HttpReply reply;
    reply.status = static_cast<int>(response.result_int());
    for (const auto& field : response) {
        std::string name(field.name_string());
        for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        reply.headers[name] = std::string(field.value());
    }
    reply.body = response.body();
    return reply;
}

ChildProcess::ChildProcess(std::vector<std::string> argv, std::map<std::string, std::string> env) {
    const auto dir = scratch_dir("child");
    out_path_ = dir / "stdout";
    err_path_ = dir / "stderr";
    std::ofstream(out_path_).flush();  // exist before the child starts, for early readers
    std::ofstream(err_path_).flush();

    std::vector<std::string> env_strings;
    for (const auto& [key, value] : env) env_strings.push_back(key + "=" + value);

    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
        const int out = ::open(out_path_.c_str(), O_WRONLY | O_APPEND, 0644);
        const int err = ::open(err_path_.c_str(), O_WRONLY | O_APPEND, 0644);
        ::dup2(out, 1);
        ::dup2(err, 2);
        std::vector<char*> args;
        for (auto& arg : argv) args.push_back(arg.data());
        args.push_back(nullptr);
        std::vector<char*> envp;
        for (auto& entry : env_strings) envp.push_back(entry.data());
        envp.push_back(nullptr);
        ::execve(args[0], args.data(), envp.data());
        ::_exit(127);
    }
}

ChildProcess::~ChildProcess() {
    if (!exit_code_) {
        ::kill(pid_, SIGKILL);
        (void)wait_exit(std::chrono::seconds(10));
    }
}

std::optional<std::string> ChildProcess::wait_for_line(
    const std::function<bool(const std::string&)>& match, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        std::istringstream lines(stdout_text());
        for (std::string line; std::getline(lines, line);) {
            if (match(line)) return line;
        }
        if (exit_code_ || ::waitpid(pid_, nullptr, WNOHANG) == pid_) {
            exit_code_ = exit_code_.value_or(-1);
            return std::nullopt;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return std::nullopt;
}

void ChildProcess::signal(int number) {
    if (!exit_code_) ::kill(pid_, number);
}

std::optional<int> ChildProcess::wait_exit(std::chrono::milliseconds timeout) {
    if (exit_code_) return exit_code_;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        int status = 0;
        if (::waitpid(pid_, &status, WNOHANG) == pid_) {
            exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            return exit_code_;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return std::nullopt;
}

std::string ChildProcess::stdout_text() const { return read_file(out_path_); }
std::string ChildProcess::stderr_text() const { return read_file(err_path_); }

bool testing_on_redis() {
    const char* backend = std::getenv("IEA_TEST_STATE_BACKEND");
    return backend != nullptr && std::string_view(backend) == "redis";
}

std::map<std::string, std::string> redis_backend_env(const RedisServer& redis) {
    return {{"STATE_BACKEND", "redis"},
            {"REDIS_URL", redis.url()},
            // A job whose instance died is taken over within seconds, not a minute.
            {"JOB_CLAIM_AFTER_SECONDS", "2"}};
}

ServiceProcess::ServiceProcess(std::map<std::string, std::string> env)
    : ServiceProcess(std::move(env), {}) {}

ServiceProcess::ServiceProcess(std::map<std::string, std::string> env,
                               std::vector<std::string> extra_args) {
    std::map<std::string, std::string> full = {
        {"APP_ENV", "test"},
        {"BIND_ADDRESS", "127.0.0.1"},
        {"PORT", "0"},
        {"CLICKUP_WEBHOOK_SECRET", kSecret},
        {"CLICKUP_CUSTOM_FIELD_ID_AI_EDIT", kFieldId},
        {"PATH", "/usr/bin:/bin"},
        // Tests talk only to 127.0.0.1: without a sandbox, providers are a closed local port.
        {"CLICKUP_API_BASE_URL", "http://127.0.0.1:9/clickup/api/v2"},
        {"OPENROUTER_API_BASE_URL", "http://127.0.0.1:9/openrouter/api/v1"},
        {"WAVESPEED_API_BASE_URL", "http://127.0.0.1:9/wavespeed/api/v3"},
    };
    // Each service gets its own journal unless the test shares one between restarts.
    static int services_started = 0;
    full["JOURNAL_PATH"] =
        (scratch_dir("journal-" + std::to_string(++services_started)) / "journal.sqlite3").string();
    for (auto& [key, value] : env) full[key] = value;
    if (testing_on_redis() && !full.contains("STATE_BACKEND")) {
        redis_ = std::make_shared<RedisServer>();
        for (auto& [key, value] : redis_backend_env(*redis_)) full[key] = value;
    }

    // The project's config folder holds the prompts the pipeline needs.
    std::vector<std::string> argv = {(binary_dir() / "image-edit-agent").string(), "serve",
                                     "--config",
                                     (std::filesystem::path(IEA_SOURCE_DIR) / "config/config.yaml")
                                         .string()};
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    process_ = std::make_unique<ChildProcess>(std::move(argv), std::move(full));

    const auto line = process_->wait_for_line(
        [](const std::string& text) { return text.find("Service listening") != std::string::npos; },
        std::chrono::seconds(20));
    if (!line) {
        throw std::runtime_error("service did not start: " + process_->stderr_text() +
                                 process_->stdout_text());
    }
    port_ = nlohmann::json::parse(*line).at("port").get<unsigned short>();
}

}  // namespace iea::testing
