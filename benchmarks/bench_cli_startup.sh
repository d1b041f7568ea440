#!/usr/bin/env bash
# Registry CLI start-up (issue 15 item 6): alternates `bqx --help` and `bqx models list/show/
# history --json` from two source trees (NEW, OLD) on the registry in BQX_HOME; prints the
# median seconds of each. Usage:
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
"$PY" - "$out" <<'PY'
import collections, json, statistics, sys
d = collections.defaultdict(list)
for line in open(sys.argv[1]):
    k, v = line.rsplit(" ", 1)
    d[k].append(float(v))
print(json.dumps({k: round(statistics.median(v), 3) for k, v in d.items()}, indent=1))
PY
rm -f "$out"
