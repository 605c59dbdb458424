//! Configuration updates: applied and reported, duplicates and older
//! versions ignored, invalid payloads refused, bursts coalesced.

use std::sync::Arc;

use nxmesh_agent_lib::ConfigApplier as _;
use nxmesh_proto::pb::{self, agent_message::Payload as Up, master_message::Payload as Down};
use tokio::sync::Semaphore;

use crate::support::{
    Agent, FakeApplier, FakeMaster, agent_config, config_update, registered, within,
};

const SUCCESS: i32 = pb::ConfigApplyStatus::Success as i32;
const FAILED: i32 = pb::ConfigApplyStatus::Failed as i32;

#[tokio::test]
async fn a_config_update_is_applied_and_its_status_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut master = FakeMaster::start().await;
    let (applier, mut calls) = FakeApplier::new(None);
    let agent = Agent::start(
        agent_config(vec![master.url()], dir.path(), Some("tok")),
        applier,
    );
    let (mut conn, id) = registered(&mut master, 30).await;

    conn.push(config_update(1)).await;
    let applied = within("the apply", calls.recv()).await.unwrap();
    assert_eq!((applied.version, applied.config_id.as_str()), (1, "cfg-1"));
    let m = loop {
        let m = conn.next().await;
        if matches!(m.payload, Some(Up::ConfigStatus(_))) {
            break m;
        }
    };
    assert_eq!(m.agent_id, id.to_string());
    let Some(Up::ConfigStatus(s)) = m.payload else {
        unreachable!()
    };
    assert_eq!(s.config_id, "cfg-1");
    assert_eq!(s.version, 1);
    assert_eq!(s.status, SUCCESS);
    assert_eq!(s.error_message, "");
    assert_eq!(s.config_checksum, "sum-1");
    assert!(s.applied_at > 0);
    drop(conn);
    agent.stop().await;
}

#[tokio::test]
async fn older_and_duplicate_versions_are_not_applied_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut master = FakeMaster::start().await;
    let (applier, mut calls) = FakeApplier::new(None);
    let agent = Agent::start(
        agent_config(vec![master.url()], dir.path(), Some("tok")),
        applier,
    );
    let (mut conn, _id) = registered(&mut master, 30).await;
    conn.push(config_update(2)).await;
    assert_eq!(conn.next_status().await.version, 2);

    conn.push(config_update(1)).await; // older: no answer
    conn.push(config_update(2)).await; // duplicate: confirmed, not reapplied
    conn.push(config_update(3)).await;
    let dup = conn.next_status().await;
    assert_eq!((dup.version, dup.status), (2, SUCCESS));
    assert_eq!(dup.config_checksum, "sum-2");
    assert_eq!(dup.applied_at, 0, "a confirmation, not a new apply");
    let next = conn.next_status().await;
    assert_eq!((next.version, next.status), (3, SUCCESS), "nothing for v1");

    let mut applied = Vec::new();
    while let Ok(u) = calls.try_recv() {
        applied.push(u.version);
    }
    assert_eq!(applied, [2, 3]);
    drop(conn);
    agent.stop().await;
}

#[tokio::test]
async fn an_invalid_update_fails_and_keeps_the_last_good_config() {
    let dir = tempfile::tempdir().unwrap();
    let mut master = FakeMaster::start().await;
    let (applier, mut calls) = FakeApplier::new(None);
    let agent = Agent::start(
        agent_config(vec![master.url()], dir.path(), Some("tok")),
        Arc::clone(&applier),
    );
    let (mut conn, _id) = registered(&mut master, 30).await;
    conn.push(config_update(1)).await;
    assert_eq!(conn.next_status().await.status, SUCCESS);

    // Not convertible: a virtual host id that is not a UUID.
    conn.push(Down::ConfigUpdate(pb::ConfigUpdate {
        config_id: "cfg-2".into(),
        version: 2,
        virtual_hosts: vec![pb::VirtualHost {
            id: "not-a-uuid".into(),
            ..Default::default()
        }],
        ..Default::default()
    }))
    .await;
    let s = conn.next_status().await;
    assert_eq!(
        (s.version, s.config_id.as_str(), s.status),
        (2, "cfg-2", FAILED)
    );
    assert!(s.error_message.contains("invalid"), "{}", s.error_message);
    assert_eq!(
        s.config_checksum, "sum-1",
        "still serving the last good tree"
    );
    let applied = applier.applied().unwrap();
    assert_eq!((applied.version, applied.checksum.as_str()), (1, "sum-1"));

    // The agent goes on: the next good version applies.
    conn.push(config_update(3)).await;
    assert_eq!(conn.next_status().await.version, 3);
    let mut versions = Vec::new();
    while let Ok(u) = calls.try_recv() {
        versions.push(u.version);
    }
    assert_eq!(
        versions,
        [1, 3],
        "the invalid update never reached the applier"
    );
    drop(conn);
    agent.stop().await;
}

#[tokio::test]
async fn updates_during_an_apply_supersede_older_queued_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut master = FakeMaster::start().await;
    let gate = Arc::new(Semaphore::new(0));
    let (applier, mut calls) = FakeApplier::new(Some(Arc::clone(&gate)));
    let agent = Agent::start(
        agent_config(vec![master.url()], dir.path(), Some("tok")),
        applier,
    );
    let (mut conn, _id) = registered(&mut master, 30).await;

    conn.push(config_update(1)).await;
    assert_eq!(within("apply 1", calls.recv()).await.unwrap().version, 1);
    // v1 is held at the gate; these queue behind it, newest winning.
    for v in [2, 3, 4] {
        conn.push(config_update(v)).await;
    }
    // Messages are dispatched in order, so once this command is answered
    // the updates before it were all queued.
    conn.push(Down::Command(pb::Command {
        command_id: "sync".into(),
        command: Some(pb::command::Command::GetStatus(pb::GetStatusCommand {})),
    }))
    .await;
    assert_eq!(conn.next_command_result().await.command_id, "sync");
    gate.add_permits(10);

    assert_eq!(conn.next_status().await.version, 1);
    assert_eq!(conn.next_status().await.version, 4);
    assert_eq!(within("apply 4", calls.recv()).await.unwrap().version, 4);
    assert!(calls.try_recv().is_err(), "2 and 3 were superseded");
    drop(conn);
    agent.stop().await;
}
