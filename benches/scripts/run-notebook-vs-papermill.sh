#!/usr/bin/env bash
# run-notebook against papermill on the same notebook, parameters and kernel (issue 14).
#
# Starts a JupyterHub 6 on loopback (the venv and configurable-http-proxy of
# .ci/install-peers), then, ROUNDS times after one discarded warm-up round of each:
#   - papermill on this machine, next to the hub's single-user servers, with the same venv's
#     ipykernel: it starts a local kernel, runs the cells, stops the kernel;
#   - run-notebook (release build) through the hub: it starts the user's server, creates a
#     kernel, runs the cells over the kernel websocket, deletes the kernel, stops the server.
# Prints a markdown table of medians on stdout (progress on stderr): wall time of each
# process, run-notebook's time without the server's start and stop (its phases route,
# kernel, websocket, cells, kernel delete), and the sum of the code cells' own durations
# (metadata.papermill.duration in each executed notebook). Every process it starts is
# stopped by PID when it ends.
#
# With SERVER_NODELAY=1, the single-user servers run with a kernel websocket connection class
# that turns Nagle's algorithm off on the kernel websocket (tornado's set_nodelay(True),
# which jupyter_server never calls): the server-side fix of the 40 ms per-cell stall, for
# comparison with run-notebook's own (an unsolicited Pong per kernel message).
#
#   [SERVER_NODELAY=1] benches/scripts/run-notebook-vs-papermill.sh [ROUNDS] [NOTEBOOK]
set -euo pipefail
rounds=${1:-10}
root=$(cd "$(dirname "$0")/../.." && pwd)
notebook=${2:-$root/examples/data/notebooks/parameters.ipynb}
cd "$root"
peers=${EGI_PEERS_DIR:-$root/.peers}
venv=$peers/jupyterhub
chp=$peers/chp/node_modules/.bin/configurable-http-proxy
for exe in "$venv/bin/jupyterhub" "$venv/bin/papermill" "$chp"; do
    [[ -x $exe ]] || { echo "$exe missing: run .ci/install-peers" >&2; exit 1; }
done
cargo build -q --release -p egi-examples --bin run-notebook
bin=${CARGO_TARGET_DIR:-$root/target}/release/run-notebook

work=$(mktemp -d)
hub_pid=
cleanup() {
    if [[ -n $hub_pid ]]; then
        kill -TERM "$hub_pid" 2>/dev/null || true
        wait "$hub_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
public=$(free_port)
proxy_api=$(free_port)
hub_port=$(free_port)
token=bench-$(python3 -c 'import secrets; print(secrets.token_hex(16))')
mkdir -p "$work/homes"
cat >"$work/jupyterhub_config.py" <<EOF
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = $public
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = $hub_port
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:$proxy_api"
c.ConfigurableHTTPProxy.command = ["$chp"]
c.ConfigurableHTTPProxy.pid_file = "$work/proxy.pid"
c.JupyterHub.pid_file = "$work/hub.pid"
c.JupyterHub.db_url = "sqlite:///$work/hub.sqlite"
c.JupyterHub.cookie_secret_file = "$work/cookie_secret"
c.JupyterHub.cleanup_servers = True
c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 0}
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = "$work/homes/{username}"
c.Spawner.cmd = ["$venv/bin/jupyterhub-singleuser"]
c.Spawner.args = ["--allow-root"]
c.Spawner.environment = {"PATH": "$venv/bin:$PATH"}
c.JupyterHub.services = [{"name": "bench", "api_token": "$token"}]
c.JupyterHub.load_roles = [{"name": "bench", "services": ["bench"], "scopes": [
    "admin:users", "admin:servers", "access:servers", "list:users", "read:metrics"]}]
EOF
if [[ ${SERVER_NODELAY:-0} == 1 ]]; then
    mkdir -p "$work/pymod"
    cat >"$work/pymod/nodelay_ws.py" <<'PY'
from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection
class NoDelayConnection(ZMQChannelsWebsocketConnection):
    def connect(self):
        self.websocket_handler.set_nodelay(True)
        return super().connect()
PY
    cat >>"$work/jupyterhub_config.py" <<EOF
c.Spawner.args = ["--allow-root",
    "--ServerApp.kernel_websocket_connection_class=nodelay_ws.NoDelayConnection"]
