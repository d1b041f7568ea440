#!/usr/bin/env bash
# The demo (`make demo`): from nothing to served forecasts on the embedded default store.
#
#   1. simulate DEMO_DAYS calendar days of M1 bars for the 28 pairs, with a predictable
#      component of known strength (DEMO_SIGNAL = the oracle R² of the 60-bar target) that is
#      short-lived (DEMO_SPAN: the momentum EMA's span in bars), into DuckDB under .bqx-demo/
#   2. build the causal feature store (809 candidates per bar)
#   3. train one model per pair (DEMO_MODEL), 2 pairs in parallel; the approval rule alone
#      decides which versions are promoted to production (no hand approval)
#   4. show the registry and say how many pairs passed the rule on their own
#   5. start the API on the demo models and print a curl command with a demo key
#   5b. a small walk-forward backtest (retrain per window, out-of-sample months): report path
#   6. paper-trade the last hour through the live decision path; compare with a backtest
#   7. one monitoring pass; 8. the operator's status and where the decision layer answers
#
# Why these data and settings (issue 15; measurements in docs/performance.md, "Demo"): the
# approval rule asks for the test R² gain over every naive baseline to be above 0 at 95 %
# confidence, with the overlap of 60-bar targets counted (n_eff). On 3 weeks of data the test
# segment has ~70 effective samples and even the *oracle* forecast passes for only 2-5 of the
# 28 pairs (benchmarks/bench_demo_oracle.py); on 4 months at signal 0.25 the oracle passes for
# all 28, but with the simulator's default slow momentum (EMA span 240 bars) the target stays
# autocorrelated beyond the 60-bar horizon, so the "last known target" baseline captures part
# of the signal and ridge passed for only 20 of 28 (a stronger signal does not help: that
# baseline gets stronger with it). The demo's market therefore plants a short-lived momentum
# (span 90 bars: it fades within the horizon; the oracle's worst lower bound over that baseline
# goes from +0.028 to +0.144); a model has to learn it, and step 4 lists any pair that still
# fails (it gets no production model; measured runs in docs/performance.md).
# To fit 5 minutes on 2 cores (issue 15) the demo simulates 3 months instead of 4 and judges
# each model on a test segment of 30 % of the rows instead of 15 % (split 55/15/30 %, stated in
# step 3): the rule gets more evidence (the oracle's worst lower bounds over the mean / over
# lag60 are +0.099 / +0.174 there, against +0.107 / +0.144 on 4 months at 70/15/15) from 25 %
# fewer rows to simulate, build and train on. The signal is far stronger
# than anything real FX offers: the demo shows the machinery, not an edge. The demo model is
# ridge regression (alpha 1e4, in the zoo): on short histories it recovers more of the planted
# signal than the SPEC forest and trains in about a second; features are still selected per
# pair by the SPEC selection forest (scikit-learn: what the demo was measured with; `bqx
# train` now defaults to LightGBM's rf mode for both selection and model, `lgbm_rf`).
set -euo pipefail
cd "$(dirname "$0")/.."
export BQX_HOME="${BQX_HOME:-.bqx-demo}"
BQX=.venv/bin/bqx
DEMO_DAYS="${DEMO_DAYS:-91}"          # 2024-03-01 .. 2024-05-30 (3 months)
DEMO_SIGNAL="${DEMO_SIGNAL:-0.25}"    # oracle R² of the planted signal
DEMO_SPAN="${DEMO_SPAN:-90}"          # bars: the planted momentum's EMA span (simulator default 240)
DEMO_MODEL="${DEMO_MODEL:-ridge}"
# the training split of step 3 (bqx train defaults: 0.70 / 0.15, test = the rest)
DEMO_TRAIN_FRAC="${DEMO_TRAIN_FRAC:-0.55}"
DEMO_VAL_FRAC="${DEMO_VAL_FRAC:-0.15}"
# the selection forest sees 5,000 training rows per pair instead of 30,000 (stated in step 3;
# measured in docs/performance.md, "Demo")
export BQX_TRAIN__SELECTION_ROWS="${BQX_TRAIN__SELECTION_ROWS:-5000}"
# ... by the scikit-learn selection forest (at 5,000 rows LightGBM's rf mode, the library
# default, is no cheaper; the demo's 28/28 were measured with scikit-learn's)
export BQX_TRAIN__SELECTION_ENGINE="${BQX_TRAIN__SELECTION_ENGINE:-sklearn}"
# Steps 3 and 5b run 2 processes on 2 cores: one BLAS / OpenMP thread each. With the libraries'
# default (a thread per core in every process) the idle threads spin and the training step
# used ~1.6x the CPU (measured: docs/performance.md, "Demo").
ONE_THREAD=(env OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1)

