#!/usr/bin/env bash
# egi-spawner at scale: concurrent spawns in one namespace against the Kubernetes API
# simulator in its own process, so the spawner's process (spawn-scale) holds only what a hub
# holds. Prints spawn-scale's JSON report and its peak RSS from /usr/bin/time.
#
#   benches/scripts/spawn-scale.sh [USERS] [READY_DELAY_MS] [ROUNDS] [GC_DELAY_MS]
#
# ROUNDS (default 0): rounds of stopping every server and starting it again at once, with
# kubesim's garbage collector GC_DELAY_MS (default 3000) behind, counting its requests too.
# Against a real cluster, run spawn-scale itself without --api (it uses KUBECONFIG).
set -euo pipefail
users=${1:-1000}
ready_ms=${2:-1000}
rounds=${3:-0}
gc_ms=${4:-3000}
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
cargo build -q --release -p egi-test-harness --bin kubesim
cargo build -q --release -p egi-benches --bin spawn-scale
target=${CARGO_TARGET_DIR:-$root/target}/release

work=$(mktemp -d)
"$target/kubesim" --port 0 --ready-delay-ms "$ready_ms" --gc-delay-ms "$gc_ms" --count-controllers \
    >"$work/sim.out" 2>"$work/sim.err" &
sim=$!
trap 'kill "$sim" 2>/dev/null || true; wait "$sim" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do
    grep -q 'listening on' "$work/sim.out" 2>/dev/null && break
    sleep 0.05
done
url=$(sed -n 's/^listening on //p' "$work/sim.out" | head -1)
[[ -n $url ]] || { echo "kubesim did not start" >&2; cat "$work/sim.err" >&2; exit 1; }

/usr/bin/time -v "$target/spawn-scale" --api "$url" --users "$users" --rounds "$rounds" \
    --settle-ms $((gc_ms + 1000)) 2>"$work/time" | tee "$work/report.json"
grep -E 'Maximum resident|Elapsed' "$work/time"
echo "kubesim peak RSS: $(grep VmHWM /proc/$sim/status)"
