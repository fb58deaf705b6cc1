#!/usr/bin/env bash
# Sends 10,000 APEL records (100 messages of 100 records) from a dirq spool to a local
# RabbitMQ over STOMP: wall time and peak memory of apel-send, against the Python SSM sender
# (ssmsend) on the same spool and broker when its source is given, and against the floor of
# the broker itself.
#
# Usage: benches/scripts/apel-send.sh [MESSAGES] [RECORDS_PER_MESSAGE]
#
# 1. Starts RabbitMQ with its STOMP plugin as the current user (own epmd, free ports, a
#    temporary directory; both stopped by PID at exit), makes a throw-away CA and host
#    certificate with openssl, and fills a spool with python-dirq (as the accounting job's
#    spool looks), copied afresh for every run.
# 2. In RUNS (default 5) rounds, medians reported, each run on a fresh copy of the spool,
#    checking that the queue got every message:
#    a. floor: python3 writing the same number of pre-signed messages of the same size over
#       one STOMP connection, waiting for each receipt (no spool, no signing);
#    b. target/release/apel-send -c sender.cfg (cargo build --release -p egi-examples
#       --bin apel-send), wall time and peak RSS (/usr/bin/time -v);
#    c. SSM's bin/sender.py with the same sender.cfg, if SSM_SRC names a checkout of
#       github.com/apel/ssm (it is on neither PyPI nor Debian), in a venv under
#       .peers/apel-ssm with its requirements' pins (pyopenssl<23.3.0, cryptography<41) from
#       PyPI, and stomp.py<8: SSM 4.0.0 asks for stomp.py<8.1.1 but passes `use_ssl`, which
#       stomp.py 8 no longer takes (TypeError at connection).
#
# Environment: RUNS, SSM_SRC.
set -euo pipefail

messages=${1:-100}
records=${2:-100}
runs=${RUNS:-5}

cd "$(dirname "$0")/../.."
root=$(pwd)
server=/usr/lib/rabbitmq/bin/rabbitmq-server
for tool in "$server" epmd openssl python3 /usr/bin/time; do
    if ! command -v "$tool" >/dev/null; then
        echo "$tool not found: run .ci/install-peers first" >&2
        exit 1
    fi
done
python3 -c 'import dirq' || { echo "python-dirq missing: run .ci/install-peers" >&2; exit 1; }
send=$root/target/release/apel-send
if [[ ! -x $send ]]; then
    echo "build it first: cargo build --release -p egi-examples --bin apel-send" >&2
    exit 1
fi

