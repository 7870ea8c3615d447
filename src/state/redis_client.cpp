#include "iea/state/redis_client.hpp"

#include <hiredis/hiredis.h>
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <charconv>
#include <deque>
#include <exception>
#include <optional>
#include <stdexcept>

#include "iea/logging/log.hpp"

namespace iea::state {
namespace {

namespace beast = boost::beast;
using tcp = asio::ip::tcp;
constexpr auto kAwait = asio::as_tuple(asio::use_awaitable);
constexpr std::string_view kUrlForm = "expected redis://[[user]:password@]host[:port][/db]";

[[noreturn]] void bad_url(std::string_view problem) {
    throw std::invalid_argument("REDIS_URL: " + std::string(problem) + "; " +
                                std::string(kUrlForm));
}

std::string percent_decoded(std::string_view text) {
    std::string out;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] != '%') {
            out += text[i];
            continue;
        }
        unsigned value = 0;
        const auto* first = text.data() + i + 1;
        const auto [end, ec] = std::from_chars(
            first, first + std::min<std::size_t>(2, text.size() - i - 1), value, 16);
        if (ec != std::errc{} || end != first + 2)
            bad_url("a % in the credentials is not followed by two hex digits");
        out += static_cast<char>(value);
        i += 2;
    }
    return out;
}

template <typename Number>
std::optional<Number> parse_number(std::string_view text) {
    Number value{};
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
    return value;
}

template <typename Range>
std::string encode_words(const Range& args) {
    std::string out = "*" + std::to_string(std::size(args)) + "\r\n";
    for (const auto& arg : args) {
        out += '$';
        out += std::to_string(std::size(arg));
        out += "\r\n";
        out.append(std::data(arg), std::size(arg));
        out += "\r\n";
    }
    return out;
}

RedisReply to_reply(const redisReply& raw) {
    RedisReply out;
    switch (raw.type) {
        case REDIS_REPLY_STRING:
            out.kind = RedisReply::Kind::kString;
            out.text.assign(raw.str, raw.len);
            break;
        case REDIS_REPLY_STATUS:
            out.kind = RedisReply::Kind::kStatus;
            out.text.assign(raw.str, raw.len);
            break;
        case REDIS_REPLY_ERROR:
            out.kind = RedisReply::Kind::kError;
            out.text.assign(raw.str, raw.len);
            break;
        case REDIS_REPLY_INTEGER:
            out.kind = RedisReply::Kind::kInteger;
            out.integer = raw.integer;
            break;
        case REDIS_REPLY_ARRAY:
            out.kind = RedisReply::Kind::kArray;
            out.elements.reserve(raw.elements);
            for (std::size_t i = 0; i < raw.elements; ++i)
                out.elements.push_back(to_reply(*raw.element[i]));
            break;
        default:
            break;  // nil
    }
    return out;
}

std::string sha1_hex(std::string_view text) {
    std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
    unsigned int size = 0;
    if (EVP_Digest(text.data(), text.size(), digest.data(), &size, EVP_sha1(), nullptr) != 1) {
        throw std::runtime_error("state: SHA-1 of a Redis script failed");
    }
    constexpr std::string_view kHex = "0123456789abcdef";
    std::string out;
    for (unsigned int i = 0; i < size; ++i) {
        out += kHex[digest[i] >> 4];
        out += kHex[digest[i] & 0x0f];
    }
    return out;
}

using ReaderPtr = std::unique_ptr<redisReader, decltype(&redisReaderFree)>;

// One TCP connection and the parser of its answers.
struct Connection {
    explicit Connection(const asio::any_io_executor& executor)
        : stream(executor), reader(redisReaderCreate(), &redisReaderFree) {
        if (!reader) throw std::bad_alloc();
    }

    beast::tcp_stream stream;
    ReaderPtr reader;
    bool open = true;

    void shut() {
        open = false;
        stream.close();
    }
};

