#!/usr/bin/env bash
# Webhook acknowledgement latency with the journal on (issue 6): while N pipelines run against
# a sandbox that answers every call after 1 s, M new signed ticks are sent one after another
# and each answer's time is measured by curl. Every tick is a new delivery, so each answer
# includes the journal's synchronous insert.
# Usage: bench/journal/run.sh [pipelines] [ticks]        (defaults 50 300)
set -euo pipefail
cd "$(dirname "$0")/../.."
pipelines=${1:-50}
ticks=${2:-300}
source scripts/lib/stack.sh
stack_build
work=$(mktemp -d)
port=18091
stack_cleanup_on_exit
stack_banner
start_sandbox
start_service LOG_LEVEL=WARNING
curl -sf -X POST "$sandbox/admin/scenario" -d '{"wavespeed_delay_ms":0,"latency_ms":1000}' > /dev/null

# The load: pipelines started by the sandbox's own ticks.
for i in $(seq "$pipelines"); do add_task "p$i"; done
tick_pids=()
for i in $(seq "$pipelines"); do
    curl -sf -X POST "$sandbox/admin/tasks/p$i/tick" -d '{}' > /dev/null &
    tick_pids+=($!)
done
wait "${tick_pids[@]}"

# The measured ticks, signed beforehand so that signing is not timed. Their tasks are not
# ticked in the sandbox, so each run stops after one look at the task.
for i in $(seq "$ticks"); do
    add_task "q$i"
    body=$(jq -cn --arg t "q$i" --arg h "$i" --arg f $stack_field \
        '{webhook_id:"wh-bench",event:"taskUpdated",task_id:$t,history_items:[{id:$h,field:"custom_field",custom_field:{id:$f,type:"checkbox"},before:null,after:"true"}]}')
    printf '%s' "$body" > "$work/body-$i"
    CLICKUP_WEBHOOK_SECRET=$stack_secret build/release/image-edit-agent sign < "$work/body-$i" > "$work/sig-$i"
done
running=$(curl -sf "$sandbox/admin/tasks" | jq '[.[] | select(.id | startswith("p")) | select(.ai_edit == true)] | length')
for i in $(seq "$ticks"); do
    curl -s -o /dev/null -w '%{http_code} %{time_total}\n' -X POST \
        -H "X-Signature: $(cat "$work/sig-$i")" -H 'Content-Type: application/json' \
        --data-binary @"$work/body-$i" "http://127.0.0.1:$port/webhook/clickup"
done > "$work/latency"
codes=$(awk '{print $1}' "$work/latency" | sort | uniq -c | awk '{printf "%s x%s ", $2, $1}')
awk '{print $2 * 1000}' "$work/latency" | sort -n > "$work/ms"
pick() { awk -v q="$1" '{v[NR]=$1} END {i=int(NR*q+0.999); if (i<1) i=1; printf "%.2f", v[i]}' "$work/ms"; }
echo "## Webhook acknowledgement with the journal on ($ticks new ticks, $running of $pipelines pipelines still running at the start, sandbox latency 1 s)"
echo
echo "answers: $codes"
echo "latency ms: p50 $(pick 0.5), p90 $(pick 0.9), p99 $(pick 0.99), max $(pick 1.0)"
echo "journal: $(du -h "$work/journal.sqlite3" | cut -f1) on $(df --output=source "$work" | tail -1)"