# elapsed time per step (issue 15: the demo says where its minutes go), and the CPU seconds
# its commands used (bash's `times`: finished children, user + system; the API server runs in
# the background and is not counted). On a loaded machine the wall time grows, the CPU does not.
mkdir -p "$BQX_HOME"
cpu_ms() {  # CPU_MS = children's user + system CPU so far, in ms (call it without $(...):
  local f="$BQX_HOME/.demo-times" l u s t ms=0  # a subshell's `times` starts at zero)
  times >"$f"
  { read -r l; read -r u s; } <"$f"
  for t in "$u" "$s"; do  # e.g. 1m2.345s
    local m=${t%%m*} r=${t#*m}; r=${r%s}
    ms=$((ms + 10#$m * 60000 + 10#${r%.*} * 1000 + 10#${r#*.}))
  done
  CPU_MS=$ms
}
T0=$(date +%s)
TS=$T0
C0=0
CS=0
step() {  # step "title": close the previous step with its time, open the next
  local now c; now=$(date +%s); cpu_ms; c=$CPU_MS
  if [ "$TS" != "$T0" ] || [ -n "${STEP:-}" ]; then
    echo "   (${STEP:-}: $((now - TS)) s, CPU $(((c - CS) / 1000)) s; demo so far $((now - T0)) s, CPU $(((c - C0) / 1000)) s)"
  fi
  STEP="$1"; TS=$now; CS=$c
  [ -n "$1" ] && echo "== $1"
  return 0
}
cpu_ms; C0=$CPU_MS

dashboard_hint() {  # the live dashboard's URL (the key travels in the #fragment, never sent)
  local key; key=$(cat "$BQX_HOME/demo.key" 2>/dev/null || true)
  local url="http://127.0.0.1:${BQX_SERVE__PORT:-8000}"
  if [ -n "$key" ]; then
    echo "live dashboard:           $url/dashboard#key=$key"
    echo "forecast:                 curl -sS -X POST $url/v1/predict -H 'X-API-Key: $key' -H 'Content-Type: application/json' -d '{\"pair\": \"EURUSD\"}'"
  else
    echo "live dashboard:           $url/dashboard (enter a reader key in the page)"
  fi
}

step "1/8 simulating $DEMO_DAYS days of M1 bars for the 28 pairs (simulator, seed 42, planted signal $DEMO_SIGNAL = oracle R² $DEMO_SIGNAL, far above real FX)"
echo "   the planted signal is a short-lived momentum (EMA span $DEMO_SPAN bars, the simulator's default is 240): it fades"
echo "   within the 60-bar horizon, so the naive 'last known target' forecast does not capture it and a model has to learn it"
# the online feature path's kernels compile once per source tree (~30 s of CPU on a new
# clone, ~1 s once cached): one background process compiles them while the simulator runs on
# one core, so the server's warm-up at step 5 only loads them (waited for at step 5)
.venv/bin/python -c "from bqx.features import pipeline as P; P.warm_families([f.name for f in P.families()])" \
  >/dev/null 2>&1 &
WARM_PID=$!
$BQX data generate --days "$DEMO_DAYS" --pairs all --seed 42 --signal-strength "$DEMO_SIGNAL" \
  --signal-span "$DEMO_SPAN" --start 2024-03-01
$BQX data info

step "2/8 building the feature store"
$BQX features build --pairs all

step "3/8 training 28 pairs (demo model: $DEMO_MODEL; \`bqx train\` defaults to lgbm_rf, the SPEC forest in LightGBM), 2 in parallel (one BLAS thread each)"
echo "   features selected per pair on $BQX_TRAIN__SELECTION_ROWS training rows (SPEC selection forest, scikit-learn)"
echo "   split train/validation/test $DEMO_TRAIN_FRAC/$DEMO_VAL_FRAC/rest (\`bqx train\` defaults to 0.70/0.15/0.15: the"
echo "   demo's shorter history gets a longer test segment, so the approval rule has as much evidence)"
echo "   approval rule: test R² gain over every naive baseline > 0 at 95 % confidence (overlap-aware), DA > 0.5"
"${ONE_THREAD[@]}" BQX_TRAIN__TRAIN_FRAC="$DEMO_TRAIN_FRAC" BQX_TRAIN__VAL_FRAC="$DEMO_VAL_FRAC" $BQX train --all --jobs 2 --promote --no-build-features --model "$DEMO_MODEL" || echo "(some pairs failed: see above)"

step "4/8 registry: what the approval rule decided on its own"
# No version is approved by hand here: a pair whose model did not beat the naive baselines
# with confidence has no production model, and the API refuses it.
.venv/bin/python - <<'PY'
from bqx.registry import Registry

reg = Registry()
latest = {}
for v in reg.versions():
    cur = latest.get(v.pair)
    if v.registration == "complete" and (cur is None or int(v.version) > int(cur.version)):
        latest[v.pair] = v
served = sorted(p for p, v in latest.items() if "production" in v.aliases)
failed = sorted(p for p in latest if p not in served)
print(f"{len(served)} of {len(latest)} pairs passed the approval rule on their own and serve")
import os

with open(os.path.join(os.environ["BQX_HOME"], "served_pairs"), "w") as f:
    f.write(",".join(served))  # the demo's traffic goes to pairs that have a model
if failed:
    print(f"NOT approved (no production model; the API refuses them): {', '.join(failed)}")
    print("  why: bqx models show PAIR --version V  (the test R² gain and its interval)")
PY
$BQX models list

step "5/8 serving"
# the kernels' background compile of step 1 (normally long done; its CPU is counted here)
wait "$WARM_PID" 2>/dev/null || true
if [ -f scripts/serve_demo.sh ]; then
  bash scripts/serve_demo.sh
fi

step "5b/8 walk-forward backtest: EURUSD and USDJPY, retrained on 2 months, traded on the next (out of sample)"
echo "   (with a planted signal this strong the leakage alarm may fire: on real FX such figures would mean lookahead)"
"${ONE_THREAD[@]}" $BQX backtest --pairs EURUSD,USDJPY --train-months 2 --test-months 1 --windows 1 \
  --model "$DEMO_MODEL" --jobs 2 --out "$BQX_HOME/backtests/demo-walkforward" \
  || echo "(walk-forward backtest failed: see above)"

# ---- more capabilities --------------------------------------------------------------------
# One `step "title"` and a command or two each, so that their time is printed like the
# others'. Keep each under ~30 s.

step "6/8 paper trading: an hour of EURUSD and USDJPY replayed through the live path"
# the hour ending 2 h before the last bar, so that its decisions' targets are known (matured)
LAST=$(.venv/bin/python -c "from bqx.data.store import open_store; import pandas as pd; s = open_store(); print((max(s.latest(['EURUSD', 'USDJPY']).values()) - pd.Timedelta(hours=2)).isoformat()); s.close()")
FIRST=$(.venv/bin/python -c "import pandas as pd; print((pd.Timestamp('$LAST') - pd.Timedelta(minutes=59)).isoformat())")
$BQX paper delete --name demo >/dev/null 2>&1 || true
$BQX paper start --name demo --pairs EURUSD,USDJPY --feed replay --start "$FIRST" --end "$LAST"
$BQX paper compare --name demo || echo "(paper and backtest differ: see above)"

step "7/8 monitoring pass (matured outcomes, live quality, input drift, alerts)"
URL="http://127.0.0.1:${BQX_SERVE__PORT:-8000}"
KEY=$(cat "$BQX_HOME/demo.key" 2>/dev/null || true)
if [ -n "$KEY" ] && curl -fsS "$URL/healthz" >/dev/null 2>&1; then
  # forecasts at the 5 h before $LAST for 6 pairs through the live API (logged, inputs
  # captured, targets known), so the pass and /dashboard have quality, drift and traffic
  SERVED=$(cut -d, -f1-6 "$BQX_HOME/served_pairs" 2>/dev/null || true)
  .venv/bin/python scripts/demo_traffic.py --url "$URL" --key "$KEY" --end "$LAST" \
    ${SERVED:+--pairs "$SERVED"} \
    || echo "(demo traffic failed: see above)"
fi
$BQX monitor run --as-of "$LAST" || echo "(monitoring pass reported a problem: see above)"

step "8/8 the loop and the decision layer"
$BQX ops status --json | head -20 || true
echo "risk check (trader key):  bqx keys create --role trader, then"
echo "  curl -s -X POST http://127.0.0.1:${BQX_SERVE__PORT:-8000}/v1/risk/check -H 'X-API-Key: KEY' \\"
echo "       -H 'content-type: application/json' -d '{\"pair\":\"EURUSD\",\"side\":\"BUY\",\"quantity\":100000}'"
echo "monitoring summary:       http://127.0.0.1:${BQX_SERVE__PORT:-8000}/v1/monitoring/summary (X-API-Key)"
echo "regime history:           http://127.0.0.1:${BQX_SERVE__PORT:-8000}/v1/regime/EURUSD (X-API-Key)"

step ""
echo "== demo done in $(($(date +%s) - T0)) s (CPU of its commands $(((CPU_MS - C0) / 1000)) s)"
dashboard_hint