// A command waiting for its answer. The timer is both its deadline and its wake-up call:
// the reader cancels it when the answer is in.
struct Pending {
    explicit Pending(const asio::any_io_executor& executor) : done(executor) {}
    asio::steady_timer done;
    std::chrono::steady_clock::time_point sent_at = std::chrono::steady_clock::now();
    std::optional<RedisReply> reply;
    bool failed = false;
};

}  // namespace

std::string detail::encode_command(std::span<const std::string_view> words) {
    return encode_words(words);
}

std::string detail::encode_command(std::span<const std::string> words) {
    return encode_words(words);
}

std::string RedisEndpoint::redacted() const {
    std::string out = "redis://";
    if (!password.empty()) out += user + ":***@";
    out += host.find(':') == std::string::npos ? host : "[" + host + "]";
    return out + ":" + std::to_string(port) + "/" + std::to_string(db);
}

RedisEndpoint parse_redis_url(std::string_view url) {
    constexpr std::string_view kScheme = "redis://";
    if (url.starts_with("rediss://")) bad_url("TLS (rediss://) is not supported");
    if (!url.starts_with(kScheme)) bad_url("the scheme must be redis://");
    auto rest = url.substr(kScheme.size());
    if (rest.find_first_of("?#") != std::string_view::npos)
        bad_url("query options are not supported");

    RedisEndpoint endpoint;
    if (const auto at = rest.rfind('@'); at != std::string_view::npos) {
        const auto credentials = rest.substr(0, at);
        const auto colon = credentials.find(':');
        if (colon == std::string_view::npos)
            bad_url("credentials need a colon before the password");
        endpoint.user = percent_decoded(credentials.substr(0, colon));
        endpoint.password = config::Secret(percent_decoded(credentials.substr(colon + 1)));
        rest = rest.substr(at + 1);
    }

    const auto slash = rest.find('/');
    auto host_port = rest.substr(0, slash);
    if (slash != std::string_view::npos) {
        const auto db_text = rest.substr(slash + 1);
        if (!db_text.empty()) {
            const auto db = parse_number<int>(db_text);
            if (!db || *db < 0) bad_url("the database must be a number of 0 or more");
            endpoint.db = *db;
        }
    }

    std::string_view port_text;
    if (host_port.starts_with('[')) {
        const auto close = host_port.find(']');
        if (close == std::string_view::npos) bad_url("an IPv6 host lacks its closing ]");
        endpoint.host = std::string(host_port.substr(1, close - 1));
        const auto after = host_port.substr(close + 1);
        if (!after.empty() && !after.starts_with(':')) bad_url("unexpected text after the host");
        if (!after.empty()) port_text = after.substr(1);
    } else {
        const auto colon = host_port.find(':');
        endpoint.host = std::string(host_port.substr(0, colon));
        if (colon != std::string_view::npos) port_text = host_port.substr(colon + 1);
    }
    if (endpoint.host.empty()) bad_url("the host is missing");
    if (!port_text.empty()) {
        const auto port = parse_number<unsigned>(port_text);
        if (!port || *port == 0 || *port > 65535)
            bad_url("the port must be a number from 1 to 65535");
        endpoint.port = static_cast<unsigned short>(*port);
    }
    return endpoint;
}

RedisScript::RedisScript(std::string source)
    : source_(std::move(source)), sha1_(sha1_hex(source_)) {}

struct detail::RedisClientState {
    RedisClientState(asio::any_io_executor executor_in,
                     RedisEndpoint endpoint_in,
                     RedisClientOptions options_in)
        : executor(std::move(executor_in)),
          endpoint(std::move(endpoint_in)),
          options(std::move(options_in)),
          where(endpoint.redacted()),
          log(logging::Logger("redis").with({{"connection", options.name}, {"redis", where}})),
          wake_writer(executor),
          retry_timer(executor) {}

    asio::any_io_executor executor;
    RedisEndpoint endpoint;
    RedisClientOptions options;
    std::string where;
    logging::Logger log;

