#!/usr/bin/env bash
# The service's main job on its embedded defaults, end to end on this machine:
# builds the service and the local sandbox (fakes of ClickUp, OpenRouter and WaveSpeed),
# starts both on 127.0.0.1, puts a task holding a real image and a request in Greek into the
# sandbox, ticks its "AI edit" box, waits for the signed webhooks to be handled, and prints
# the result file and the comment the service wrote on the task.
#
# Usage: scripts/run.sh [--keep]     --keep leaves both running so you can tick more tasks.
set -euo pipefail
cd "$(dirname "$0")/.."
keep=false
[[ "${1:-}" == "--keep" ]] && keep=true

scripts/deps.sh
cmake --preset release > /dev/null
cmake --build build/release -j "$(nproc)" \
    --target image-edit-agent image-edit-sandbox image-decode-worker > /dev/null

work=$(mktemp -d /tmp/image-edit-demo.XXXXXX)
secret=local-webhook-secret
field=00000000-aaaa-4bbb-8ccc-000000000001
port=${PORT:-8080}
cleanup() { kill "${service_pid:-}" "${sandbox_pid:-}" 2> /dev/null || true; }
trap cleanup EXIT

wait_for_line() {  # file text -> the first line of file containing text
    for _ in $(seq 200); do
        if line=$(grep -m1 -F "$2" "$1" 2> /dev/null); then echo "$line"; return 0; fi
        sleep 0.05
    done
    echo "gave up waiting for '$2' in $1" >&2
    return 1
}

# 1. The sandbox, which will send its webhooks to the service.
build/release/image-edit-sandbox --port 0 --data-dir "$work/sandbox" \
    --service-url "http://127.0.0.1:$port/webhook/clickup" \
    --webhook-secret "$secret" --field-id "$field" > "$work/sandbox.log" 2>&1 &
sandbox_pid=$!
sandbox_port=$(wait_for_line "$work/sandbox.log" "Sandbox listening" | jq -r .port)
sandbox="http://127.0.0.1:$sandbox_port"
# Quick fakes: a generation takes a second here, 10-45 s on the real service.
curl -sf -X POST "$sandbox/admin/scenario" -d '{"wavespeed_delay_ms":1000}' > /dev/null

# 2. The service on its defaults, its three providers pointed at the sandbox.
env APP_ENV=development BIND_ADDRESS=127.0.0.1 PORT="$port" \
    CLICKUP_WEBHOOK_SECRET="$secret" CLICKUP_CUSTOM_FIELD_ID_AI_EDIT="$field" \
    CLICKUP_API_KEY=sandbox-key OPENROUTER_API_KEY=sandbox-key WAVESPEED_API_KEY=sandbox-key \
    CLICKUP_API_BASE_URL="$sandbox/clickup/api/v2" \
    OPENROUTER_API_BASE_URL="$sandbox/openrouter/api/v1" \
    WAVESPEED_API_BASE_URL="$sandbox/wavespeed/api/v3" \
    VALIDATION_DELAY_SECONDS=0.5 WAVESPEED_POLL_INTERVAL_SECONDS=0.5 \
    JOURNAL_PATH="$work/journal.sqlite3" \
    build/release/image-edit-agent serve --config config/config.yaml > "$work/service.log" 2>&1 &
service_pid=$!
wait_for_line "$work/service.log" "Service listening" > /dev/null

# 3. A task as a designer leaves it: a layered PSD banner and a request in Greek.
request='Στο banner άλλαξε το κείμενο σε "BLACK FRIDAY" με ακριβώς την ίδια γραμματοσειρά και το ίδιο στυλ. Το 50% κάν'"'"' το 70%. Και το πορτοκαλί φόντο από πίσω να γίνει τιρκουάζ, όλα τα άλλα ίδια.'
image=../shared/corpus/images/psd-rgb8-layered-ok.psd
if [[ ! -f "$image" ]]; then
    # A clone without ../shared: make a banner to edit.
    image="$work/banner.png"
    convert -size 900x500 xc:'#f08c1e' -fill '#1e3cc8' -draw 'rectangle 200,120 700,300' \
        -fill white -draw 'rectangle 0,380 900,440' "$image"
fi
jq -n --arg d "$request" --arg f "$(realpath "$image")" \
    '{id:"demo1", name:"Black Friday banner", description:$d, attachments:[{file:$f}]}' |
    curl -sf -X POST "$sandbox/admin/tasks" -d @- > /dev/null

echo "Ticking \"AI edit\" on task demo1 ($(basename "$image"))..."
curl -sf -X POST "$sandbox/admin/tasks/demo1/tick" -d '{}' > /dev/null

# 4. Wait for the task to reach its end: box unticked, a comment written.
for _ in $(seq 600); do
    task=$(curl -sf "$sandbox/admin/tasks/demo1")
    if [[ $(jq -r '.ai_edit' <<< "$task") == false && $(jq '.comments | length' <<< "$task") -gt 0 ]]; then
        break
    fi
    sleep 0.2
done

status=$(jq -r '.status.status' <<< "$task")
result_url=$(jq -r '[.attachments[] | select(.title | startswith("ai-edit_"))][0].url // empty' <<< "$task")
echo
echo "Task status:  $status"
echo "AI edit box:  $(jq -r 'if .ai_edit then "ticked" else "unticked" end' <<< "$task")"
if [[ -n "$result_url" ]]; then
    echo "Result file:  $work/sandbox/files/${result_url#*/files/}"
fi
echo "Comment on the task:"
jq -r '.comments[-1].comment_text' <<< "$task" | sed 's/^/    /'
echo "Logs: $work/service.log (one JSON object per line; grep by task_id)"

if $keep; then
    cat <<MSG

Both keep running (Ctrl-C stops them). Sandbox admin API: $sandbox/admin (docs/sandbox.md).
Tick the task again:   curl -X POST $sandbox/admin/tasks/demo1/tick -d '{}'
Watch it:              curl -s $sandbox/admin/tasks/demo1 | jq '.status, .comments'
MSG
    wait "$service_pid"
fi
[[ "$status" == complete ]]
