// Lock round trips through our Redis client: each worker coroutine takes a lock on its own
// task id and releases it (SET NX PX, then the compare-and-delete script), as fast as it
// can for a while. Prints one Markdown table row per worker count.
//
// Usage: redis-lock-bench REDIS_URL SECONDS WORKERS...     (e.g. redis://127.0.0.1:6390 5 1 16)

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "iea/logging/log.hpp"
#include "iea/state/redis_client.hpp"
#include "iea/state/redis_locks.hpp"

namespace {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

struct Tally {
    std::vector<double> cycle_us;  // one acquire + release, in microseconds
    int failures = 0;
    int running = 0;
    Clock::time_point started;
    Clock::time_point ended;
};

asio::awaitable<void> worker(iea::state::RedisTaskLocks& locks,
                             std::string task_id,
                             Clock::time_point until,
                             Tally& tally) {
    while (Clock::now() < until) {
        const auto started = Clock::now();
        const auto token = co_await locks.acquire(task_id);
        if (!token || !*token) {
            ++tally.failures;
            continue;
        }
        const auto released = co_await locks.release(task_id, **token);
        if (!released || !*released) ++tally.failures;
        tally.cycle_us.push_back(
            std::chrono::duration<double, std::micro>(Clock::now() - started).count());
    }
    if (--tally.running == 0) tally.ended = Clock::now();
}

double percentile(std::vector<double>& values, double share) {
    if (values.empty()) return 0;
    const auto index = static_cast<std::size_t>(share * static_cast<double>(values.size() - 1));
    std::nth_element(values.begin(), values.begin() + static_cast<long>(index), values.end());
    return values[index];
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 4) {
        std::fprintf(stderr, "usage: %s REDIS_URL SECONDS WORKERS...\n", argv[0]);
        return 2;
    }
    iea::logging::setup("WARNING");
    const auto seconds = std::chrono::seconds(std::stoi(argv[2]));

    asio::io_context io;
    iea::state::RedisClientOptions options;
    options.name = "bench";
    iea::state::RedisClient redis(io.get_executor(), iea::state::parse_redis_url(argv[1]), options);
    redis.start();
    iea::state::RedisTaskLocks locks(redis, std::chrono::seconds(30), "bench:");

    std::printf(
        "| workers | cycles/s (acquire + release) | round trips/s | p50 cycle | p99 cycle | "
        "failures |\n");
    std::printf("| ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for (int arg = 3; arg < argc; ++arg) {
        const int workers = std::stoi(argv[arg]);
        Tally tally;
        asio::co_spawn(
            io,
            [&]() -> asio::awaitable<void> {
                if (!co_await redis.wait_connected(std::chrono::seconds(5))) co_return;
                tally.started = Clock::now();
                const auto until = tally.started + seconds;
                tally.running = workers;
                for (int i = 0; i < workers; ++i) {
                    asio::co_spawn(io,
                                   worker(locks, "task-" + std::to_string(i), until, tally),
                                   asio::detached);
                }
            },
            asio::detached);
        const auto started = Clock::now();
        io.restart();
        // Run until the workers are done (they stop at `until`); bounded all the same.
        while (Clock::now() - started < seconds + std::chrono::seconds(10)) {
            io.run_for(std::chrono::milliseconds(50));
            if (tally.running == 0 && tally.ended != Clock::time_point{}) break;
        }
        const double elapsed = std::chrono::duration<double>(tally.ended - tally.started).count();
        const double cycles = static_cast<double>(tally.cycle_us.size()) / elapsed;
        std::printf("| %d | %.0f | %.0f | %.0f µs | %.0f µs | %d |\n",
                    workers,
                    cycles,
                    2 * cycles,
                    percentile(tally.cycle_us, 0.50),
                    percentile(tally.cycle_us, 0.99),
                    tally.failures);
    }
    return 0;
}
