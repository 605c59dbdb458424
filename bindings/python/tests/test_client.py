"""The blocking client against a real master: create, read, update and
delete of every resource, pagination, typed objects and `to_dict()`."""

from __future__ import annotations

import datetime
import uuid

import pytest

import nxmesh
from conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Master, unique

UPSTREAM = {
    "name": "api",
    "algorithm": "least_connections",
    "servers": [{"address": "10.0.1.30:8080", "weight": 2}],
    "health_check": {"enabled": True, "path": "/health", "interval": 10, "timeout": 5},
}


def test_organizations_crud_and_typed_objects(client: nxmesh.Client) -> None:
    slug = unique("acme")
    org = client.organizations.create(name="Acme", slug=slug)
    assert isinstance(org, nxmesh.Organization)
    assert org.slug == slug and org.name == "Acme"
    assert isinstance(org.created_at, datetime.datetime)
    assert org.created_at.tzinfo is not None
    uuid.UUID(org.id)  # ids are UUID strings
    assert org.to_dict() == {
        "id": org.id,
        "name": "Acme",
        "slug": slug,
        "created_at": org.to_dict()["created_at"],
        "updated_at": org.to_dict()["updated_at"],
    }
    assert client.organizations.get(org.id) == org
    assert client.organizations.get(uuid.UUID(org.id)) == org  # a uuid.UUID works too

    renamed = client.organizations.update(org.id, name="Acme Corporation")
    assert renamed.name == "Acme Corporation" and renamed.slug == slug
    # A mapping works as well as keyword arguments.
    again = client.organizations.update(org.id, {"name": "Acme Corp"})
    assert again.name == "Acme Corp"

    listed = [o.id for o in client.organizations.list_all()]
    assert org.id in listed

    client.organizations.delete(org.id)
    assert client.organizations.get_opt(org.id) is None
    with pytest.raises(nxmesh.NotFound):
        client.organizations.get(org.id)


def test_pagination_pages_and_iterator(client: nxmesh.Client, org: nxmesh.Organization) -> None:
    workspaces = client.workspaces(org.id)
    created = [workspaces.create(name=f"W{i}", slug=f"w-{i}") for i in range(5)]
    page = workspaces.list(page=1, per_page=2)
    assert isinstance(page, nxmesh.Page)
    assert len(page) == 2 and page.meta.total == 5 and page.meta.per_page == 2
    assert all(isinstance(w, nxmesh.Workspace) for w in page)
    assert page.to_dict()["meta"] == {"page": 1, "per_page": 2, "total": 5}
    # list_all walks every page (two per page here: three requests).
    every = workspaces.list_all(per_page=2)
    assert iter(every) is every
    assert sorted(w.id for w in every) == sorted(w.id for w in created)
    with pytest.raises(StopIteration):
        next(every)


def test_workspaces_crud(client: nxmesh.Client, org: nxmesh.Organization) -> None:
    api = client.workspaces(org.id)
    ws = api.create(name="Staging", slug="staging")
    assert ws.organization_id == org.id
    assert api.get(ws.id).slug == "staging"
    assert api.update(ws.id, name="Staging 2").name == "Staging 2"
    assert [w.id for w in api.list().data] == [ws.id]
    api.delete(ws.id)
    assert api.get_opt(ws.id) is None


def test_upstreams_crud(client: nxmesh.Client, workspace: nxmesh.Workspace) -> None:
    api = client.upstreams(workspace.id)
    up = api.create(UPSTREAM)
    assert isinstance(up, nxmesh.Upstream)
    assert up.algorithm == "least_connections"
    assert isinstance(up.servers[0], nxmesh.UpstreamServer)
    assert up.servers[0].address == "10.0.1.30:8080" and up.servers[0].weight == 2
    assert up.health_check is not None and up.health_check.path == "/health"
    changed = api.update(up.id, servers=[{"address": "10.0.1.31:8080", "weight": 3}])
    assert [s.address for s in changed.servers] == ["10.0.1.31:8080"]
    assert changed.name == "api"  # untouched fields stay
    assert api.get(up.id) == changed
    assert [u.id for u in api.list_all()] == [up.id]
    api.delete(up.id)
    assert api.get_opt(up.id) is None


