// image-decode-worker: decodes one untrusted image per process for the service (see
// src/image/worker_protocol.hpp), or, as `image-decode-worker convert ...`, carries out
// `image-edit-agent convert` in place. Not meant to be run by hand.

#include <unistd.h>

#include <cstdio>
#include <string_view>

#include "image/worker_protocol.hpp"

// In the sanitizer build: libvips and GLib keep global state until exit, which LeakSanitizer
// would report and turn into a failing exit status.
extern "C" const char* __asan_default_options() { return "detect_leaks=0"; }

int main(int argc, char** argv) {
    const bool one_shot = argc > 1 && std::string_view(argv[1]) == "convert";
    const int code = one_shot ? iea::image::detail::run_one_shot_convert(argc, argv)
                              : iea::image::detail::run_decode_worker(argc, argv);
    // The answer already went out with write(2). Leaving through _exit skips the teardown of
    // libvips, GLib and ImageMagick globals: faster, and no exit-time leak check (which
    // ASAN_OPTIONS from the environment can turn back on) can fail a decode that succeeded.
    std::fflush(nullptr);
    ::_exit(code);
}
