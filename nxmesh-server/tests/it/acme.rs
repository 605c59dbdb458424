//! The certificate service's storage and API on both backends: the lease
//! that keeps two masters from running one renewal, the due list, HTTP-01
//! challenges reaching exactly the agents that serve the name, forced
//! renewal, and private keys that are sealed in the database. The ACME
//! protocol itself, against Pebble with a real fleet, is
//! `examples/tests/certificates_e2e.rs`.

use std::time::Duration;

use chrono::Utc;
use nxmesh_core::config::AcmeChallenge;
use nxmesh_server::acme::CertificateService;
use nxmesh_server::acme::store::AcmeStore as _;
use nxmesh_server::http;
use sea_orm::{ConnectionTrait as _, Database, Statement};
use serde_json::json;
use uuid::Uuid;

use crate::support::{App, id, on_every_backend};

on_every_backend!(
    one_master_at_a_time_holds_a_renewal,
    challenges_reach_the_agents_that_serve_the_name,
    forced_renewal_by_provider,
    private_keys_are_sealed_in_the_database,
    a_rotated_key_reseals_every_private_key,
);

async fn letsencrypt(app: &App, ws: Uuid, domain: &str) -> Uuid {
    let c = app
        .post(
            &format!("/v1/workspaces/{ws}/certificates"),
            &app.admin,
            json!({"domain": domain, "provider": "letsencrypt"}),
        )
        .await
        .ok(201);
    assert_eq!(c["status"], "pending");
    id(&c)
}

async fn one_master_at_a_time_holds_a_renewal(app: App) {
    let (_, ws) = app.org_and_workspace(&app.admin, "lease").await;
    let cert = letsencrypt(&app, ws, "lease.example.com").await;
    let store = &app.sea;
    let now = Utc::now();
    let later = now + chrono::Duration::minutes(15);

    // Pending with no renewal state yet: due (created while no master had
    // an ACME directory).
    assert_eq!(store.due_certificates(now).await.unwrap(), vec![cert]);

    // The first master takes it; the second cannot while the lease lasts.
    assert!(store.try_lease(cert, "master-a", later).await.unwrap());
    assert!(!store.try_lease(cert, "master-b", later).await.unwrap());
    assert!(store.due_certificates(now).await.unwrap().is_empty());
    // The holder may extend its own lease.
    assert!(store.try_lease(cert, "master-a", later).await.unwrap());

    // The attempt ends: the lease is free and the next attempt scheduled.
    let next = now + chrono::Duration::hours(1);
    store
        .finish_attempt(cert, next, 2, Some("CA said no"))
        .await
        .unwrap();
    let state = store.renewal_state(cert).await.unwrap().unwrap();
    assert_eq!(state.failures, 2);
    assert_eq!(state.last_error.as_deref(), Some("CA said no"));
    assert!(!state.forced);
    assert!(store.due_certificates(now).await.unwrap().is_empty());
    assert_eq!(
        store
            .due_certificates(next + chrono::Duration::seconds(1))
            .await
            .unwrap(),
        vec![cert]
    );

    // A master that dies holding a lease loses it when it expires.
    assert!(
        store
            .try_lease(cert, "master-b", now - chrono::Duration::seconds(1))
            .await
            .unwrap()
    );
    assert!(store.try_lease(cert, "master-a", later).await.unwrap());

    // Forcing makes it due now.
    store.finish_attempt(cert, next, 0, None).await.unwrap();
    store
        .schedule_renewal(cert, Utc::now(), true)
        .await
        .unwrap();
    assert!(store.renewal_state(cert).await.unwrap().unwrap().forced);
    assert_eq!(
        store
            .due_certificates(Utc::now() + chrono::Duration::seconds(1))
            .await
            .unwrap(),
        vec![cert]
    );

    // Deleting the certificate deletes its renewal state.
    app.delete(&format!("/v1/certificates/{cert}"), &app.admin)
        .await
        .ok(204);
    assert!(store.renewal_state(cert).await.unwrap().is_none());
}