c.Spawner.environment = {"PATH": "$venv/bin:$PATH", "PYTHONPATH": "$work/pymod"}
EOF
fi
(cd "$work" && PATH="$venv/bin:$PATH" exec "$venv/bin/jupyterhub" -f jupyterhub_config.py \
    >"$work/hub.log" 2>&1) &
hub_pid=$!
for _ in $(seq 600); do
    if curl -sf -o /dev/null "http://127.0.0.1:$public/hub/api/"; then break; fi
    kill -0 "$hub_pid" 2>/dev/null || { tail -20 "$work/hub.log" >&2; exit 1; }
    sleep 0.2
done
echo "hub ready on :$public; load average $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores" >&2

params=(-p name "bench run" -p count 7 -p ratio 0.25 -r raw 42)
now() { date +%s.%N; }
results=$work/results.jsonl
run_round() {
    local round=$1 t0 t1
    t0=$(now)
    PATH="$venv/bin:$PATH" JUPYTER_RUNTIME_DIR="$work/runtime" \
        "$venv/bin/papermill" "$notebook" "$work/pm.ipynb" "${params[@]}" -k python3 \
        --no-progress-bar --log-level WARNING 2>"$work/pm.err" ||
        { cat "$work/pm.err" >&2; exit 1; }
    t1=$(now)
    python3 - "$round" papermill "$t0" "$t1" "$work/pm.ipynb" "" >>"$results" <<'PY'
import json, sys
round_, tool, t0, t1, path, phases = sys.argv[1:]
nb = json.load(open(path))
cells = sum(c["metadata"]["papermill"]["duration"] or 0 for c in nb["cells"] if c["cell_type"] == "code")
print(json.dumps({"round": int(round_), "tool": tool, "wall": float(t1) - float(t0), "cells": cells, "work": None}))
PY
    t0=$(now)
    MONITORED_URL="http://127.0.0.1:$public/hub/api" JUPYTERHUB_API_TOKEN=$token \
        "$bin" "$notebook" "$work/ours.ipynb" "${params[@]}" --user bench 2>"$work/ours.err" ||
        { cat "$work/ours.err" >&2; exit 1; }
    t1=$(now)
    python3 - "$round" run-notebook "$t0" "$t1" "$work/ours.ipynb" "$work/ours.err" >>"$results" <<'PY'
import json, sys
round_, tool, t0, t1, path, err = sys.argv[1:]
nb = json.load(open(path))
cells = sum(c["metadata"]["papermill"]["duration"] or 0 for c in nb["cells"] if c["cell_type"] == "code")
line = next(l for l in open(err) if l.startswith("phases: "))
phases = {}
for part in line[len("phases: "):].strip().split(", "):
    name, secs, _ = part.rsplit(" ", 2)
    phases[name] = float(secs)
server = {"user", "busy", "leftover", "start", "reason", "ready", "stop"}
work = sum(v for k, v in phases.items() if k not in server)
print(json.dumps({"round": int(round_), "tool": tool, "wall": float(t1) - float(t0), "cells": cells, "work": work}))
PY
}
echo "warm-up round (discarded)" >&2
run_round 0
: >"$results"
for round in $(seq "$rounds"); do
    echo "round $round/$rounds" >&2
    run_round "$round"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
python3 - "$results" "$rounds" "$(basename "$notebook")" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(tool, key):
    values = [r[key] for r in rows if r["tool"] == tool and r[key] is not None]
    return statistics.median(values) if values else None
def fmt(v):
    return "-" if v is None else f"{v:.3f} s"
print(f"{sys.argv[3]}, medians of {sys.argv[2]} rounds:\n")
print("| | papermill (local kernel) | run-notebook (through the hub) |")
print("|---|---|---|")
print(f"| process wall time | {fmt(med('papermill', 'wall'))} | {fmt(med('run-notebook', 'wall'))} |")
print(f"| without server start/stop | {fmt(med('papermill', 'wall'))} | {fmt(med('run-notebook', 'work'))} |")
print(f"| code cells (sum of metadata.papermill.duration) | {fmt(med('papermill', 'cells'))} | {fmt(med('run-notebook', 'cells'))} |")
PY
