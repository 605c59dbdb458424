//! The typed client against a real master on a real socket: every endpoint
//! family, pagination, error mapping, token refresh, rate limiting and
//! retries, and the event feed.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use futures_util::{StreamExt as _, TryStreamExt as _};
use nxmesh_client::{
    AgentCommand, AgentFilter, Auth, Client, Config, Error, ListParams, RetryPolicy,
};
use nxmesh_core::error::ErrorCode;
use nxmesh_core::event::{EventFilter, EventPayload, Subscription};
use nxmesh_core::model::{
    AccessLogQuery, AddMember, AgentStateFilter, CreateApiToken, CreateOrganization,
    CreateRegistrationToken, CreateUser, CreateWorkspace, MetricsQuery, Role, Scope, UpdateAgent,
    UpdateMember, UpdateOrganization, UpdateUpstream, UpdateVirtualHost, UpdateWorkspace,
};
use nxmesh_server::ApiSettings;
use serde_json::json;

use crate::support::{ADMIN_EMAIL, Master, PASSWORD, register_agent};

fn org(slug: &str) -> CreateOrganization {
    CreateOrganization {
        name: slug.to_uppercase(),
        slug: slug.into(),
    }
}

fn ws(slug: &str) -> CreateWorkspace {
    CreateWorkspace {
        name: slug.into(),
        slug: slug.into(),
    }
}