    bool started = false;
    bool stopped = false;
    bool up = false;
    bool outage_logged = false;
    std::shared_ptr<Connection> connection;         // being set up, or serving while `up`
    std::string outbox;                             // encoded commands not yet written
    std::deque<std::shared_ptr<Pending>> awaiting;  // in the order their answers will come
    asio::steady_timer wake_writer;
    asio::steady_timer retry_timer;
    std::vector<asio::steady_timer*> connect_waiters;

    void notify_waiters() {
        for (auto* timer : connect_waiters) timer->cancel();
    }

    void fail_awaiting() {
        for (const auto& pending : awaiting) {
            pending->failed = true;
            pending->done.cancel();
        }
        awaiting.clear();
        outbox.clear();
    }

    void went_up() {
        up = true;
        if (outage_logged) {
            log.info("Redis back");
            outage_logged = false;
        } else {
            log.info("Redis connected");
        }
        notify_waiters();
    }

    // Ends `lost` if it is still the current connection; later calls for it do nothing.
    void drop(const std::shared_ptr<Connection>& lost, std::string_view reason) {
        if (connection != lost) return;
        lost->shut();
        went_down(reason);
    }

    void went_down(std::string_view reason) {
        up = false;
        connection.reset();
        fail_awaiting();
        wake_writer.cancel();
        if (!outage_logged && !stopped) {
            log.error("Redis unreachable", {{"reason", reason}});
            outage_logged = true;
        }
        notify_waiters();
    }
};

