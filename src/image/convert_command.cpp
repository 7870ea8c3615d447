#include "iea/image/convert_command.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

#include "iea/image/converter.hpp"

namespace iea::image {
namespace {

namespace asio = boost::asio;

struct ConvertArguments {
    std::filesystem::path input;
    std::filesystem::path output;
    bool for_validation = false;
    int png_compression = ConversionLimits{}.png_compression;
};

std::optional<ConvertArguments> parse(const std::vector<std::string>& arguments) {
    ConvertArguments out;
    std::vector<std::string> paths;
    for (std::size_t i = 0; i < arguments.size(); ++i) {
        if (arguments[i] == "--for-validation") {
            out.for_validation = true;
        } else if (arguments[i] == "--png-compression" && i + 1 < arguments.size()) {
            out.png_compression = std::stoi(arguments[++i]);
            if (out.png_compression < 0 || out.png_compression > 9) return std::nullopt;
        } else {
            paths.push_back(arguments[i]);
        }
    }
    if (paths.size() != 2) return std::nullopt;
    out.input = paths[0];
    out.output = paths[1];
    return out;
}

std::string read_bytes(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot open " + path.string());
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

void write_bytes(const std::filesystem::path& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) throw std::runtime_error("cannot write " + path.string());
}

asio::awaitable<void> convert(ImageConverter& converter, const ConvertArguments& arguments) {
    auto bytes = read_bytes(arguments.input);
    const auto name = arguments.input.filename().string();
    if (!arguments.for_validation) {
        const auto image = co_await converter.prepare(std::move(bytes), name);
        write_bytes(arguments.output, image.png);
        std::cout << arguments.output.string() << ": " << image.width << "x" << image.height
                  << (image.has_alpha ? " RGBA" : " RGB") << " PNG from "
                  << format_name(image.source_format) << "\n";
        co_return;
    }
    const auto copy = co_await converter.for_validation(bytes, ValidationLimits{}, name);
    auto output = arguments.output;
    output.replace_extension(extension(copy.format));
    write_bytes(output, copy.bytes);
    std::cout << output.string() << ": " << copy.width << "x" << copy.height << " " << copy.mime()
              << ", " << copy.bytes.size() << " bytes\n";
}

}  // namespace

int run_convert_command(const std::vector<std::string>& arguments) {
    const auto parsed = parse(arguments);
    if (!parsed) {
        std::cerr << "usage: image-edit-agent convert IN OUT.png [--for-validation] "
                     "[--png-compression 0-9]\n";
        return 2;
    }
    asio::io_context io;
    ConversionLimits limits;
    limits.png_compression = parsed->png_compression;
    ImageConverter converter(io.get_executor(), limits);
    auto done = asio::co_spawn(io, convert(converter, *parsed), asio::use_future);
    io.run();
    try {
        done.get();
        return 0;
    } catch (const ImageError& error) {
        std::cerr << error.user_message() << "\n";
    } catch (const std::exception& error) {
        std::cerr << "convert: " << error.what() << "\n";
    }
    return 1;
}

}  // namespace iea::image
