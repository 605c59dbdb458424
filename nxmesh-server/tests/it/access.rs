//! Walking the router: every route needs credentials (but the public few);
//! tenancy (a user of organization B gets 404 for every object of A, and
//! no list shows A's rows); the role matrix (viewer, editor, admin, owner).

use axum::http::Method;
use nxmesh_core::model::Role;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{App, id, on_every_backend};

on_every_backend!(
    every_route_needs_credentials,
    tenancy_isolation,
    role_matrix
);

/// The objects routes refer to.
struct World {
    org: Uuid,
    ws: Uuid,
    agent: Uuid,
    vh: Uuid,
    up: Uuid,
    cert: Uuid,
    member: Uuid,
}

const Q: &str = "from=2026-03-01T00:00:00Z&to=2026-03-02T00:00:00Z";

/// Every organization-scoped route: method, path, body, and the least role
/// that may call it. Deletes come last, in an order that keeps the others'
/// objects in place.
fn scoped_routes(w: &World) -> Vec<(Method, String, Option<Value>, Role)> {
    let World {
        org,
        ws,
        agent,
        vh,
        up,
        cert,
        member,
    } = w;
    let get = |p: String, r| (Method::GET, p, None, r);
    vec![
        get(format!("/v1/organizations/{org}"), Role::Viewer),
        (
            Method::PATCH,
            format!("/v1/organizations/{org}"),
            Some(json!({"name": "Renamed"})),
            Role::Owner,
        ),
        get(format!("/v1/organizations/{org}/members"), Role::Viewer),
        (
            Method::POST,
            format!("/v1/organizations/{org}/members"),
            Some(json!({"email": "newbie@example.com", "role": "viewer"})),
            Role::Admin,
        ),
        (
            Method::PATCH,
            format!("/v1/organizations/{org}/members/{member}"),
            Some(json!({"role": "viewer"})),
            Role::Admin,
        ),
        get(format!("/v1/organizations/{org}/audit-log"), Role::Admin),
        get(format!("/v1/organizations/{org}/workspaces"), Role::Viewer),
        (
            Method::POST,
            format!("/v1/organizations/{org}/workspaces"),
            Some(json!({"name": "N", "slug": "new-ws"})),
            Role::Admin,
        ),
        get(format!("/v1/workspaces/{ws}"), Role::Viewer),
        (
            Method::PATCH,
            format!("/v1/workspaces/{ws}"),
            Some(json!({"name": "W"})),
            Role::Admin,
        ),
        get(format!("/v1/workspaces/{ws}/agents"), Role::Viewer),
        (
            Method::POST,
            format!("/v1/workspaces/{ws}/agents/tokens"),
            Some(json!({"name": "a2"})),
            Role::Admin,
        ),
        get(format!("/v1/agents/{agent}"), Role::Viewer),
        (
            Method::PATCH,
            format!("/v1/agents/{agent}"),
            Some(json!({"name": "renamed"})),
            Role::Editor,
        ),
        (
            Method::POST,
            format!("/v1/agents/{agent}/reload"),
            Some(json!({})),
            Role::Editor,
        ),
        get(format!("/v1/agents/{agent}/metrics?{Q}"), Role::Viewer),
        get(format!("/v1/workspaces/{ws}/metrics?{Q}"), Role::Viewer),
        get(format!("/v1/workspaces/{ws}/access-logs?{Q}"), Role::Viewer),
        get(format!("/v1/workspaces/{ws}/virtual-hosts"), Role::Viewer),
        (
            Method::POST,
            format!("/v1/workspaces/{ws}/virtual-hosts"),
            Some(json!({"name": "v2", "server_name": "b.example.com", "listen_port": 80})),
            Role::Editor,
        ),
        get(format!("/v1/virtual-hosts/{vh}"), Role::Viewer),
        (
            Method::PATCH,
            format!("/v1/virtual-hosts/{vh}"),
            Some(json!({"name": "renamed"})),
            Role::Editor,
        ),
        get(format!("/v1/workspaces/{ws}/upstreams"), Role::Viewer),
        (
            Method::POST,
            format!("/v1/workspaces/{ws}/upstreams"),
            Some(json!({"name": "u2", "servers": [{"address": "10.0.0.2:80"}]})),
            Role::Editor,
        ),
        get(format!("/v1/upstreams/{up}"), Role::Viewer),
        (
            Method::PATCH,
            format!("/v1/upstreams/{up}"),
            Some(json!({"keepalive_connections": 8})),
            Role::Editor,
        ),
        get(format!("/v1/workspaces/{ws}/certificates"), Role::Viewer),
        (
            Method::POST,
            format!("/v1/workspaces/{ws}/certificates"),
            Some(json!({"domain": "c.example.com", "provider": "letsencrypt"})),
            Role::Editor,
        ),
        get(format!("/v1/certificates/{cert}"), Role::Viewer),
        (
            Method::POST,
            format!("/v1/certificates/{cert}/renew"),
            None,
            Role::Editor,
        ),
        get(format!("/v1/workspaces/{ws}/rollout"), Role::Viewer),
        get(format!("/v1/agents/{agent}/config"), Role::Viewer),
        get(format!("/v1/virtual-hosts/{vh}/config"), Role::Viewer),
        (
            Method::POST,
            format!("/v1/agents/{agent}/commands"),
            Some(json!({"command": "get_status"})),
            Role::Editor,
        ),
        (
            Method::DELETE,
            format!("/v1/organizations/{org}/members/{member}"),
            None,
            Role::Admin,
        ),
        (
            Method::DELETE,
            format!("/v1/virtual-hosts/{vh}"),
            None,
            Role::Editor,
        ),
        (
            Method::DELETE,
            format!("/v1/upstreams/{up}"),
            None,
            Role::Editor,
        ),
        (
            Method::DELETE,
            format!("/v1/certificates/{cert}"),
            None,
            Role::Editor,
        ),
        (
            Method::DELETE,
            format!("/v1/agents/{agent}"),
            None,
            Role::Admin,
        ),
        (
            Method::DELETE,
            format!("/v1/workspaces/{ws}"),
            None,
            Role::Admin,
        ),
        (
            Method::DELETE,
            format!("/v1/organizations/{org}"),
            None,
            Role::Owner,
        ),
    ]
}

