#include "iea/state/redis_client.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <map>

#include "redis_test_support.hpp"

namespace {

namespace asio = boost::asio;
using namespace iea::testing;
using iea::state::parse_redis_url;
using iea::state::RedisClient;
using iea::state::RedisReply;
using iea::state::RedisScript;

}  // namespace

TEST_CASE("redis url: host, port, database and credentials", "[state]") {
    SECTION("host only") {
        const auto endpoint = parse_redis_url("redis://cache.internal");
        CHECK(endpoint.host == "cache.internal");
        CHECK(endpoint.port == 6379);
        CHECK(endpoint.db == 0);
        CHECK(endpoint.password.empty());
    }
    SECTION("port and database") {
        const auto endpoint = parse_redis_url("redis://127.0.0.1:6380/3");
        CHECK(endpoint.port == 6380);
        CHECK(endpoint.db == 3);
        CHECK(endpoint.redacted() == "redis://127.0.0.1:6380/3");
    }
    SECTION("password, percent-encoded, is kept out of the redacted form") {
        const auto endpoint = parse_redis_url("redis://:test%40secret@127.0.0.1:6380");
        CHECK(endpoint.password.reveal() == "test@secret");
        CHECK(endpoint.user.empty());
        CHECK(endpoint.redacted() == "redis://:***@127.0.0.1:6380/0");
    }
    SECTION("user and password") {
        const auto endpoint = parse_redis_url("redis://worker:test-secret-1@[::1]:7000/1");
        CHECK(endpoint.user == "worker");
        CHECK(endpoint.host == "::1");
        CHECK(endpoint.redacted() == "redis://worker:***@[::1]:7000/1");
    }
}

TEST_CASE("redis url: bad forms are refused with the reason, never the password", "[state]") {
    const auto refused = [](const std::string& url) {
        try {
            (void)parse_redis_url(url);
        } catch (const std::invalid_argument& e) {
            return std::string(e.what());
        }
        return std::string("accepted");
    };
    CHECK_THAT(refused("http://127.0.0.1"), Catch::Contains("scheme must be redis://"));
    CHECK_THAT(refused("rediss://127.0.0.1"), Catch::Contains("TLS"));
    CHECK_THAT(refused("redis://:6379"), Catch::Contains("host is missing"));
    CHECK_THAT(refused("redis://127.0.0.1:99999"), Catch::Contains("port must be"));
    CHECK_THAT(refused("redis://127.0.0.1/x"), Catch::Contains("database must be"));
    CHECK_THAT(refused("redis://127.0.0.1/0?timeout=1"), Catch::Contains("query"));
    const auto no_colon = refused("redis://test-secret-1@127.0.0.1");
    CHECK_THAT(no_colon, Catch::Contains("colon"));
    CHECK_THAT(no_colon, !Catch::Contains("test-secret-1"));
}

TEST_CASE("redis client: replies come back typed", "[state]") {
    IEA_REQUIRE_REDIS_SERVER();
    RedisServer server;
    asio::io_context io;
    RedisClient redis(io.get_executor(), parse_redis_url(server.url()), quick_options());
    redis.start();

    std::map<std::string, iea::state::RedisResult<RedisReply>> got;
    run_task(io, [&]() -> asio::awaitable<void> {
        need(co_await redis.wait_connected(5s), "connected");
        got.emplace("set", co_await redis.command("SET", "greeting", "hello"));
        got.emplace("get missing", co_await redis.command("GET", "nothing-here"));
        got.emplace("incrby", co_await redis.command("INCRBY", "counter", "41"));
        const std::vector<std::string> push = {"RPUSH", "list", "a", std::string("b\0c", 3)};
        (void)co_await redis.command(push);
        got.emplace("lrange", co_await redis.command("LRANGE", "list", "0", "-1"));
        got.emplace("wrong type", co_await redis.command("INCR", "list"));
    }());

    CHECK(got.at("set").value().is_ok());
    CHECK(got.at("get missing").value().is_nil());
    CHECK(got.at("incrby").value().is_integer());
    CHECK(got.at("incrby").value().integer == 41);
    const auto& listed = got.at("lrange").value();
    REQUIRE(listed.is_array());
    REQUIRE(listed.elements.size() == 2);
    CHECK(listed.elements[0].text == "a");
    CHECK(listed.elements[1].text == std::string("b\0c", 3));
    const auto& wrong = got.at("wrong type").value();
    CHECK(wrong.is_error());
    CHECK(wrong.is_error_code("WRONGTYPE"));
}

