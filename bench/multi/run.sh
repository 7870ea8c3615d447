#!/usr/bin/env bash
# Several instances sharing Redis (issue 7), everything on 127.0.0.1, in one run:
#   1. intake: wrk sends validly signed ticks, each a new delivery of a new task, to a service
#      on the SQLite journal and to one on Redis (rounds interleaved), and redeliveries of a
#      taken tick (answered from memory, no backend); req/s and latency percentiles;
#   2. throughput: TASKS tasks against a sandbox that answers every call after 1 s, run by one
#      instance and then by two sharing Redis (MAX_CONCURRENT_TASKS=PER_INSTANCE each);
#      tasks per minute and the ratio.
# Usage: bench/multi/run.sh [tasks] [per_instance] [wrk_seconds]      (defaults 32 4 5)
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/../.."
tasks=${1:-32}
per_instance=${2:-4}
seconds=${3:-5}
command -v wrk > /dev/null || apt-get install -y -qq wrk > /dev/null
source scripts/lib/stack.sh
stack_build
work=$(mktemp -d)
stack_cleanup_on_exit
redis_port=18390
start_redis $redis_port
redis_url="redis://127.0.0.1:$redis_port"

# --- 1. Intake ---
# Signed bodies made beforehand (signing is not timed): enough new ticks that none repeats.
python3 - "$work/ticks.txt" "$stack_secret" "$stack_field" <<'PY'
import hashlib, hmac, json, sys
out, secret, field = sys.argv[1], sys.argv[2].encode(), sys.argv[3]
with open(out, "w") as f:
    for i in range(400000):
        body = json.dumps({"webhook_id": "wh-bench", "event": "taskUpdated", "task_id": f"b{i}",
                           "history_items": [{"id": str(i), "field": "custom_field",
                                              "custom_field": {"id": field, "type": "checkbox"},
                                              "before": None, "after": "true"}]},
                          separators=(",", ":"))
        f.write(hmac.new(secret, body.encode(), hashlib.sha256).hexdigest() + "\t" + body + "\n")
