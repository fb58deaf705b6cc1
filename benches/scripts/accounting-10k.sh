#!/usr/bin/env bash
# egi-accounting on 10,000 pods over 24 h: Prometheus work and wall time against the curl floor
# of the Python tool's own queries, and `--snapshot` memory on the same history.
#
# Usage: benches/scripts/accounting-10k.sh DATA_DIR [PODS]
#
# 1. Generates PODS (default 10,000) synthetic notebook pods over HOURS (default 24) hours,
#    scraped every INTERVAL (default 300) seconds, with the egi-test-harness generator
#    (deterministic: the same parameters and end time give the same file), and backfills them
#    with `promtool tsdb create-blocks-from openmetrics` into DATA_DIR/tsdb. DATA_DIR is reused
#    by later runs with the same parameters; DATA_DIR/history.om is regenerated when missing.
# 2. Starts Prometheus on DATA_DIR/tsdb (127.0.0.1, free port) and, in RUNS (default 5) rounds
#    run back to back so that outside load hits all alike, medians reported:
#    a. the floor: the Python tool's 9 queries (egi_notebooks_accounting/pods.py, default
#       filter) POSTed with curl to /api/v1/query at the history's last timestamp, one after
#       the other (their sum is the Prometheus work) and all at once, bodies discarded;
#    b. egi-accounting's own 10 queries the same way (printed by `accounting-queries` from
#       egi-accounting/src/query.rs, so they never drift), one after the other;
#    c. target/release/accounting --config <ini> --dry-run --at <end>: wall time and peak RSS
#       (/usr/bin/time -v).
# 3. SNAPSHOT_RUNS (default 3) times: accounting --snapshot DATA_DIR/history.om --dry-run
#    --at <end>: wall time and peak RSS, and its records compared byte for byte with 2c's.
#
# Environment: HOURS, INTERVAL, RUNS, SNAPSHOT_RUNS, RANGE (default 24h).
# Needs: prometheus, promtool, curl, python3, GNU time; cargo builds the binaries (release).
set -euo pipefail

usage="usage: $0 DATA_DIR [PODS]"
data_dir=$(realpath -m "${1:?$usage}")
pods=${2:-10000}
hours=${HOURS:-24}
interval=${INTERVAL:-300}
runs=${RUNS:-5}
snapshot_runs=${SNAPSHOT_RUNS:-3}
range=${RANGE:-24h}

cd "$(dirname "$0")/../.."
root=$(pwd)
bin=$root/target/release

for tool in prometheus promtool curl python3; do
    if ! command -v "$tool" >/dev/null; then
        echo "$tool not found: run .ci/install-peers first" >&2
        exit 1
    fi
done
if [[ ! -x /usr/bin/time ]]; then
    apt-get install -y -qq --no-install-recommends time >/dev/null
fi

now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.3f}')" "$1" "$2"; }
median() { python3 -c "import statistics, sys; print(f'{statistics.median(map(float, sys.argv[1:])):.3f}')" "$@"; }
ratio() { python3 -c "import sys; print(f'{(float(sys.argv[1]) / float(sys.argv[2]) - 1) * 100:+.1f} %')" "$1" "$2"; }

echo "== building (release): synth-history, accounting-queries, accounting"
cargo build -q --release -p egi-test-harness --bin synth-history
cargo build -q --release -p egi-benches --bin accounting-queries
cargo build -q --release -p egi-examples --bin accounting

# ---------------------------------------------------------------- generate + backfill
params="pods=$pods hours=$hours interval=$interval"
mkdir -p "$data_dir"
generate() {
    "$bin/synth-history" --pods "$pods" --hours "$hours" --interval "$interval" \
        --end "$1" --out "$data_dir/history.om"
}
if [[ -d $data_dir/tsdb && -f $data_dir/end && "$(cat "$data_dir/params" 2>/dev/null)" == "$params" ]]; then
    end=$(cat "$data_dir/end")
    echo "== reusing $data_dir/tsdb ($params, end $end)"
    [[ -f $data_dir/history.om ]] || generate "$end"
