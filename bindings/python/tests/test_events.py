"""The event feed as an iterator and as an async iterator, fed by a real
`nxmesh-agent` (with a real nginx) connecting to the master, applying a
virtual host and disconnecting."""

from __future__ import annotations

import asyncio

import pytest

import nxmesh
from conftest import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    Agent,
    Master,
    agent_log,
    free_port,
    start_agent,
    unique,
)

IDLE = 60.0  # seconds the test waits for any one event


def next_of_type(events: nxmesh.StreamIterator[nxmesh.Event], kind: str, agent: Agent) -> nxmesh.Event:
    for event in events:
        if event.type == kind and event.agent_id == agent.id:
            return event
    raise AssertionError(f"the feed ended before {kind}")


def test_events_iterator_sees_an_agent_connect_apply_and_disconnect(
    client: nxmesh.Client, master: Master, workspace: nxmesh.Workspace
) -> None:
    events = client.events(["agent.*", "config.*"], workspace_id=workspace.id, idle_timeout=IDLE)
    agent = start_agent(master, client, workspace.id, unique("py-agent"))
    try:
        try:
            connected = next_of_type(events, "agent.connected", agent)
        except TimeoutError:
            pytest.fail(f"no agent.connected; agent log:\n{agent_log(agent)}")
        assert isinstance(connected, nxmesh.Event)
        assert connected.data["agent_id"] == agent.id
        assert connected.to_dict()["type"] == "agent.connected"
        assert client.agents(workspace.id).get(agent.id).state == "online"

        # A change reaches the agent, which applies it with nginx and says so.
        client.virtual_hosts(workspace.id).create(
            name="Events",
            server_name="events.example.com",
            listen_port=free_port(),
            locations=[{"path": "/", "proxy_pass": "http://127.0.0.1:9"}],
        )
        try:
            applied = next_of_type(events, "config.applied", agent)
        except TimeoutError:
            pytest.fail(f"no config.applied; agent log:\n{agent_log(agent)}")
        assert applied.data["success"] is True and applied.data["version"] >= 1
        status = client.rollout.status(workspace.id)
        assert status.summary.in_sync == 1 and status.summary.pending == 0

        # Commands reach the connected agent and come back answered.
        reloaded = client.agents(workspace.id).reload(agent.id)
        assert isinstance(reloaded, nxmesh.ReloadResponse) and reloaded.success, reloaded
        answer = client.agents(workspace.id).command(agent.id, command="get_status")
        assert isinstance(answer, nxmesh.CommandResponse) and answer.success, answer
    finally:
        agent.stop()
    disconnected = next_of_type(events, "agent.disconnected", agent)
    assert disconnected.data["reason"]
    events.close()
    with pytest.raises(StopIteration):
        next(events)


def test_async_events_iterator(client: nxmesh.Client, master: Master, workspace: nxmesh.Workspace) -> None:
    async def main() -> None:
        c = nxmesh.AsyncClient(master.url, email=ADMIN_EMAIL, password=ADMIN_PASSWORD)
        events = await c.events(["agent.connected"], workspace_id=workspace.id, idle_timeout=IDLE)
        assert isinstance(events, nxmesh.AsyncStreamIterator)
        agent = start_agent(master, client, workspace.id, unique("py-async-agent"))
        try:
            async for event in events:
                assert event.type == "agent.connected"
                if event.agent_id == agent.id:
                    break
            else:
                raise AssertionError("the feed ended")
        except TimeoutError:
            pytest.fail(f"no agent.connected; agent log:\n{agent_log(agent)}")
        finally:
            agent.stop()
        await events.aclose()
        with pytest.raises(StopAsyncIteration):
            await events.__anext__()

    asyncio.run(main())


def test_events_refused_without_credentials(master: Master) -> None:
    with pytest.raises(nxmesh.Unauthorized):
        nxmesh.Client(master.url, token="bogus").events()