work=$(mktemp -d -t apel-send-bench.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do
        for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
median() { python3 -c "import statistics, sys; print(f'{statistics.median(map(float, sys.argv[1:])):.3f}')" "$@"; }
median_int() { python3 -c "import statistics, sys; print(int(statistics.median(map(int, sys.argv[1:]))))" "$@"; }

# ---------------------------------------------------------------- broker
epmd_port=$(free_port); amqp=$(free_port); stomp=$(free_port); dist=$(free_port)
epmd -port "$epmd_port" >/dev/null 2>&1 &
pids+=($!)
rmq=$work/rabbitmq
mkdir -p "$rmq"
cat >"$rmq/rabbitmq.conf" <<EOF
listeners.tcp.1 = 127.0.0.1:$amqp
stomp.listeners.tcp.1 = 127.0.0.1:$stomp
default_vhost = /
log.console = true
log.console.level = warning
log.file = false
EOF
echo '[rabbitmq_stomp].' >"$rmq/enabled_plugins"
rmq_env=(HOME="$rmq" ERL_EPMD_PORT="$epmd_port" RABBITMQ_NODENAME="bench-$stomp@localhost"
    RABBITMQ_DIST_PORT="$dist" RABBITMQ_MNESIA_BASE="$rmq/mnesia" RABBITMQ_LOG_BASE="$rmq/log"
    RABBITMQ_CONFIG_FILE="$rmq/rabbitmq.conf" RABBITMQ_ADVANCED_CONFIG_FILE="$rmq/advanced.config"
    RABBITMQ_ENABLED_PLUGINS_FILE="$rmq/enabled_plugins" RABBITMQ_PID_FILE="$rmq/rabbitmq.pid")
env "${rmq_env[@]}" "$server" >"$rmq/out.log" 2>&1 &
pids+=($!)
echo "== starting RabbitMQ (STOMP on 127.0.0.1:$stomp)"
for _ in $(seq 1 900); do
    if python3 - "$stomp" 2>/dev/null <<'EOF'; then break; fi
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
s.sendall(b"CONNECT\naccept-version:1.2\nhost:/\n\n\0")
assert s.recv(100).startswith(b"CONNECTED")
EOF
    sleep 0.1
done
queue_count() {
    env "${rmq_env[@]}" /usr/lib/rabbitmq/bin/rabbitmqctl -q -n "bench-$stomp@localhost" \
        list_queues -p / name messages 2>/dev/null | awk -v q="$1" '$1 == q { print $2 }'
}
purge() {
    env "${rmq_env[@]}" /usr/lib/rabbitmq/bin/rabbitmqctl -q -n "bench-$stomp@localhost" \
        purge_queue -p / "$1" >/dev/null 2>&1 || true
}

# ---------------------------------------------------------------- credentials and spool
pki=$work/pki
mkdir -p "$pki"
(
    cd "$pki"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 \
        -subj "/DC=test/CN=Bench CA" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout host.key -out host.csr \
        -subj "/DC=test/CN=bench.example" 2>/dev/null
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n' >ext.cnf
    openssl x509 -req -in host.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out host.pem \
        -days 2 -extfile ext.cnf 2>/dev/null
)
python3 - "$work/spool" "$messages" "$records" <<'EOF'
import sys
from dirq.QueueSimple import QueueSimple
q = QueueSimple(sys.argv[1])
for m in range(int(sys.argv[2])):
    recs = []
    for r in range(int(sys.argv[3])):
        recs.append(
            f"VMUUID: {m:04d}-{r:03d}-6f1d2c3b-0000-4000-8000-00000000abcd\n"
            "SiteName: EGI-NOTEBOOKS\nCloudComputeService: notebooks\n"
            f"MachineName: jupyter-user-{r}\nLocalUserId: user{r}\nFQAN: vo.notebooks.egi.eu\n"
            "Status: completed\nStartTime: 1764547200\nEndTime: 1764550800\n"
            "SuspendDuration: 0\nWallDuration: 3600\nCpuDuration: 1200\nCpuCount: 1\n"
            "NetworkType: none\nMemory: 2048\nDisk: 0\n"
            "ImageId: jupyter/scipy-notebook\nCloudType: EGI Notebooks\n")
    q.add("APEL-cloud-message: v0.4\n" + "%%\n".join(recs))
EOF
bytes=$(find "$work/spool" -type f | xargs cat | wc -c)
echo "== spool: $messages messages, $((messages * records)) records, $bytes bytes"

cfg() { # QUEUE SPOOL
    cat <<EOF
[sender]
protocol: STOMP
[broker]
host: localhost
port: $stomp
use_ssl: false
# apel-send's own key (SSM ignores it): stomp.py 4 sends no STOMP host, which RabbitMQ
# takes as its default virtual host "/".
vhost: /
[certificates]
certificate: $pki/host.pem
key: $pki/host.key
capath: $pki
[messaging]
destination: /queue/$1
path: $2
path_type: dirq
[logging]
logfile: $work/ssm.log
level: INFO
console: false
EOF
}

measure() { # NAME QUEUE COMMAND... ; prints "wall rss_kb"
    local name=$1 queue=$2; shift 2
    purge "$queue"
    /usr/bin/time -v -o "$work/time.txt" "$@" >"$work/$name.out" 2>&1 ||
        {
            echo "$name failed:" >&2
            tail -20 "$work/$name.out" >&2
            [[ $name != ssm ]] || tail -20 "$work/ssm.log" >&2
            exit 1
        }
    local got
    for _ in $(seq 1 50); do
        got=$(queue_count "$queue")
        [[ $got == "$messages" ]] && break
        sleep 0.1
    done
    if [[ $got != "$messages" ]]; then
        echo "$name: the queue holds ${got:-no} messages, not $messages" >&2
        exit 1
    fi
    python3 - "$work/time.txt" <<'EOF'
import re, sys
t = open(sys.argv[1]).read()
m = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", t)
wall = int(m.group(1) or 0) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1)
print(f"{wall:.3f} {rss}")
EOF
}

