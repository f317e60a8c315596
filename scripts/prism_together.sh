#!/usr/bin/env bash
# provider=together against Stoplight Prism's validating mock of Together's spec: every request ftorch sends is
# checked by Prism; prints the request violations (expected: 0). Prism's own example responses break the spec in
# places (events' `level: null`); those are response violations of the mock, counted apart.
#   npm install @stoplight/prism-cli@5.16.0     (once, in PRISM_DIR)
#   PRISM_DIR=/tmp/prism scripts/prism_together.sh
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SPEC="${FTORCH_TOGETHER_SPEC:-$ROOT/../shared/together/openapi.yaml}"
PRISM="${PRISM_DIR:-.}/node_modules/.bin/prism"
PORT="${PORT:-4010}"
PY="${PYTHON:-python}"
WORK="$(mktemp -d)"
"$PRISM" mock -p "$PORT" "$SPEC" > "$WORK/prism.log" 2>&1 &
PRISM_PID=$!
trap 'kill "$PRISM_PID" 2>/dev/null || true' EXIT
for _ in $(seq 60); do grep -q "Prism is listening" "$WORK/prism.log" && break; sleep 1; done
export TOGETHER_BASE_URL="http://127.0.0.1:$PORT" TOGETHER_API_KEY=prism FTORCH_CACHE="$WORK/cache"
ARGS=(recipe=together-quickstart "paths.runs=$WORK/runs" eval=none provider.download_adapter=false
      provider.poll_interval_s=0.05 provider.max_poll_interval_s=0.2)
# the first run learns the mock's model list (["string"]) and refuses the recipe's model; the second uses it
(cd "$ROOT" && "$PY" -m ftorch train "${ARGS[@]}" >/dev/null 2>&1) || true
(cd "$ROOT" && timeout -s INT 8 "$PY" -m ftorch train "${ARGS[@]}" provider.model=string) || true
RUN="$(dirname "$(ls -t "$WORK"/runs/*/*/run.json | head -1)")"
(cd "$ROOT" && "$PY" -m ftorch cancel "$RUN") || true
echo "requests: $(grep -c 'HTTP SERVER' "$WORK/prism.log")"
echo "request violations: $(grep 'VALIDATOR\] ✖' "$WORK/prism.log" | grep -vc 'response\.' || true)"
echo "mock response violations: $(grep 'VALIDATOR\] ✖' "$WORK/prism.log" | grep -c 'response\.' || true)"
