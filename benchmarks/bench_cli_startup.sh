#!/usr/bin/env bash
# Registry CLI start-up (issue 15 item 6): alternates `bqx --help` and `bqx models list/show/
# history --json` from two source trees (NEW, OLD) on the registry in BQX_HOME; prints the
# median seconds of each (JSON; keep it as benchmarks/results/cli_startup.json). Usage:
#   BQX_HOME=<home with models> NEW=src OLD=/path/to/main/src bash benchmarks/bench_cli_startup.sh [pair] [runs]
set -euo pipefail
PAIR="${1:-EURUSD}"; RUNS="${2:-5}"; PY="${PY:-.venv/bin/python}"
BQX="$(dirname "$PY")/bqx"
t() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1 || true; e=$(date +%s.%N); echo "$e - $s" | bc; }
out=$(mktemp)
for _ in $(seq "$RUNS"); do
  echo "help $(PYTHONPATH=$NEW t "$BQX" --help)" >>"$out"
  for c in "models list" "models show $PAIR" "models history $PAIR"; do
    echo "new|$c $(PYTHONPATH=$NEW t "$BQX" $c --json)" >>"$out"
    [ -n "${OLD:-}" ] && echo "old|$c $(PYTHONPATH=$OLD t "$BQX" $c --json)" >>"$out"
  done
done
"$PY" - "$out" "$RUNS" "$PAIR" <<'PY'
import collections, datetime, json, os, statistics, sys
d = collections.defaultdict(list)
for line in open(sys.argv[1]):
    k, v = line.rsplit(" ", 1)
    d[k].append(float(v))
out = {k: round(statistics.median(v), 3) for k, v in d.items()}
for k in [k for k in out if k.startswith("new|")]:
    c = k[4:]
    out[f"new/help|{c}"] = round(out[k] / out["help"], 2)
    if f"old|{c}" in out:
        out[f"old/new|{c}"] = round(out[f"old|{c}"] / out[k], 2)
out["meta"] = {"date": datetime.datetime.now(datetime.UTC).isoformat(), "runs": int(sys.argv[2]),
               "pair": sys.argv[3], "cpus": os.cpu_count(),
               "load_average_1m_at_end": round(os.getloadavg()[0], 1)}
print(json.dumps(out, indent=1))
PY
rm -f "$out"
