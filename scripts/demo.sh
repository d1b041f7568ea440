#!/usr/bin/env bash
# The demo: simulate 30 days of M1 bars for all 28 pairs into the default DuckDB store
# under .bqx-demo/ and show what is there. Later stages extend this script.
set -euo pipefail
cd "$(dirname "$0")/.."
export BQX_HOME="${BQX_HOME:-.bqx-demo}"
BQX=.venv/bin/bqx
$BQX data generate --days 30 --pairs all --seed 42 --signal-strength 0.1
$BQX data info