/// Routes that need a principal but no organization.
fn unscoped_routes() -> Vec<(Method, String, Option<Value>)> {
    vec![
        (Method::GET, "/v1/organizations".into(), None),
        (
            Method::POST,
            "/v1/organizations".into(),
            Some(json!({"name": "X", "slug": "x"})),
        ),
        (Method::GET, "/v1/users/me".into(), None),
        (
            Method::POST,
            "/v1/users".into(),
            Some(
                json!({"email": "z@example.com", "password": "long enough password", "name": "Z"}),
            ),
        ),
        (
            Method::DELETE,
            format!("/v1/users/{}", Uuid::new_v4()),
            None,
        ),
        (Method::GET, "/v1/auth/tokens".into(), None),
        (
            Method::POST,
            "/v1/auth/tokens".into(),
            Some(json!({"name": "t", "scopes": ["read"]})),
        ),
        (
            Method::DELETE,
            format!("/v1/auth/tokens/{}", Uuid::new_v4()),
            None,
        ),
        (Method::GET, "/v1/events".into(), None),
    ]
}

/// A complete organization owned by `token`'s user, with one object of
/// each kind and one extra member.
async fn world(app: &App, token: &str, slug: &str, member_email: &str) -> World {
    let (org, ws) = app.org_and_workspace(token, slug).await;
    let up = app
        .post(
            &format!("/v1/workspaces/{ws}/upstreams"),
            token,
            json!({"name": "u", "servers": [{"address": "10.0.0.1:80"}]}),
        )
        .await
        .ok(201);
    let cert = app
        .post(
            &format!("/v1/workspaces/{ws}/certificates"),
            token,
            json!({"domain": "a.example.com", "provider": "self_signed"}),
        )
        .await
        .ok(201);
    let vh = app
        .post(
            &format!("/v1/workspaces/{ws}/virtual-hosts"),
            token,
            json!({"name": "v", "server_name": "a.example.com", "listen_port": 80, "locations": [{"path": "/", "upstream_id": up["id"]}]}),
        )
        .await
        .ok(201);
    let agent = app
        .post(
            &format!("/v1/workspaces/{ws}/agents/tokens"),
            token,
            json!({"name": "a"}),
        )
        .await
        .ok(201);
    let member = app
        .post(
            &format!("/v1/organizations/{org}/members"),
            token,
            json!({"email": member_email, "role": "viewer"}),
        )
        .await
        .ok(201);
    World {
        org,
        ws,
        agent: agent["agent_id"].as_str().unwrap().parse().unwrap(),
        vh: id(&vh),
        up: id(&up),
        cert: id(&cert),
        member: member["user_id"].as_str().unwrap().parse().unwrap(),
    }
}

