#include "iea/webhook/signature.hpp"

#include <array>
#include <optional>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

namespace iea::webhook {
namespace {

using Digest = std::array<unsigned char, 32>;

Digest hmac_sha256(std::string_view key, std::string_view message) {
    Digest digest{};
    unsigned int length = 0;
    HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
         reinterpret_cast<const unsigned char*>(message.data()), message.size(), digest.data(),
         &length);
    return digest;
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

std::optional<Digest> decode_hex(std::string_view text) {
    Digest out{};
    if (text.size() != out.size() * 2) return std::nullopt;
    for (std::size_t i = 0; i < out.size(); ++i) {
        const int high = hex_value(text[2 * i]);
        const int low = hex_value(text[2 * i + 1]);
        if (high < 0 || low < 0) return std::nullopt;
        out[i] = static_cast<unsigned char>(high * 16 + low);
    }
    return out;
}

}  // namespace

Verification verify_signature(std::string_view secret,
                              std::string_view body,
                              std::string_view signature_header) {
    if (signature_header.empty()) return Verification::kMissing;
    const auto claimed = decode_hex(signature_header);
    if (!claimed) return Verification::kMalformed;
    const auto expected = hmac_sha256(secret, body);
    // CRYPTO_memcmp takes the same time wherever the first difference is.
    return CRYPTO_memcmp(claimed->data(), expected.data(), expected.size()) == 0
               ? Verification::kValid
               : Verification::kMismatch;
}

std::string sign(std::string_view secret, std::string_view body) {
    static constexpr char kHex[] = "0123456789abcdef";
    const auto digest = hmac_sha256(secret, body);
    std::string out;
    out.reserve(digest.size() * 2);
    for (const auto byte : digest) {
        out += kHex[byte >> 4U];
        out += kHex[byte & 0xfU];
    }
    return out;
}

}  // namespace iea::webhook