def test_virtual_hosts_crud_and_preview(client: nxmesh.Client, workspace: nxmesh.Workspace) -> None:
    up = client.upstreams(workspace.id).create(UPSTREAM)
    api = client.virtual_hosts(workspace.id)
    vh = api.create(
        name="Main",
        server_name="example.com www.example.com",
        listen_port=8080,
        locations=[
            {
                "path": "/api",
                "upstream_id": up.id,
                "custom_headers": [{"name": "X-Forwarded-Proto", "value": "$scheme"}],
            },
            {"path": "/health", "proxy_pass": "http://127.0.0.1:9000"},
        ],
        target_agents={"type": "selector", "label_selector": "env=test"},
    )
    assert isinstance(vh, nxmesh.VirtualHost)
    assert vh.listen_port == 8080 and vh.ssl_enabled is False
    assert vh.target_agents.type == "selector" and vh.target_agents.label_selector == "env=test"
    assert [loc.path for loc in vh.locations] == ["/api", "/health"]
    assert vh.locations[0].upstream_id == up.id
    assert vh.locations[0].custom_headers[0].value == "$scheme"
    assert vh.to_dict()["locations"][1]["proxy_pass"] == "http://127.0.0.1:9000"

    preview = api.preview(vh.id)
    assert isinstance(preview, nxmesh.ConfigPreview)
    assert "server_name example.com www.example.com;" in preview.content

    updated = api.update(vh.id, name="Main v2", target_agents={"type": "all"})
    assert updated.name == "Main v2" and updated.target_agents.type == "all"
    assert updated.server_name == "example.com www.example.com"
    assert api.get(vh.id) == updated
    assert [v.id for v in api.list().data] == [vh.id]
    api.delete(vh.id)
    assert api.get_opt(vh.id) is None


def test_certificates_crud(client: nxmesh.Client, workspace: nxmesh.Workspace) -> None:
    api = client.certificates(workspace.id)
    cert = api.create(domain="self.example.com", provider="self_signed")
    assert isinstance(cert, nxmesh.Certificate)
    assert cert.domain == "self.example.com" and cert.provider == "self_signed"
    assert cert.status == "active" and cert.expires_at is not None
    assert "private_key_pem" not in cert.to_dict()
    assert api.get(cert.id) == cert
    assert [c.id for c in api.list_all()] == [cert.id]
    api.delete(cert.id)
    assert api.get_opt(cert.id) is None


def test_agents_crud_registration_token_and_ledger(
    client: nxmesh.Client, workspace: nxmesh.Workspace
) -> None:
    api = client.agents(workspace.id)
    token = api.create_registration_token(name="web-01", labels={"env": "test"}, expires_in_hours=1)
    assert isinstance(token, nxmesh.RegistrationToken)
    assert token.token.startswith("nxmesh_agent_")
    assert "redacted" in repr(token) and token.token not in repr(token)

    agent = api.get(token.agent_id)
    assert isinstance(agent, nxmesh.Agent)
    assert agent.name == "web-01" and agent.labels == {"env": "test"}
    assert agent.state == "offline" and agent.health is None

    updated = api.update(agent.id, name="web-01-renamed", labels={"env": "test", "tier": "web"})
    assert updated.name == "web-01-renamed" and updated.labels["tier"] == "web"

    assert [a.id for a in api.list_all()] == [agent.id]
    assert [a.id for a in client.agents(workspace.id, state="offline").list().data] == [agent.id]
    assert client.agents(workspace.id, state="online").list().data == []
    assert client.agents(workspace.id, label_selector="tier=web").list().meta.total == 1
    assert client.agents(workspace.id, label_selector="tier=db").list().meta.total == 0
    with pytest.raises(ValueError):
        client.agents(workspace.id, state="sleepy")

    ledger = api.config(agent.id)
    assert isinstance(ledger, nxmesh.AgentWithConfig)
    assert ledger.agent.id == agent.id and ledger.config.agent_id == agent.id

    status = client.rollout.status(workspace.id)
    assert isinstance(status, nxmesh.RolloutStatus)
    assert status.summary.total == 1 and status.agents[0].agent_id == agent.id

    api.delete(agent.id)
    assert api.get_opt(agent.id) is None


