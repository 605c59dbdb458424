#!/usr/bin/env bash
# The whole NxMesh test suite, from a fresh Debian machine with Rust.
#
# Installs what the tests need (Debian packages, a Python venv), then runs
# every Rust test of the workspace. Tests that need a real component (nginx,
# crossplane, gixy) find it through the environment exported here; with
# CI=true a missing component fails the test instead of skipping it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# 1. Debian packages.
packages=()
[ -x /usr/sbin/nginx ] || packages+=(nginx)
# The certificate tests: an ACME test CA and a DNS server they start themselves.
[ -x /usr/bin/pebble ] || packages+=(pebble)
[ -x /usr/sbin/named ] || packages+=(bind9)
python3 -c 'import venv, ensurepip' 2>/dev/null || packages+=(python3-venv)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || packages+=(postgresql)
if [ ${#packages[@]} -gt 0 ]; then
    echo "test.sh: installing ${packages[*]}"
    as_root=()
    [ "$(id -u)" -eq 0 ] || as_root=(sudo)
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${packages[@]}"
    # Debian starts the packaged nginx on port 80; the tests run their own.
    "${as_root[@]}" /usr/sbin/nginx -s stop 2>/dev/null || true
fi

# 2. Python tools in a venv: crossplane (the parser's reference) and
#    gixy-ng (the security linter the generator's output is checked with).
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -r scripts/requirements-test.txt

# 3. A throwaway PostgreSQL server for the storage tests: its own data
#    directory, a free port on 127.0.0.1, stopped when this script exits.
# shellcheck source=scripts/lib/postgres.sh
. scripts/lib/postgres.sh
start_postgres
trap stop_postgres EXIT
export NXMESH_TEST_DATABASE_URL="postgres://nxmesh@127.0.0.1:$PGPORT/postgres"
echo "test.sh: PostgreSQL on 127.0.0.1:$PGPORT"

export NXMESH_NGINX=/usr/sbin/nginx
export NXMESH_PEBBLE=/usr/bin/pebble
export NXMESH_NAMED=/usr/sbin/named
export NXMESH_CROSSPLANE="$ROOT/.venv/bin/crossplane"
export NXMESH_GIXY="$ROOT/.venv/bin/gixy"

# 4. The Rust suite: every crate of the workspace except the Python
#    extension, which needs libpython and is built by maturin.
cargo test --workspace --exclude nxmesh-python --all-targets --no-fail-fast
cargo test --workspace --exclude nxmesh-python --doc

# The parser's property test at full strength (100,000 cases: no panic, and
# whatever parses re-parses identically after formatting), in release.
PROPTEST_CASES=100000 cargo test --release -p nxmesh-core --test it parser::props

# 4b. The Python bindings (bindings/python): pip builds the `nxmesh` package
#     into .venv with maturin as its build backend (dev profile, the shared
#     target dir); the fixtures start the master and agent binaries built
#     here on 127.0.0.1. Then pytest (every resource, the exceptions, the
#     async client, events from a real agent, parse_config against
#     crossplane over the corpus, examples/python/automation.py), the stubs
#     against the native module, and mypy --strict on the example and tests.
.venv/bin/pip install -q --disable-pip-version-check -r bindings/python/requirements-test.txt
PATH="$ROOT/.venv/bin:$PATH" MATURIN_PEP517_ARGS="--profile dev" .venv/bin/pip install -q \
    --disable-pip-version-check --no-build-isolation --force-reinstall --no-deps ./bindings/python
cargo build -q -p nxmesh-server --bin nxmesh-server -p nxmesh-agent-lib --bin nxmesh-agent
export NXMESH_SERVER_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/nxmesh-server"
export NXMESH_AGENT_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/nxmesh-agent"
(cd bindings/python && "$ROOT/.venv/bin/python" -m pytest -q tests)
(cd bindings/python && "$ROOT/.venv/bin/python" -m mypy.stubtest nxmesh)
.venv/bin/python -m mypy --strict examples/python/automation.py bindings/python/tests

# 5. The runnable examples.
for example in examples/examples/*.rs; do
    name=$(basename "$example" .rs)
    echo "test.sh: running example $name"
    cargo run -q -p nxmesh-examples --example "$name"
done
