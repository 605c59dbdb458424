"""Fixtures: a real `nxmesh-server` (the binary cargo built) on free ports of
127.0.0.1 with a temporary data directory and SQLite, and clients for it.

The binaries come from `NXMESH_SERVER_BIN` / `NXMESH_AGENT_BIN`, or from the
workspace's `target/debug`. Without them the tests that need them are
skipped with a notice, except under `CI=true`, where they fail.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import pytest

import nxmesh

REPO = Path(__file__).resolve().parents[3]
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "correct horse battery staple"
STARTUP_DEADLINE = 60.0


def binary(env_name: str, name: str) -> Path:
    """A cargo-built binary, or skip (fail under CI=true) when it is missing."""
    configured = os.environ.get(env_name)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    path = Path(configured) if configured else target / "debug" / name
    if not path.is_file():
        message = f"{path} not found: build it with `cargo build -p ... --bin {name}` or set {env_name}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Master:
    """A running master."""

    url: str
    grpc_url: str
    data_dir: Path
    process: "subprocess.Popen[bytes]"
    log: Path

    @property
    def ca_file(self) -> Path:
        return self.data_dir / "agent-ca.pem"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_master(rate_limit_per_minute: int = 100_000) -> Master:
    exe = binary("NXMESH_SERVER_BIN", "nxmesh-server")
    data_dir = Path(tempfile.mkdtemp(prefix="nxmesh-py-master."))
    http_port, grpc_port = free_port(), free_port()
    env = {
        **os.environ,
        "NXMESH_DATA_DIR": str(data_dir / "data"),
        "NXMESH_HTTP_ADDR": f"127.0.0.1:{http_port}",
        "NXMESH_GRPC_ADDR": f"127.0.0.1:{grpc_port}",
        "NXMESH_GRPC_NAMES": "127.0.0.1,localhost",
        "NXMESH_ADMIN_EMAIL": ADMIN_EMAIL,
        "NXMESH_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "NXMESH_RATE_LIMIT_PER_MINUTE": str(rate_limit_per_minute),
        "NXMESH_HEARTBEAT_INTERVAL": "2",
        "RUST_LOG": os.environ.get("RUST_LOG", "info"),
    }
    env.pop("DATABASE_URL", None)
    log = data_dir / "master.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([str(exe)], env=env, stdout=out, stderr=subprocess.STDOUT)
    master = Master(
        url=f"http://127.0.0.1:{http_port}",
        grpc_url=f"https://127.0.0.1:{grpc_port}",
        data_dir=data_dir / "data",
        process=process,
        log=log,
    )
    deadline = time.monotonic() + STARTUP_DEADLINE
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"nxmesh-server exited: {log.read_text()}")
        try:
            with urllib.request.urlopen(f"{master.url}/readyz", timeout=1) as res:
                if res.status == 200:
                    return master
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        if time.monotonic() > deadline:
            master.stop()
            raise RuntimeError(f"nxmesh-server not ready in time: {log.read_text()}")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def master() -> Iterator[Master]:
    m = start_master()
    yield m
    m.stop()
    shutil.rmtree(m.data_dir.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def client(master: Master) -> nxmesh.Client:
    c = nxmesh.Client(master.url, email=ADMIN_EMAIL, password=ADMIN_PASSWORD)
    c.login()
    return c


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def org(client: nxmesh.Client) -> Iterator[nxmesh.Organization]:
    o = client.organizations.create(name="Test org", slug=unique("org"))
    yield o
    if client.organizations.get_opt(o.id) is not None:
        client.organizations.delete(o.id)


@pytest.fixture
def workspace(client: nxmesh.Client, org: nxmesh.Organization) -> nxmesh.Workspace:
    return client.workspaces(org.id).create(name="Test workspace", slug=unique("ws"))


@dataclass
class Agent:
    """A running `nxmesh-agent` with its own nginx."""

    id: str
    process: "subprocess.Popen[bytes]"
    dir: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        # The agent leaves the nginx it started running (a stopped agent
        # must not take the sites down); stop that nginx by its pid file.
        pid_file = self.dir / "nginx" / "logs" / "nginx.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text().strip())
            try:
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline and not exited(pid):
                    time.sleep(0.1)
            except (ProcessLookupError, PermissionError):
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


def exited(pid: int) -> bool:
    """Whether a process is gone (or a zombie nobody reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def start_agent(master: Master, client: nxmesh.Client, workspace_id: str, name: str) -> Agent:
    """Registers and starts a real agent (with a real nginx) in a workspace."""
    exe = binary("NXMESH_AGENT_BIN", "nxmesh-agent")
    nginx = os.environ.get("NXMESH_NGINX", "/usr/sbin/nginx")
    if not Path(nginx).is_file():
        message = f"nginx not found at {nginx}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    token = client.agents(workspace_id).create_registration_token(name=name, labels={"env": "test"})
    work = Path(tempfile.mkdtemp(prefix="nxmesh-py-agent."))
    args = [
        str(exe),
        "--master", master.grpc_url,
        "--ca-file", str(master.ca_file),
        "--data-dir", str(work / "data"),
        "--nginx-binary", nginx,
        "--prefix", str(work / "nginx"),
        "--status-port", str(free_port()),
        "--listen-address", "127.0.0.1",
        "--hostname", name,
    ]
    env = {**os.environ, "NXMESH_REGISTRATION_TOKEN": token.token}
    log = open(work / "agent.log", "wb")
    process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return Agent(id=token.agent_id, process=process, dir=work)


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def agent_log(agent: Agent) -> Optional[str]:
    path = agent.dir / "agent.log"
    return path.read_text(errors="replace") if path.exists() else None