# The floor: the same number of signed-size messages, pre-signed once, one connection,
# a receipt awaited for each.
openssl smime -sign -inkey "$pki/host.key" -signer "$pki/host.pem" -text \
    <"$(find "$work/spool" -type f | head -1)" >"$work/signed.txt"
cat >"$work/floor.py" <<'EOF'
import socket, sys
port, n, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
body = open(path, "rb").read()
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"CONNECT\naccept-version:1.2\nhost:/\n\n\0")
buf = b""
def frame():
    global buf
    while b"\0" not in buf:
        buf += s.recv(65536)
    f, buf = buf.split(b"\0", 1)
    buf = buf.lstrip(b"\n")
    return f
assert frame().startswith(b"CONNECTED")
for i in range(n):
    s.sendall(b"SEND\ndestination:/queue/floor\nreceipt:%d\ncontent-length:%d\n\n" % (i, len(body)) + body + b"\0")
    assert frame().startswith(b"RECEIPT")
s.sendall(b"DISCONNECT\nreceipt:bye\n\n\0")
frame()
EOF

ssm_python=
if [[ -n ${SSM_SRC:-} ]]; then
    venv=$root/.peers/apel-ssm
    if ! "$venv/bin/python" -c 'import dirq, OpenSSL, pkg_resources, stomp
assert stomp.__version__ < (5,)' 2>/dev/null; then
        echo "== pip install SSM's requirements into $venv"
        python3 -m venv "$venv"
        "$venv/bin/python" -m pip install -q --disable-pip-version-check \
            'stomp.py<5' dirq 'pyopenssl<23.3.0' 'cryptography<41.0.0' 'setuptools<81'
    fi
    ssm_python=$venv/bin/python
fi

floor_w=(); send_w=(); send_m=(); ssm_w=(); ssm_m=()
for round in $(seq 1 "$runs"); do
    rm -rf "$work/s1" "$work/s2"
    cp -a "$work/spool" "$work/s1"
    cp -a "$work/spool" "$work/s2"
    cfg bench-rust "$work/s1" >"$work/rust.cfg"
    cfg bench-ssm "$work/s2" >"$work/ssm.cfg"
    r=$(measure floor floor python3 "$work/floor.py" "$stomp" "$messages" "$work/signed.txt")
    floor_w+=("${r% *}")
    r=$(measure apel-send bench-rust "$send" -c "$work/rust.cfg" --log-level warn)
    send_w+=("${r% *}"); send_m+=("${r#* }")
    [[ -z $(find "$work/s1" -type f) ]] || { echo "apel-send left elements behind" >&2; exit 1; }
    if [[ -n $ssm_python ]]; then
        r=$(measure ssm bench-ssm env PYTHONPATH="$SSM_SRC" "$ssm_python" \
            "$SSM_SRC/bin/sender.py" -c "$work/ssm.cfg")
        ssm_w+=("${r% *}"); ssm_m+=("${r#* }")
        [[ -z $(find "$work/s2" -type f) ]] || { echo "SSM left elements behind" >&2; exit 1; }
    fi
    echo "round $round: floor ${floor_w[-1]} s; apel-send ${send_w[-1]} s ${send_m[-1]} KB${ssm_w:+; ssm ${ssm_w[-1]} s ${ssm_m[-1]} KB}"
done

echo
echo "== medians of $runs runs, $messages messages of $records records"
echo "floor (pre-signed, python3 socket, receipts): $(median "${floor_w[@]}") s"
echo "apel-send: $(median "${send_w[@]}") s, peak RSS $(( $(median_int "${send_m[@]}") / 1024 )) MB"
if [[ -n $ssm_python ]]; then
    echo "SSM sender.py: $(median "${ssm_w[@]}") s, peak RSS $(( $(median_int "${ssm_m[@]}") / 1024 )) MB"
fi
