#!/usr/bin/env bash
# The fleet benchmark of issue 6: for each N given (default: 1000 5000
# 10000), a fresh release `nxmesh-server` on a temporary data directory and
# loopback ports, and `nxmesh-fleet-bench` (a separate process) simulating N
# agents over TLS against it: (a) connected agents and master RSS, (b)
# change latency from the REST response to receipt by every affected agent,
# (c) after this script restarts the master, the time for all agents to
# reconnect and converge. Reports go to stdout and to
# target/bench-fleet/report-N.md.
#
#   scripts/bench-fleet.sh 1000 5000 10000
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000 5000 10000)

# Every agent is one TCP connection: N sockets in the load generator and N
# in the master. Raise the soft limit to the hard one (20,000 here).
ulimit -n "$(ulimit -Hn)"
echo "bench-fleet: open files limit $(ulimit -n)"

cargo build --release -q -p nxmesh-server -p nxmesh-examples --bin nxmesh-server --bin nxmesh-fleet-bench
SERVER=$ROOT/target/release/nxmesh-server
BENCH=$ROOT/target/release/nxmesh-fleet-bench
mkdir -p target/bench-fleet

export NXMESH_ADMIN_EMAIL=${NXMESH_ADMIN_EMAIL:-bench@nxmesh.local}
export NXMESH_ADMIN_PASSWORD=${NXMESH_ADMIN_PASSWORD:-bench-password-$RANDOM$RANDOM}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
    if [ -n "${BENCH_PID:-}" ]; then kill "$BENCH_PID" 2>/dev/null || true; fi
}
trap cleanup EXIT

start_master() { # data_dir http_port grpc_port log
    RUST_LOG=${RUST_LOG:-warn} "$SERVER" --data-dir "$1" \
        --http-addr "127.0.0.1:$2" --grpc-addr "127.0.0.1:$3" \
        --grpc-names 127.0.0.1,localhost \
        --rate-limit-per-minute 10000000 >>"$4" 2>&1 &
    SERVER_PID=$!
    local i
    for i in $(seq 1 300); do
        if curl -fs "http://127.0.0.1:$2/readyz" >/dev/null 2>&1; then return 0; fi
        kill -0 "$SERVER_PID" 2>/dev/null || { echo "the master exited; see $4" >&2; return 1; }
        sleep 0.1
    done
    echo "the master did not become ready; see $4" >&2
    return 1
}

for n in "${sizes[@]}"; do
    DATA=$(mktemp -d /tmp/nxmesh-bench-fleet.XXXXXX)
    CONTROL=$DATA/control
    mkdir -p "$CONTROL"
    HTTP_PORT=$(free_port)
    GRPC_PORT=$(free_port)
    LOG=$DATA/master.log
    echo "bench-fleet: $n agents; master on 127.0.0.1:$HTTP_PORT (REST) and :$GRPC_PORT (agents), data in $DATA"
    start_master "$DATA/master" "$HTTP_PORT" "$GRPC_PORT" "$LOG"

    "$BENCH" --rest "http://127.0.0.1:$HTTP_PORT" --grpc "https://127.0.0.1:$GRPC_PORT" \
        --ca "$DATA/master/agent-ca.pem" --server-pid "$SERVER_PID" --agents "$n" \
        --control-dir "$CONTROL" >"target/bench-fleet/report-$n.md" 2>"$DATA/bench.log" &
    BENCH_PID=$!

    # The harness asks for the restart once (a) and (b) are measured.
    for _ in $(seq 1 6000); do
        [ -e "$CONTROL/ready-for-restart" ] && break
        kill -0 "$BENCH_PID" 2>/dev/null || break
        sleep 0.1
    done
    if [ -e "$CONTROL/ready-for-restart" ]; then
        echo "bench-fleet: restarting the master (SIGTERM, then a new process on the same data)"
        kill -TERM "$SERVER_PID"
        for _ in $(seq 1 300); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        started_ms=$(date +%s%3N)
        RUST_LOG=${RUST_LOG:-warn} "$SERVER" --data-dir "$DATA/master" \
            --http-addr "127.0.0.1:$HTTP_PORT" --grpc-addr "127.0.0.1:$GRPC_PORT" \
            --grpc-names 127.0.0.1,localhost \
            --rate-limit-per-minute 10000000 >>"$LOG" 2>&1 &
        SERVER_PID=$!
        echo "$SERVER_PID $started_ms" >"$CONTROL/restarted.tmp"
        mv "$CONTROL/restarted.tmp" "$CONTROL/restarted"
    fi
    status=0
    wait "$BENCH_PID" || status=$?
    BENCH_PID=
    cat "$DATA/bench.log" >&2
    cat "target/bench-fleet/report-$n.md"
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
    if [ "$status" -ne 0 ]; then
        echo "bench-fleet: the harness failed at $n agents (exit $status); master log: $LOG" >&2
        exit "$status"
    fi
    rm -rf "$DATA"
done
