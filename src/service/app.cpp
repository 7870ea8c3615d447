#include "iea/service/app.hpp"

#include <csignal>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "iea/http/client.hpp"
#include "iea/image/converter.hpp"
#include "iea/logging/log.hpp"
#include "iea/metrics/metrics.hpp"
#include "iea/pipeline/pipeline.hpp"
#include "iea/pipeline/prompts.hpp"
#include "iea/providers/clickup.hpp"
#include "iea/providers/openrouter.hpp"
#include "iea/providers/wavespeed.hpp"
#include "iea/service/intake.hpp"
#include "iea/service/readiness.hpp"

namespace iea::service {
namespace {

namespace asio = boost::asio;
constexpr auto kAsTuple = asio::as_tuple(asio::use_awaitable);
constexpr auto kLockSweepPeriod = std::chrono::seconds(60);
// After the grace period, the time interrupted tasks get to write "blocked" on their task.
constexpr auto kReportGrace = std::chrono::seconds(10);
constexpr std::string_view kWebhookPath = "/webhook/clickup";

asio::awaitable<void> sweep_stale_locks(locking::TaskLocks& locks) {
    static const logging::Logger log("locking");
    asio::steady_timer timer(co_await asio::this_coro::executor);
    for (;;) {
        timer.expires_after(kLockSweepPeriod);
        if (auto [ec] = co_await timer.async_wait(kAsTuple); ec) co_return;
        if (const auto removed = locks.remove_stale(); removed > 0) {
            log.warning("Stale task locks removed", {{"count", removed}});
        }
    }
}

}  // namespace

int run_service(const config::Settings& settings) {
    const logging::Logger log("service");
    asio::io_context io(1);

    // Read the prompts first: a missing guidance file stops the start, not a task.
    const auto prompts = pipeline::PromptBook::load(settings.config_dir, settings.models);

    // Providers and image intake, shared by every task.
    http::HttpClient http_client(io.get_executor());
    providers::ClickUpClient clickup(http_client, providers::ClickUpOptions::from(settings));
    providers::OpenRouterClient openrouter(http_client,
                                           providers::OpenRouterOptions::from(settings));
    providers::WaveSpeedClient wavespeed(http_client, providers::WaveSpeedOptions::from(settings));
    image::ConversionLimits limits;
    limits.max_download_bytes = settings.image_max_download_bytes;
    limits.max_pixels = settings.image_max_pixels;
    limits.decode_wall_time = settings.image_decode_timeout;
    limits.max_concurrent_decodes = static_cast<unsigned>(settings.image_max_concurrent_decodes);
    image::ImageConverter images(io.get_executor(), limits);
    pipeline::Pipeline runner(io.get_executor(),
                              {settings, clickup, openrouter, wavespeed, images, prompts});

    locking::TaskLocks locks(settings.lock_ttl, settings.lock_cleanup_interval);
    locking::DeliveryLog deliveries(settings.lock_ttl);
    WebhookIntake intake({settings.clickup_webhook_secret.reveal(), settings.ai_edit_field_id},
                         locks, deliveries, runner);

    // Readiness and the gauges others own, read when asked.
    Readiness readiness;
    readiness.add_check("configuration", [&settings]() -> std::optional<std::string> {
        const auto problems = config::problems_for_serving(settings);
        if (problems.empty()) return std::nullopt;
        return problems.front();
    });
    const auto locks_reading = metrics::read_at_scrape(metrics::Reading::kLocksHeld, [&locks] {
        return static_cast<double>(locks.stats().total_locks);
    });
    const auto tasks_reading = metrics::read_at_scrape(metrics::Reading::kTasksInFlight, [&runner] {
        return static_cast<double>(runner.in_flight());
    });

    http::Router router;
    add_health_routes(router, locks);
    add_readiness_route(router, readiness);
    add_metrics_route(router);
    router.add(http::Method::post, std::string(kWebhookPath),
               [&intake](const http::Request& request) { return intake.handle(request); });

    http::Server server(io,
                        {settings.bind_address, static_cast<unsigned short>(settings.port),
                         settings.max_body_bytes, settings.header_timeout, settings.idle_timeout,
                         static_cast<std::size_t>(settings.max_connections)},
                        std::move(router));
    server.observe_answers([](std::string_view route, unsigned, metrics::Duration elapsed) {
        if (route == kWebhookPath) metrics::webhook_answer_took(elapsed);
    });
    server.start();
    log.info("Service listening", {{"address", settings.bind_address},
                                   {"port", server.port()},
                                   {"version", IEA_VERSION}});

    asio::co_spawn(io, sweep_stale_locks(locks), asio::detached);

    // Graceful shutdown: stop accepting, let requests in flight finish, then stop the loop.
    asio::signal_set signals(io, SIGTERM, SIGINT);
    signals.async_wait([&](const boost::system::error_code& ec, int signal_number) {
        if (ec) return;
        readiness.set_shutting_down();
        log.info("Shutdown requested",
                 {{"signal", signal_number}, {"tasks_running", runner.in_flight()}});
        server.stop();
        asio::co_spawn(
            io,
            [&]() -> asio::awaitable<void> {
                // Running tasks get the grace period to finish; the rest end blocked, with
                // their box unticked and a comment, instead of being left ticked and silent.
                asio::steady_timer poll(io);
                const auto grace_end = std::chrono::steady_clock::now() + settings.shutdown_grace;
                while (runner.in_flight() > 0 && std::chrono::steady_clock::now() < grace_end) {
                    poll.expires_after(std::chrono::milliseconds(50));
                    co_await poll.async_wait(kAsTuple);
                }
                const auto interrupted = runner.in_flight();
                if (interrupted > 0) {
                    runner.stop();
                    const auto report_end = std::chrono::steady_clock::now() + kReportGrace;
                    while (runner.in_flight() > 0 &&
                           std::chrono::steady_clock::now() < report_end) {
                        poll.expires_after(std::chrono::milliseconds(50));
                        co_await poll.async_wait(kAsTuple);
                    }
                }
                const bool drained = co_await server.drain(std::chrono::seconds(1));
                log.info("Service stopped", {{"connections_drained", drained},
                                             {"tasks_interrupted", interrupted},
                                             {"tasks_left", runner.in_flight()}});
                io.stop();
            },
            asio::detached);
    });

    io.run();
    return 0;
}

}  // namespace iea::service
