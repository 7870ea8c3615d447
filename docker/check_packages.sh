#!/usr/bin/env bash
# ctest deploy_package_lists: the container installs what the scripts install.
#   1. The Dockerfile's build stage runs scripts/deps.sh, which reads scripts/packages.txt, so
#      the build packages are the scripts' list itself (no second copy to drift).
#   2. Every shared library the built binaries load directly belongs to a package named in
#      docker/runtime-packages.txt (or to libc6, which every Debian image has).
# Usage: check_packages.sh SOURCE_DIR BINARY...
set -euo pipefail
source_dir=$1
shift
dockerfile=$source_dir/docker/Dockerfile
runtime_list=$source_dir/docker/runtime-packages.txt
failures=0

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

# 1. Build stage: the same script and list as a developer machine.
build_stage=$(sed -n '/^FROM .* AS build/,/^FROM /p' "$dockerfile")
grep -q 'COPY scripts/deps.sh scripts/packages.txt' <<<"$build_stage" ||
    fail "the Dockerfile build stage does not copy scripts/deps.sh and scripts/packages.txt"
grep -q 'RUN scripts/deps.sh' <<<"$build_stage" ||
    fail "the Dockerfile build stage does not run scripts/deps.sh"
if grep -Eq 'apt-get install' <<<"$build_stage"; then
    fail "the Dockerfile build stage installs packages by hand; add them to scripts/packages.txt"
fi
grep -q 'docker/runtime-packages.txt' "$dockerfile" ||
    fail "the Dockerfile runtime stage does not install docker/runtime-packages.txt"

# 2. Runtime stage: each directly linked library comes from a listed package.
mapfile -t listed < <(grep -Ev '^[[:space:]]*(#|$)' "$runtime_list")
is_listed() {
    local wanted=$1 name
    for name in "${listed[@]}"; do [[ "$name" == "$wanted" ]] && return 0; done
    return 1
}

# Debian 12 merged /lib into /usr/lib, but dpkg knows each file under one of the two names.
owner_of() {
    local real candidate
    real=$(readlink -f "$1")
    for candidate in "$1" "$real" "${real#/usr}" "/usr${1}"; do
        if dpkg -S "$candidate" > /dev/null 2>&1; then
            dpkg -S "$candidate" | head -n 1 | cut -d: -f1
            return
        fi
    done
}

for binary in "$@"; do
    [[ -x "$binary" ]] || { fail "$binary is not built"; continue; }
    while read -r library; do
        path=$(ldd "$binary" | awk -v lib="$library" '$1 == lib { print $3 }')
        [[ -n "$path" ]] || { fail "$(basename "$binary"): $library is not found by ldd"; continue; }
        package=$(owner_of "$path")
        if [[ -z "$package" ]]; then
            fail "$(basename "$binary"): no Debian package owns $library ($path)"
        elif [[ "$package" != libc6 ]] && ! is_listed "$package"; then
            fail "$(basename "$binary") links $library from $package, which" \
                 "docker/runtime-packages.txt does not install"
        fi
    done < <(readelf -d "$binary" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
done

if ((failures > 0)); then
    echo "$failures problem(s); edit docker/runtime-packages.txt or docker/Dockerfile" >&2
    exit 1
fi
echo "package lists agree: build stage runs scripts/deps.sh; runtime list covers every library"
