#include "iea/http/client.hpp"

#include <boost/asio/ssl.hpp>
#include <catch2/catch.hpp>

#include "support/loopback.hpp"

using iea::http::ClientError;
using iea::http::ClientRequest;
using iea::http::ClientResponse;
using iea::http::FailureKind;
using iea::http::HttpClient;
using iea::testing::raw_response;
using iea::testing::RawAction;
using iea::testing::RawServer;
using iea::testing::run_task;
namespace asio = boost::asio;
namespace bhttp = boost::beast::http;

namespace {

ClientRequest get(const std::string& url) {
    ClientRequest request;
    request.url = url;
    request.timeout = std::chrono::seconds(5);
    return request;
}

ClientResponse send(asio::io_context& io, HttpClient& client, ClientRequest request) {
    return run_task(io, client.send(std::move(request)));
}

FailureKind failure_of(asio::io_context& io, HttpClient& client, ClientRequest request) {
    try {
        send(io, client, std::move(request));
    } catch (const ClientError& error) {
        return error.kind();
    }
    FAIL("the request did not fail");
    return FailureKind::kInvalidUrl;
}

RawAction answer(const std::string& body) {
    return {RawAction::Kind::kWrite, raw_response(200, body)};
}

}  // namespace

TEST_CASE("client: parses absolute http and https URLs", "[http]") {
    using iea::http::parse_url;

    SECTION("defaults and explicit ports") {
        const auto plain = parse_url("http://Example.COM/a/b?x=1#frag");
        REQUIRE(plain);
        CHECK(plain->scheme == "http");
        CHECK(plain->host == "example.com");
        CHECK(plain->port == 80);
        CHECK(plain->target == "/a/b?x=1");
        CHECK(plain->host_header() == "example.com");

        const auto tls = parse_url("https://127.0.0.1:8443");
        REQUIRE(tls);
        CHECK(tls->port == 8443);
        CHECK(tls->target == "/");
        CHECK(tls->origin() == "https://127.0.0.1:8443");
        CHECK(tls->host_header() == "127.0.0.1:8443");
    }
    SECTION("IPv6 literal and a query without a path") {
        const auto url = parse_url("http://[::1]:9000?q=1");
        REQUIRE(url);
        CHECK(url->host == "::1");
        CHECK(url->target == "/?q=1");
        CHECK(url->host_header() == "[::1]:9000");
    }
    SECTION("refuses what it cannot use safely") {
        CHECK_FALSE(parse_url("ftp://example.com/x"));
        CHECK_FALSE(parse_url("http://user:pass@example.com/"));
        CHECK_FALSE(parse_url("http:///path"));
        CHECK_FALSE(parse_url("http://example.com:0/"));
        CHECK_FALSE(parse_url("http://example.com:70000/"));
        CHECK_FALSE(parse_url("http://example.com/a b"));
        CHECK_FALSE(parse_url("http://example.com/\r\nX: y"));
        CHECK_FALSE(parse_url("example.com/x"));
    }
}

TEST_CASE("client: resolves redirect locations", "[http]") {
    const auto base = *iea::http::parse_url("https://files.test:8443/dir/file.png?sig=1");
    CHECK(iea::http::resolve_location(base, "https://other.test/x")->origin() ==
          "https://other.test:443");
    CHECK(iea::http::resolve_location(base, "//cdn.test/y")->origin() == "https://cdn.test:443");
    CHECK(iea::http::resolve_location(base, "/root")->target == "/root");
    CHECK(iea::http::resolve_location(base, "next.png")->target == "/dir/next.png");
    CHECK_FALSE(iea::http::resolve_location(base, ""));
}

TEST_CASE("client: percent-encodes path segments", "[http]") {
    CHECK(iea::http::encode_path_segment("abc-1_2.~") == "abc-1_2.~");
    CHECK(iea::http::encode_path_segment("a/b c?") == "a%2Fb%20c%3F");
}

TEST_CASE("client: sends a request and reads the answer", "[http]") {
    asio::io_context io;
    RawServer server(io, [](const auto&) { return answer("hello"); });
    HttpClient client(io.get_executor());

    auto request = get(server.base_url() + "/path?q=1");
    request.method = bhttp::verb::post;
    request.headers = {{"X-Test", "1"}, {"Content-Type", "text/plain"}};
    request.body = "payload";
    const auto response = send(io, client, request);

    CHECK(response.status == 200);
    CHECK(response.body == "hello");
    CHECK(response.header("Content-Length") == "5");
    REQUIRE(server.requests().size() == 1);
    const auto& seen = server.requests().front();
    CHECK(seen.method == "POST");
    CHECK(seen.target == "/path?q=1");
    CHECK(seen.header("host") == "127.0.0.1:" + std::to_string(server.port()));
    CHECK(seen.header("x-test") == "1");
    CHECK(seen.header("content-length") == "7");
    CHECK(seen.body == "payload");
}

