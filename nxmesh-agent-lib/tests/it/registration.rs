//! Registration, credentials, refusals, reconnects and heartbeats.

use std::os::unix::fs::PermissionsExt as _;
use std::time::Instant;

use nxmesh_agent_lib::FatalError;
use nxmesh_proto::pb::{self, agent_message::Payload as Up};
use tonic::{Code, Status};
use uuid::Uuid;

use crate::support::{
    Agent, FakeApplier, FakeMaster, agent_config, config_update, credential_path, registered,
};

#[tokio::test]
async fn first_registration_persists_the_credential_and_reconnects_use_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut master = FakeMaster::start().await;
    let (applier, _calls) = FakeApplier::new(None);
    let agent = Agent::start(
        agent_config(vec![master.url()], dir.path(), Some("tok-1")),
        applier,
    );

    let mut conn = master.conn().await;
    assert_eq!(
        conn.hello.agent_id, "",
        "no id before the first registration"
    );
    assert!(conn.hello.timestamp > 0);
    let r = conn.registration().clone();
    assert_eq!(r.token, "tok-1");
    assert_eq!(r.agent_credential, "");
    assert_eq!(r.hostname, "web-1");
    assert_eq!(r.ip_address, "127.0.0.1");
    assert_eq!(r.labels.get("env").map(String::as_str), Some("test"));
    assert_eq!(r.capabilities, ["http2"]);
    assert_eq!(r.deployment_mode, pb::DeploymentMode::Standalone as i32);
    assert_eq!(
        (r.applied_config_version, r.applied_config_checksum.as_str()),
        (0, "")
    );

    let id = Uuid::new_v4();
    conn.accept(id, 1, Some("cred-abc")).await;
    // The first heartbeat comes after the credential is persisted.
    let beat = conn.next().await;
    assert!(matches!(beat.payload, Some(Up::Health(_))));
    assert_eq!(beat.agent_id, id.to_string());
    let path = credential_path(dir.path());
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), "cred-abc");

    // The master drops the stream: the agent resumes with the credential.
    drop(conn);
    let conn = master.conn().await;
    let r = conn.registration();
    assert_eq!(r.token, "", "the token is never sent again");
    assert_eq!(r.agent_credential, "cred-abc");
    assert_eq!(conn.hello.agent_id, id.to_string());
    drop(conn);
    agent.stop().await;

    // A restarted agent (no token configured any more) uses the stored
    // credential too.
    let (applier, _calls) = FakeApplier::new(None);
    let agent = Agent::start(agent_config(vec![master.url()], dir.path(), None), applier);
    let conn = master.conn().await;
    assert_eq!(conn.registration().token, "");
    assert_eq!(conn.registration().agent_credential, "cred-abc");
    drop(conn);
    agent.stop().await;
}

#[tokio::test]
async fn final_refusals_stop_the_agent_without_retrying() {
    for (code, with_response) in [
        (Code::FailedPrecondition, true),
        (Code::FailedPrecondition, false),
        (Code::InvalidArgument, true),
        (Code::InvalidArgument, false),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut master = FakeMaster::start().await;
        let (applier, _calls) = FakeApplier::new(None);
        let agent = Agent::start(
            agent_config(vec![master.url()], dir.path(), Some("used-token")),
            applier,
        );
        let conn = master.conn().await;
        let status = Status::new(code, "registration token already used");
        if with_response {
            conn.refuse("registration token already used", status).await;
        } else {
            conn.end(status).await;
        }
        match agent.finished().await {
            Err(FatalError::Refused { code: got, message }) => {
                assert_eq!(got, code);
                assert_eq!(message, "registration token already used");
            }
            other => panic!("{code:?}/{with_response}: expected a refusal, got {other:?}"),
        }
        assert!(!master.has_pending_conn(), "no retry after a final refusal");
        assert!(!credential_path(dir.path()).exists());
    }
}