else
    rm -rf "$data_dir/tsdb" "$data_dir/end" "$data_dir/params"
    # End at the last whole interval before now: no sample in the future.
    end=$(( $(date +%s) / interval * interval - interval ))
    echo "== generating $params ending at $end"
    generate "$end"
    echo "== backfilling $(du -h "$data_dir/history.om" | cut -f1) with promtool"
    promtool tsdb create-blocks-from openmetrics -q "$data_dir/history.om" "$data_dir/tsdb"
    echo "$end" >"$data_dir/end"
    echo "$params" >"$data_dir/params"
fi
echo "== history: $(stat -c %s "$data_dir/history.om") bytes, tsdb $(du -sh "$data_dir/tsdb" | cut -f1)"

# ---------------------------------------------------------------- start Prometheus
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
printf 'global:\n  scrape_interval: 1m\nscrape_configs: []\n' >"$data_dir/prometheus.yml"
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
    kill -0 "$prometheus_pid" 2>/dev/null || { tail -20 "$data_dir/prometheus.log" >&2; exit 1; }
    sleep 0.1
done
curl -sf -o /dev/null "$url/-/ready" || { echo "prometheus not ready" >&2; exit 1; }
echo "== prometheus 2.42 ready at $url"

# ---------------------------------------------------------------- the queries
f="pod=~'jupyter-.*'"
python_queries=(
    "last_over_time(kube_pod_created{$f}[$range])"
    "kube_pod_status_phase{$f,phase='Running'}[$range]"
    "last_over_time(kube_pod_annotations{$f}[$range])"
    "last_over_time(kube_pod_container_info{$f,container='notebook'}[$range])"
    "sum by (name) (max_over_time(container_cpu_usage_seconds_total{$f}[$range]))"
    "sum by (uid) (max_over_time(kube_pod_container_resource_requests{$f,resource='cpu'}[$range]))"
    "sum by (name) (max_over_time(container_memory_max_usage_bytes{$f}[$range]))"
    "sum by (name) (last_over_time(container_network_receive_bytes_total{$f}[$range]))"
    "sum by (name) (last_over_time(container_network_transmit_bytes_total{$f}[$range]))"
)
mapfile -t our_queries < <("$bin/accounting-queries" --range "$range")
query() {
    curl -s -o "${2:-/dev/null}" -w '%{time_total}' --data-urlencode "query=$1" \
        --data-urlencode "time=$end" "$url/api/v1/query"
}
check() {
    query "$1" "$data_dir/answer.json" >/dev/null
    python3 - "$data_dir/answer.json" "$1" <<'EOF'
import json, sys
answer = json.load(open(sys.argv[1]))
result = answer.get("data", {}).get("result", [])
print(f"   {answer.get('status'):8} {len(result):6} series  {sys.argv[2][:110]}")
if answer.get("status") != "success":
    sys.exit(answer.get("error"))
EOF
}
echo "== the Python tool's ${#python_queries[@]} queries, at time=$end over $range"
for q in "${python_queries[@]}"; do check "$q"; done
echo "== egi-accounting's ${#our_queries[@]} queries"
for q in "${our_queries[@]}"; do check "$q"; done
rm -f "$data_dir/answer.json"