TEST_CASE("client: reuses one keep-alive connection for several calls", "[http]") {
    asio::io_context io;
    RawServer server(io, [](const auto&) { return answer("ok"); });
    HttpClient client(io.get_executor());

    for (int i = 0; i < 4; ++i) CHECK(send(io, client, get(server.base_url() + "/x")).body == "ok");

    CHECK(server.connections() == 1);
    CHECK(client.connections_opened() == 1);
    CHECK(client.idle_connections() == 1);
}

TEST_CASE("client: a pooled connection closed by the server", "[http]") {
    asio::io_context io;
    // The second request on the first connection is read, then the server hangs up without
    // a byte of answer: what a server closing an idle connection looks like to us.
    int count = 0;
    RawServer server(io, [&count](const iea::testing::Recorded&) {
        return ++count == 2 ? RawAction{RawAction::Kind::kClose, {}} : answer("ok");
    });
    HttpClient client(io.get_executor());
    CHECK(send(io, client, get(server.base_url() + "/a")).body == "ok");

    SECTION("an idempotent request is sent again on a fresh connection") {
        CHECK(send(io, client, get(server.base_url() + "/b")).body == "ok");
        CHECK(server.connections() == 2);
        CHECK(server.requests().size() == 3);
    }
    SECTION("a non-idempotent request is not sent twice") {
        auto request = get(server.base_url() + "/upload");
        request.method = bhttp::verb::post;
        request.body = "x";
        try {
            send(io, client, request);
            FAIL("expected a failure");
        } catch (const ClientError& error) {
            CHECK(error.kind() == FailureKind::kConnectionLost);
            CHECK(error.request_sent());
        }
        CHECK(server.requests().size() == 2);
    }
}

TEST_CASE("client: transport faults become typed failures", "[http]") {
    asio::io_context io;
    HttpClient client(io.get_executor());

    SECTION("response larger than the cap") {
        RawServer server(io, [](const auto&) { return answer(std::string(5000, 'x')); });
        auto request = get(server.base_url() + "/big");
        request.max_response_bytes = 1000;
        CHECK(failure_of(io, client, request) == FailureKind::kTooLarge);
    }
    SECTION("body cut short") {
        RawServer server(io, [](const auto&) {
            return RawAction{RawAction::Kind::kWriteAndClose,
                             "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort"};
        });
        CHECK(failure_of(io, client, get(server.base_url() + "/t")) == FailureKind::kTruncated);
    }
    SECTION("connection dropped without an answer") {
        RawServer server(io, [](const auto&) { return RawAction{RawAction::Kind::kClose, {}}; });
        try {
            send(io, client, get(server.base_url() + "/d"));
            FAIL("expected a failure");
        } catch (const ClientError& error) {
            CHECK(error.kind() == FailureKind::kConnectionLost);
            CHECK(error.request_sent());
        }
    }
    SECTION("not HTTP at all") {
        RawServer server(io, [](const auto&) {
            return RawAction{RawAction::Kind::kWriteAndClose, "SSH-2.0-nope\r\n\r\n"};
        });
        CHECK(failure_of(io, client, get(server.base_url() + "/p")) == FailureKind::kProtocol);
    }
    SECTION("a stalled server hits the deadline") {
        RawServer server(io, [](const auto&) { return RawAction{RawAction::Kind::kStall, {}}; });
        auto request = get(server.base_url() + "/slow");
        request.timeout = std::chrono::milliseconds(200);
        CHECK(failure_of(io, client, request) == FailureKind::kTimeout);
    }
    SECTION("connection refused proves nothing was sent") {
        asio::ip::tcp::acceptor probe(io, {asio::ip::make_address("127.0.0.1"), 0});
        const auto port = probe.local_endpoint().port();
        probe.close();
        try {
            send(io, client, get("http://127.0.0.1:" + std::to_string(port) + "/"));
            FAIL("expected a failure");
        } catch (const ClientError& error) {
            CHECK(error.kind() == FailureKind::kConnect);
            CHECK_FALSE(error.request_sent());
        }
    }
    SECTION("bad URL and header injection are refused before any I/O") {
        CHECK(failure_of(io, client, get("gopher://127.0.0.1/")) == FailureKind::kInvalidUrl);
        auto request = get("http://127.0.0.1:1/");
        request.headers = {{"X-Evil", "a\r\nInjected: yes"}};
        CHECK(failure_of(io, client, request) == FailureKind::kInvalidUrl);
    }
}

