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

#[tokio::test]
async fn unary_reports_carry_the_credential_as_a_bearer_token() {
    let mut master = FakeMaster::start().await;
    let channel = nxmesh_agent_lib::connect(&master.url(), None, None, crate::support::WAIT)
        .await
        .unwrap();
    let ack = nxmesh_agent_lib::report_health(channel.clone(), "cred-9", Default::default())
        .await
        .unwrap();
    assert!(ack.success);
    let batch = nxmesh_core::protocol::MetricsBatch {
        timestamp: chrono::Utc::now(),
        metrics: Vec::new(),
    };
    nxmesh_agent_lib::report_metrics(channel, "cred-9", batch)
        .await
        .unwrap();
    for method in ["report_health", "report_metrics"] {
        let call = crate::support::within("a unary call", master.unary.recv())
            .await
            .unwrap();
        assert_eq!(call.method, method);
        assert_eq!(call.authorization.as_deref(), Some("Bearer cred-9"));
    }
}

#[tokio::test]
async fn telemetry_batches_go_up_the_stream() {
    use std::collections::BTreeMap;

    use nxmesh_agent_lib::Telemetry;
    use nxmesh_core::protocol::{LogBatch, LogEntry, Metric, MetricType, MetricsBatch};
    use nxmesh_proto::pb::agent_message::Payload as Up;

    let dir = tempfile::tempdir().unwrap();
    let mut master = FakeMaster::start().await;
    let (applier, _calls) = FakeApplier::new(None);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let source = std::sync::Arc::new(crate::support::ChannelTelemetry(tokio::sync::Mutex::new(
        rx,
    )));
    let agent = Agent::start_with(
        agent_config(vec![master.url()], dir.path(), Some("tok")),
        applier,
        Some(source),
    );
    let (mut conn, id) = registered(&mut master, 30).await;
    let now = chrono::Utc::now();
    tx.send(Telemetry::Metrics(MetricsBatch {
        timestamp: now,
        metrics: vec![Metric {
            name: "nginx_requests_total".into(),
            value: 12.0,
            timestamp: now,
            labels: BTreeMap::new(),
            kind: MetricType::Counter,
        }],
    }))
    .unwrap();
    tx.send(Telemetry::Logs(LogBatch {
        entries: vec![LogEntry {
            timestamp: now,
            level: "access".into(),
            message: "GET / 200".into(),
            fields: BTreeMap::new(),
        }],
    }))
    .unwrap();
    let m = conn.next_non_health().await;
    let Up::Metrics(batch) = m else {
        panic!("expected metrics, got {m:?}")
    };
    assert_eq!(batch.metrics[0].name, "nginx_requests_total");
    let m = conn.next().await;
    let m = if matches!(m.payload, Some(Up::Health(_))) {
        conn.next().await
    } else {
        m
    };
    assert_eq!(m.agent_id, id.to_string());
    let Some(Up::Logs(logs)) = m.payload else {
        panic!("expected logs, got {m:?}")
    };
    assert_eq!(logs.entries[0].message, "GET / 200");
    drop(conn);
    agent.stop().await;
}