async fn challenges_reach_the_agents_that_serve_the_name(app: App) {
    let (_, ws) = app.org_and_workspace(&app.admin, "chal").await;
    let mut agents = Vec::new();
    for (name, role) in [("web-1", "web"), ("api-1", "api")] {
        let t = app
            .post(
                &format!("/v1/workspaces/{ws}/agents/tokens"),
                &app.admin,
                json!({"name": name, "labels": {"role": role}}),
            )
            .await
            .ok(201);
        agents.push(t["agent_id"].as_str().unwrap().parse::<Uuid>().unwrap());
    }
    for (name, server_name, selector) in [
        ("web", "www.example.com", "role=web"),
        ("api", "api.example.com", "role=api"),
    ] {
        app.post(
            &format!("/v1/workspaces/{ws}/virtual-hosts"),
            &app.admin,
            json!({
                "name": name, "server_name": server_name, "listen_port": 80,
                "locations": [{"path": "/", "root": "/srv"}],
                "target_agents": {"type": "selector", "label_selector": selector}
            }),
        )
        .await
        .ok(201);
    }
    let cert = letsencrypt(&app, ws, "www.example.com").await;
    let challenge = AcmeChallenge {
        domain: "www.example.com".into(),
        token: "tok-1".into(),
        key_authorization: "tok-1.thumb".into(),
    };
    app.sea
        .put_http_challenge(ws, cert, &challenge)
        .await
        .unwrap();

    let config = |agent| {
        let state = app.state.clone();
        async move {
            nxmesh_server::rollout::build_config(state.store.as_ref(), &state.secrets, agent, 1)
                .await
                .unwrap()
        }
    };
    let web = config(agents[0]).await;
    assert_eq!(web.global_settings.acme_challenges, vec![challenge.clone()]);
    let api = config(agents[1]).await;
    assert!(api.global_settings.acme_challenges.is_empty());
    // The agents to wait for are the web agents only.
    assert_eq!(
        nxmesh_server::acme::agents_serving(app.state.store.as_ref(), ws, &[challenge])
            .await
            .unwrap(),
        vec![agents[0]]
    );
    // The challenge changes the configuration's id (agents apply it).
    assert_eq!(app.sea.remove_http_challenges(cert).await.unwrap(), 1);
    let after = config(agents[0]).await;
    assert!(after.global_settings.acme_challenges.is_empty());
    assert_ne!(after.config_id, web.config_id);
}

async fn forced_renewal_by_provider(app: App) {
    let (_, ws) = app.org_and_workspace(&app.admin, "renew").await;
    let create = |body: serde_json::Value| {
        let app = &app;
        async move {
            app.post(
                &format!("/v1/workspaces/{ws}/certificates"),
                &app.admin,
                body,
            )
            .await
            .ok(201)
        }
    };
    let ss = create(json!({"domain": "ss.example.com", "provider": "self_signed"})).await;
    let le = letsencrypt(&app, ws, "le.example.com").await;
    let issued = nxmesh_server::certs::self_signed("up.example.com", 30).unwrap();
    let up = create(json!({
        "domain": "up.example.com", "provider": "custom",
        "certificate_pem": issued.certificate_pem, "private_key_pem": issued.private_key_pem
    }))
    .await;

    // Without a certificate service there is nothing to renew with.
    app.post(
        &format!("/v1/certificates/{}/renew", id(&ss)),
        &app.admin,
        json!(null),
    )
    .await
    .err(409, "CONFLICT");

    // With one (and no ACME directory): self-signed renews at once, an
    // upload never, ACME needs a directory.
    let state = app
        .state
        .clone()
        .with_certificates(CertificateService::without_acme(app.sea.clone()));
    let app = App {
        router: http::app(state.clone()),
        state,
        admin: app.admin.clone(),
        sea: app.sea.clone(),
        url: app.url.clone(),
    };
    let material = |cert: Uuid| {
        let sea = app.sea.clone();
        async move {
            use nxmesh_core::storage::CertificateStore as _;
            sea.certificate_material(cert).await.unwrap().unwrap()
        }
    };
    let before = material(id(&ss)).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let renewed = app
        .post(
            &format!("/v1/certificates/{}/renew", id(&ss)),
            &app.admin,
            json!(null),
        )
        .await
        .ok(200);
    assert_eq!(renewed["status"], "active");
    assert_ne!(renewed["issued_at"], ss["issued_at"]);
    let after = material(id(&ss)).await;
    assert_ne!(after.0, before.0, "a new certificate");
    assert_ne!(after.1, before.1, "and a new key");
    app.post(
        &format!("/v1/certificates/{}/renew", id(&up)),
        &app.admin,
        json!(null),
    )
    .await
    .err(409, "CONFLICT");
    app.post(
        &format!("/v1/certificates/{le}/renew"),
        &app.admin,
        json!(null),
    )
    .await
    .err(409, "CONFLICT");
}

