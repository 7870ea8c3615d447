#!/usr/bin/env bash
# The long crash run of issue 6: N tasks ticked at once, the service killed with SIGKILL K
# times at random moments and restarted each time, then every task is checked in the sandbox:
# ended exactly once (one terminal status, box unticked), one source upload, one result
# upload, one comment. Prints the seed; CRASH_SEED=<n> repeats the same kill times.
# Usage: scripts/crash-run.sh [tasks] [kills]          (defaults 100 20)
set -euo pipefail
cd "$(dirname "$0")/.."
tasks=${1:-100}
kills=${2:-20}
seed=${CRASH_SEED:-$(( $(date +%s) % 32768 ))}
RANDOM=$seed
scripts/deps.sh > /dev/null
cmake --preset release > /dev/null
cmake --build build/release --target image-edit-agent image-edit-sandbox image-decode-worker > /dev/null
work=$(mktemp -d /tmp/crash-run.XXXXXX)
trap 'kill -9 $service_pid $sandbox_pid 2> /dev/null; wait $service_pid $sandbox_pid 2> /dev/null || true' EXIT
secret=crash-secret-1
field=00000000-aaaa-4bbb-8ccc-000000000001
port=18092
convert -size 1200x800 xc:'#f08c1e' -fill '#1e3cc8' -draw 'rectangle 300,200 900,500' "$work/banner.png"

build/release/image-edit-sandbox --port 0 --data-dir "$work/sandbox" \
    --service-url "http://127.0.0.1:$port/webhook/clickup" --webhook-secret $secret \
    --field-id $field > "$work/sandbox.log" 2>&1 &
sandbox_pid=$!
until grep -q "Sandbox listening" "$work/sandbox.log" 2> /dev/null; do sleep 0.05; done
sandbox="http://127.0.0.1:$(grep -m1 'Sandbox listening' "$work/sandbox.log" | jq .port)"
# Generations take a while and every first review fails, so kills land in every step.
curl -sf -X POST "$sandbox/admin/scenario" \
    -d '{"wavespeed_delay_ms":800,"latency_ms":20,"verdicts":[{"model":"*","iteration":1,"score":5,"pass":false}]}' > /dev/null

start_service() {
    env APP_ENV=development BIND_ADDRESS=127.0.0.1 PORT=$port LOG_LEVEL=INFO \
        CLICKUP_WEBHOOK_SECRET=$secret CLICKUP_CUSTOM_FIELD_ID_AI_EDIT=$field \
        CLICKUP_API_KEY=k OPENROUTER_API_KEY=k WAVESPEED_API_KEY=k \
        CLICKUP_API_BASE_URL="$sandbox/clickup/api/v2" \
        OPENROUTER_API_BASE_URL="$sandbox/openrouter/api/v1" \
        WAVESPEED_API_BASE_URL="$sandbox/wavespeed/api/v3" \
        CLICKUP_RATE_LIMIT_PER_MINUTE=1000000 VALIDATION_DELAY_SECONDS=0.1 TIMEOUT_CLICKUP_SECONDS=5 \
        WAVESPEED_POLL_INTERVAL_SECONDS=0.2 JOURNAL_PATH="$work/journal.sqlite3" \
        build/release/image-edit-agent serve --config config/config.yaml >> "$work/service.log" 2>&1 &
    service_pid=$!
    until curl -sf "http://127.0.0.1:$port/health" > /dev/null 2>&1; do sleep 0.05; done
}

start_service
for i in $(seq "$tasks"); do
    jq -n --arg id "c$i" --arg f "$work/banner.png" \
        '{id:$id, description:"Make the orange background turquoise.", attachments:[{file:$f}]}' |
        curl -sf -X POST "$sandbox/admin/tasks" -d @- > /dev/null
done
for i in $(seq "$tasks"); do curl -sf -X POST "$sandbox/admin/tasks/c$i/tick" -d '{}' > /dev/null; done

echo "seed $seed: $tasks tasks, $kills kills"
for k in $(seq "$kills"); do
    pause_ms=$(( 300 + RANDOM % 1500 ))
    sleep "$(printf '0.%03d' $((pause_ms % 1000)))"; sleep $((pause_ms / 1000))
    kill -9 $service_pid; wait $service_pid 2> /dev/null || true
    start_service
done

ended() { curl -sf "$sandbox/admin/tasks" | jq '[.[] | select(.ai_edit == false and (.comments | length) > 0)] | length'; }
deadline=$(( $(date +%s) + 900 ))
while [[ $(ended) -lt $tasks && $(date +%s) -lt $deadline ]]; do sleep 1; done

curl -sf "$sandbox/admin/tasks" > "$work/tasks.json"
jq -r --argjson n "$tasks" '
  [.[] | {id, status: .status.status, ticked: .ai_edit, comments: (.comments | length),
          sources: ([.attachments[] | select(.title | startswith("ai-source_"))] | length),
          results: ([.attachments[] | select(.title | startswith("ai-edit_"))] | length)}] as $t
  | "tasks: \($t | length) of \($n)",
    "ended (unticked, commented): \([$t[] | select(.ticked == false and .comments > 0)] | length)",
    "lost (still ticked or silent): \([$t[] | select(.ticked or .comments == 0)] | length)",
    "statuses: \([$t[] | .status] | group_by(.) | map("\(.[0]) x\(length)") | join(", "))",
    "duplicate comments: \([$t[] | select(.comments > 1)] | length)",
    "duplicate source uploads: \([$t[] | select(.sources > 1)] | length)",
    "duplicate result uploads: \([$t[] | select(.results > 1)] | length)"' "$work/tasks.json"
echo "resumes logged: $(grep -c '"Task resumed"' "$work/service.log"); writes found done after a kill: $(grep -c 'Write found done after restart' "$work/service.log")"
bad=$(jq '[.[] | select(.ai_edit or (.comments | length) != 1
            or ([.attachments[] | select(.title | startswith("ai-edit_"))] | length) != 1
            or ([.attachments[] | select(.title | startswith("ai-source_"))] | length) != 1)] | length' "$work/tasks.json")
echo "work folder: $work"
[[ $bad -eq 0 ]]