PY
cat > "$work/ticks.lua" <<LUA
-- wrk's Lua would otherwise stop to collect garbage across the 400,000 ticks held below, and
-- those pauses (about 100 ms) would be counted as the service's latency. A 5 s round's garbage
-- fits in memory.
collectgarbage("stop")
local ticks = {}
for line in io.lines("$work/ticks.txt") do
    local tab = line:find("\t")
    ticks[#ticks + 1] = {line:sub(1, tab - 1), line:sub(tab + 1)}
end
local next_tick = 0
-- Where this round starts (after the last round's requests), so every tick is new.
init = function(args)
    next_tick = tonumber(args[1] or "0")
end
request = function()
    next_tick = next_tick % #ticks + 1
    local tick = ticks[next_tick]
    return wrk.format("POST", "/webhook/clickup",
        {["X-Signature"] = tick[1], ["Content-Type"] = "application/json"}, tick[2])
end
LUA
# The redelivery: the first tick, sent again and again.
head -1 "$work/ticks.txt" > "$work/repeat.txt"
sed "s|$work/ticks.txt|$work/repeat.txt|" "$work/ticks.lua" > "$work/repeat.lua"

# Providers are a closed local port: each accepted run fails at its first call and ends
# blocked; MAX_CONCURRENT_TASKS=2 keeps those runs from competing with the intake for CPU.
intake_service() {  # PORT NAME=value...
    local intake_port=$1
    shift
    env APP_ENV=development BIND_ADDRESS=127.0.0.1 PORT=$intake_port LOG_LEVEL=WARNING \
        CLICKUP_WEBHOOK_SECRET=$stack_secret CLICKUP_CUSTOM_FIELD_ID_AI_EDIT=$stack_field \
        CLICKUP_API_BASE_URL=http://127.0.0.1:9/clickup OPENROUTER_API_BASE_URL=http://127.0.0.1:9/or \
        WAVESPEED_API_BASE_URL=http://127.0.0.1:9/ws MAX_CONCURRENT_TASKS=2 MAX_STEP_ATTEMPTS=1 \
        "$@" build/release/image-edit-agent serve --config config/config.yaml >> "$work/intake.log" 2>&1 &
    service_pids+=($!)
    until curl -sf "http://127.0.0.1:$intake_port/health" > /dev/null 2>&1; do sleep 0.05; done
}
service_pids=()
intake_service 18381 JOURNAL_PATH="$work/intake.sqlite3"
intake_service 18382 STATE_BACKEND=redis REDIS_URL="$redis_url" INSTANCE_ID=bench-intake
declare -A sent=()
run_wrk() {  # PORT SCRIPT: "req/s p50 p99" (ms) into $work/result; the next round goes on from here
    local offset=${sent[$1$2]:-0}
    wrk -t1 -c8 -d"${seconds}s" --latency -s "$2" "http://127.0.0.1:$1" -- "$offset" > "$work/wrk.out"
    sent[$1$2]=$((offset + $(awk '/requests in/ {print $1}' "$work/wrk.out")))
    awk '/Requests\/sec/ {rps=$2}
         /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
         function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; return v * 1000 }
         END {printf "%.0f %.2f %.2f\n", rps, ms(p50), ms(p99)}' "$work/wrk.out" > "$work/result"
    grep -q "Non-2xx" "$work/wrk.out" && grep "Non-2xx" "$work/wrk.out" >&2 || true
}
curl -s -o /dev/null -H "X-Signature: $(cut -f1 "$work/repeat.txt")" \
    --data-binary "$(cut -f2- "$work/repeat.txt")" http://127.0.0.1:18381/webhook/clickup
echo "## Intake: wrk -t1 -c8, ${seconds} s per round, 3 rounds interleaved"
echo
echo "| round | SQLite new ticks req/s | p50 ms | p99 ms | Redis new ticks req/s | p50 ms | p99 ms | redeliveries (memory) req/s | p50 ms | p99 ms |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
# Only the measured service runs: the other is stopped (SIGSTOP), so that its backlog of
# failing runs does not take the CPU from the one measured (it did: a 100 ms p99 tail).
only() {  # PORT: continues that service, stops the other
    local run=${service_pids[0]} pause=${service_pids[1]}
    [[ $1 == 18382 ]] && { run=${service_pids[1]}; pause=${service_pids[0]}; }
    kill -STOP "$pause"
    kill -CONT "$run"
}
for round in 1 2 3; do
    # Fresh deliveries each round: the second round starts where the first stopped.
    only 18381
    run_wrk 18381 "$work/ticks.lua"
    sqlite=$(cat "$work/result")
    only 18382
    run_wrk 18382 "$work/ticks.lua"
    redis=$(cat "$work/result")
    only 18381
    run_wrk 18381 "$work/repeat.lua"
    memory=$(cat "$work/result")
    echo "| $round | ${sqlite// / | } | ${redis// / | } | ${memory// / | } |"
done
kill -CONT "${service_pids[@]}"
kill "${service_pids[@]}"
wait "${service_pids[@]}" 2> /dev/null || true
service_pids=()
# Every new tick must have become a job: 202, not a redelivery answered 200.
sqlite_jobs=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(
    \"select count(*) from jobs where task_id like 'b%'\").fetchone()[0])" "$work/intake.sqlite3")
echo
redis_jobs=$(redis-cli -p $redis_port --scan --pattern 'iea:job:*' | grep -vc ':checkpoints$')
echo "new ticks sent: SQLite ${sent[18381$work/ticks.lua]}, Redis ${sent[18382$work/ticks.lua]};" \
     "jobs recorded: SQLite $sqlite_jobs, Redis $redis_jobs"
redis-cli -p $redis_port flushall > /dev/null

# --- 2. Throughput with one and with two instances ---
stack_banner
throughput() {  # INSTANCES: prints tasks per minute
    local instances=$1 base=18300 urls=""
    for i in $(seq "$instances"); do
        urls+="${urls:+,}http://127.0.0.1:$((base + i))/webhook/clickup"
    done
    service_urls=$urls
    rm -rf "$work/sandbox"
    start_sandbox
    curl -sf -X POST "$sandbox/admin/scenario" -d '{"wavespeed_delay_ms":0,"latency_ms":1000}' > /dev/null
    for i in $(seq "$instances"); do
        port=$((base + i)) service_log="$work/service-$instances-$i.log" start_service \
            LOG_LEVEL=WARNING STATE_BACKEND=redis REDIS_URL="$redis_url" INSTANCE_ID="bench-$i" \
            MAX_CONCURRENT_TASKS=$per_instance MAX_ITERATIONS=1 VALIDATION_DELAY_SECONDS=0 \
            WAVESPEED_POLL_INTERVAL_SECONDS=1
        service_pids+=($service_pid)
    done
    for i in $(seq "$tasks"); do add_task "t$i"; done
    local started
    started=$(date +%s.%N)
    for i in $(seq "$tasks"); do curl -sf -X POST "$sandbox/admin/tasks/t$i/tick" -d '{}' > /dev/null; done
    until [[ $(curl -sf "$sandbox/admin/tasks" |
        jq '[.[] | select(.ai_edit == false and (.comments | length) > 0)] | length') -ge $tasks ]]; do
        sleep 0.5
    done
    local elapsed
    elapsed=$(echo "$(date +%s.%N) - $started" | bc)
    kill "${service_pids[@]}" $sandbox_pid
    wait "${service_pids[@]}" $sandbox_pid 2> /dev/null || true
    service_pids=()
    redis-cli -p $redis_port flushall > /dev/null
    echo "$tasks * 60 / $elapsed" | bc -l | xargs printf '%.1f'
}
one=$(throughput 1)
two=$(throughput 2)
echo
echo "## Throughput: $tasks tasks, sandbox latency 1 s, MAX_CONCURRENT_TASKS=$per_instance per instance, Redis backend"
echo
echo "| instances | tasks per minute |"
echo "| --- | --- |"
echo "| 1 | $one |"
echo "| 2 | $two |"
echo
echo "two instances / one: $(echo "$two / $one" | bc -l | xargs printf '%.2f')"
