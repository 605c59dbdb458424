//! The agent over real TLS: it trusts the master's CA and nothing else.

use std::time::Duration;

use nxmesh_agent_lib::{ConnectError, connect};
use nxmesh_proto::pb::agent_message::Payload as Up;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tonic::transport::Identity;
use uuid::Uuid;

use crate::support::{Agent, FakeApplier, FakeMaster, agent_config};

/// A CA: its certificate PEM and its issuer.
fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

#[tokio::test]
async fn the_agent_registers_over_tls_and_refuses_an_untrusted_master() {
    let (ca_pem, issuer) = ca("test master CA");
    let (other_ca_pem, _) = ca("some other CA");
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let identity = Identity::from_pem(cert.pem(), key.serialize_pem());
    let mut master = FakeMaster::start_on("127.0.0.1:0".parse().unwrap(), Some(identity)).await;
    let url = format!("https://{}", master.addr);

    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    let other_ca_file = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca_file, &other_ca_pem).unwrap();

    // The untrusted CA: the handshake fails.
    let err = connect(
        &url,
        Some(other_ca_pem.as_bytes()),
        None,
        Duration::from_secs(5),
    )
    .await
    .expect_err("a master signed by another CA must be refused");
    assert!(matches!(err, ConnectError::Transport { .. }), "{err:?}");
    // The right CA, by IP and by name.
    connect(&url, Some(ca_pem.as_bytes()), None, Duration::from_secs(5))
        .await
        .unwrap();
    connect(
        &url,
        Some(ca_pem.as_bytes()),
        Some("localhost"),
        Duration::from_secs(5),
    )
    .await
    .unwrap();

    // The connection manager with the untrusted CA never gets a stream
    // through; stopped, it shuts down cleanly.
    let mut config = agent_config(vec![url.clone()], dir.path(), Some("tok"));
    config.ca_file = Some(other_ca_file);
    let (applier, _calls) = FakeApplier::new(None);
    let untrusting = Agent::start(config, applier);

    // The connection manager with the right CA registers end to end.
    let mut config = agent_config(vec![url], &dir.path().join("good"), Some("tok"));
    config.ca_file = Some(ca_file);
    let (applier, _calls) = FakeApplier::new(None);
    let agent = Agent::start(config, applier);
    let mut conn = master.conn().await;
    assert_eq!(conn.registration().token, "tok");
    let id = Uuid::new_v4();
    conn.accept(id, 1, Some("cred-tls")).await;
    assert!(matches!(conn.next().await.payload, Some(Up::Health(_))));
    drop(conn);
    agent.stop().await;

    untrusting.stop().await;
    assert!(
        !master.has_pending_conn(),
        "the agent that distrusts the master never opened a stream"
    );
}