namespace {

using State = detail::RedisClientState;

// The next whole answer in the reader's buffer, or nothing when it needs more bytes. Throws
// std::runtime_error when the bytes are not RESP.
std::optional<RedisReply> next_reply(redisReader& reader) {
    void* raw = nullptr;
    if (redisReaderGetReply(&reader, &raw) != REDIS_OK) {
        throw std::runtime_error(std::string("protocol error: ") + reader.errstr);
    }
    if (raw == nullptr) return std::nullopt;
    const std::unique_ptr<void, decltype(&freeReplyObject)> owned(raw, &freeReplyObject);
    return to_reply(*static_cast<const redisReply*>(raw));
}

// Reads `count` answers during the handshake, before the connection serves commands.
asio::awaitable<std::vector<RedisReply>> read_answers(Connection& connection, std::size_t count) {
    std::vector<RedisReply> answers;
    std::array<char, 4096> buffer{};
    while (answers.size() < count) {
        if (auto reply = next_reply(*connection.reader)) {
            answers.push_back(std::move(*reply));
            continue;
        }
        const auto size =
            co_await connection.stream.async_read_some(asio::buffer(buffer), asio::use_awaitable);
        redisReaderFeed(connection.reader.get(), buffer.data(), size);
    }
    co_return answers;
}

// Connects, logs in, selects the database and waits for a PING's answer. Returns why it
// failed, or nothing.
asio::awaitable<std::optional<std::string>> connect_once(State& state, Connection& connection) {
    tcp::resolver resolver(state.executor);
    const auto [resolve_error, endpoints] = co_await resolver.async_resolve(
        state.endpoint.host, std::to_string(state.endpoint.port), kAwait);
    if (resolve_error) co_return "cannot resolve the host: " + resolve_error.message();

    connection.stream.expires_after(state.options.connect_timeout);
    const auto [connect_error, peer] = co_await connection.stream.async_connect(endpoints, kAwait);
    if (connect_error) co_return "cannot connect: " + connect_error.message();
    connection.stream.socket().set_option(tcp::no_delay(true));

    std::string hello;
    std::size_t answers_due = 0;
    const auto& endpoint = state.endpoint;
    if (!endpoint.password.empty()) {
        const std::vector<std::string_view> auth =
            endpoint.user.empty()
                ? std::vector<std::string_view>{"AUTH", endpoint.password.reveal()}
                : std::vector<std::string_view>{"AUTH", endpoint.user, endpoint.password.reveal()};
        hello += detail::encode_command(auth);
        ++answers_due;
    }
    if (endpoint.db != 0) {
        const std::string db = std::to_string(endpoint.db);
        const std::vector<std::string_view> select{"SELECT", db};
        hello += detail::encode_command(select);
        ++answers_due;
    }
    // A PING answered, not a connection accepted, is what says Redis is there: the kernel of a
    // frozen (SIGSTOPped) Redis still accepts connections.
    const std::vector<std::string_view> ping{"PING"};
    hello += detail::encode_command(ping);
    ++answers_due;
    try {
        co_await asio::async_write(connection.stream, asio::buffer(hello), asio::use_awaitable);
        for (const auto& answer : co_await read_answers(connection, answers_due)) {
            // Redis's error text names the problem (WRONGPASS, NOAUTH, LOADING), never the
            // password.
            if (answer.is_error()) co_return "Redis refused the connection: " + answer.text;
        }
    } catch (const std::exception& e) {
        co_return std::string("handshake failed: ") + e.what();
    }
    connection.stream.expires_never();
    co_return std::nullopt;
}

asio::awaitable<void> write_loop(std::shared_ptr<State> state,
                                 std::shared_ptr<Connection> connection) {
    while (connection->open) {
        if (state->outbox.empty()) {
            state->wake_writer.expires_at(asio::steady_timer::time_point::max());
            co_await state->wake_writer.async_wait(kAwait);
            continue;
        }
        std::string sending;
        sending.swap(state->outbox);
        const auto [error, written] =
            co_await asio::async_write(connection->stream, asio::buffer(sending), kAwait);
        if (error) state->drop(connection, "write failed: " + error.message());
    }
}

// Hands each answer to the command at the front of the queue. Returns why it stopped.
asio::awaitable<std::string> read_loop(State& state, Connection& connection) {
    std::array<char, 16 * 1024> buffer{};
    for (;;) {
        const auto [error, size] =
            co_await connection.stream.async_read_some(asio::buffer(buffer), kAwait);
        if (error == asio::error::eof) co_return "Redis closed the connection";
        if (error) co_return "read failed: " + error.message();
        redisReaderFeed(connection.reader.get(), buffer.data(), size);

        try {
            while (auto reply = next_reply(*connection.reader)) {
                if (state.awaiting.empty()) co_return "an answer came for no command";
                const auto pending = std::move(state.awaiting.front());
                state.awaiting.pop_front();
                pending->reply = std::move(*reply);
                pending->done.cancel();
            }
        } catch (const std::runtime_error& e) {
            co_return e.what();
        }
    }
}

asio::awaitable<void> keep_connected(std::shared_ptr<State> state) {
    auto delay = state->options.reconnect_first_delay;
    while (!state->stopped) {
        const auto connection = std::make_shared<Connection>(state->executor);
        state->connection = connection;
        auto problem = co_await connect_once(*state, *connection);
        if (state->stopped) break;

        if (!problem) {
            state->went_up();
            delay = state->options.reconnect_first_delay;
            asio::co_spawn(state->executor, write_loop(state, connection), asio::detached);
            problem = co_await read_loop(*state, *connection);
            if (state->stopped) break;
        }
        state->drop(connection, *problem);

        state->retry_timer.expires_after(delay);
        co_await state->retry_timer.async_wait(kAwait);
        delay = std::min(delay * 2, state->options.reconnect_max_delay);
    }
}

asio::awaitable<RedisResult<RedisReply>> send(std::shared_ptr<State> state,
                                              std::string request,
                                              std::chrono::milliseconds timeout) {
    if (!state->up) co_return make_error_code(RedisErrc::kUnavailable);

    const auto pending = std::make_shared<Pending>(state->executor);
    pending->done.expires_after(timeout);
    const auto connection = state->connection;
    state->outbox += request;
    state->awaiting.push_back(pending);
    state->wake_writer.cancel();

    const auto [error] = co_await pending->done.async_wait(kAwait);
    if (pending->reply) {
        // A server still loading its data answers LOADING to everything: not available yet.
        if (pending->reply->is_error_code("LOADING"))
            co_return make_error_code(RedisErrc::kUnavailable);
        co_return std::move(*pending->reply);
    }
    if (!pending->failed && !error) {
        // No answer in time: the server hangs or the network lost us. Answers come in order,
        // so the connection cannot be trusted any more; start over.
        state->drop(connection, "no answer within the command timeout");
    }
    co_return make_error_code(RedisErrc::kUnavailable);
}

asio::awaitable<RedisResult<RedisReply>> eval_with_fallback(std::shared_ptr<State> state,
                                                            std::string by_sha,
                                                            std::string by_source) {
    const auto timeout = state->options.command_timeout;
    auto reply = co_await send(state, std::move(by_sha), timeout);
    if (reply && reply->is_error_code("NOSCRIPT")) {
        reply = co_await send(state, std::move(by_source), timeout);
    }
    co_return reply;
}

}  // namespace

