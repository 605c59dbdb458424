"""Automating NxMesh from Python: create a workspace, an upstream and a
virtual host, wait until every agent of the workspace runs the new
configuration, and print the workspace's metrics.

    NXMESH_URL=http://127.0.0.1:8080 NXMESH_EMAIL=admin@example.com \\
    NXMESH_PASSWORD=... python examples/python/automation.py

`NXMESH_TOKEN` (an API token) may replace the email and password, and
`NXMESH_ORGANIZATION` names an existing organization (by id) to work in;
without it a new one is created. The test suite runs this script against
its test master.
"""

from __future__ import annotations

import datetime
import os
import sys
import time

import nxmesh

ROLLOUT_DEADLINE = 60.0


def connect() -> nxmesh.Client:
    url = os.environ.get("NXMESH_URL", "http://127.0.0.1:8080")
    token = os.environ.get("NXMESH_TOKEN")
    if token:
        return nxmesh.Client(url, token=token)
    return nxmesh.Client(url, email=os.environ["NXMESH_EMAIL"], password=os.environ["NXMESH_PASSWORD"])


def wait_for_rollout(client: nxmesh.Client, workspace_id: str) -> nxmesh.RolloutStatus:
    """Polls the rollout status until no agent is pending; fails on a failed apply."""
    deadline = time.monotonic() + ROLLOUT_DEADLINE
    while True:
        status = client.rollout.status(workspace_id)
        summary = status.summary
        print(f"rollout: {summary.in_sync}/{summary.total} in sync, {summary.pending} pending, {summary.failed} failed")
        if summary.failed:
            errors = [a.last_error for a in status.agents if a.last_error]
            raise SystemExit(f"rollout failed: {errors}")
        if summary.pending == 0:
            return status
        if time.monotonic() > deadline:
            raise SystemExit("rollout did not finish in time")
        time.sleep(1.0)


def main() -> int:
    client = connect()
    suffix = f"{os.getpid()}-{int(time.time())}"
    org_id = os.environ.get("NXMESH_ORGANIZATION")
    if org_id is None:
        org_id = client.organizations.create(name="Automation", slug=f"automation-{suffix}").id

    workspace = client.workspaces(org_id).create(name="Automation", slug=f"automation-{suffix}")
    print(f"workspace {workspace.slug} ({workspace.id})")

    upstream = client.upstreams(workspace.id).create(
        name="api",
        algorithm="least_connections",
        servers=[
            {"address": "10.0.1.30:8080", "weight": 2},
            {"address": "10.0.1.31:8080", "weight": 1, "backup": True},
        ],
        health_check={"enabled": True, "path": "/health", "interval": 10, "timeout": 5},
    )
    print(f"upstream {upstream.name}: {', '.join(s.address for s in upstream.servers)}")

    vhost = client.virtual_hosts(workspace.id).create(
        name="API",
        server_name="api.example.com",
        listen_port=8080,
        locations=[
            {
                "path": "/api",
                "upstream_id": upstream.id,
                "custom_headers": [{"name": "X-Forwarded-Proto", "value": "$scheme"}],
            }
        ],
        target_agents={"type": "all"},
    )
    print(f"virtual host {vhost.server_name}:{vhost.listen_port}")
    print(client.virtual_hosts(workspace.id).preview(vhost.id).content)

    wait_for_rollout(client, workspace.id)

    now = datetime.datetime.now(datetime.timezone.utc)
    metrics = client.metrics.workspace(workspace.id, now - datetime.timedelta(hours=1), now)
    print(
        f"metrics: {metrics.requests_total} requests, {metrics.requests_per_second:.1f} req/s, "
        f"error rate {metrics.error_rate:.3%}, {metrics.active_connections} connections, "
        f"{metrics.bandwidth.in_bytes} B in / {metrics.bandwidth.out_bytes} B out, "
        f"status codes {metrics.status_codes}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
