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
#include "iea/pipeline/pipeline.hpp"
#include "iea/pipeline/prompts.hpp"
#include "iea/providers/clickup.hpp"
#include "iea/providers/openrouter.hpp"
#include "iea/providers/wavespeed.hpp"
#include "iea/service/intake.hpp"
#include "iea/service/wiring.hpp"

namespace iea::service {
namespace {

namespace asio = boost::asio;
constexpr auto kAsTuple = asio::as_tuple(asio::use_awaitable);
constexpr auto kLockSweepPeriod = std::chrono::seconds(60);
// After the grace period, the time interrupted tasks get to write "blocked" on their task.
constexpr auto kReportGrace = std::chrono::seconds(10);

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

    // Providers, image intake, prompts and the pipeline, shared by every task.
    TaskWiring wiring(io, settings);
    auto& runner = wiring.pipeline();

    locking::TaskLocks locks(settings.lock_ttl, settings.lock_cleanup_interval);
    locking::DeliveryLog deliveries(settings.lock_ttl);
    WebhookIntake intake({settings.clickup_webhook_secret.reveal(), settings.ai_edit_field_id},
                         locks, deliveries, runner);

    auto router = make_router(locks, intake);

    http::Server server(io,
                        {settings.bind_address, static_cast<unsigned short>(settings.port),
                         settings.max_body_bytes, settings.header_timeout, settings.idle_timeout,
                         static_cast<std::size_t>(settings.max_connections)},
                        std::move(router));
    server.start();
    log.info("Service listening", {{"address", settings.bind_address},
                                   {"port", server.port()},
                                   {"version", IEA_VERSION}});

    asio::co_spawn(io, sweep_stale_locks(locks), asio::detached);

    // Graceful shutdown: stop accepting, let requests in flight finish, then stop the loop.
    asio::signal_set signals(io, SIGTERM, SIGINT);
    signals.async_wait([&](const boost::system::error_code& ec, int signal_number) {
        if (ec) return;
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
