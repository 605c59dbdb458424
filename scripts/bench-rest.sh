#!/usr/bin/env bash
# REST load benchmark: a release nxmesh-server on a fresh SQLite database,
# and the open-loop load generator in a separate process, both on loopback.
# Usage: scripts/bench-rest.sh [RATE] [SECONDS] [WRITE_PERCENT]
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-500}
SECONDS_=${2:-30}
WRITES=${3:-50}
cargo build -q --release -p nxmesh-server --bin nxmesh-server --example rest_load
DATA=$(mktemp -d /tmp/nxmesh-bench.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
PASS="bench password $RANDOM$RANDOM"
NXMESH_ADMIN_EMAIL=bench@example.com NXMESH_ADMIN_PASSWORD="$PASS" RUST_LOG=warn \
    target/release/nxmesh-server --data-dir "$DATA" --http-addr "127.0.0.1:$PORT" --rate-limit-per-minute 1000000 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; rm -rf "$DATA"' EXIT
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break
    sleep 0.1
done
target/release/examples/rest_load --addr "127.0.0.1:$PORT" --email bench@example.com --password "$PASS" \
    --rate "$RATE" --seconds "$SECONDS_" --write-percent "$WRITES"
echo "server RSS after the run: $(ps -o rss= -p $SERVER) KiB"
