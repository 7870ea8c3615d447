#!/usr/bin/env bash
# Builds the service and runs it on its embedded defaults, on 127.0.0.1, with a local
# webhook secret, and shows how to send it a signed webhook.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake --preset release > /dev/null
cmake --build build/release -j "$(nproc)" --target image-edit-agent

export APP_ENV=development
export BIND_ADDRESS=127.0.0.1
export PORT="${PORT:-8080}"
export CLICKUP_WEBHOOK_SECRET="${CLICKUP_WEBHOOK_SECRET:-local-webhook-secret}"
export CLICKUP_CUSTOM_FIELD_ID_AI_EDIT="${CLICKUP_CUSTOM_FIELD_ID_AI_EDIT:-00000000-aaaa-4bbb-8ccc-000000000001}"

cat <<MSG
image-edit-agent on http://127.0.0.1:${PORT} (Ctrl-C stops it). In another shell:

  body='{"event":"taskUpdated","task_id":"demo1","webhook_id":"wh1","history_items":[{"id":"1","field":"custom_field","custom_field":{"id":"${CLICKUP_CUSTOM_FIELD_ID_AI_EDIT}"},"before":null,"after":"true"}]}'
  sig=\$(printf '%s' "\$body" | CLICKUP_WEBHOOK_SECRET=${CLICKUP_WEBHOOK_SECRET} build/release/image-edit-agent sign)
  curl -s -H "X-Signature: \$sig" -H 'Content-Type: application/json' -d "\$body" http://127.0.0.1:${PORT}/webhook/clickup

MSG
exec build/release/image-edit-agent serve
