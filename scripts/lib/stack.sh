# Shared by the benchmark and crash scripts: the release binaries, the sandbox and the service
# on 127.0.0.1, pointed at each other, and tasks put into the sandbox. Source it from the
# project root after setting `work` (a scratch folder) and `port` (the service's port).
# The keys are obviously fake and long enough that log redaction cannot mask ordinary words.

stack_secret=stack-webhook-secret-1
stack_field=00000000-aaaa-4bbb-8ccc-000000000001

stack_build() {
    cmake --preset release > /dev/null
    cmake --build build/release --target image-edit-agent image-edit-sandbox image-decode-worker > /dev/null
}

# Kills what was started on exit and waits, so the next run can bind the same ports at once.
stack_cleanup_on_exit() {
    trap 'kill -9 ${service_pid:-} ${service_pids[@]:-} ${sandbox_pid:-} ${redis_pid:-} 2> /dev/null; wait ${service_pid:-} ${service_pids[@]:-} ${sandbox_pid:-} ${redis_pid:-} 2> /dev/null || true' EXIT
}

start_redis() {  # PORT: redis-server with the append-only file on, in $work/redis; sets redis_pid
    mkdir -p "$work/redis"
    redis-server --bind 127.0.0.1 --port "$1" --dir "$work/redis" --appendonly yes --save '' \
        --daemonize no > "$work/redis.log" 2>&1 &
    redis_pid=$!
    until redis-cli -p "$1" ping > /dev/null 2>&1; do sleep 0.05; done
}

stack_banner() {  # a 1200x800 test banner at $work/banner.png
    convert -size 1200x800 xc:'#f08c1e' -fill '#1e3cc8' -draw 'rectangle 300,200 900,500' "$work/banner.png"
}

start_sandbox() {  # sets sandbox_pid and sandbox (its base URL); webhooks go to $service_urls
    rm -f "$work/sandbox.log"  # an earlier sandbox's line must not be read as this one's
    build/release/image-edit-sandbox --port 0 --data-dir "$work/sandbox" \
        --service-url "${service_urls:-http://127.0.0.1:$port/webhook/clickup}" \
        --webhook-secret $stack_secret \
        --field-id $stack_field > "$work/sandbox.log" 2>&1 &
    sandbox_pid=$!
    until grep -q "Sandbox listening" "$work/sandbox.log" 2> /dev/null; do sleep 0.05; done
    sandbox="http://127.0.0.1:$(grep -m1 'Sandbox listening' "$work/sandbox.log" | jq .port)"
}

start_service() {  # extra NAME=value settings...; sets service_pid, appends to $service_log
    env APP_ENV=development BIND_ADDRESS=127.0.0.1 PORT=$port LOG_LEVEL=INFO \
        CLICKUP_WEBHOOK_SECRET=$stack_secret CLICKUP_CUSTOM_FIELD_ID_AI_EDIT=$stack_field \
        CLICKUP_API_KEY=sandbox-clickup-key-1 OPENROUTER_API_KEY=sandbox-openrouter-key-1 \
        WAVESPEED_API_KEY=sandbox-wavespeed-key-1 \
        CLICKUP_API_BASE_URL="$sandbox/clickup/api/v2" \
        OPENROUTER_API_BASE_URL="$sandbox/openrouter/api/v1" \
        WAVESPEED_API_BASE_URL="$sandbox/wavespeed/api/v3" \
        CLICKUP_RATE_LIMIT_PER_MINUTE=1000000 JOURNAL_PATH="$work/journal.sqlite3" "$@" \
        build/release/image-edit-agent serve --config config/config.yaml >> "${service_log:-$work/service.log}" 2>&1 &
    service_pid=$!
    until curl -sf "http://127.0.0.1:$port/health" > /dev/null 2>&1; do sleep 0.05; done
}

add_task() {  # ID: a task holding the banner and a request
    jq -n --arg id "$1" --arg f "$work/banner.png" \
        '{id:$id, description:"Make the orange background turquoise.", attachments:[{file:$f}]}' |
        curl -sf -X POST "$sandbox/admin/tasks" -d @- > /dev/null
}
