#!/usr/bin/env bash
# Compares egi-accounting against the floor of its own queries on a large Prometheus.
#
# Usage: benches/scripts/prometheus-10k.sh DATA_DIR [PODS]
#
# 1. Generates PODS (default 10,000) synthetic notebook pods over HOURS (default 24) hours,
#    scraped every INTERVAL (default 300) seconds, with the egi-test-harness generator, and
#    backfills them with `promtool tsdb create-blocks-from openmetrics` into DATA_DIR/tsdb.
#    DATA_DIR is kept and reused by later runs with the same parameters (delete it to start
#    over); the OpenMetrics file is removed after backfilling unless KEEP_HISTORY=1.
# 2. Starts Prometheus on DATA_DIR/tsdb (127.0.0.1, free port) and measures, in RUNS
#    (default 5) rounds run back to back so that outside load hits all alike, medians reported:
#    a. the curl floor: the 10 PromQL queries of egi-accounting (printed by the
#       `accounting-queries` helper of egi-benches from egi-accounting's own query module, so
#       they never drift) POSTed to /api/v1/query at the history's last timestamp, sequentially
#       and all at once, bodies discarded;
#    b. target/release/accounting --config <ini> --dry-run --at <end>: wall time and peak RSS
#       (/usr/bin/time -v). Skipped with a message if the binary is not built
#       (cargo build --release -p egi-examples --bin accounting).
#
# Environment: HOURS, INTERVAL, RUNS, RANGE (default 24h), KEEP_HISTORY.
set -euo pipefail

usage="usage: $0 DATA_DIR [PODS]"
data_dir=$(realpath -m "${1:?$usage}")
pods=${2:-10000}
hours=${HOURS:-24}
interval=${INTERVAL:-300}
runs=${RUNS:-5}
range=${RANGE:-24h}

cd "$(dirname "$0")/../.."
root=$(pwd)

for tool in prometheus promtool curl python3; do
    if ! command -v "$tool" >/dev/null; then
        echo "$tool not found: run .ci/install-peers first" >&2
        exit 1
    fi
done

now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.3f}')" "$1" "$2"; }
median() { python3 -c "import statistics, sys; print(f'{statistics.median(map(float, sys.argv[1:])):.3f}')" "$@"; }

echo "== building the generator (release)"
cargo build -q --release -p egi-test-harness --bin synth-history
bin=$root/target/release

# ---------------------------------------------------------------- generate + backfill
params="pods=$pods hours=$hours interval=$interval"
mkdir -p "$data_dir"
if [[ -d $data_dir/tsdb && -f $data_dir/end && "$(cat "$data_dir/params" 2>/dev/null)" == "$params" ]]; then
    echo "== reusing $data_dir/tsdb ($params)"
    cat "$data_dir/backfill.txt" 2>/dev/null || true
else
    rm -rf "$data_dir/tsdb" "$data_dir/end" "$data_dir/params" "$data_dir/backfill.txt"
    # End at the last whole interval before now: no sample in the future.
    end=$(( $(date +%s) / interval * interval - interval ))
    echo "== generating $params ending at $end"
    t0=$(now)
    "$bin/synth-history" --pods "$pods" --hours "$hours" --interval "$interval" \
        --end "$end" --out "$data_dir/history.om"
    t1=$(now)
    echo "== backfilling $(du -h "$data_dir/history.om" | cut -f1) with promtool"
    promtool tsdb create-blocks-from openmetrics -q "$data_dir/history.om" "$data_dir/tsdb"
    t2=$(now)
    {
        echo "generation: $(elapsed "$t0" "$t1") s, history $(stat -c %s "$data_dir/history.om") bytes"
        echo "backfill:   $(elapsed "$t1" "$t2") s, tsdb $(du -sh "$data_dir/tsdb" | cut -f1)"
    } | tee "$data_dir/backfill.txt"
    [[ ${KEEP_HISTORY:-0} == 1 ]] || rm -f "$data_dir/history.om"
    echo "$end" >"$data_dir/end"
    echo "$params" >"$data_dir/params"
fi
end=$(cat "$data_dir/end")

# ---------------------------------------------------------------- start Prometheus
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
printf 'global:\n  scrape_interval: 1m\nscrape_configs: []\n' >"$data_dir/prometheus.yml"
t0=$(now)
prometheus --config.file="$data_dir/prometheus.yml" --storage.tsdb.path="$data_dir/tsdb" \
    --storage.tsdb.retention.time=100y --web.listen-address="127.0.0.1:$port" \
    >"$data_dir/prometheus.log" 2>&1 &
