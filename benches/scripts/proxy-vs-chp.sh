#!/usr/bin/env bash
# The gateway's reverse proxy against configurable-http-proxy on the same loopback upstream
# (issue 9): requests/s and latency p50/p99 for small HTTP requests and websocket round trips,
# direct / ours / CHP, N keep-alive connections and then one, each run of fixed length.
# Needs CHP from .ci/install-peers (.peers/chp). Prints markdown tables on stdout, progress on
# stderr; every process it starts is stopped by PID when it ends.
#
#   benches/scripts/proxy-vs-chp.sh [SECONDS_PER_RUN] [CONNECTIONS]
set -euo pipefail
seconds=${1:-10}
connections=${2:-16}
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
cargo build -q --release -p egi-benches --bin proxy-load
target=${CARGO_TARGET_DIR:-$root/target}/release
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores" >&2
"$target/proxy-load" --duration "$seconds" --connections "$connections"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
