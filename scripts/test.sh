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
python3 -c 'import venv, ensurepip' 2>/dev/null || packages+=(python3-venv)
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

export NXMESH_NGINX=/usr/sbin/nginx
export NXMESH_CROSSPLANE="$ROOT/.venv/bin/crossplane"
export NXMESH_GIXY="$ROOT/.venv/bin/gixy"

# 3. The Rust suite: every crate of the workspace except the Python
#    extension, which needs libpython and is built by maturin.
cargo test --workspace --exclude nxmesh-python --all-targets
cargo test --workspace --exclude nxmesh-python --doc

# 4. The runnable examples.
for example in examples/examples/*.rs; do
    name=$(basename "$example" .rs)
    echo "test.sh: running example $name"
    cargo run -q -p nxmesh-examples --example "$name"
done