#[tokio::test]
async fn tenancy_users_members_tokens_and_audit() {
    let master = Master::start().await;
    let client = master.admin();

    // Users.
    let me = client.users().me().await.unwrap();
    assert_eq!(me.email, ADMIN_EMAIL);
    let bob = client
        .users()
        .create(&CreateUser {
            email: "bob@example.com".into(),
            password: PASSWORD.into(),
            name: "Bob".into(),
            is_admin: false,
        })
        .await
        .unwrap();

    // Organizations.
    let orgs = client.organizations();
    let acme = orgs.create(&org("acme")).await.unwrap();
    assert_eq!(orgs.get(acme.id).await.unwrap(), acme);
    let renamed = orgs
        .update(
            acme.id,
            &UpdateOrganization {
                name: Some("Acme Corp".into()),
                slug: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(renamed.name, "Acme Corp");
    assert_eq!(
        orgs.list(&ListParams::default()).await.unwrap().meta.total,
        1
    );

    // Members.
    let members = client.members(acme.id);
    let added = members
        .create(&AddMember {
            email: Some("bob@example.com".into()),
            user_id: None,
            role: Role::Viewer,
        })
        .await
        .unwrap();
    assert_eq!(added.user_id, bob.id);
    let promoted = members
        .update(bob.id, &UpdateMember { role: Role::Editor })
        .await
        .unwrap();
    assert_eq!(promoted.role, Role::Editor);
    let all: Vec<_> = members
        .list_all(&ListParams::default())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.len(), 2, "the creator and bob: {all:?}");
    members.delete(bob.id).await.unwrap();
    assert_eq!(
        members
            .list(&ListParams::default())
            .await
            .unwrap()
            .meta
            .total,
        1
    );

    // Workspaces.
    let workspaces = client.workspaces(acme.id);
    let prod = workspaces.create(&ws("production")).await.unwrap();
    assert_eq!(prod.organization_id, acme.id);
    let prod2 = workspaces
        .update(
            prod.id,
            &UpdateWorkspace {
                name: Some("Prod".into()),
                slug: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(prod2.name, "Prod");
    assert_eq!(workspaces.get(prod.id).await.unwrap().name, "Prod");
    workspaces.delete(prod.id).await.unwrap();
    assert_eq!(workspaces.get_opt(prod.id).await.unwrap(), None);

    // The audit log saw all of it.
    let audit = client.audit_log(acme.id);
    let entries: Vec<_> = audit
        .list_all(&ListParams::default())
        .try_collect()
        .await
        .unwrap();
    assert!(entries.len() >= 4, "audit entries: {entries:?}");
    assert!(audit.list(&ListParams::default()).await.unwrap().meta.total >= 4);

    // API tokens: create, authenticate with one, list, revoke.
    let created = client
        .api_tokens()
        .create(&CreateApiToken {
            name: "ci".into(),
            scopes: vec![Scope::Read],
            expires_in_days: Some(1),
        })
        .await
        .unwrap();
    let ci = master.client(Auth::Token(created.token.clone()));
    assert_eq!(ci.organizations().get(acme.id).await.unwrap().id, acme.id);
    let tokens = client.api_tokens().list().await.unwrap();
    assert_eq!(tokens.len(), 1);
    client
        .api_tokens()
        .delete(created.api_token.id)
        .await
        .unwrap();
    let refused = ci.organizations().get(acme.id).await.unwrap_err();
    assert_eq!(refused.status(), Some(401), "{refused:?}");

    // Delete the user and the organization.
    client.users().delete(bob.id).await.unwrap();
    orgs.delete(acme.id).await.unwrap();
    assert!(orgs.get_opt(acme.id).await.unwrap().is_none());

    // Logout revokes the session's refresh token; the client logs in again
    // on its next call.
    client.logout().await.unwrap();
    assert_eq!(client.users().me().await.unwrap().id, me.id);
}

#[tokio::test]
async fn workspace_resources_agents_rollout_and_telemetry() {
    let master = Master::start().await;
    let client = master.admin();
    let acme = client.organizations().create(&org("acme")).await.unwrap();
    let prod = client
        .workspaces(acme.id)
        .create(&ws("prod"))
        .await
        .unwrap();

    // Upstreams.
    let upstreams = client.upstreams(prod.id);
    let api = upstreams
        .create(
            &serde_json::from_value(json!({
                "name": "api",
                "algorithm": "least_connections",
                "servers": [{"address": "10.0.1.30:8080", "weight": 2}]
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let api2 = upstreams
        .update(
            api.id,
            &UpdateUpstream {
                keepalive_connections: Some(16),
                ..UpdateUpstream::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(api2.spec.keepalive_connections, 16);
    assert_eq!(
        upstreams.list(&ListParams::default()).await.unwrap().data,
        vec![api2.clone()]
    );

    // Certificates.
    let certs = client.certificates(prod.id);
    let cert = certs
        .create(
            &serde_json::from_value(json!({"domain": "example.com", "provider": "self_signed"}))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(certs.get(cert.id).await.unwrap().domain, "example.com");
    assert_eq!(
        certs.list(&ListParams::default()).await.unwrap().meta.total,
        1
    );

    // Virtual hosts, and the preview of their nginx text.
    let vhosts = client.virtual_hosts(prod.id);
    let main = vhosts
        .create(
            &serde_json::from_value(json!({
                "name": "Main",
                "server_name": "example.com",
                "listen_port": 8080,
                "locations": [{"path": "/api", "upstream_id": api.id}]
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let main2 = vhosts
        .update(
            main.id,
            &UpdateVirtualHost {
                listen_port: Some(8081),
                ..UpdateVirtualHost::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(main2.spec.listen_port, 8081);
    let preview = vhosts.preview(main.id).await.unwrap();
    assert!(
        preview.content.contains("server_name example.com"),
        "{}",
        preview.content
    );
    assert!(preview.content.contains("8081"), "{}", preview.content);

    // Agents: a registration token makes one; it connects over gRPC.
    let agents = client.agents(prod.id);
    let token = agents
        .create_registration_token(&CreateRegistrationToken {
            name: "web-01".into(),
            labels: [("env".to_owned(), "prod".to_owned())].into(),
            expires_in_hours: Some(1),
        })
        .await
        .unwrap();
    assert!(token.token.starts_with("nxmesh_agent_"));
    let got = agents.get(token.agent_id).await.unwrap();
    assert_eq!(got.name, "web-01");
    let updated = agents
        .update(
            token.agent_id,
            &UpdateAgent {
                name: Some("web-01b".into()),
                labels: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.name, "web-01b");
    let prod_agents = agents
        .clone()
        .with_filter(AgentFilter {
            state: Some(AgentStateFilter::All),
            label_selector: Some("env=prod".into()),
        })
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(prod_agents.meta.total, 1);
    let staging_agents = agents
        .clone()
        .with_filter(AgentFilter {
            state: None,
            label_selector: Some("env=staging".into()),
        })
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(staging_agents.meta.total, 0);
    let ledger = agents.config(token.agent_id).await.unwrap();
    assert_eq!(ledger.agent.id, token.agent_id);
    assert_eq!(ledger.config.agent_id, token.agent_id);

    // Not connected: reload and commands answer 503, not retried (POST).
    let err = agents.reload(token.agent_id).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ServiceUnavailable), "{err:?}");
    let err = agents
        .command(token.agent_id, &AgentCommand::GetStatus)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ServiceUnavailable), "{err:?}");

    // Rollout status lists the agent.
    let rollout = client.rollout().status(prod.id).await.unwrap();
    assert_eq!(rollout.summary.total, 1);

    // Metrics and access logs (empty, but typed and accepted).
    let window = MetricsQuery {
        from: chrono::Utc::now() - chrono::Duration::hours(1),
        to: chrono::Utc::now() + chrono::Duration::minutes(1),
    };
    let m = client.metrics().workspace(prod.id, &window).await.unwrap();
    assert_eq!(m.requests_total, 0);
    let m = client
        .metrics()
        .agent(token.agent_id, &window)
        .await
        .unwrap();
    assert_eq!(m.requests_total, 0);
    let logs = client
        .access_logs()
        .query(
            prod.id,
            &AccessLogQuery {
                from: Some(window.from),
                to: Some(window.to),
                status_code: Some(500),
                limit: Some(10),
            },
        )
        .await
        .unwrap();
    assert!(logs.data.is_empty());

    // Deletes: the certificate, the virtual host, the upstream, the agent.
    vhosts.delete(main.id).await.unwrap();
    certs.delete(cert.id).await.unwrap();
    upstreams.delete(api.id).await.unwrap();
    agents.delete(token.agent_id).await.unwrap();
    assert!(vhosts.get_opt(main.id).await.unwrap().is_none());
    assert!(certs.get_opt(cert.id).await.unwrap().is_none());
    assert!(upstreams.get_opt(api.id).await.unwrap().is_none());
    assert!(agents.get_opt(token.agent_id).await.unwrap().is_none());
}

#[tokio::test]
async fn list_all_walks_every_page() {
    let master = Master::start().await;
    let client = master.admin();
    for i in 0..23 {
        client
            .organizations()
            .create(&org(&format!("org-{i:02}")))
            .await
            .unwrap();
    }
    let params = ListParams {
        page: None,
        per_page: Some(5),
    };
    let page = client.organizations().list(&params).await.unwrap();
    assert_eq!((page.data.len(), page.meta.total), (5, 23));
    let all: Vec<_> = client
        .organizations()
        .list_all(&params)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.len(), 23);
    let slugs: HashSet<_> = all.iter().map(|o| o.slug.clone()).collect();
    assert_eq!(slugs.len(), 23, "no item twice");
    // From a later page on.
    let rest: Vec<_> = client
        .organizations()
        .list_all(&ListParams {
            page: Some(4),
            per_page: Some(5),
        })
        .try_collect()
        .await
        .unwrap();
    assert_eq!(rest.len(), 8);
}

#[tokio::test]
async fn errors_mirror_the_server_body() {
    let master = Master::start().await;
    let client = master.admin();
    let acme = client.organizations().create(&org("acme")).await.unwrap();

    let missing = client
        .organizations()
        .get(uuid::Uuid::new_v4())
        .await
        .unwrap_err();
    match &missing {
        Error::Api {
            status,
            code,
            request_id,
            ..
        } => {
            assert_eq!((*status, *code), (404, ErrorCode::NotFound));
            assert!(!request_id.is_empty());
        }
        other => panic!("expected an API error, got {other:?}"),
    }
    assert!(missing.is_not_found());

    let dup = client
        .organizations()
        .create(&org("acme"))
        .await
        .unwrap_err();
    assert_eq!(
        (dup.status(), dup.code()),
        (Some(409), Some(ErrorCode::Conflict))
    );

    let bad = client
        .virtual_hosts(
            client
                .workspaces(acme.id)
                .create(&ws("prod"))
                .await
                .unwrap()
                .id,
        )
        .create(
            &serde_json::from_value(json!({
                "name": "Bad", "server_name": "exa;mple.com", "listen_port": 80
            }))
            .unwrap(),
        )
        .await
        .unwrap_err();
    match bad {
        Error::Api {
            status: 422,
            code: ErrorCode::ValidationError,
            details,
            ..
        } => assert!(
            details.iter().any(|d| d.field == "server_name"),
            "details name the field: {details:?}"
        ),
        other => panic!("expected a validation error, got {other:?}"),
    }

    let wrong = master.client(Auth::Login {
        email: ADMIN_EMAIL.into(),
        password: "not the password at all".into(),
    });
    let e = wrong.login().await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Unauthorized));

    // Nothing listening: a transport error, not an API error.
    let nowhere = Client::new(Config::new("http://127.0.0.1:9", Auth::Anonymous)).unwrap();
    let e = nowhere
        .organizations()
        .list(&ListParams::default())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Transport(_)), "{e:?}");
}

/// Access tokens live 2 s here (the server allows 5 s of leeway): after
/// 3 s the client must have replaced its token, through the refresh token.
#[tokio::test]
async fn access_token_is_refreshed_before_expiry() {
    let master = Master::with(
        ApiSettings {
            rate_limit_per_minute: 100_000,
            ..ApiSettings::default()
        },
        2,
    )
    .await;
    let client = master.admin();
    client.login().await.unwrap();
    let first = client.bearer_token().await.unwrap().unwrap();
    client.organizations().create(&org("acme")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let orgs = client
        .organizations()
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(orgs.meta.total, 1);
    let second = client.bearer_token().await.unwrap().unwrap();
    assert_ne!(first, second, "the access token was replaced");
    // The new token is good on its own.
    let other = master.client(Auth::Token(second));
    assert_eq!(other.users().me().await.unwrap().email, ADMIN_EMAIL);
}

#[tokio::test]
async fn rate_limit_is_an_api_error_with_retry_after() {
    let master = Master::with(
        ApiSettings {
            rate_limit_per_minute: 3,
            ..ApiSettings::default()
        },
        900,
    )
    .await;
    // Retry-After (up to a minute here) exceeds the policy's 2 s cap, so
    // the client gives up at once rather than sleeping for it.
    let client = master.admin();
    let mut limited = None;
    for _ in 0..6 {
        if let Err(e) = client.users().me().await {
            limited = Some(e);
            break;
        }
    }
    match limited.expect("the fourth call in a minute is refused") {
        Error::Api {
            status: 429,
            code: ErrorCode::RateLimited,
            retry_after,
            ..
        } => assert!(retry_after.is_some_and(|d| d >= Duration::from_secs(1))),
        other => panic!("expected RATE_LIMITED, got {other:?}"),
    }
}

/// A scripted server: answers 429 then 503 with `Retry-After: 1`, then 200.
async fn flaky_server(fail_times: u32) -> (String, Arc<AtomicU32>) {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let hits = Arc::new(AtomicU32::new(0));
    let h = hits.clone();
    let handler = move || {
        let h = h.clone();
        async move {
            let n = h.fetch_add(1, Ordering::SeqCst);
            if n < fail_times {
                let status = if n.is_multiple_of(2) {
                    StatusCode::TOO_MANY_REQUESTS
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                let body = json!({"error": {"code": if n.is_multiple_of(2) {"RATE_LIMITED"} else {"SERVICE_UNAVAILABLE"}, "message": "later", "request_id": "r1"}});
                (status, [("retry-after", "1")], axum::Json(body)).into_response()
            } else {
                axum::Json(json!({"id": "00000000-0000-0000-0000-000000000001", "email": "a@b.c", "name": "A", "is_admin": false, "created_at": "2026-01-01T00:00:00Z"})).into_response()
            }
        }
    };
    let app = axum::Router::new()
        .route("/v1/users/me", axum::routing::get(handler.clone()))
        .route("/v1/users", axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), hits)
}

fn new_user() -> CreateUser {
    CreateUser {
        email: "a@b.c".into(),
        password: PASSWORD.into(),
        name: "A".into(),
        is_admin: false,
    }
}

#[tokio::test]
async fn idempotent_calls_retry_honouring_retry_after() {
    let (url, hits) = flaky_server(2).await;
    let client = Client::new(Config::new(&url, Auth::Token("t".into()))).unwrap();
    let started = Instant::now();
    client.users().me().await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "waited Retry-After twice"
    );
}

#[tokio::test]
async fn non_idempotent_calls_retry_only_when_asked() {
    let (url, hits) = flaky_server(1).await;
    let client = Client::new(Config::new(&url, Auth::Token("t".into()))).unwrap();
    let e = client.users().create(&new_user()).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::RateLimited));
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "a POST is not retried by default"
    );

    let (url, hits) = flaky_server(1).await;
    let client = Client::new(Config {
        retry: RetryPolicy {
            retry_non_idempotent: true,
            ..RetryPolicy::default()
        },
        ..Config::new(&url, Auth::Token("t".into()))
    })
    .unwrap();
    client.users().create(&new_user()).await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn event_stream_receives_agent_connected() {
    let master = Master::start().await;
    let grpc = master.grpc().await;
    let client = master.admin();
    let acme = client.organizations().create(&org("acme")).await.unwrap();
    let prod = client
        .workspaces(acme.id)
        .create(&ws("prod"))
        .await
        .unwrap();

    let mut events = client
        .events(Subscription {
            events: vec!["agent.*".into()],
            filter: Some(EventFilter {
                workspace_id: Some(prod.id),
            }),
        })
        .await
        .unwrap();

    let token = client
        .agents(prod.id)
        .create_registration_token(&CreateRegistrationToken {
            name: "web-01".into(),
            labels: Default::default(),
            expires_in_hours: None,
        })
        .await
        .unwrap();
    let agent = register_agent(&grpc, &token.token).await;

    let event = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("an event within 10 s")
        .expect("the stream goes on")
        .unwrap();
    match event.payload {
        EventPayload::AgentConnected(c) => {
            assert_eq!(c.agent_id, agent.id);
            assert_eq!(c.hostname, "web-01.internal");
        }
        other => panic!("expected agent.connected, got {other:?}"),
    }
}

#[tokio::test]
async fn event_subscription_errors_surface() {
    let master = Master::start().await;
    let client = master.admin();
    let e = client
        .events(Subscription {
            events: vec!["Not A Pattern!".into()],
            filter: None,
        })
        .await
        .err()
        .expect("an invalid pattern is refused");
    assert!(matches!(e, Error::Subscription(_)), "{e:?}");

    let anonymous = master.client(Auth::Token("not-a-token".into()));
    let e = anonymous
        .events(Subscription {
            events: vec!["*".into()],
            filter: None,
        })
        .await
        .err()
        .expect("a bad token is refused");
    assert_eq!(e.status(), Some(401), "{e:?}");
}
