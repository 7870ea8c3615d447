#!/usr/bin/env bash
# Startup benchmark (issue 8): how long image-edit-agent takes from exec to its first 200 on
# /health, and its RSS once idle. Starts the binary `runs` times on 127.0.0.1 (PORT 0, the
# port read from the "Service listening" line), waits `idle_seconds`, reads VmRSS, sends SIGTERM.
# Usage: bench/startup/run.sh [binary] [runs] [idle_seconds]
#   binary defaults to build/release/image-edit-agent (built first when it is that default).
set -euo pipefail
cd "$(dirname "$0")/../.."
binary=${1:-build/release/image-edit-agent}
runs=${2:-10}
idle_seconds=${3:-2}
if [[ "$binary" == build/release/image-edit-agent ]]; then
    cmake --preset release > /dev/null
    cmake --build build/release --target image-edit-agent > /dev/null
fi

work=$(mktemp -d)
service_pid=""
trap '[[ -n "$service_pid" ]] && kill "$service_pid" 2> /dev/null; rm -rf "$work"' EXIT

now_us() { echo $(( $(date +%s%N) / 1000 )); }

startup_ms=()
rss_kb=()
for ((run = 1; run <= runs; run++)); do
    : > "$work/out.log"
    started=$(now_us)
    BIND_ADDRESS=127.0.0.1 PORT=0 LOG_LEVEL=INFO CLICKUP_WEBHOOK_SECRET=bench-secret-1 \
    CLICKUP_CUSTOM_FIELD_ID_AI_EDIT=00000000-aaaa-4bbb-8ccc-000000000001 \
        "$binary" serve --config config/config.yaml > "$work/out.log" 2>&1 &
    service_pid=$!

    port=""
    until [[ -n "$port" ]]; do
        port=$(grep -o '"message":"Service listening".*"port":[0-9]*' "$work/out.log" |
               grep -o '"port":[0-9]*' | cut -d: -f2 || true)
        kill -0 "$service_pid" 2> /dev/null || { cat "$work/out.log"; exit 1; }
    done
    until curl -fsS -o /dev/null "http://127.0.0.1:$port/health" 2> /dev/null; do :; done
    startup_ms+=("$(( ($(now_us) - started) / 1000 ))")

    sleep "$idle_seconds"
    rss_kb+=("$(awk '/^VmRSS/ { print $2 }' "/proc/$service_pid/status")")
    kill -TERM "$service_pid"
    wait "$service_pid" || true
    service_pid=""
done

sorted_ms=$(printf '%s\n' "${startup_ms[@]}" | sort -n)
sorted_kb=$(printf '%s\n' "${rss_kb[@]}" | sort -n)
median() { sed -n "$(( ($(wc -l <<<"$1") + 1) / 2 ))p" <<<"$1"; }
echo "| binary | runs | start to first /health 200, median / max | idle RSS, median / max |"
echo "| --- | --- | --- | --- |"
printf '| %s | %d | %d ms / %d ms | %.1f MB / %.1f MB |\n' "$binary" "$runs" \
    "$(median "$sorted_ms")" "$(tail -n 1 <<<"$sorted_ms")" \
    "$(echo "$(median "$sorted_kb") / 1024" | bc -l)" "$(echo "$(tail -n 1 <<<"$sorted_kb") / 1024" | bc -l)"
