#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "iea/webhook/signature.hpp"
#include "support/harness.hpp"

using iea::webhook::sign;
using iea::webhook::Verification;
using iea::webhook::verify_signature;

TEST_CASE("signature: every shared vector gives its expected verdict", "[webhook]") {
    const auto shared = iea::testing::shared_dir();
    if (!shared) {
        WARN("skipped: ../shared/contracts is not next to this clone");
        return;
    }
    const auto vectors = nlohmann::json::parse(
        iea::testing::read_file(*shared / "contracts" / "signature-vectors.json"));
    REQUIRE(vectors.at("cases").size() >= 10);
    for (const auto& vector : vectors.at("cases")) {
        const auto name = vector.at("name").get<std::string>();
        const auto secret = vector.at("secret").get<std::string>();
        const auto body = vector.at("body").get<std::string>();
        const auto signature = vector.value("signature", std::string{});
        INFO(name);
        CHECK((verify_signature(secret, body, signature) == Verification::kValid) ==
              vector.at("valid").get<bool>());
        if (vector.at("valid").get<bool>()) CHECK(sign(secret, body) == signature);
    }
}

TEST_CASE("signature: corpus webhook bodies verify under the manifest's secret", "[webhook]") {
    const auto shared = iea::testing::shared_dir();
    if (!shared) {
        WARN("skipped: ../shared/corpus is not next to this clone");
        return;
    }
    const std::string secret = "PLACEHOLDER-NOT-A-REAL-SECRET-0123456789";
    const auto body = iea::testing::read_file(*shared / "corpus/webhooks/taskupdated-checkbox-checked.json");
    CHECK(verify_signature(secret, body,
                           "007a90665a318454bc4d89f0b19812add2fa6f6f6959ba2836f42fbb006b0611") ==
          Verification::kValid);
}

TEST_CASE("signature: rejects what is not the digest of these bytes", "[webhook]") {
    const std::string secret = "test-secret-1";
    const std::string body = R"({"event":"taskUpdated","task_id":"abc"})";
    const auto good = sign(secret, body);

    SECTION("uppercase hex of the right digest is accepted") {
        std::string upper = good;
        for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        CHECK(verify_signature(secret, body, upper) == Verification::kValid);
    }
    SECTION("missing header") { CHECK(verify_signature(secret, body, "") == Verification::kMissing); }
    SECTION("not hex") {
        CHECK(verify_signature(secret, body, std::string(64, 'z')) == Verification::kMalformed);
    }
    SECTION("one byte of the body flipped") {
        std::string changed = body;
        changed[3] = 'X';
        CHECK(verify_signature(secret, changed, good) == Verification::kMismatch);
    }
    SECTION("another secret") {
        CHECK(verify_signature("test-secret-2", body, good) == Verification::kMismatch);
    }
}
