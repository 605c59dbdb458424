"""The asyncio client does what the blocking one does: every resource's
create, read, update and delete, async pagination and the exceptions."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any, Awaitable, Coroutine, TypeVar

import pytest

import nxmesh
from conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Master, free_port, unique

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def new_client(master: Master) -> nxmesh.AsyncClient:
    return nxmesh.AsyncClient(master.url, email=ADMIN_EMAIL, password=ADMIN_PASSWORD)


async def collect(it: nxmesh.AsyncStreamIterator[T]) -> list[T]:
    return [item async for item in it]


def test_calls_return_awaitables(master: Master) -> None:
    async def main() -> None:
        c = new_client(master)
        pending = c.users.me()
        assert isinstance(pending, Awaitable)
        me = await pending
        assert me.email == ADMIN_EMAIL

    run(main())


def test_every_resource_crud(master: Master) -> None:
    async def main() -> None:
        c = new_client(master)
        await c.login()

        org = await c.organizations.create(name="Async", slug=unique("async"))
        assert (await c.organizations.get(org.id)) == org
        assert (await c.organizations.update(org.id, name="Async 2")).name == "Async 2"
        assert org.id in [o.id for o in await collect(c.organizations.list_all())]

        ws_api = c.workspaces(org.id)
        ws = await ws_api.create(name="Prod", slug="prod")
        assert (await ws_api.update(ws.id, {"name": "Production"})).name == "Production"
        page = await ws_api.list(per_page=1)
        assert isinstance(page, nxmesh.Page) and page.meta.total == 1

        ups = c.upstreams(ws.id)
        up = await ups.create(name="api", servers=[{"address": "10.0.0.1:80"}])
        up = await ups.update(up.id, algorithm="ip_hash")
        assert up.algorithm == "ip_hash"
        assert [u.id for u in await collect(ups.list_all())] == [up.id]

        vhs = c.virtual_hosts(ws.id)
        vh = await vhs.create(
            name="Site",
            server_name="async.example.com",
            listen_port=8081,
            locations=[{"path": "/", "upstream_id": up.id}],
        )
        assert (await vhs.update(vh.id, listen_port=8082)).listen_port == 8082
        assert "async.example.com" in (await vhs.preview(vh.id)).content
        assert (await vhs.get(vh.id)).locations[0].upstream_id == up.id

        certs = c.certificates(ws.id)
        cert = await certs.create(domain="async.example.com", provider="self_signed")
        assert (await certs.get(cert.id)).domain == "async.example.com"

        agents = c.agents(ws.id)
        token = await agents.create_registration_token(name="edge-1")
        agent = await agents.update(token.agent_id, labels={"zone": "a"})
        assert agent.labels == {"zone": "a"}
        assert (await agents.config(agent.id)).config.agent_id == agent.id
        assert (await c.rollout.status(ws.id)).summary.total == 1

        now = datetime.datetime.now(datetime.timezone.utc)
        metrics = await c.metrics.agent(agent.id, now - datetime.timedelta(minutes=5), now)
        assert metrics.requests_total == 0
        assert (await c.access_logs.query(ws.id, limit=5)).limit == 5

        email = f"{unique('async-user')}@example.com"
        user = await c.users.create(email=email, password="async long password", name="A")
        members = c.members(org.id)
        assert (await members.create(user_id=user.id, role="editor")).role == "editor"
        assert (await members.update(user.id, role="admin")).role == "admin"
        assert user.id in [m.user_id for m in await collect(members.list_all())]
        await members.delete(user.id)
        await c.users.delete(user.id)
        assert (await c.audit_log(org.id).list()).meta.total > 0

        tok = await c.api_tokens.create(name=unique("async-token"), scopes=["read"])
        assert tok.id in [t.id for t in await c.api_tokens.list()]
        await c.api_tokens.delete(tok.id)

        for delete, item in (
            (agents.delete, agent.id),
            (certs.delete, cert.id),
            (vhs.delete, vh.id),
            (ups.delete, up.id),
            (ws_api.delete, ws.id),
            (c.organizations.delete, org.id),
        ):
            await delete(item)
        assert (await c.organizations.get_opt(org.id)) is None

    run(main())


def test_concurrent_calls(master: Master) -> None:
    async def main() -> None:
        c = new_client(master)
        slugs = [unique("gather") for _ in range(5)]
        orgs = await asyncio.gather(*(c.organizations.create(name="G", slug=s) for s in slugs))
        assert sorted(o.slug for o in orgs) == sorted(slugs)
        await asyncio.gather(*(c.organizations.delete(o.id) for o in orgs))

    run(main())


def test_exceptions(master: Master) -> None:
    async def main() -> None:
        c = new_client(master)
        with pytest.raises(nxmesh.NotFound):
            await c.organizations.get("00000000-0000-0000-0000-000000000000")
        org = await c.organizations.create(name="E", slug=unique("err"))
        with pytest.raises(nxmesh.Conflict):
            await c.organizations.create(name="E", slug=org.slug)
        with pytest.raises(nxmesh.ValidationError) as info:
            await c.workspaces(org.id).create(name="x", slug="BAD SLUG")
        assert info.value.details[0].field == "slug"
        token = await c.agents(
            (await c.workspaces(org.id).create(name="w", slug="w")).id
        ).create_registration_token(name="offline")
        with pytest.raises(nxmesh.ServiceUnavailable):
            await c.agents(org.id).reload(token.agent_id)
        with pytest.raises(nxmesh.Unauthorized):
            await nxmesh.AsyncClient(master.url, token="bogus").users.me()
        with pytest.raises(nxmesh.TransportError):
            await nxmesh.AsyncClient(f"http://127.0.0.1:{free_port()}", max_retries=0).users.me()
        email = f"{unique('async-viewer')}@example.com"
        viewer_user = await c.users.create(email=email, password="viewer long password", name="V")
        await c.members(org.id).create(email=email, role="viewer")
        viewer = nxmesh.AsyncClient(master.url, email=email, password="viewer long password")
        with pytest.raises(nxmesh.Forbidden):
            await viewer.workspaces(org.id).create(name="no", slug="no")
        await c.users.delete(viewer_user.id)
        # A failing async iteration raises from __anext__.
        with pytest.raises(nxmesh.Unauthorized):
            await collect(nxmesh.AsyncClient(master.url, token="bogus").organizations.list_all())

    run(main())
