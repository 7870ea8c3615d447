#include "sandbox/util.hpp"

#include <array>
#include <cctype>
#include <cstdlib>
#include <map>
#include <stdexcept>

#include "sandbox/sandbox.hpp"

namespace iea::sandbox {
namespace {

constexpr std::string_view kAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// The value of a `key="value"` (or unquoted) parameter in a header such as
// Content-Disposition; empty when absent.
std::string header_parameter(std::string_view header, std::string_view key) {
    std::size_t at = 0;
    while ((at = header.find(key, at)) != std::string_view::npos) {
        const bool starts_word = at == 0 || header[at - 1] == ' ' || header[at - 1] == ';';
        const auto after = at + key.size();
        if (!starts_word || after >= header.size() || header[after] != '=') {
            at = after;
            continue;
        }
        auto value = header.substr(after + 1);
        if (value.starts_with('"')) {
            value.remove_prefix(1);
            return std::string(value.substr(0, value.find('"')));
        }
        return std::string(value.substr(0, value.find_first_of("; ")));
    }
    return {};
}

}  // namespace

std::string extension_of(std::string_view file_name) {
    const auto dot = file_name.rfind('.');
    if (dot == std::string_view::npos || dot + 1 == file_name.size()) return {};
    return lower(file_name.substr(dot + 1));
}

std::string mimetype_for(std::string_view extension) {
    static const std::map<std::string, std::string, std::less<>> types = {
        {"png", "image/png"},
        {"jpg", "image/jpeg"},
        {"jpeg", "image/jpeg"},
        {"gif", "image/gif"},
        {"webp", "image/webp"},
        {"tif", "image/tiff"},
        {"tiff", "image/tiff"},
        {"heic", "image/heic"},
        {"svg", "image/svg+xml"},
        {"pdf", "application/pdf"},
        {"psd", "image/vnd.adobe.photoshop"},
        {"txt", "text/plain"},
        {"json", "application/json"},
    };
    const auto found = types.find(extension);
    return found == types.end() ? "application/octet-stream" : found->second;
}

std::string url_encode(std::string_view text) {
    std::string out;
    for (const char c : text) {
        const auto u = static_cast<unsigned char>(c);
        if (std::isalnum(u) || c == '-' || c == '.' || c == '_' || c == '~') {
            out += c;
        } else {
            out += '%';
            out += "0123456789ABCDEF"[u >> 4];
            out += "0123456789ABCDEF"[u & 15];
        }
    }
    return out;
}

std::string url_decode(std::string_view text) {
    std::string out;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '%' && i + 2 < text.size() && hex_value(text[i + 1]) >= 0 &&
            hex_value(text[i + 2]) >= 0) {
            out += static_cast<char>(hex_value(text[i + 1]) * 16 + hex_value(text[i + 2]));
            i += 2;
        } else {
            out += text[i];
        }
    }
    return out;
}

std::string lower(std::string_view text) {
    std::string out(text);
    for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
    if (text.size() % 4 != 0) return std::nullopt;
    std::string out;
    out.reserve(text.size() / 4 * 3);
    std::uint32_t buffer = 0;
    int bits = 0;
    std::size_t padding = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (c == '=') {
            // Padding only in the last two places.
            if (i + 2 < text.size()) return std::nullopt;
            ++padding;
            continue;
        }
        if (padding > 0) return std::nullopt;
        const auto value = kAlphabet.find(c);
        if (value == std::string_view::npos) return std::nullopt;
        buffer = (buffer << 6) | static_cast<std::uint32_t>(value);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += static_cast<char>((buffer >> bits) & 0xff);
        }
    }
    return out;
}