# ---------------------------------------------------------------- rounds
ini=$data_dir/accounting.ini
printf '[prometheus]\nurl = %s\nrange = %s\n' "$url" "$range" >"$ini"
rss_of() { awk -F': ' '/Maximum resident set size/ {print $2}' "$1"; }
wall_of() {
    python3 - "$1" <<'EOF'
import sys
for line in open(sys.argv[1]):
    if "Elapsed (wall clock)" in line:
        parts = line.rsplit(" ", 1)[1].strip().split(":")
        print(sum(float(p) * 60 ** i for i, p in enumerate(reversed(parts))))
EOF
}
sequential() { # prints the total; per-query times appended to $2
    local t0 total
    t0=$(now)
    local -n qs=$1
    for i in "${!qs[@]}"; do echo "$i $(query "${qs[$i]}")" >>"$2"; done
    elapsed "$t0" "$(now)"
}
parallel() {
    local t0 pids=()
    t0=$(now)
    local -n qs=$1
    for q in "${qs[@]}"; do query "$q" >/dev/null & pids+=($!); done
    wait "${pids[@]}"
    elapsed "$t0" "$(now)"
}
rm -f "$data_dir/py-each.txt" "$data_dir/ours-each.txt"
py_seq=() py_par=() ours_seq=() walls=() rss=()
for round in $(seq 1 "$runs"); do
    py_seq+=("$(sequential python_queries "$data_dir/py-each.txt")")
    py_par+=("$(parallel python_queries)")
    ours_seq+=("$(sequential our_queries "$data_dir/ours-each.txt")")
    /usr/bin/time -v -o "$data_dir/time.txt" "$bin/accounting" --config "$ini" --dry-run --at "$end" \
        >"$data_dir/records-prometheus.txt" 2>"$data_dir/accounting.log" \
        || { tail -20 "$data_dir/accounting.log" >&2; exit 1; }
    walls+=("$(wall_of "$data_dir/time.txt")")
    rss+=("$(rss_of "$data_dir/time.txt")")
    echo "   round $round: python floor ${py_seq[-1]} s sequential, ${py_par[-1]} s parallel; ours ${ours_seq[-1]} s sequential; accounting ${walls[-1]} s"
done

snap_walls=() snap_rss=()
for _ in $(seq 1 "$snapshot_runs"); do
    /usr/bin/time -v -o "$data_dir/time.txt" "$bin/accounting" --config "$ini" --dry-run --at "$end" \
        --snapshot "$data_dir/history.om" >"$data_dir/records-snapshot.txt" 2>"$data_dir/snapshot.log" \
        || { tail -20 "$data_dir/snapshot.log" >&2; exit 1; }
    snap_walls+=("$(wall_of "$data_dir/time.txt")")
    snap_rss+=("$(rss_of "$data_dir/time.txt")")
done

# ---------------------------------------------------------------- report
per_query() { # median per query index
    python3 - "$1" <<'EOF'
import collections, statistics, sys
times = collections.defaultdict(list)
for line in open(sys.argv[1]):
    i, t = line.split()
    times[int(i)].append(float(t))
print(" ".join(f"{statistics.median(times[i]):.3f}" for i in sorted(times)))
EOF
}
echo
echo "per query, median s (Python order: pods running annotations images cpu requests memory rx tx):"
echo "   python: $(per_query "$data_dir/py-each.txt")"
echo "   ours:   $(per_query "$data_dir/ours-each.txt")   (last: counter resets)"
m_py_seq=$(median "${py_seq[@]}") m_py_par=$(median "${py_par[@]}") m_ours=$(median "${ours_seq[@]}")
m_wall=$(median "${walls[@]}")
echo "python floor, sequential (Prometheus work): median $m_py_seq s (runs: ${py_seq[*]})"
echo "python floor, parallel:                     median $m_py_par s (runs: ${py_par[*]})"
echo "our queries, sequential (Prometheus work):  median $m_ours s, $(ratio "$m_ours" "$m_py_seq") vs the Python tool's (runs: ${ours_seq[*]})"
records=$(grep -c '^VMUUID:' "$data_dir/records-prometheus.txt" || true)
echo "accounting --dry-run:  median $m_wall s, $(ratio "$m_wall" "$m_py_par") vs the parallel floor, $(ratio "$m_wall" "$m_py_seq") vs the sequential one; peak RSS median $(median "${rss[@]}") KiB; $records records (runs: ${walls[*]})"
same=different
cmp -s "$data_dir/records-prometheus.txt" "$data_dir/records-snapshot.txt" && same=identical
echo "accounting --snapshot: median $(median "${snap_walls[@]}") s, peak RSS median $(median "${snap_rss[@]}") KiB (runs: ${snap_rss[*]} KiB); records $same to the Prometheus run's"
