"""Each exception is raised where the master answers with its error code."""

from __future__ import annotations

import asyncio
import shutil
from typing import Iterator

import pytest

import nxmesh
from conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Master, free_port, start_master, unique

ZERO = "00000000-0000-0000-0000-000000000000"


def test_hierarchy() -> None:
    for exc in (
        nxmesh.Unauthorized,
        nxmesh.Forbidden,
        nxmesh.NotFound,
        nxmesh.Conflict,
        nxmesh.ValidationError,
        nxmesh.RateLimited,
        nxmesh.ServiceUnavailable,
        nxmesh.TransportError,
        nxmesh.ConfigError,
    ):
        assert issubclass(exc, nxmesh.NxMeshError)
    assert issubclass(nxmesh.NxMeshError, Exception)


def test_unauthorized(master: Master) -> None:
    with pytest.raises(nxmesh.Unauthorized) as info:
        nxmesh.Client(master.url, email=ADMIN_EMAIL, password="wrong password!").login()
    assert info.value.status == 401 and info.value.code == "UNAUTHORIZED"
    assert info.value.request_id
    with pytest.raises(nxmesh.Unauthorized):
        nxmesh.Client(master.url, token="nxm_not_a_real_token").organizations.list()
    with pytest.raises(nxmesh.Unauthorized):
        nxmesh.Client(master.url).organizations.list()


def test_not_found(client: nxmesh.Client) -> None:
    with pytest.raises(nxmesh.NotFound) as info:
        client.workspaces(ZERO).get(ZERO)
    assert info.value.status == 404 and info.value.code == "NOT_FOUND"
    assert client.upstreams(ZERO).get_opt(ZERO) is None


def test_conflict(client: nxmesh.Client, org: nxmesh.Organization) -> None:
    with pytest.raises(nxmesh.Conflict) as info:
        client.organizations.create(name="Twin", slug=org.slug)
    assert info.value.status == 409 and info.value.code == "CONFLICT"


def test_validation_error_with_field_details(client: nxmesh.Client, org: nxmesh.Organization) -> None:
    with pytest.raises(nxmesh.ValidationError) as info:
        client.workspaces(org.id).create(name="Bad", slug="Not A Slug!")
    err = info.value
    assert err.status == 422 and err.code == "VALIDATION_ERROR"
    assert err.details, "the field errors are attached"
    detail = err.details[0]
    assert isinstance(detail, nxmesh.FieldError)
    assert detail.field == "slug" and detail.message and detail.code


def test_forbidden_for_a_viewer(client: nxmesh.Client, master: Master, org: nxmesh.Organization) -> None:
    email = f"{unique('viewer')}@example.com"
    password = "a viewer's long password"
    user = client.users.create(email=email, password=password, name="Viewer")
    client.members(org.id).create(email=email, role="viewer")
    viewer = nxmesh.Client(master.url, email=email, password=password)
    assert viewer.organizations.get(org.id).id == org.id  # may read
    with pytest.raises(nxmesh.Forbidden) as info:
        viewer.workspaces(org.id).create(name="Nope", slug="nope")
    assert info.value.status == 403 and info.value.code == "FORBIDDEN"
    client.users.delete(user.id)


def test_service_unavailable_for_an_agent_that_is_not_connected(
    client: nxmesh.Client, workspace: nxmesh.Workspace
) -> None:
    token = client.agents(workspace.id).create_registration_token(name="never-connects")
    with pytest.raises(nxmesh.ServiceUnavailable) as info:
        client.agents(workspace.id).reload(token.agent_id)
    assert info.value.status == 503 and info.value.code == "SERVICE_UNAVAILABLE"


@pytest.fixture(scope="module")
def strict_master() -> Iterator[Master]:
    """A master that allows 3 requests per principal per minute."""
    m = start_master(rate_limit_per_minute=3)
    yield m
    m.stop()
    shutil.rmtree(m.data_dir.parent, ignore_errors=True)


def test_rate_limited_with_retry_after(strict_master: Master) -> None:
    c = nxmesh.Client(
        strict_master.url, email=ADMIN_EMAIL, password=ADMIN_PASSWORD, max_retries=0
    )
    with pytest.raises(nxmesh.RateLimited) as info:
        for _ in range(10):
            c.organizations.list()
    err = info.value
    assert err.status == 429 and err.code == "RATE_LIMITED"
    assert err.retry_after is not None and err.retry_after > 0


def test_rate_limited_async(strict_master: Master) -> None:
    async def main() -> None:
        c = nxmesh.AsyncClient(
            strict_master.url, email=ADMIN_EMAIL, password=ADMIN_PASSWORD, max_retries=0
        )
        with pytest.raises(nxmesh.RateLimited) as info:
            for _ in range(10):
                await c.organizations.list()
        assert info.value.retry_after is not None

    asyncio.run(main())


def test_transport_error() -> None:
    c = nxmesh.Client(f"http://127.0.0.1:{free_port()}", token="t", max_retries=0, timeout=5)
    with pytest.raises(nxmesh.TransportError) as info:
        c.organizations.list()
    assert info.value.status is None and "connect" in str(info.value).lower()