TEST_CASE("redis client: answers reach the right caller when many are in flight", "[state]") {
    IEA_REQUIRE_REDIS_SERVER();
    RedisServer server;
    asio::io_context io;
    RedisClient redis(io.get_executor(), parse_redis_url(server.url()), quick_options());
    redis.start();

    constexpr int kCallers = 200;
    int right = 0;
    int finished = 0;
    run_task(io, [&]() -> asio::awaitable<void> {
        need(co_await redis.wait_connected(5s), "connected");
        for (int i = 0; i < kCallers; ++i) {
            asio::co_spawn(
                io,
                [&, i]() -> asio::awaitable<void> {
                    const auto key = "key-" + std::to_string(i);
                    const auto value = "value-" + std::to_string(i);
                    (void)co_await redis.command("SET", key, value);
                    const auto read = co_await redis.command("GET", key);
                    right += read && read->text == value;
                    ++finished;
                },
                asio::detached);
        }
        need(co_await eventually([&] { return finished == kCallers; }), "all callers finished");
    }());
    CHECK(right == kCallers);
}

TEST_CASE("redis client: scripts run by hash, and by source once the server forgot them",
          "[state]") {
    IEA_REQUIRE_REDIS_SERVER();
    RedisServer server;
    asio::io_context io;
    RedisClient redis(io.get_executor(), parse_redis_url(server.url()), quick_options());
    redis.start();
    const RedisScript script("return redis.call('INCRBY', KEYS[1], ARGV[1])");

    std::vector<std::int64_t> totals;
    std::int64_t known_after = 0;
    run_task(io, [&]() -> asio::awaitable<void> {
        need(co_await redis.wait_connected(5s), "connected");
        totals.push_back((co_await redis.eval(script, 1, "total", "2")).value().integer);
        totals.push_back((co_await redis.eval(script, 1, "total", "3")).value().integer);
        (void)co_await redis.command("SCRIPT", "FLUSH");
        totals.push_back((co_await redis.eval(script, 1, "total", "4")).value().integer);
        const auto known = co_await redis.command("SCRIPT", "EXISTS", script.sha1());
        known_after = known.value().elements.at(0).integer;
    }());
    CHECK(totals == std::vector<std::int64_t>{2, 5, 9});
    CHECK(known_after == 1);
}

TEST_CASE("redis client: password and database come from the URL", "[state]") {
    IEA_REQUIRE_REDIS_SERVER();
    RedisServerOptions options;
    options.password = "test-secret-1";
    RedisServer server(options);
    asio::io_context io;

    SECTION("right password, database 2") {
        RedisClient db2(io.get_executor(), parse_redis_url(server.url() + "/2"), quick_options());
        RedisClient db0(io.get_executor(), parse_redis_url(server.url()), quick_options());
        db2.start();
        db0.start();
        std::string in_db2;
        bool missing_in_db0 = false;
        run_task(io, [&]() -> asio::awaitable<void> {
            need(co_await db2.wait_connected(5s), "db 2 connected");
            need(co_await db0.wait_connected(5s), "db 0 connected");
            (void)co_await db2.command("SET", "where", "two");
            in_db2 = (co_await db2.command("GET", "where")).value().text;
            missing_in_db0 = (co_await db0.command("GET", "where")).value().is_nil();
        }());
        CHECK(in_db2 == "two");
        CHECK(missing_in_db0);
    }
    SECTION("wrong password: unreachable, logged once, password not logged") {
        const LogCapture logs;
        auto endpoint = parse_redis_url(server.url());
        endpoint.password = iea::config::Secret("test-wrong-2");
        RedisClient redis(io.get_executor(), endpoint, quick_options());
        redis.start();
        bool connected = true;
        bool refused = false;
        run_task(io, [&]() -> asio::awaitable<void> {
            connected = co_await redis.wait_connected(500ms);
            refused = is_unavailable(co_await redis.command("PING"));
        }());
        CHECK_FALSE(connected);
        CHECK(refused);
        CHECK(logs.count("Redis unreachable") == 1);
        CHECK(logs.count("WRONGPASS") == 1);
        CHECK(logs.count("test-wrong-2") == 0);
        CHECK(logs.count("test-secret-1") == 0);
    }
}

TEST_CASE("redis client: an outage fails commands at once, is logged once, and ends by itself",
          "[state]") {
    IEA_REQUIRE_REDIS_SERVER();
    RedisServer server;
    const LogCapture logs;
    asio::io_context io;
    RedisClient redis(io.get_executor(), parse_redis_url(server.url()), quick_options());
    redis.start();

    int ticks = 0;
    int ticks_during_outage = 0;
    bool ticking = true;
    int refused = 0;
    std::string kept;
    run_task(io, [&]() -> asio::awaitable<void> {
        need(co_await redis.wait_connected(5s), "connected");
        (void)co_await redis.command("SET", "kept", "yes");

        // A timer on the same loop keeps ticking through the outage.
        asio::co_spawn(
            io,
            [&]() -> asio::awaitable<void> {
                while (ticking) {
                    co_await pause_for(10ms);
                    ++ticks;
                }
            },
            asio::detached);

        server.stop();
        need(co_await eventually([&] { return !redis.connected(); }), "outage noticed");
        const int ticks_before = ticks;
        for (int i = 0; i < 50; ++i)
            refused += is_unavailable(co_await redis.command("GET", "kept"));
        co_await pause_for(300ms);
        ticks_during_outage = ticks - ticks_before;

        server.start();
        need(co_await redis.wait_connected(5s), "reconnected");
        kept = (co_await redis.command("GET", "kept")).value().text;
        ticking = false;
    }());
    CHECK(refused == 50);
    CHECK(ticks_during_outage > 0);
    CHECK(kept == "yes");
    CHECK(logs.count("Redis unreachable") == 1);
    CHECK(logs.count("Redis back") == 1);
}