std::string base64_encode(std::string_view bytes) {
    std::string out;
    out.reserve((bytes.size() + 2) / 3 * 4);
    std::size_t i = 0;
    for (; i + 2 < bytes.size(); i += 3) {
        const auto n = static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i])) << 16 |
                       static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8 |
                       static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i + 2]));
        for (const int shift : {18, 12, 6, 0}) out += kAlphabet[(n >> shift) & 63];
    }
    if (const auto rest = bytes.size() - i; rest > 0) {
        std::uint32_t n = static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i])) << 16;
        if (rest == 2)
            n |= static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8;
        out += kAlphabet[(n >> 18) & 63];
        out += kAlphabet[(n >> 12) & 63];
        out += rest == 2 ? kAlphabet[(n >> 6) & 63] : '=';
        out += '=';
    }
    return out;
}

std::optional<std::vector<Part>> parse_multipart(std::string_view content_type,
                                                 std::string_view body) {
    const auto boundary = header_parameter(content_type, "boundary");
    if (boundary.empty()) return std::nullopt;
    const std::string delimiter = "--" + boundary;

    std::vector<Part> parts;
    auto at = body.find(delimiter);
    if (at == std::string_view::npos) return std::nullopt;
    while (true) {
        at += delimiter.size();
        if (body.substr(at, 2) == "--") return parts;  // closing delimiter
        if (body.substr(at, 2) != "\r\n") return std::nullopt;
        at += 2;
        const auto headers_end = body.find("\r\n\r\n", at);
        if (headers_end == std::string_view::npos) return std::nullopt;
        const auto next = body.find("\r\n" + delimiter, headers_end + 4);
        if (next == std::string_view::npos) return std::nullopt;

        Part part;
        auto headers = body.substr(at, headers_end - at);
        while (!headers.empty()) {
            const auto end = headers.find("\r\n");
            const auto line = headers.substr(0, end);
            const auto colon = line.find(':');
            if (colon != std::string_view::npos) {
                const auto name = lower(line.substr(0, colon));
                auto value = line.substr(colon + 1);
                while (value.starts_with(' ')) value.remove_prefix(1);
                if (name == "content-disposition") {
                    part.name = header_parameter(value, "name");
                    part.filename = header_parameter(value, "filename");
                } else if (name == "content-type") {
                    part.content_type = std::string(value);
                }
            }
            headers = end == std::string_view::npos ? std::string_view{} : headers.substr(end + 2);
        }
        part.data = std::string(body.substr(headers_end + 4, next - headers_end - 4));
        parts.push_back(std::move(part));
        at = next + 2;
    }
}

Options parse_options(int argc, char** argv) {
    Options options;
    const auto env = [](const char* name) -> std::string {
        const char* value = std::getenv(name);
        return value ? value : "";
    };
    const auto port_from = [](const std::string& text) {
        const int value = std::stoi(text);
        if (value < 0 || value > 65535) throw std::invalid_argument("port out of range");
        return static_cast<unsigned short>(value);
    };
    if (const auto port = env("SANDBOX_PORT"); !port.empty()) options.port = port_from(port);
    if (const auto dir = env("SANDBOX_DATA_DIR"); !dir.empty()) options.data_dir = dir;
    if (const auto url = env("SANDBOX_SERVICE_URL"); !url.empty()) options.service_url = url;
    if (const auto secret = env("CLICKUP_WEBHOOK_SECRET"); !secret.empty())
        options.webhook_secret = secret;
    if (const auto field = env("CLICKUP_CUSTOM_FIELD_ID_AI_EDIT"); !field.empty())
        options.field_id = field;

    for (int i = 1; i < argc; ++i) {
        const std::string flag = argv[i];
        if (i + 1 >= argc) throw std::invalid_argument(flag + " needs a value");
        const std::string value = argv[++i];
        if (flag == "--port")
            options.port = port_from(value);
        else if (flag == "--bind")
            options.bind = value;
        else if (flag == "--data-dir")
            options.data_dir = value;
        else if (flag == "--scenario")
            options.scenario_file = value;
        else if (flag == "--service-url")
            options.service_url = value;
        else if (flag == "--webhook-secret")
            options.webhook_secret = value;
        else if (flag == "--field-id")
            options.field_id = value;
        else
            throw std::invalid_argument("unknown option " + flag);
    }
    return options;
}

}  // namespace iea::sandbox
