#!/usr/bin/env bash
# Builds the project twice (release, and ASan+UBSan) and runs every test in both with ctest.
# Usage: scripts/test.sh [ctest arguments...]   e.g. scripts/test.sh -R unit_webhook
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh

jobs=$(nproc)
status=0
for preset in release asan-ubsan; do
    echo "=== ${preset}: configure and build"
    cmake --preset "$preset" > /dev/null
    cmake --build "build/$preset" -j "$jobs"
    echo "=== ${preset}: test"
    # Sanitizer reports must fail the test that caused them.
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    if ! ctest --test-dir "build/$preset" --output-on-failure -j "$jobs" "$@"; then
        status=1
    fi
done
exit "$status"
