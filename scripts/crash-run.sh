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
source scripts/lib/stack.sh
stack_build
work=$(mktemp -d /tmp/crash-run.XXXXXX)
port=18092
stack_cleanup_on_exit
stack_banner
start_sandbox
# Generations take a while and every first review fails, so kills land in every step.
curl -sf -X POST "$sandbox/admin/scenario" \
    -d '{"wavespeed_delay_ms":800,"latency_ms":20,"verdicts":[{"model":"*","iteration":1,"score":5,"pass":false}]}' > /dev/null
service_settings=(VALIDATION_DELAY_SECONDS=0.1 TIMEOUT_CLICKUP_SECONDS=5 WAVESPEED_POLL_INTERVAL_SECONDS=0.2)

start_service "${service_settings[@]}"
for i in $(seq "$tasks"); do add_task "c$i"; done
for i in $(seq "$tasks"); do curl -sf -X POST "$sandbox/admin/tasks/c$i/tick" -d '{}' > /dev/null; done

echo "seed $seed: $tasks tasks, $kills kills"
for k in $(seq "$kills"); do
    pause_ms=$(( 300 + RANDOM % 1500 ))
    sleep "$(printf '0.%03d' $((pause_ms % 1000)))"; sleep $((pause_ms / 1000))
    kill -9 $service_pid; wait $service_pid 2> /dev/null || true
    start_service "${service_settings[@]}"
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
