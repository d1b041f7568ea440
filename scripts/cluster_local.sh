#!/usr/bin/env bash
# Start the cluster topology of deploy/ on ONE machine, for tests and demos:
#
#   PostgreSQL   a dedicated database on an existing server (bars, state, MLflow, Optuna)
#   MLflow       `mlflow server --serve-artifacts` on that database (artifacts proxied)
#   Ray          a head node + a second node started by its own `ray start`, in its own
#                working directory and (as root, with unshare) a mount namespace in which
#                the driver's project home is an empty tmpfs: it cannot read the driver's disk
#   API          two `bqx serve` replicas, each with its own home, behind nginx
#
# Usage:  scripts/cluster_local.sh start DIR     (prints and writes DIR/env: source it)
#         scripts/cluster_local.sh stop DIR      (stops exactly the processes it started)
# Settings (env): BQX_CLUSTER_PG (server URL, default postgresql://postgres@127.0.0.1:5432),
# BQX_CLUSTER_DB (database name, default bqx_cluster), BQX_CLUSTER_REDIS (default
# redis://127.0.0.1:6379/14), PYTHON / BQX (default: the project's .venv).
# nginx: Debian's package (`apt-get install nginx-light`); with CI=true as root it is installed
# here the way scripts/ensure_chromium.sh installs Chromium.
set -euo pipefail
cmd="${1:?usage: cluster_local.sh start|stop DIR}"
dir="${2:?usage: cluster_local.sh start|stop DIR}"
here="$(cd "$(dirname "$0")/.." && pwd)"
venv="${VENV:-$here/.venv}"
[ -x "$venv/bin/python" ] || venv=/work/main/.venv
bin="$venv/bin"

stop() {
  [ -f "$dir/pids" ] || return 0
  # reverse order: API and LB first, then Ray node 2, head, MLflow
  tac "$dir/pids" | while read -r name pid; do
    kill -TERM "$pid" 2>/dev/null && echo "stopped $name ($pid)" >&2 || true
  done
  sleep 2
  tac "$dir/pids" | while read -r name pid; do kill -KILL "$pid" 2>/dev/null || true; done
  rm -f "$dir/pids"
}
if [ "$cmd" = stop ]; then stop; exit 0; fi
[ "$cmd" = start ] || { echo "unknown command $cmd (start|stop)" >&2; exit 2; }

mkdir -p "$dir"/{driver/home,head,node2,api1,api2,mlflow,nginx/logs,ray,ray2}
dir="$(cd "$dir" && pwd)"
: >"$dir/pids"
started=no
trap '[ "$started" = yes ] || { echo "cluster_local: start failed; stopping what started" >&2; stop; }' EXIT

free_port() { "$bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() {  # url, name, seconds
  for _ in $(seq 1 "$3"); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 1
  done
  echo "$2 did not answer $1 within $3 s (log: $dir/$2.log)" >&2; tail -20 "$dir/$2.log" >&2 || true
  return 1
}

wait_ray() {  # log, pid: until "Ray runtime started", the process dies, or 90 s
  for _ in $(seq 1 90); do
    grep -q "Ray runtime started" "$1" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || break
    sleep 1
  done
}