prometheus_pid=$!
stop() {
    kill -TERM "$prometheus_pid" 2>/dev/null || true
    wait "$prometheus_pid" 2>/dev/null || true
}
trap stop EXIT
for _ in $(seq 1 1200); do
    curl -sf -o /dev/null "$url/-/ready" && break
    if ! kill -0 "$prometheus_pid" 2>/dev/null; then
        tail -20 "$data_dir/prometheus.log" >&2
        exit 1
    fi
    sleep 0.1
done
if ! curl -sf -o /dev/null "$url/-/ready"; then
    echo "prometheus not ready after 120 s:" >&2
    tail -20 "$data_dir/prometheus.log" >&2
    exit 1
fi
echo "== prometheus ready at $url in $(elapsed "$t0" "$(now)") s"

# ---------------------------------------------------------------- the curl floor
cargo build -q --release -p egi-benches --bin accounting-queries
mapfile -t queries < <("$bin/accounting-queries" --range "$range")
if [[ ${#queries[@]} == 0 ]]; then
    echo "accounting-queries printed nothing" >&2
    exit 1
fi
echo "== ${#queries[@]} queries at time=$end over $range"
query() {
    curl -s -o "${2:-/dev/null}" --data-urlencode "query=$1" --data-urlencode "time=$end" \
        "$url/api/v1/query"
}
# Warm-up, and a check that each query works and finds something.
for q in "${queries[@]}"; do
    query "$q" "$data_dir/answer.json"
    python3 - "$data_dir/answer.json" "$q" <<'EOF'
import json, sys
answer = json.load(open(sys.argv[1]))
result = answer.get("data", {}).get("result", [])
status = answer.get("status")
print(f"   {status:8} {len(result):7} series  {sys.argv[2][:100]}")
if status != "success":
    print("   ", answer.get("error"), file=sys.stderr)
EOF
done
rm -f "$data_dir/answer.json"

# ---------------------------------------------------------------- floor and binary, interleaved
# Each round runs the sequential floor, the parallel floor and the binary back to back, so
# that load from anything else on the machine hits all three alike.
accounting=$root/target/release/accounting
if [[ ! -x $accounting ]]; then
    echo "== $accounting not built: measuring the floor only (cargo build --release -p egi-examples --bin accounting)"
fi
if [[ ! -x /usr/bin/time ]]; then
    echo "== installing GNU time"
    apt-get install -y -qq --no-install-recommends time >/dev/null
fi
ini=$data_dir/accounting.ini
printf '[prometheus]\nurl = %s\nrange = %s\n' "$url" "$range" >"$ini"
args=(--config "$ini" --dry-run --at "$end")
sequential=() parallel=() walls=() rss=()
for _ in $(seq 1 "$runs"); do
    t0=$(now)
    for q in "${queries[@]}"; do query "$q"; done
    sequential+=("$(elapsed "$t0" "$(now)")")
    t0=$(now)
    pids=()
    for q in "${queries[@]}"; do
        query "$q" &
        pids+=($!)
    done
    wait "${pids[@]}"
    parallel+=("$(elapsed "$t0" "$(now)")")
    [[ -x $accounting ]] || continue
    /usr/bin/time -v -o "$data_dir/time.txt" "$accounting" "${args[@]}" \
        >"$data_dir/records.txt" 2>"$data_dir/accounting.log" || {
        echo "accounting failed:" >&2
        tail -20 "$data_dir/accounting.log" >&2
        exit 1
    }
    walls+=("$(python3 - "$data_dir/time.txt" <<'EOF2'
import sys
for line in open(sys.argv[1]):
    if "Elapsed (wall clock)" in line:
        parts = line.rsplit(" ", 1)[1].strip().split(":")
        print(sum(float(p) * 60 ** i for i, p in enumerate(reversed(parts))))
EOF2
)")
    rss+=("$(awk -F': ' '/Maximum resident set size/ {print $2}' "$data_dir/time.txt")")
done
echo "curl floor, sequential: median $(median "${sequential[@]}") s (runs: ${sequential[*]})"
echo "curl floor, parallel:   median $(median "${parallel[@]}") s (runs: ${parallel[*]})"
[[ -x $accounting ]] || exit 0
records=$(grep -c '^VMUUID:' "$data_dir/records.txt" || true)
echo "accounting --dry-run:   median $(median "${walls[@]}") s, peak RSS median $(median "${rss[@]}") KiB, $records records (runs: ${walls[*]})"
