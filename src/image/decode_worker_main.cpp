// image-decode-worker: decodes one untrusted image per process for the service (see
// src/image/worker_protocol.hpp). Not meant to be run by hand.

#include "image/worker_protocol.hpp"

// In the sanitizer build: libvips and GLib keep global state until exit, which LeakSanitizer
// would report and turn into a failing exit status.
extern "C" const char* __asan_default_options() { return "detect_leaks=0"; }

int main(int argc, char** argv) { return iea::image::detail::run_decode_worker(argc, argv); }