async fn every_route_needs_credentials(app: App) {
    app.user("carol@example.com").await;
    app.user("newbie@example.com").await;
    let w = world(&app, &app.admin, "acme", "carol@example.com").await;
    let mut routes: Vec<_> = scoped_routes(&w)
        .into_iter()
        .map(|(m, p, b, _)| (m, p, b))
        .collect();
    routes.extend(unscoped_routes());
    for (method, path, body) in &routes {
        let r = app.call(method.clone(), path, None, body.clone()).await;
        assert_eq!(
            r.status.as_u16(),
            401,
            "{method} {path} without credentials: {}",
            r.body
        );
        assert_eq!(r.code(), "UNAUTHORIZED");
    }
    // Every route in the walk exists (it is not the router's fallback).
    for (method, path, body) in routes {
        let r = app
            .call(method.clone(), &path, Some(&app.admin), body)
            .await;
        assert_ne!(
            r.body["error"]["message"], "route not found",
            "{method} {path} is not routed"
        );
    }
    // The public ones.
    assert_eq!(
        app.call(Method::GET, "/healthz", None, None).await.status,
        200
    );
    assert_eq!(
        app.call(Method::GET, "/readyz", None, None).await.status,
        200
    );
    let login = app
        .call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({"email": "admin@example.com", "password": "nope"})),
        )
        .await;
    assert_eq!(login.status, 401, "login is public; wrong password is 401");
    let refresh = app
        .call(
            Method::POST,
            "/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": "nxr_unknown"})),
        )
        .await;
    assert_eq!(refresh.status, 401);
}

async fn tenancy_isolation(app: App) {
    let (_, alice) = app.user("alice@example.com").await;
    let (_, bob) = app.user("bob@example.com").await;
    app.user("carol@example.com").await;
    app.user("newbie@example.com").await;
    let a = world(&app, &alice, "alpha", "carol@example.com").await;
    let b = world(&app, &bob, "beta", "carol@example.com").await;

    // Bob gets 404 for every one of Alice's objects, whatever the method.
    for (method, path, body, _) in scoped_routes(&a) {
        let r = app.call(method.clone(), &path, Some(&bob), body).await;
        assert_eq!(
            r.status.as_u16(),
            404,
            "{method} {path} as another organization's user: {}",
            r.body
        );
        assert_eq!(r.code(), "NOT_FOUND");
    }
    // Alice's world is intact (Bob's attempts changed nothing).
    let got = app
        .get(&format!("/v1/organizations/{}", a.org), &alice)
        .await
        .ok(200);
    assert_eq!(got["name"], "alpha");
    // Lists never show the other organization's rows.
    let orgs = app.get("/v1/organizations", &bob).await.ok(200);
    assert_eq!(orgs["meta"]["total"], 1);
    assert_eq!(orgs["data"][0]["id"], json!(b.org));
    for kind in ["agents", "virtual-hosts", "upstreams", "certificates"] {
        let own = app
            .get(&format!("/v1/workspaces/{}/{kind}", b.ws), &bob)
            .await
            .ok(200);
        let text = own.to_string();
        for foreign in [a.agent, a.vh, a.up, a.cert, a.ws] {
            assert!(
                !text.contains(&foreign.to_string()),
                "{kind} of Bob lists Alice's {foreign}"
            );
        }
    }
    // Carol belongs to both: each organization's view is its own.
    let carol = app
        .login("carol@example.com", crate::support::PASSWORD)
        .await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.get("/v1/organizations", &carol).await.ok(200)["meta"]["total"],
        2
    );
}

async fn role_matrix(app: App) {
    app.user("carol@example.com").await;
    app.user("newbie@example.com").await;
    for role in [Role::Viewer, Role::Editor, Role::Admin, Role::Owner] {
        let email = format!("{role}-user@example.com");
        let (uid, token) = app.user(&email).await;
        let w = world(
            &app,
            &app.admin,
            &format!("org-{role}"),
            "carol@example.com",
        )
        .await;
        app.post(
            &format!("/v1/organizations/{}/members", w.org),
            &app.admin,
            json!({"user_id": uid, "role": role}),
        )
        .await
        .ok(201);
        for (method, path, body, least) in scoped_routes(&w) {
            let r = app.call(method.clone(), &path, Some(&token), body).await;
            if role >= least {
                assert!(
                    ![401, 403, 404].contains(&r.status.as_u16()),
                    "{role} may {method} {path} (needs {least}), got {}: {}",
                    r.status,
                    r.body
                );
            } else {
                assert_eq!(
                    r.status.as_u16(),
                    403,
                    "{role} may not {method} {path} (needs {least}): {}",
                    r.body
                );
                assert_eq!(r.code(), "FORBIDDEN");
            }
        }
    }
}