TEST_CASE("redis client: a command in flight fails when the connection drops", "[state]") {
    IEA_REQUIRE_REDIS_SERVER();
    RedisServer server;
    asio::io_context io;
    RedisClient redis(io.get_executor(), parse_redis_url(server.url()), quick_options());
    redis.start();

    std::optional<iea::state::RedisResult<RedisReply>> outcome;
    run_task(io, [&]() -> asio::awaitable<void> {
        need(co_await redis.wait_connected(5s), "connected");
        asio::co_spawn(
            io,
            [&]() -> asio::awaitable<void> {
                const std::vector<std::string> wait = {"BLPOP", "never-filled", "30"};
                outcome = co_await redis.blocking_command(wait, 30s);
            },
            asio::detached);
        co_await pause_for(100ms);
        server.kill();
        need(co_await eventually([&] { return outcome.has_value(); }), "blocked command ended");
    }());
    CHECK(is_unavailable(*outcome));
}

TEST_CASE("redis client: a frozen server is not taken for back until it answers", "[state]") {
    IEA_REQUIRE_REDIS_SERVER();
    RedisServer server;
    asio::io_context io;
    auto options = quick_options();
    options.command_timeout = 500ms;
    options.connect_timeout = 500ms;
    RedisClient redis(io.get_executor(), parse_redis_url(server.url()), options);
    redis.start();

    bool back_while_frozen = true;
    bool back_after = false;
    run_task(io, [&]() -> asio::awaitable<void> {
        need(co_await redis.wait_connected(5s), "connected");
        server.pause();
        (void)co_await redis.command("PING");  // times out: the connection is dropped
        // The kernel still accepts connections for a stopped process; only a PING's answer
        // counts.
        back_while_frozen = co_await redis.wait_connected(2s);
        server.resume();
        back_after = co_await redis.wait_connected(5s);
    }());
    CHECK_FALSE(back_while_frozen);
    CHECK(back_after);
}

TEST_CASE("redis client: a server that stops answering times out and is reconnected", "[state]") {
    IEA_REQUIRE_REDIS_SERVER();
    RedisServer server;
    asio::io_context io;
    auto options = quick_options();
    options.command_timeout = 1s;
    RedisClient redis(io.get_executor(), parse_redis_url(server.url()), options);
    redis.start();

    bool timed_out = false;
    std::string after_resume;
    run_task(io, [&]() -> asio::awaitable<void> {
        need(co_await redis.wait_connected(5s), "connected");
        server.pause();
        timed_out = is_unavailable(co_await redis.command("PING"));
        server.resume();
        need(co_await redis.wait_connected(5s), "reconnected");
        after_resume = (co_await redis.command("PING")).value().text;
    }());
    CHECK(timed_out);
    CHECK(after_resume == "PONG");
}

TEST_CASE("redis client: a peer that does not speak RESP fails the command, no crash", "[state]") {
    const LogCapture logs;
    asio::io_context io;
    // A loopback listener that answers every connection like a confused HTTP server.
    asio::ip::tcp::acceptor listener(io, {asio::ip::make_address("127.0.0.1"), 0});
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            for (;;) {
                auto peer = co_await listener.async_accept(asio::use_awaitable);
                std::array<char, 512> request{};
                (void)co_await peer.async_read_some(asio::buffer(request), asio::use_awaitable);
                const std::string answer = "HTTP/1.1 400 Bad Request\r\n\r\n";
                (void)co_await asio::async_write(peer, asio::buffer(answer), asio::use_awaitable);
            }
        },
        asio::detached);

    const auto url = "redis://127.0.0.1:" + std::to_string(listener.local_endpoint().port());
    RedisClient redis(io.get_executor(), parse_redis_url(url), quick_options());
    redis.start();
    bool connected = true;
    bool refused = false;
    run_task(io, [&]() -> asio::awaitable<void> {
        // The connection's PING gets no RESP answer, so it never counts as connected.
        connected = co_await redis.wait_connected(1s);
        refused = is_unavailable(co_await redis.command("PING"));
    }());
    CHECK_FALSE(connected);
    CHECK(refused);
    CHECK(logs.count("protocol error") == 1);  // once for the outage, not once per attempt
}
