#pragma once

// The sandbox and the service started together on 127.0.0.1, pointed at each other, for
// end-to-end tests of the pipeline.

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "support/harness.hpp"

namespace iea::testing {

/// A free TCP port on 127.0.0.1 (bound, read, released).
unsigned short free_port();

/// A PNG of `width` x `height` with a few coloured shapes, made with libvips.
std::string make_test_png(int width, int height);

class SandboxProcess {
public:
    explicit SandboxProcess(std::vector<std::string> args = {});
    [[nodiscard]] unsigned short port() const { return port_; }
    [[nodiscard]] std::string base() const;

    nlohmann::json get(const std::string& path);
    nlohmann::json post(const std::string& path, const nlohmann::json& body);
    void remove(const std::string& path);
    ChildProcess& process() { return *process_; }

private:
    std::unique_ptr<ChildProcess> process_;
    unsigned short port_ = 0;
};

/// Sandbox + service. `service_env` adds to (and overrides) fast test settings. With several
/// `instances`, they share a Redis of the stack's own and the sandbox sends webhooks to them
/// in turn, as a load balancer in front of them would.
class Stack {
public:
    explicit Stack(Env service_env = {}, int instances = 1);

    SandboxProcess& sandbox() { return *sandbox_; }
    /// The stack's Redis when testing on Redis, else null.
    RedisServer* redis() { return redis_.get(); }
    ServiceProcess& service(std::size_t instance = 0) { return *services_.at(instance); }

    /// Sends `signal` to the service, waits for it to exit and returns its exit code.
    int stop_service(int signal, std::size_t instance = 0);
    /// Starts the service again on the same port and journal.
    void start_service(std::size_t instance = 0);

    /// Creates a task holding `image` (file path) and `description`; returns its id.
    std::string add_task(const std::string& id,
                         const std::string& description,
                         const std::string& image_file);
    /// A person ticks the box; `deliveries` copies of the webhook are sent.
    void tick(const std::string& task_id, int deliveries = 1);
    /// Waits until the task has left "to do" and its box is unticked; returns its state.
    nlohmann::json wait_for_end(const std::string& task_id,
                                std::chrono::milliseconds timeout = std::chrono::seconds(60));
    /// Recorded requests of one service ("clickup", "openrouter", ...).
    nlohmann::json requests(const std::string& service);

private:
    std::shared_ptr<RedisServer> redis_;
    std::unique_ptr<SandboxProcess> sandbox_;
    std::vector<std::unique_ptr<ServiceProcess>> services_;
    std::vector<Env> service_envs_;
};

/// Generations the sandbox's WaveSpeed was asked for (not polls, not uploads).
[[nodiscard]] std::size_t submissions_made(Stack& stack);

/// Attachments of `task` (as the sandbox shows it) whose title starts with `prefix`.
[[nodiscard]] std::size_t count_titled(const nlohmann::json& task, const std::string& prefix);

/// Waits for the task's end and checks it ended complete exactly once: box unticked, one
/// comment, one source and one result upload, and one run in the history each of the given
/// instances serves (read with `history_token`).
void check_ended_once(Stack& stack, const std::string& task_id, const std::string& history_token,
                      const std::vector<std::size_t>& instances = {0});

}  // namespace iea::testing
