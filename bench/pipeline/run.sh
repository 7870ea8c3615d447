#!/usr/bin/env bash
# Pipeline benchmark (issue 5), service + sandbox on 127.0.0.1:
#   1. zero-latency sandbox: service CPU and wall time per task (two models, one iteration),
#      and the wall time of each step from the service's own log;
#   2. 1 s sandbox latency: N tasks at once, wall time against the ideal the rate limits
#      allow, and the service's peak RSS.
# Usage: bench/pipeline/run.sh [sequential_tasks] [concurrent_tasks]      (defaults 20 200)
set -euo pipefail
cd "$(dirname "$0")/../.."
sequential=${1:-20}
concurrent=${2:-200}
cmake --preset release > /dev/null
cmake --build build/release --target image-edit-agent image-edit-sandbox image-decode-worker > /dev/null
work=$(mktemp -d)
trap 'kill $service_pid $sandbox_pid 2> /dev/null || true' EXIT
secret=bench-secret-1
field=00000000-aaaa-4bbb-8ccc-000000000001
port=18090
convert -size 1200x800 xc:'#f08c1e' -fill '#1e3cc8' -draw 'rectangle 300,200 900,500' "$work/banner.png"

start_stack() {  # extra service env...
    build/release/image-edit-sandbox --port 0 --data-dir "$work/sandbox-$1" \
        --service-url "http://127.0.0.1:$port/webhook/clickup" --webhook-secret $secret \
        --field-id $field > "$work/sandbox-$1.log" 2>&1 &
    sandbox_pid=$!
    until grep -q "Sandbox listening" "$work/sandbox-$1.log" 2> /dev/null; do sleep 0.05; done
    sandbox="http://127.0.0.1:$(grep -m1 'Sandbox listening' "$work/sandbox-$1.log" | jq .port)"
    shift
    env APP_ENV=development BIND_ADDRESS=127.0.0.1 PORT=$port LOG_LEVEL=INFO \
        CLICKUP_WEBHOOK_SECRET=$secret CLICKUP_CUSTOM_FIELD_ID_AI_EDIT=$field \
        CLICKUP_API_KEY=k OPENROUTER_API_KEY=k WAVESPEED_API_KEY=k \
        CLICKUP_API_BASE_URL="$sandbox/clickup/api/v2" \
        OPENROUTER_API_BASE_URL="$sandbox/openrouter/api/v1" \
        WAVESPEED_API_BASE_URL="$sandbox/wavespeed/api/v3" \
        CLICKUP_RATE_LIMIT_PER_MINUTE=1000000 MAX_ITERATIONS=1 "$@" \
        build/release/image-edit-agent serve --config config/config.yaml > "$work/service.log" 2>&1 &
    service_pid=$!
    until grep -q "Service listening" "$work/service.log" 2> /dev/null; do sleep 0.05; done
}
stop_stack() { kill $service_pid $sandbox_pid; wait $service_pid $sandbox_pid 2> /dev/null || true; }
add_task() { jq -n --arg id "$1" --arg f "$work/banner.png" \
    '{id:$id, description:"Make the orange background turquoise. Keep the blue block.", attachments:[{file:$f}]}' |
    curl -sf -X POST "$sandbox/admin/tasks" -d @- > /dev/null; }
tick() { curl -sf -X POST "$sandbox/admin/tasks/$1/tick" -d '{}' > /dev/null; }
done_count() { curl -sf "$sandbox/admin/tasks" | jq '[.[] | select(.ai_edit == false and (.comments | length) > 0)] | length'; }
cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) * 1000 / hz}' "/proc/$1/stat"; }

# 1. Zero latency, one task at a time.
start_stack seq VALIDATION_DELAY_SECONDS=0 WAVESPEED_POLL_INTERVAL_SECONDS=0.01
curl -sf -X POST "$sandbox/admin/scenario" -d '{"wavespeed_delay_ms":0,"latency_ms":0}' > /dev/null
cpu_before=$(cpu_ms $service_pid)
started=$(date +%s.%N)
for i in $(seq "$sequential"); do
    add_task "s$i"; tick "s$i"
    until [[ $(done_count) -ge $i ]]; do sleep 0.01; done
done
elapsed=$(echo "$(date +%s.%N) - $started" | bc)
cpu_after=$(cpu_ms $service_pid)
echo "## Zero-latency sandbox, $sequential tasks one after another (two models, one iteration)"
echo
echo "service CPU per task: $(echo "($cpu_after - $cpu_before) / $sequential" | bc -l | xargs printf '%.1f') ms;" \
     "wall time per task: $(echo "$elapsed * 1000 / $sequential" | bc -l | xargs printf '%.0f') ms" \
     "(image work runs in image-decode-worker processes, not counted in the service's CPU)"
echo
echo "| step (log line) | median ms | calls |"
echo "| --- | --- | --- |"
for step in "Image prepared" "Prompt enhanced" "Edit generated" "Edit reviewed"; do
    grep -F "\"message\":\"$step\"" "$work/service.log" | jq -r '.latency_ms // empty' | sort -n |
        awk -v s="$step" '{v[NR]=$1} END {if (NR) printf "| %s | %s | %d |\n", s, v[int((NR+1)/2)], NR}'
done
stop_stack

# 2. 1 s latency on every sandbox answer, all tasks at once, default rate limits.
start_stack conc VALIDATION_DELAY_SECONDS=2 WAVESPEED_POLL_INTERVAL_SECONDS=2
curl -sf -X POST "$sandbox/admin/scenario" -d '{"wavespeed_delay_ms":0,"latency_ms":1000}' > /dev/null
for i in $(seq "$concurrent"); do add_task "c$i"; done
started=$(date +%s.%N)
for i in $(seq "$concurrent"); do tick "c$i" & done
wait_start=$(date +%s)
until [[ $(done_count) -ge $concurrent ]]; do
    sleep 1
    if (( $(date +%s) - wait_start > 1800 )); then echo "gave up after 30 min"; break; fi
done
elapsed=$(echo "$(date +%s.%N) - $started" | bc)
peak_rss=$(awk '/^VmHWM/ {print $2}' "/proc/$service_pid/status")
# Ideal: every task needs 2 enhancement and 2 validation calls of 1 s; at most 3 and 2 run at
# once, so the validations alone need concurrent*2/2 seconds.
ideal=$(echo "$concurrent * 2 / 2" | bc)
echo
echo "## 1 s sandbox latency, $concurrent tasks at once (RATE_LIMIT_ENHANCEMENT=3, RATE_LIMIT_VALIDATION=2)"
echo
echo "wall time: $(printf '%.0f' "$elapsed") s; ideal allowed by the validation limit: $ideal s;" \
     "ratio $(echo "$elapsed / $ideal" | bc -l | xargs printf '%.2f'); service peak RSS: $((peak_rss / 1024)) MB"
stop_stack
