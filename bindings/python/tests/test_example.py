"""`examples/python/automation.py` runs against the test master."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import ADMIN_EMAIL, ADMIN_PASSWORD, REPO, Master


def test_automation_example(master: Master) -> None:
    env = {
        **os.environ,
        "NXMESH_URL": master.url,
        "NXMESH_EMAIL": ADMIN_EMAIL,
        "NXMESH_PASSWORD": ADMIN_PASSWORD,
    }
    env.pop("NXMESH_TOKEN", None)
    env.pop("NXMESH_ORGANIZATION", None)
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "python" / "automation.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "upstream api: 10.0.1.30:8080, 10.0.1.31:8080" in out
    assert "server_name api.example.com;" in out
    assert "rollout: 0/0 in sync, 0 pending, 0 failed" in out
    assert "metrics: 0 requests" in out