# ---- nginx (Debian package), installed in CI like Chromium ------------------------------
if ! command -v nginx >/dev/null 2>&1 && [ -x /usr/sbin/nginx ]; then PATH="$PATH:/usr/sbin"; fi
if ! command -v nginx >/dev/null 2>&1; then
  if [ "${CI:-}" = true ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian's nginx-light for the load balancer..." >&2
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get install -y -q --no-install-recommends nginx-light >/tmp/bqx-apt-nginx.log 2>&1 \
      || { timeout 300 apt-get update -q >>/tmp/bqx-apt-nginx.log 2>&1; \
           timeout 300 apt-get install -y -q --no-install-recommends nginx-light >>/tmp/bqx-apt-nginx.log 2>&1; }
  fi
fi
command -v nginx >/dev/null 2>&1 || { echo "nginx not found: apt-get install nginx-light" >&2; exit 3; }

# ---- PostgreSQL: a dedicated database ----------------------------------------------------
pg="${BQX_CLUSTER_PG:-postgresql://postgres@127.0.0.1:5432}"
db="${BQX_CLUSTER_DB:-bqx_cluster}"
"$bin/python" - "$pg" "$db" <<'PY'
import sys, psycopg
server, db = sys.argv[1], sys.argv[2]
# MLflow and Optuna each keep their own Alembic version table: one database each
with psycopg.connect(f"{server}/postgres", autocommit=True, connect_timeout=5) as c:
    for name in (db, f"{db}_mlflow", f"{db}_optuna"):
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        c.execute(f'CREATE DATABASE "{name}"')
PY
pgdb="$pg/$db"
mlflow_db="${pg/postgresql:\/\//postgresql+psycopg://}/${db}_mlflow"

# ---- MLflow tracking server, artifacts proxied -------------------------------------------
mport=$(free_port)
(cd "$dir/mlflow" && exec "$bin/mlflow" server --backend-store-uri "$mlflow_db" \
   --serve-artifacts --artifacts-destination "$dir/mlflow/artifacts" \
   --host 127.0.0.1 --port "$mport" --workers 1 >"$dir/mlflow.log" 2>&1) &
echo "mlflow $!" >>"$dir/pids"

# ---- Ray: head + a second node that cannot see the driver's home -------------------------
rport=$(free_port)
export PYTHONPATH="$here/src${PYTHONPATH:+:$PYTHONPATH}"   # the code, never the project home
export RAY_USAGE_STATS_ENABLED=0
# Ray >= 2.5x authenticates nodes and drivers with a token (~/.ray/auth_token, or
# RAY_AUTH_TOKEN_PATH); every process of the cluster, the driver included, must use it
export RAY_AUTH_MODE=token
export RAY_AUTH_TOKEN_PATH="${RAY_AUTH_TOKEN_PATH:-$dir/ray-auth-token}"
[ -s "$RAY_AUTH_TOKEN_PATH" ] || "$bin/python" -c 'import secrets,sys; open(sys.argv[1],"w").write(secrets.token_hex(32))' "$RAY_AUTH_TOKEN_PATH"
chmod 600 "$RAY_AUTH_TOKEN_PATH"
ray_common=(--num-cpus=1 --disable-usage-stats --block)
(cd "$dir/head" && BQX_WORKER_HOME="$dir/head/bqx" exec "$bin/ray" start --head \
   --node-ip-address=127.0.0.1 --port="$rport" --temp-dir="$dir/ray" --include-dashboard=false \
   --dashboard-agent-listen-port="$(free_port)" \
   --resources='{"bqx_head": 100}' "${ray_common[@]}" >"$dir/ray-head.log" 2>&1) &
echo "ray-head $!" >>"$dir/pids"
wait_ray "$dir/ray-head.log" "$(tail -1 "$dir/pids" | cut -d' ' -f2)"
grep -q "Ray runtime started" "$dir/ray-head.log" || { tail -20 "$dir/ray-head.log" >&2; exit 4; }
node2=("$bin/ray" start --address="127.0.0.1:$rport" --node-ip-address=127.0.0.1
       --dashboard-agent-listen-port="$(free_port)" --resources='{"bqx_node2": 100}'
       "${ray_common[@]}")
isolated=no
if [ "$(id -u)" = 0 ] && unshare --mount --propagation private true 2>/dev/null; then
  isolated=yes  # the driver's home is an empty tmpfs in node 2's mount namespace
  (cd "$dir/node2" && BQX_WORKER_HOME="$dir/node2/bqx" exec unshare --mount --propagation private \
     sh -c 'mount -t tmpfs -o size=1m bqx-hidden "$0" && exec "$@"' "$dir/driver" "${node2[@]}" \
     >"$dir/ray-node2.log" 2>&1) &
else
  (cd "$dir/node2" && BQX_WORKER_HOME="$dir/node2/bqx" exec "${node2[@]}" >"$dir/ray-node2.log" 2>&1) &
fi
echo "ray-node2 $!" >>"$dir/pids"
wait_ray "$dir/ray-node2.log" "$(tail -1 "$dir/pids" | cut -d' ' -f2)"
grep -q "Ray runtime started" "$dir/ray-node2.log" || { tail -20 "$dir/ray-node2.log" >&2; exit 4; }

# ---- shared settings for every process ---------------------------------------------------
redis="${BQX_CLUSTER_REDIS:-redis://127.0.0.1:6379/14}"
cat >"$dir/env" <<ENV
export BQX_STORE_URL=$pgdb
export BQX_STATE_URL=$pgdb
export BQX_TRACKING_URI=http://127.0.0.1:$mport
export BQX_OPTUNA_URL=${pgdb}_optuna
export BQX_TRAIN__RAY_ADDRESS=127.0.0.1:$rport
export BQX_SERVE__RATE_LIMIT_URL=$redis
export BQX_SERVE__ALIAS_TTL_S=2
export BQX_HOME=$dir/driver/home
export BQX_CLUSTER_DIR=$dir
export BQX_CLUSTER_ISOLATED=$isolated
export RAY_AUTH_MODE=token
export RAY_AUTH_TOKEN_PATH=$RAY_AUTH_TOKEN_PATH
ENV
wait_http "http://127.0.0.1:$mport/health" mlflow 90

# ---- two API replicas behind nginx -------------------------------------------------------
a1=$(free_port); a2=$(free_port); lb=$(free_port)
# create the store and state tables once: two replicas creating them at the same moment in
# an empty database race in PostgreSQL's catalog (duplicate pg_type) and one fails to start
(set -a; . "$dir/env"; set +a; cd "$dir/driver" && "$bin/python" -c '
from bqx.config import load_settings
from bqx.data.store import open_store
from bqx.state import open_state
s = load_settings(); open_store(settings=s).close(); open_state(s)')
for i in 1 2; do
  port=$([ $i = 1 ] && echo "$a1" || echo "$a2")
  (set -a; . "$dir/env"; set +a; export BQX_HOME="$dir/api$i/home"; unset BQX_TRAIN__RAY_ADDRESS
   cd "$dir/api$i" && exec "$bin/bqx" serve --port "$port" >"$dir/api$i.log" 2>&1) &
  echo "api$i $!" >>"$dir/pids"
done
sed -e "s/__API1__/127.0.0.1:$a1/; s/__API2__/127.0.0.1:$a2/; s/__LISTEN__/127.0.0.1:$lb/" \
    -e "s#__PREFIX__#$dir/nginx#g" "$here/deploy/nginx/bqx-local.conf" >"$dir/nginx/nginx.conf"
nginx -t -p "$dir/nginx" -c "$dir/nginx/nginx.conf" >"$dir/nginx.log" 2>&1
(exec nginx -p "$dir/nginx" -c "$dir/nginx/nginx.conf" -g 'daemon off;' >>"$dir/nginx.log" 2>&1) &
echo "nginx $!" >>"$dir/pids"
wait_http "http://127.0.0.1:$a1/healthz" api1 90
wait_http "http://127.0.0.1:$a2/healthz" api2 90
wait_http "http://127.0.0.1:$lb/healthz" nginx 20
cat >>"$dir/env" <<ENV
export BQX_CLUSTER_API1=http://127.0.0.1:$a1
export BQX_CLUSTER_API2=http://127.0.0.1:$a2
export BQX_CLUSTER_LB=http://127.0.0.1:$lb
ENV
started=yes
cat "$dir/env"
