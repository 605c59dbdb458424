#!/usr/bin/env bash
# The agent's idle memory (issue 7, target: at most 30 MiB RSS): a release
# `nxmesh-agent` in standalone mode (it starts Debian's nginx in a temporary
# prefix, access-log shipping and drift detection on) registered with a
# release `nxmesh-server` on loopback, both on temporary data directories.
# Once the agent is online, the script lets it settle and reads its RSS from
# /proc/PID/status (VmRSS, and VmHWM for the peak) a number of times.
#
#   scripts/agent-idle-rss.sh [settle-seconds] [samples]
#
# Needs curl, python3 and nginx (NXMESH_NGINX overrides /usr/sbin/nginx).
# Builds the release agent; uses target/release/nxmesh-server, building it
# only when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SETTLE=${1:-30}
SAMPLES=${2:-10}
NGINX=${NXMESH_NGINX:-/usr/sbin/nginx}

cargo build --release -q -p nxmesh-agent-lib --bin nxmesh-agent
AGENT=$ROOT/target/release/nxmesh-agent
SERVER=$ROOT/target/release/nxmesh-server
if [ ! -x "$SERVER" ]; then
    cargo build --release -q -p nxmesh-server --bin nxmesh-server
fi

export NXMESH_ADMIN_EMAIL=rss@nxmesh.local
export NXMESH_ADMIN_PASSWORD=rss-password-$RANDOM$RANDOM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

DATA=$(mktemp -d /tmp/nxmesh-agent-rss.XXXXXX)
HTTP_PORT=$(free_port)
GRPC_PORT=$(free_port)
STATUS_PORT=$(free_port)
SERVER_PID=
AGENT_PID=
cleanup() {
    if [ -n "$AGENT_PID" ]; then kill -TERM "$AGENT_PID" 2>/dev/null || true; wait "$AGENT_PID" 2>/dev/null || true; fi
    if [ -f "$DATA/prefix/logs/nginx.pid" ]; then
        kill -QUIT "$(cat "$DATA/prefix/logs/nginx.pid")" 2>/dev/null || true
    fi
    if [ -n "$SERVER_PID" ]; then kill -TERM "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    sleep 0.5
    rm -rf "$DATA"
}
trap cleanup EXIT

RUST_LOG=warn "$SERVER" --data-dir "$DATA/master" \
    --http-addr "127.0.0.1:$HTTP_PORT" --grpc-addr "127.0.0.1:$GRPC_PORT" \
    --grpc-names 127.0.0.1,localhost >"$DATA/master.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 300); do
    curl -fs "http://127.0.0.1:$HTTP_PORT/readyz" >/dev/null 2>&1 && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$DATA/master.log" >&2; exit 1; }
    sleep 0.1
done

REST=http://127.0.0.1:$HTTP_PORT/v1
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
TOKEN=$(curl -fsS -X POST "$REST/auth/login" -H 'content-type: application/json' \
    -d "{\"email\":\"$NXMESH_ADMIN_EMAIL\",\"password\":\"$NXMESH_ADMIN_PASSWORD\"}" | json "['access_token']")
call() { # method path [body]
    curl -fsS -X "$1" "$REST$2" -H "authorization: Bearer $TOKEN" \
        -H 'content-type: application/json' ${3:+-d "$3"}
}
ORG=$(call POST /organizations '{"name":"rss","slug":"rss"}' | json "['id']")
WS=$(call POST "/organizations/$ORG/workspaces" '{"name":"rss","slug":"rss"}' | json "['id']")
REG=$(call POST "/workspaces/$WS/agents/tokens" '{"name":"rss-agent"}' | json "['token']")

RUST_LOG=warn "$AGENT" --master "https://127.0.0.1:$GRPC_PORT" \
    --ca-file "$DATA/master/agent-ca.pem" --registration-token "$REG" \
    --data-dir "$DATA/agent" --nginx-binary "$NGINX" --prefix "$DATA/prefix" \
    --status-port "$STATUS_PORT" --listen-address 127.0.0.1 --hostname rss-agent \
    >"$DATA/agent.log" 2>&1 &
AGENT_PID=$!
online=
for _ in $(seq 1 600); do
    kill -0 "$AGENT_PID" 2>/dev/null || { cat "$DATA/agent.log" >&2; exit 1; }
    # `degraded` is connected too (an alert such as high CPU on a busy
    # machine); the state is printed with the result.
    if call GET "/workspaces/$WS/agents" | grep -qE '"state":"(online|degraded)"'; then online=1; break; fi
    sleep 0.1
done
[ -n "$online" ] || { echo "the agent did not come online:" >&2; call GET "/workspaces/$WS/agents" >&2; echo >&2; cat "$DATA/agent.log" >&2; exit 1; }
NGINX_PID=$(cat "$DATA/prefix/logs/nginx.pid")
AGENT_ID=$(call GET "/workspaces/$WS/agents" | json "['data'][0]['id']")

# A virtual host, so that the agent applies a configuration (and keeps its
# pristine copy for drift detection), then traffic, so that the access-log
# shipper has shipped lines before the agent idles.
SITE_PORT=$(free_port)
call POST "/workspaces/$WS/virtual-hosts" \
    "{\"name\":\"site\",\"server_name\":\"site.test\",\"listen_port\":$SITE_PORT,\"locations\":[{\"path\":\"/\",\"custom_directives\":{\"return\":\"200 ok\"}}]}" >/dev/null
applied=
for _ in $(seq 1 600); do
    if [ "$(call GET "/agents/$AGENT_ID" | json ".get('health', {}).get('config_version', 0)")" -ge 1 ]; then applied=1; break; fi
    sleep 0.1
done
[ -n "$applied" ] || { echo "the configuration was not applied" >&2; cat "$DATA/agent.log" >&2; exit 1; }
for _ in $(seq 1 200); do curl -fs -H 'Host: site.test' "http://127.0.0.1:$SITE_PORT/" >/dev/null; done
echo "agent $AGENT_PID online, configuration applied, 200 requests served; nginx master $NGINX_PID; settling ${SETTLE}s"
sleep "$SETTLE"

rss_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
max=0
last=0
for _ in $(seq 1 "$SAMPLES"); do
    kill -0 "$AGENT_PID" 2>/dev/null || { echo "the agent exited" >&2; cat "$DATA/agent.log" >&2; exit 1; }
    last=$(rss_kib "$AGENT_PID" VmRSS)
    [ "$last" -gt "$max" ] && max=$last
    sleep 1
done
hwm=$(rss_kib "$AGENT_PID" VmHWM)
threads=$(awk '$1 == "Threads:" { print $2 }' "/proc/$AGENT_PID/status")
state=$(call GET "/agents/$AGENT_ID" | json "['state']")
printf 'agent idle RSS: last %.1f MiB, max %.1f MiB over %s samples (peak VmHWM %.1f MiB), %s threads; agent state: %s\n' \
    "$(echo "$last / 1024" | bc -l)" "$(echo "$max / 1024" | bc -l)" "$SAMPLES" \
    "$(echo "$hwm / 1024" | bc -l)" "$threads" "$state"
shipped=$(call GET "/workspaces/$WS/access-logs?limit=1" | json "['meta']['total']")
echo "access-log entries stored by the master: $shipped (200 requests sent)"
call GET "/agents/$AGENT_ID"; echo
if grep -qiE 'error|panicked' "$DATA/agent.log"; then
    echo "agent log:" >&2
    cat "$DATA/agent.log" >&2
fi
