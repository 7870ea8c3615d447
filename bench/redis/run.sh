#!/usr/bin/env bash
# Redis primitives benchmark (issue 7), on 127.0.0.1 against a throwaway redis-server
# (append-only file on, fsync every second, no RDB snapshots), as the tests run it:
#   1. redis-benchmark: plain SET round trips from 1 and from 16 clients, the server's own pace;
#   2. ours: task lock acquire + release (SET NX PX, then the compare-and-delete script)
#      through our client, from 1 coroutine and from 16 on one connection.
# Prints Markdown tables.
# Usage: bench/redis/run.sh [seconds per run]           (needs redis-server, redis-tools)
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-5}
port=${REDIS_BENCH_PORT:-16390}
command -v redis-server > /dev/null || apt-get install -y -qq redis-server > /dev/null
cmake --preset release > /dev/null
cmake --build build/release --target redis-lock-bench > /dev/null

work=$(mktemp -d)
redis-server --port "$port" --bind 127.0.0.1 --dir "$work" --appendonly yes --save "" \
    --daemonize no --logfile "$work/redis.log" &
redis_pid=$!
trap 'kill $redis_pid 2> /dev/null || true; wait $redis_pid 2> /dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do
    redis-cli -h 127.0.0.1 -p "$port" ping > /dev/null 2>&1 && break
    sleep 0.05
done

echo "redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| redis-benchmark SET | requests/s | p50 | p99 |"
echo "| ---: | ---: | ---: | ---: |"
for clients in 1 16; do
    requests=$((clients == 1 ? 50000 : 200000))
    redis-benchmark -h 127.0.0.1 -p "$port" -t set -n "$requests" -c "$clients" --csv 2> /dev/null |
        awk -F, -v c="$clients" 'NR == 2 { gsub(/"/, ""); printf "| %d clients | %.0f | %s ms | %s ms |\n", c, $2, $5, $7 }'
done
echo
build/release/redis-lock-bench "redis://127.0.0.1:$port" "$seconds" 1 16
