#!/usr/bin/env bash
# Start the prediction API on the demo home and print a curl command that works.
#
#   BQX_HOME=.bqx-demo bash scripts/serve_demo.sh        (make demo calls it last)
#
# Creates a reader key (printed once; only its hash is stored), starts `bqx serve` in the
# background, waits for /healthz and /readyz, prints a POST /v1/predict curl command with
# the key, and leaves the server running: its PID and how to stop it are printed.
set -euo pipefail
cd "$(dirname "$0")/.."
export BQX_HOME="${BQX_HOME:-.bqx-demo}"
BQX="${BQX:-.venv/bin/bqx}"
PY="${PY:-.venv/bin/python}"
HOST="${BQX_SERVE__HOST:-127.0.0.1}"
PORT="${BQX_SERVE__PORT:-8000}"
PAIR="${DEMO_PAIR:-EURUSD}"
LOG="$BQX_HOME/serve.log"
mkdir -p "$BQX_HOME"

# a server left running by an earlier demo in this home: stop it first
if [ -f "$BQX_HOME/serve.pid" ] && kill -0 "$(cat "$BQX_HOME/serve.pid")" 2>/dev/null; then
  echo "stopping the demo server from an earlier run (PID $(cat "$BQX_HOME/serve.pid"))"
  kill "$(cat "$BQX_HOME/serve.pid")" 2>/dev/null || true
  for _ in $(seq 1 40); do kill -0 "$(cat "$BQX_HOME/serve.pid")" 2>/dev/null || break; sleep 0.25; done
fi

if curl -fsS "http://$HOST:$PORT/healthz" >/dev/null 2>&1; then
  echo "error: something already answers on http://$HOST:$PORT (set BQX_SERVE__PORT)" >&2
  exit 1
fi

KEY=$("$BQX" keys create --role reader --name demo --json \
      | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["key"])')

# kept for the rest of the demo (its traffic and the dashboard URL); demo home only
(umask 077 && printf '%s\n' "$KEY" >"$BQX_HOME/demo.key")

BQX_SERVE__PREWARM="[\"$PAIR\"]" nohup "$BQX" serve --host "$HOST" --port "$PORT" >"$LOG" 2>&1 &
PID=$!
echo "$PID" >"$BQX_HOME/serve.pid"

for _ in $(seq 1 240); do  # up to 2 min: a first start compiles the feature kernels (~30 s)
  if curl -fsS "http://$HOST:$PORT/healthz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$PID" 2>/dev/null; then
    echo "error: bqx serve exited; see $LOG" >&2
    tail -n 20 "$LOG" >&2
    exit 1
  fi
  sleep 0.5
done
if ! curl -fsS "http://$HOST:$PORT/readyz" >/dev/null 2>&1; then
  echo "warning: the API is up but not ready (no production model?):" >&2
  curl -sS "http://$HOST:$PORT/readyz" >&2 || true
  echo >&2
fi

CMD="curl -sS -X POST http://$HOST:$PORT/v1/predict -H 'X-API-Key: $KEY' -H 'Content-Type: application/json' -d '{\"pair\": \"$PAIR\"}'"
echo
echo "The prediction API is running (PID $PID, log $LOG, OpenAPI at http://$HOST:$PORT/docs)."
echo "Demo key (reader role, shown once): $KEY"
echo
echo "Try it:"
echo "  $CMD"
echo
echo "Example answer:"
eval "$CMD" | "$PY" -m json.tool || true
echo
echo "Stop the server with:  kill $PID    (or: kill \$(cat $BQX_HOME/serve.pid))"
