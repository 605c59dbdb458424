//! Commands are answered with a `CommandResult` of the same id.

use nxmesh_proto::pb::{self, master_message::Payload as Down};

use crate::support::{Agent, FakeApplier, FakeMaster, agent_config, registered};

#[tokio::test]
async fn a_command_is_answered_with_the_same_id() {
    let dir = tempfile::tempdir().unwrap();
    let mut master = FakeMaster::start().await;
    let (applier, _calls) = FakeApplier::new(None);
    let agent = Agent::start(
        agent_config(vec![master.url()], dir.path(), Some("tok")),
        applier,
    );
    let (mut conn, _id) = registered(&mut master, 30).await;

    conn.push(Down::Command(pb::Command {
        command_id: "cmd-42".into(),
        command: Some(pb::command::Command::Reload(pb::ReloadCommand {
            graceful: true,
        })),
    }))
    .await;
    let r = conn.next_command_result().await;
    assert_eq!(r.command_id, "cmd-42");
    assert!(r.success);
    assert_eq!(r.message, "Reload { graceful: true }");

    // A command the agent cannot read is answered as failed, same id.
    conn.push(Down::Command(pb::Command {
        command_id: "cmd-43".into(),
        command: None,
    }))
    .await;
    let r = conn.next_command_result().await;
    assert_eq!(r.command_id, "cmd-43");
    assert!(!r.success);
    assert!(r.message.contains("command"), "{}", r.message);
    drop(conn);
    agent.stop().await;
}
