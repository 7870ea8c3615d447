// image-edit-sandbox: wiring only. See docs/sandbox.md for the admin API.

#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <vips/vips8>

#include "iea/logging/log.hpp"
#include "sandbox/sandbox.hpp"

namespace {

constexpr const char* kUsage =
    "usage: image-edit-sandbox [--port P] [--bind ADDRESS] [--data-dir DIR] [--scenario FILE]\n"
    "                          [--service-url URL[,URL...]] [--webhook-secret S] [--field-id ID]\n"
    "The local fakes of ClickUp, OpenRouter and WaveSpeed on 127.0.0.1; see docs/sandbox.md.\n";

}  // namespace

int main(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
        const std::string_view flag = argv[i];
        if (flag == "--help" || flag == "-h") {
            std::cout << kUsage;
            return 0;
        }
    }
    try {
        auto options = iea::sandbox::parse_options(argc, argv);
        if (VIPS_INIT(argv[0])) {
            std::cerr << "image-edit-sandbox: libvips failed to start\n";
            return 1;
        }
        if (!options.service_url.empty())
            (void)iea::sandbox::parse_service_urls(options.service_url);
        if (options.data_dir.empty()) {
            std::string pattern =
                (std::filesystem::temp_directory_path() / "iea-sandbox-XXXXXX").string();
            if (!::mkdtemp(pattern.data()))
                throw std::runtime_error("cannot create a data directory");
            options.data_dir = pattern;
        }
        const char* level = std::getenv("LOG_LEVEL");
        iea::logging::setup(level ? level : "INFO");
        const iea::logging::Logger log("sandbox");

        boost::asio::io_context io;
        iea::sandbox::Sandbox sandbox(io, options);
        sandbox.start();
        log.info("Sandbox listening",
                 {{"address", options.bind},
                  {"port", sandbox.port()},
                  {"data_dir", options.data_dir.string()}});

        boost::asio::signal_set signals(io, SIGTERM, SIGINT);
        signals.async_wait([&](const boost::system::error_code& ec, int signal_number) {
            if (ec) return;
            log.info("Sandbox stopping", {{"signal", signal_number}});
            sandbox.stop();
            io.stop();
        });
        io.run();
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "image-edit-sandbox: " << e.what() << "\n";
        return 2;
    }
}