def test_metrics_and_access_logs(client: nxmesh.Client, workspace: nxmesh.Workspace) -> None:
    now = datetime.datetime.now(datetime.timezone.utc)
    summary = client.metrics.workspace(workspace.id, now - datetime.timedelta(hours=1), now)
    assert isinstance(summary, nxmesh.MetricsSummary)
    assert summary.requests_total == 0 and summary.bandwidth.in_bytes == 0
    assert summary.status_codes == {"2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0}
    # RFC 3339 strings work as well as datetimes.
    same = client.metrics.workspace(workspace.id, "2026-01-01T00:00:00Z", now.isoformat())
    assert same.requests_total == 0

    logs = client.access_logs.query(workspace.id, status_code=500, limit=10)
    assert isinstance(logs, nxmesh.AccessLogPage)
    assert logs.data == [] and logs.total == 0 and logs.limit == 10


def test_users_members_audit_log(client: nxmesh.Client, org: nxmesh.Organization) -> None:
    me = client.users.me()
    assert me.email == ADMIN_EMAIL and me.is_admin

    email = f"{unique('user')}@example.com"
    user = client.users.create(email=email, password="another long password", name="Viewer")
    assert isinstance(user, nxmesh.User) and user.email == email

    members = client.members(org.id)
    member = members.create(email=email, role="viewer")
    assert isinstance(member, nxmesh.Member)
    assert member.user_id == user.id and member.role == "viewer"
    assert members.update(user.id, role="editor").role == "editor"
    assert user.id in [m.user_id for m in members.list_all()]
    assert members.list().meta.total >= 1
    members.delete(user.id)
    assert user.id not in [m.user_id for m in members.list_all()]

    entries = list(client.audit_log(org.id).list_all())
    assert entries and all(isinstance(e, nxmesh.AuditEntry) for e in entries)
    assert any(e.target_id == org.id for e in entries)
    assert client.audit_log(org.id).list(per_page=1).meta.per_page == 1

    client.users.delete(user.id)
    with pytest.raises(nxmesh.Unauthorized):
        nxmesh.Client(client.url, email=email, password="another long password").login()


def test_api_tokens(client: nxmesh.Client, master: Master) -> None:
    created = client.api_tokens.create(name=unique("automation"), scopes=["read", "write"])
    assert isinstance(created, nxmesh.ApiTokenCreated)
    assert created.scopes == ["read", "write"]
    assert created.id in [t.id for t in client.api_tokens.list()]

    # The token authenticates a second client.
    by_token = nxmesh.Client(master.url, token=created.token)
    assert by_token.users.me().email == ADMIN_EMAIL
    assert by_token.bearer_token() == created.token

    client.api_tokens.delete(created.id)
    assert created.id not in [t.id for t in client.api_tokens.list()]
    with pytest.raises(nxmesh.Unauthorized):
        by_token.users.me()


def test_login_session_and_logout(master: Master) -> None:
    c = nxmesh.Client(master.url, email=ADMIN_EMAIL, password=ADMIN_PASSWORD)
    c.login()
    token = c.bearer_token()
    assert token is not None and token.count(".") == 2  # a JWT
    c.logout()
    # After logout the next call logs in again on its own.
    assert c.users.me().email == ADMIN_EMAIL


def test_bad_arguments_raise_before_any_request(client: nxmesh.Client) -> None:
    with pytest.raises(ValueError):
        client.organizations.get("not-a-uuid")
    with pytest.raises(ValueError, match="slug"):
        client.organizations.create(name="No slug")
    with pytest.raises(TypeError):
        client.organizations.get(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        nxmesh.Client("http://127.0.0.1:1", token="t", email="e", password="p")
    with pytest.raises(ValueError):
        nxmesh.Client("ftp://127.0.0.1:1")


def test_the_gil_is_released_while_waiting(client: nxmesh.Client) -> None:
    """A blocking call in one thread leaves the others running Python."""
    import threading

    events = client.events(["health.alert"], idle_timeout=1.0)
    outcome: list[BaseException] = []

    def wait() -> None:
        try:
            next(events)
        except BaseException as e:  # noqa: BLE001 - recorded for the assertion
            outcome.append(e)

    thread = threading.Thread(target=wait)
    thread.start()
    spins = 0
    while thread.is_alive():
        spins += 1
    thread.join()
    assert spins > 10_000, "the main thread could not run while the other waited"
    # Nothing arrived within the idle timeout; the iterator stays usable.
    assert len(outcome) == 1 and isinstance(outcome[0], TimeoutError)
    with pytest.raises(TimeoutError):
        next(events)
    events.close()


def wire_fields_are_attributes(obj: object, path: str = "") -> list[str]:
    """Wire keys of `obj.to_dict()` that have no attribute, recursively."""
    missing = []
    wire = obj.to_dict()  # type: ignore[attr-defined]
    # AgentWithConfig flattens the agent into the wire object; Python keeps
    # it as `.agent`.
    flattened = obj.agent.to_dict() if isinstance(obj, nxmesh.AgentWithConfig) else {}
    for key in wire:
        if key in flattened:
            continue
        if not hasattr(obj, key):
            missing.append(f"{path}{type(obj).__name__}.{key}")
            continue
        value = getattr(obj, key)
        children = value if isinstance(value, list) else [value]
        for child in children:
            if hasattr(child, "to_dict") and not isinstance(child, dict):
                missing += wire_fields_are_attributes(child, f"{path}{key}.")
    return missing


def test_every_wire_field_is_an_attribute(client: nxmesh.Client, workspace: nxmesh.Workspace) -> None:
    """The typed objects keep up with the core model: whatever the master
    sends has an attribute (caught here when a field is added in Rust)."""
    up = client.upstreams(workspace.id).create(UPSTREAM)
    token = client.agents(workspace.id).create_registration_token(name="wire")
    now = datetime.datetime.now(datetime.timezone.utc)
    objects: list[object] = [
        client.organizations.get(workspace.organization_id),
        workspace,
        up,
        client.virtual_hosts(workspace.id).create(
            name="Wire",
            server_name="wire.example.com",
            listen_port=8080,
            locations=[
                {
                    "path": "/",
                    "modifier": "exact",
                    "upstream_id": up.id,
                    "custom_headers": [{"name": "X-A", "value": "b", "always": True}],
                    "rewrite_rules": [{"pattern": "^/old$", "replacement": "/new", "flag": "permanent"}],
                    "custom_directives": {"client_max_body_size": "1m"},
                }
            ],
        ),
        client.certificates(workspace.id).create(domain="wire.example.com", provider="self_signed"),
        token,
        client.agents(workspace.id).get(token.agent_id),
        client.agents(workspace.id).config(token.agent_id),
        client.rollout.status(workspace.id),
        client.users.me(),
        client.api_tokens.create(name=unique("wire"), scopes=["read"]),
        next(iter(client.audit_log(workspace.organization_id).list_all())),
        next(iter(client.members(workspace.organization_id).list_all())),
        client.metrics.workspace(workspace.id, now - datetime.timedelta(hours=1), now),
    ]
    missing = [m for obj in objects for m in wire_fields_are_attributes(obj)]
    assert missing == []