#[tokio::test]
async fn no_token_and_no_credential_is_fatal_before_dialing() {
    let dir = tempfile::tempdir().unwrap();
    let mut master = FakeMaster::start().await;
    let (applier, _calls) = FakeApplier::new(None);
    let agent = Agent::start(agent_config(vec![master.url()], dir.path(), None), applier);
    assert!(matches!(
        agent.finished().await,
        Err(FatalError::NoCredential(_))
    ));
    assert!(!master.has_pending_conn());
}

#[tokio::test]
async fn retryable_errors_reconnect_and_resume_with_the_applied_version() {
    let dir = tempfile::tempdir().unwrap();
    let mut master = FakeMaster::start().await;
    let (applier, _calls) = FakeApplier::new(None);
    let agent = Agent::start(
        agent_config(vec![master.url()], dir.path(), Some("tok")),
        applier,
    );
    let (mut conn, id) = registered(&mut master, 1).await;
    conn.push(config_update(3)).await;
    let s = conn.next_status().await;
    assert_eq!(
        (s.version, s.status),
        (3, pb::ConfigApplyStatus::Success as i32)
    );

    // A retryable status (the master is restarting) is retried.
    conn.end(Status::unavailable("master restarting")).await;
    let conn = master.conn().await;
    let r = conn.registration();
    assert_eq!(r.agent_credential, "cred-1");
    assert_eq!(r.applied_config_version, 3);
    assert_eq!(r.applied_config_checksum, "sum-3");
    assert_eq!(conn.hello.agent_id, id.to_string());
    conn.accept(id, 1, None).await;

    // The whole master goes away and comes back on the same address.
    let addr = master.addr;
    drop(conn);
    master.stop().await;
    let mut master = FakeMaster::start_on(addr, None).await;
    let mut conn = master.conn().await;
    assert_eq!(conn.registration().applied_config_version, 3);
    assert_eq!(conn.registration().agent_credential, "cred-1");
    conn.accept(id, 1, None).await;
    assert!(matches!(conn.next().await.payload, Some(Up::Health(_))));

    // A stream that ends cleanly is retried too.
    drop(conn);
    let conn = master.conn().await;
    assert_eq!(conn.registration().applied_config_version, 3);
    drop(conn);
    agent.stop().await;
}

#[tokio::test]
async fn a_failing_endpoint_rotates_to_the_next() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on any more.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut master = FakeMaster::start().await;
    let (applier, _calls) = FakeApplier::new(None);
    let agent = Agent::start(
        agent_config(
            vec![format!("http://{dead}"), master.url()],
            dir.path(),
            Some("tok"),
        ),
        applier,
    );
    let (conn, _id) = registered(&mut master, 1).await;
    drop(conn);
    agent.stop().await;
}

#[tokio::test]
async fn heartbeats_follow_the_interval_the_master_sets() {
    let dir = tempfile::tempdir().unwrap();
    let mut master = FakeMaster::start().await;
    let (applier, _calls) = FakeApplier::new(None);
    let agent = Agent::start(
        agent_config(vec![master.url()], dir.path(), Some("tok")),
        applier,
    );
    let (mut conn, id) = registered(&mut master, 1).await;
    conn.push(config_update(7)).await;
    assert_eq!(conn.next_status().await.version, 7);

    // Two more intervals of one second: at least ~2 s apart (tokio never
    // fires early), and far less than the 10 s bound.
    let start = Instant::now();
    let mut beats = Vec::new();
    while beats.len() < 2 {
        let m = conn.next().await;
        if let Some(Up::Health(h)) = m.payload {
            assert_eq!(m.agent_id, id.to_string());
            beats.push(h);
        }
    }
    let elapsed = start.elapsed();
    assert!(
        elapsed.as_millis() >= 900,
        "heartbeats came faster than the interval: {elapsed:?}"
    );
    for h in &beats {
        // The health source's report, with what is served filled in.
        assert!(
            h.nginx
                .as_ref()
                .is_some_and(|n| n.is_running && n.pid == 42)
        );
        assert_eq!((h.config_version, h.config_checksum.as_str()), (7, "sum-7"));
    }
    drop(conn);
    agent.stop().await;
}