async fn private_keys_are_sealed_in_the_database(app: App) {
    let (_, ws) = app.org_and_workspace(&app.admin, "sealed").await;
    app.post(
        &format!("/v1/workspaces/{ws}/certificates"),
        &app.admin,
        json!({"domain": "k.example.com", "provider": "self_signed"}),
    )
    .await
    .ok(201);
    let db = Database::connect(&app.url).await.unwrap();
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT certificate_pem, encrypted_key FROM certificates",
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let pem: String = rows[0].try_get("", "certificate_pem").unwrap();
    let sealed: Vec<u8> = rows[0].try_get("", "encrypted_key").unwrap();
    assert!(pem.contains("BEGIN CERTIFICATE"));
    assert!(!sealed.windows(11).any(|w| w == b"PRIVATE KEY"));
    // Format 1, sealed under the key `k1`.
    assert_eq!(&sealed[..4], b"\x01\x02k1");
    assert_eq!(
        nxmesh_server::secrets::SecretBox::sealed_key_id(&sealed),
        Some("k1")
    );
    let opened = app.state.secrets.open(&sealed).unwrap();
    assert!(String::from_utf8(opened).unwrap().contains("PRIVATE KEY"));
}

async fn a_rotated_key_reseals_every_private_key(app: App) {
    use nxmesh_core::storage::CertificateStore as _;
    use nxmesh_server::acme::store::AcmeStore as _;
    use nxmesh_server::secrets::{SecretBox, new_keyring_entry};

    let (_, ws) = app.org_and_workspace(&app.admin, "rotate").await;
    let c = app
        .post(
            &format!("/v1/workspaces/{ws}/certificates"),
            &app.admin,
            json!({"domain": "r.example.com", "provider": "self_signed"}),
        )
        .await
        .ok(201);
    // An ACME account sealed under the old key too.
    let old = &app.state.secrets;
    app.sea
        .save_acme_account(
            ws,
            "https://ca.test/dir",
            "https://ca.test/acct/1",
            &old.seal(b"{}").unwrap(),
        )
        .await
        .unwrap();
    let (_, before) = app.sea.certificate_material(id(&c)).await.unwrap().unwrap();
    let plain = old.open(&before).unwrap();

    // The old key (the test app's `k1`) and a new one, newest last.
    let old_line = format!(
        "k1:{}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [9u8; 32])
    );
    let new_line = new_keyring_entry("k2").unwrap();
    let ring = SecretBox::from_keyring(&format!("{old_line}\n{new_line}")).unwrap();
    assert_eq!(app.sea.reseal_secrets(&ring).await.unwrap(), 2);
    // Nothing is left to reseal.
    assert_eq!(app.sea.reseal_secrets(&ring).await.unwrap(), 0);

    // The new key alone opens everything now.
    let only_new = SecretBox::from_keyring(&new_line).unwrap();
    let (_, after) = app.sea.certificate_material(id(&c)).await.unwrap().unwrap();
    assert_eq!(SecretBox::sealed_key_id(&after), Some("k2"));
    assert_eq!(only_new.open(&after).unwrap(), plain);
    let account = app
        .sea
        .acme_account(ws, "https://ca.test/dir")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(only_new.open(&account).unwrap(), b"{}");
}