TEST_CASE("client: redirects are bounded and keep credentials home", "[http]") {
    asio::io_context io;
    HttpClient client(io.get_executor());
    RawServer cdn(io, [](const auto&) { return answer("file-bytes"); });
    const auto cdn_url = cdn.base_url() + "/real.png";
    RawServer origin(io, [&](const iea::testing::Recorded& request) {
        if (request.target == "/same")
            return RawAction{RawAction::Kind::kWrite,
                             raw_response(302, "", "Location: /moved\r\n")};
        if (request.target == "/moved") {
            return RawAction{RawAction::Kind::kWrite,
                             raw_response(307, "", "Location: " + cdn_url + "\r\n")};
        }
        return RawAction{RawAction::Kind::kWrite, raw_response(301, "", "Location: /loop\r\n")};
    });

    SECTION("followed, with Authorization dropped at the other origin") {
        auto request = get(origin.base_url() + "/same");
        request.headers = {{"Authorization", "test-secret-1"}};
        request.max_redirects = 3;
        const auto response = send(io, client, request);
        CHECK(response.status == 200);
        CHECK(response.body == "file-bytes");
        CHECK(response.url == cdn_url);
        REQUIRE(origin.requests().size() == 2);
        CHECK(origin.requests()[1].header("authorization") == "test-secret-1");
        REQUIRE(cdn.requests().size() == 1);
        CHECK_FALSE(cdn.requests()[0].has_header("authorization"));
    }
    SECTION("not followed unless asked") {
        const auto response = send(io, client, get(origin.base_url() + "/same"));
        CHECK(response.status == 302);
        CHECK(cdn.requests().empty());
    }
    SECTION("a loop stops at the limit") {
        auto request = get(origin.base_url() + "/loop");
        request.max_redirects = 3;
        CHECK(failure_of(io, client, request) == FailureKind::kTooManyRedirects);
        CHECK(origin.requests().size() == 4);
    }
}

TEST_CASE("client: TLS verifies the certificate chain and the host", "[http]") {
    asio::io_context io;
    const auto good = iea::testing::make_self_signed_certificate("IP:127.0.0.1");
    asio::ssl::context server_tls(asio::ssl::context::tls_server);
    server_tls.use_certificate_chain_file(good.cert.string());
    server_tls.use_private_key_file(good.key.string(), asio::ssl::context::pem);
    RawServer server(
        io, [](const auto&) { return answer("secure"); }, &server_tls);
    REQUIRE(server.base_url().starts_with("https://"));

    SECTION("an untrusted self-signed certificate is refused") {
        HttpClient client(io.get_executor());
        try {
            send(io, client, get(server.base_url() + "/"));
            FAIL("expected a TLS failure");
        } catch (const ClientError& error) {
            CHECK(error.kind() == FailureKind::kTls);
            CHECK_FALSE(error.request_sent());
        }
        CHECK(server.requests().empty());
    }
    SECTION("the same certificate, once trusted, is accepted") {
        iea::http::ClientOptions options;
        options.extra_ca_file = good.cert;
        HttpClient client(io.get_executor(), options);
        CHECK(send(io, client, get(server.base_url() + "/")).body == "secure");
    }
    SECTION("a trusted certificate for another address is refused") {
        const auto other = iea::testing::make_self_signed_certificate("IP:127.0.0.2");
        asio::ssl::context other_tls(asio::ssl::context::tls_server);
        other_tls.use_certificate_chain_file(other.cert.string());
        other_tls.use_private_key_file(other.key.string(), asio::ssl::context::pem);
        RawServer wrong(
            io, [](const auto&) { return answer("x"); }, &other_tls);
        iea::http::ClientOptions options;
        options.extra_ca_file = other.cert;
        HttpClient client(io.get_executor(), options);
        CHECK(failure_of(io, client, get(wrong.base_url() + "/")) == FailureKind::kTls);
    }
}