RedisClient::RedisClient(asio::any_io_executor executor,
                         RedisEndpoint endpoint,
                         RedisClientOptions options)
    : state_(std::make_shared<detail::RedisClientState>(
          std::move(executor), std::move(endpoint), std::move(options))) {}

RedisClient::~RedisClient() { close(); }

void RedisClient::start() {
    if (state_->started || state_->stopped) return;
    state_->started = true;
    asio::co_spawn(
        state_->executor, keep_connected(state_), [state = state_](std::exception_ptr error) {
            if (!error) return;
            try {
                std::rethrow_exception(error);
            } catch (const std::exception& e) {
                state->log.error("Redis connection loop failed", {{"error", e.what()}});
            }
        });
}

void RedisClient::close() {
    auto& state = *state_;
    if (state.stopped) return;
    state.stopped = true;
    if (state.connection) state.connection->shut();
    state.retry_timer.cancel();
    state.went_down("closed");
}

bool RedisClient::connected() const { return state_->up; }

std::chrono::steady_clock::duration RedisClient::oldest_wait() const {
    if (state_->awaiting.empty()) return {};
    return std::chrono::steady_clock::now() - state_->awaiting.front()->sent_at;
}

asio::awaitable<bool> RedisClient::wait_connected(std::chrono::milliseconds limit) {
    const auto state = state_;
    asio::steady_timer timer(state->executor, limit);
    state->connect_waiters.push_back(&timer);
    struct Unregister {
        State& state;
        asio::steady_timer* timer;
        ~Unregister() { std::erase(state.connect_waiters, timer); }
    } unregister{*state, &timer};

    while (!state->up && !state->stopped) {
        const auto [error] = co_await timer.async_wait(kAwait);
        if (!error) break;  // the limit passed
    }
    co_return state->up;
}

asio::awaitable<RedisResult<RedisReply>> RedisClient::command(
    const std::vector<std::string>& words) {
    return send_encoded(detail::encode_command(words), false);
}

asio::awaitable<RedisResult<RedisReply>> RedisClient::blocking_command(
    const std::vector<std::string>& words, std::chrono::milliseconds blocks_for) {
    return send_encoded(detail::encode_command(words), true, blocks_for);
}

asio::awaitable<RedisResult<RedisReply>> RedisClient::send_encoded(
    std::string request, bool blocking, std::chrono::milliseconds blocks_for) {
    const auto timeout =
        state_->options.command_timeout + (blocking ? blocks_for : std::chrono::milliseconds{});
    return send(state_, std::move(request), timeout);
}

asio::awaitable<RedisResult<RedisReply>> RedisClient::eval_encoded(std::string by_sha,
                                                                   std::string by_source) {
    return eval_with_fallback(state_, std::move(by_sha), std::move(by_source));
}

}  // namespace iea::state
