#!/usr/bin/env bash
# Intake benchmark (issue 2): wrk on 127.0.0.1 against
#   (a) forged-signature webhooks, (b) validly signed duplicates of a delivery already taken,
# and nginx answering a fixed 200 with the same wrk settings, rounds interleaved.
# Prints a Markdown table: req/s, p50/p99 latency, server CPU per request, RSS.
# Usage: bench/intake/run.sh [rounds] [seconds]        (needs wrk and nginx-light)
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
seconds=${2:-10}
command -v wrk > /dev/null || apt-get install -y -qq wrk > /dev/null
command -v nginx > /dev/null || apt-get install -y -qq nginx-light > /dev/null
cmake --preset release > /dev/null
cmake --build build/release --target image-edit-agent > /dev/null

work=$(mktemp -d)
trap 'kill $service_pid $nginx_pid 2> /dev/null || true; rm -rf "$work"' EXIT
secret=bench-secret-1
field=00000000-aaaa-4bbb-8ccc-000000000001

# A 1 KiB tick body.
padding=$(head -c 700 /dev/zero | tr '\0' 'x')
printf '{"event":"taskUpdated","task_id":"bench1","webhook_id":"wh-bench","history_items":[{"id":"1","type":1,"field":"custom_field","custom_field":{"id":"%s","type":"checkbox"},"before":null,"after":"true","note":"%s"}]}' \
    "$field" "$padding" > "$work/body.json"
good_sig=$(CLICKUP_WEBHOOK_SECRET=$secret build/release/image-edit-agent sign < "$work/body.json")
bad_sig=$(printf '%064d' 0)

BIND_ADDRESS=127.0.0.1 PORT=18080 CLICKUP_WEBHOOK_SECRET=$secret \
CLICKUP_CUSTOM_FIELD_ID_AI_EDIT=$field LOG_LEVEL=INFO \
CLICKUP_API_BASE_URL=http://127.0.0.1:9/clickup OPENROUTER_API_BASE_URL=http://127.0.0.1:9/or \
WAVESPEED_API_BASE_URL=http://127.0.0.1:9/ws \
    build/release/image-edit-agent serve --config config/config.yaml > /dev/null &
service_pid=$!

cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
master_process off;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 1024; }
http {
    access_log off;
    server {
        listen 127.0.0.1:18081;
        location / { return 200 '{"status":"ok"}'; }
    }
}
NGINX
nginx -c "$work/nginx.conf" -g 'daemon off;' &
nginx_pid=$!
sleep 1

# Take the delivery once, so every benchmark request is a redelivery.
curl -s -o /dev/null -H "X-Signature: $good_sig" --data-binary @"$work/body.json" \
    http://127.0.0.1:18080/webhook/clickup

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
idle_rss=$(rss_kb $service_pid)
hz=$(getconf CLK_TCK)

run_round() {  # name pid url signature
    local name=$1 pid=$2 url=$3 sig=$4 before after out requests
    before=$(cpu_ticks "$pid")
    out=$(BODY_FILE="$work/body.json" SIGNATURE="$sig" \
        wrk -t1 -c16 -d"${seconds}s" --latency -s bench/intake/post.lua "$url")
    after=$(cpu_ticks "$pid")
    requests=$(awk '/requests in/ {print $1}' <<< "$out")
    awk -v name="$name" -v req="$requests" -v ticks=$((after - before)) -v hz="$hz" -v s="$seconds" '
        /Latency Distribution/ {dist = 1}
        dist && $1 == "50%" {p50 = $2}
        dist && $1 == "99%" {p99 = $2}
        END {printf "| %s | %.0f | %s | %s | %.1f |\n", name, req / s, p50, p99, ticks / hz / req * 1e6}
    ' <<< "$out"
}

echo "| target | req/s | p50 | p99 | server CPU per request (us) |"
echo "| --- | --- | --- | --- | --- |"
for round in $(seq "$rounds"); do
    run_round "nginx fixed 200 (round $round)" $nginx_pid http://127.0.0.1:18081/ "$good_sig"
    run_round "(a) forged signature (round $round)" $service_pid http://127.0.0.1:18080/webhook/clickup "$bad_sig"
    run_round "(b) signed duplicate (round $round)" $service_pid http://127.0.0.1:18080/webhook/clickup "$good_sig"
done
echo
echo "service RSS: idle $((idle_rss / 1024)) MB at start, peak $(( $(hwm_kb $service_pid) / 1024 )) MB"
