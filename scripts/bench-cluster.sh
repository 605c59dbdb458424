#!/usr/bin/env bash
# The fleet benchmark with two masters sharing one PostgreSQL (issue 11):
# a throwaway PostgreSQL server, two release `nxmesh-server` processes on it
# (same token and secret keys, same agent CA), and `nxmesh-fleet-bench`
# simulating N agents split between them (agent i dials master i % 2
# first). Changes go through master 1's REST API; the report gives agents
# per master, the change latency of each master's agents (master 2's are
# across masters), and, after a SIGKILL of master 2, the time for its
# agents to fail over and for every agent to converge. Reports go to stdout
# and to target/bench-fleet/cluster-N.md.
#
#   scripts/bench-cluster.sh 1000 5000
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000 5000)
ulimit -n "$(ulimit -Hn)"

cargo build --release -q -p nxmesh-server -p nxmesh-examples --bin nxmesh-server --bin nxmesh-fleet-bench
SERVER=$ROOT/target/release/nxmesh-server
BENCH=$ROOT/target/release/nxmesh-fleet-bench
mkdir -p target/bench-fleet

export NXMESH_ADMIN_EMAIL=${NXMESH_ADMIN_EMAIL:-bench@nxmesh.local}
export NXMESH_ADMIN_PASSWORD=${NXMESH_ADMIN_PASSWORD:-bench-password-$RANDOM$RANDOM}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A throwaway PostgreSQL, as scripts/test.sh starts one.
# shellcheck source=scripts/lib/postgres.sh
. scripts/lib/postgres.sh
start_postgres

PIDS=()
BENCH_PID=
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    if [ -n "$BENCH_PID" ]; then kill "$BENCH_PID" 2>/dev/null || true; fi
    stop_postgres
}
trap cleanup EXIT

start_master() { # database data_dir shared_dir http_port grpc_port log
    RUST_LOG=${RUST_LOG:-warn} DATABASE_URL=$1 "$SERVER" --data-dir "$2" \
        --jwt-key-file "$3/jwt.pem" --secret-key-file "$3/secret.keys" \
        --http-addr "127.0.0.1:$4" --grpc-addr "127.0.0.1:$5" \
        --grpc-names 127.0.0.1,localhost \
        --rate-limit-per-minute 10000000 >>"$6" 2>&1 &
    PIDS+=($!)
    local i
    for i in $(seq 1 300); do
        if curl -fs "http://127.0.0.1:$4/readyz" >/dev/null 2>&1; then return 0; fi
        kill -0 "${PIDS[-1]}" 2>/dev/null || { echo "a master exited; see $6" >&2; return 1; }
        sleep 0.1
    done
    echo "a master did not become ready; see $6" >&2
    return 1
}

for n in "${sizes[@]}"; do
    DATA=$(mktemp -d /tmp/nxmesh-bench-cluster.XXXXXX)
    mkdir -p "$DATA/control" "$DATA/shared" "$DATA/m2"
    DB="bench_$RANDOM$RANDOM"
    "${as_pg[@]}" "$PGBIN/psql" -q -h 127.0.0.1 -p "$PGPORT" -U nxmesh -d postgres -c "CREATE DATABASE $DB"
    URL="postgres://nxmesh@127.0.0.1:$PGPORT/$DB"
    H1=$(free_port); G1=$(free_port); H2=$(free_port); G2=$(free_port)
    echo "bench-cluster: $n agents; masters on :$H1/:$G1 and :$H2/:$G2, one PostgreSQL on :$PGPORT"
    PIDS=()
    start_master "$URL" "$DATA/m1" "$DATA/shared" "$H1" "$G1" "$DATA/m1.log"
    # One agent CA for both, so that an agent trusts either master.
    cp "$DATA/m1/agent-ca.pem" "$DATA/m1/agent-ca.key" "$DATA/m2/"
    start_master "$URL" "$DATA/m2" "$DATA/shared" "$H2" "$G2" "$DATA/m2.log"

    "$BENCH" --rest "http://127.0.0.1:$H1" \
        --grpc "https://127.0.0.1:$G1,https://127.0.0.1:$G2" \
        --ca "$DATA/m1/agent-ca.pem" --server-pid "${PIDS[0]},${PIDS[1]}" --agents "$n" \
        --failover --control-dir "$DATA/control" \
        >"target/bench-fleet/cluster-$n.md" 2>"$DATA/bench.log" &
    BENCH_PID=$!
    for _ in $(seq 1 6000); do
        [ -e "$DATA/control/ready-for-kill" ] && break
        kill -0 "$BENCH_PID" 2>/dev/null || break
        sleep 0.1
    done
    if [ -e "$DATA/control/ready-for-kill" ]; then
        echo "bench-cluster: SIGKILL of master 2"
        kill -KILL "${PIDS[1]}"
        date +%s%3N >"$DATA/control/killed.tmp"
        mv "$DATA/control/killed.tmp" "$DATA/control/killed"
    fi
    status=0
    wait "$BENCH_PID" || status=$?
    BENCH_PID=
    cat "$DATA/bench.log" >&2
    cat "target/bench-fleet/cluster-$n.md"
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    PIDS=()
    if [ "$status" -ne 0 ]; then
        echo "bench-cluster: the harness failed at $n agents (exit $status); logs in $DATA" >&2
        exit "$status"
    fi
    rm -rf "$DATA"
done
