//! Every endpoint's happy path and the error codes it can return.

use axum::http::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{App, id, on_every_backend};

on_every_backend!(
    organizations_and_workspaces,
    upstreams_virtual_hosts_and_references,
    certificates,
    agents_and_registration_tokens,
    telemetry_queries,
    errors_are_the_specification_body,
    members_and_audit_log,
);

async fn organizations_and_workspaces(app: App) {
    let t = &app.admin;
    let org = app
        .post(
            "/v1/organizations",
            t,
            json!({"name": "Acme Corp", "slug": "acme-corp"}),
        )
        .await
        .ok(201);
    assert_eq!(org["slug"], "acme-corp");
    let org_id = id(&org);
    app.post(
        "/v1/organizations",
        t,
        json!({"name": "Again", "slug": "acme-corp"}),
    )
    .await
    .err(409, "CONFLICT");

    let list = app
        .get("/v1/organizations?page=1&per_page=20", t)
        .await
        .ok(200);
    assert_eq!(list["meta"], json!({"page": 1, "per_page": 20, "total": 1}));
    assert_eq!(list["data"][0]["id"], org["id"]);

    let got = app
        .get(&format!("/v1/organizations/{org_id}"), t)
        .await
        .ok(200);
    assert_eq!(got, org);
    let renamed = app
        .patch(
            &format!("/v1/organizations/{org_id}"),
            t,
            json!({"name": "Acme Corporation"}),
        )
        .await
        .ok(200);
    assert_eq!(renamed["name"], "Acme Corporation");
    assert_eq!(renamed["slug"], "acme-corp");

    let ws_path = format!("/v1/organizations/{org_id}/workspaces");
    let prod = app
        .post(
            &ws_path,
            t,
            json!({"name": "Production", "slug": "production"}),
        )
        .await
        .ok(201);
    assert_eq!(prod["organization_id"], org["id"]);
    app.post(&ws_path, t, json!({"name": "Dup", "slug": "production"}))
        .await
        .err(409, "CONFLICT");
    let staging = app
        .post(&ws_path, t, json!({"name": "Staging", "slug": "staging"}))
        .await
        .ok(201);
    // The same slug in another organization is fine.
    let other = app
        .post(
            "/v1/organizations",
            t,
            json!({"name": "Other", "slug": "other"}),
        )
        .await
        .ok(201);
    app.post(
        &format!("/v1/organizations/{}/workspaces", id(&other)),
        t,
        json!({"name": "P", "slug": "production"}),
    )
    .await
    .ok(201);

    let page = app
        .get(&format!("{ws_path}?page=2&per_page=1"), t)
        .await
        .ok(200);
    assert_eq!(page["meta"], json!({"page": 2, "per_page": 1, "total": 2}));
    assert_eq!(page["data"][0]["id"], staging["id"]);

    let ws = format!("/v1/workspaces/{}", id(&staging));
    assert_eq!(app.get(&ws, t).await.ok(200), staging);
    let patched = app
        .patch(&ws, t, json!({"name": "Staging Environment"}))
        .await
        .ok(200);
    assert_eq!(patched["name"], "Staging Environment");
    app.patch(&ws, t, json!({"slug": "production"}))
        .await
        .err(409, "CONFLICT");
    app.patch(&ws, t, json!({"slug": "Not A Slug"}))
        .await
        .err(422, "VALIDATION_ERROR");
    app.delete(&ws, t).await.ok(204);
    app.get(&ws, t).await.err(404, "NOT_FOUND");

    app.delete(&format!("/v1/organizations/{org_id}"), t)
        .await
        .ok(204);
    app.get(&format!("/v1/organizations/{org_id}"), t)
        .await
        .err(404, "NOT_FOUND");
    app.get(&format!("/v1/workspaces/{}", id(&prod)), t)
        .await
        .err(404, "NOT_FOUND");
}

fn upstream_body(name: &str) -> Value {
    json!({
        "name": name,
        "algorithm": "least_connections",
        "servers": [
            {"address": "10.0.1.30:8080", "weight": 2, "backup": false},
            {"address": "10.0.1.32:8080", "weight": 1, "backup": true}
        ],
        "health_check": {"enabled": true, "path": "/health", "interval": 10, "timeout": 5}
    })
}

async fn upstreams_virtual_hosts_and_references(app: App) {
    let t = &app.admin;
    let (_, ws) = app.org_and_workspace(t, "acme").await;
    let (_, other_ws) = app.org_and_workspace(t, "beta").await;

    let up = app
        .post(
            &format!("/v1/workspaces/{ws}/upstreams"),
            t,
            upstream_body("web-backend"),
        )
        .await
        .ok(201);
    assert_eq!(up["servers"][0]["weight"], 2);
    app.post(
        &format!("/v1/workspaces/{ws}/upstreams"),
        t,
        upstream_body("web-backend"),
    )
    .await
    .err(409, "CONFLICT");
    let foreign_up = app
        .post(
            &format!("/v1/workspaces/{other_ws}/upstreams"),
            t,
            upstream_body("x"),
        )
        .await
        .ok(201);
    let up_path = format!("/v1/upstreams/{}", id(&up));
    let patched = app
        .patch(
            &up_path,
            t,
            json!({"servers": [{"address": "10.0.1.30:8080", "weight": 3, "backup": false}]}),
        )
        .await
        .ok(200);
    assert_eq!(
        patched["servers"],
        json!([{"address": "10.0.1.30:8080", "weight": 3, "backup": false}])
    );
    assert_eq!(patched["name"], "web-backend");
    let list = app
        .get(&format!("/v1/workspaces/{ws}/upstreams"), t)
        .await
        .ok(200);
    assert_eq!(list["meta"]["total"], 1);

    let cert = app
        .post(
            &format!("/v1/workspaces/{ws}/certificates"),
            t,
            json!({"domain": "api.example.com", "provider": "self_signed"}),
        )
        .await
        .ok(201);
    let vhost = json!({
        "name": "API Gateway",
        "server_name": "api.example.com",
        "listen_port": 443,
        "ssl_enabled": true,
        "ssl_certificate_id": cert["id"],
        "http2_enabled": true,
        "locations": [
            {"path": "/api/v1", "upstream_id": up["id"], "custom_headers": [{"name": "X-Forwarded-Proto", "value": "$scheme"}]},
            {"path": "/health", "proxy_pass": "http://localhost:8080/health"}
        ],
        "target_agents": {"type": "selector", "label_selector": "env=production"}
    });
    let vh = app
        .post(
            &format!("/v1/workspaces/{ws}/virtual-hosts"),
            t,
            vhost.clone(),
        )
        .await
        .ok(201);
    assert_eq!(vh["locations"], vhost["locations"]);
    assert_eq!(vh["target_agents"], vhost["target_agents"]);
    assert_eq!(vh["workspace_id"], json!(ws));

    // References must exist in the same workspace.
    let mut bad = vhost.clone();
    bad["name"] = json!("Other");
    bad["locations"][0]["upstream_id"] = foreign_up["id"].clone();
    let e = app
        .post(&format!("/v1/workspaces/{ws}/virtual-hosts"), t, bad)
        .await
        .err(422, "VALIDATION_ERROR");
    assert_eq!(
        e["error"]["details"][0]["field"],
        "locations[0].upstream_id"
    );
    assert_eq!(e["error"]["details"][0]["code"], "NOT_FOUND");
    let mut bad = vhost.clone();
    bad["name"] = json!("Other");
    bad["ssl_certificate_id"] = json!(Uuid::new_v4());
    let e = app
        .post(&format!("/v1/workspaces/{ws}/virtual-hosts"), t, bad)
        .await
        .err(422, "VALIDATION_ERROR");
    assert_eq!(e["error"]["details"][0]["field"], "ssl_certificate_id");
    app.post(
        &format!("/v1/workspaces/{ws}/virtual-hosts"),
        t,
        vhost.clone(),
    )
    .await
    .err(409, "CONFLICT");

    let vh_path = format!("/v1/virtual-hosts/{}", id(&vh));
    assert_eq!(app.get(&vh_path, t).await.ok(200), vh);
    let v2 = app
        .patch(&vh_path, t, json!({"name": "API Gateway v2", "locations": [{"path": "/api/v2", "upstream_id": up["id"]}]}))
        .await
        .ok(200);
    assert_eq!(v2["name"], "API Gateway v2");
    assert_eq!(
        v2["locations"],
        json!([{"path": "/api/v2", "upstream_id": up["id"]}])
    );
    assert_eq!(v2["ssl_certificate_id"], cert["id"]);
    // Turning TLS off keeps the record consistent; turning HTTP/3 on
    // without TLS is refused as a whole.
    let e = app
        .patch(
            &vh_path,
            t,
            json!({"ssl_enabled": false, "http3_enabled": true}),
        )
        .await
        .err(422, "VALIDATION_ERROR");
    assert_eq!(e["error"]["details"][0]["field"], "http3_enabled");

    // In use: neither the upstream nor the certificate can go.
    app.delete(&up_path, t).await.err(409, "CONFLICT");
    app.delete(&format!("/v1/certificates/{}", id(&cert)), t)
        .await
        .err(409, "CONFLICT");
    let list = app
        .get(
            &format!("/v1/workspaces/{ws}/virtual-hosts?per_page=100"),
            t,
        )
        .await
        .ok(200);
    assert_eq!(list["meta"]["total"], 1);
    app.delete(&vh_path, t).await.ok(204);
    app.get(&vh_path, t).await.err(404, "NOT_FOUND");
    app.delete(&up_path, t).await.ok(204);
    app.delete(&format!("/v1/certificates/{}", id(&cert)), t)
        .await
        .ok(204);
    app.delete(&up_path, t).await.err(404, "NOT_FOUND");
}

async fn certificates(app: App) {
    let t = &app.admin;
    let (_, ws) = app.org_and_workspace(t, "acme").await;
    let path = format!("/v1/workspaces/{ws}/certificates");
    let le = app
        .post(
            &path,
            t,
            json!({"domain": "api.example.com", "provider": "letsencrypt", "auto_renew": true}),
        )
        .await
        .ok(201);
    assert_eq!(le["status"], "pending");
    assert_eq!(le["issued_at"], Value::Null);
    assert_eq!(le["is_wildcard"], false);
    let wild = app
        .post(
            &path,
            t,
            json!({"domain": "*.example.com", "provider": "letsencrypt"}),
        )
        .await
        .ok(201);
    assert_eq!(wild["is_wildcard"], true);
    assert_eq!(wild["domain"], "example.com");

    let ss = app
        .post(
            &path,
            t,
            json!({"domain": "www.example.com", "provider": "self_signed"}),
        )
        .await
        .ok(201);
    assert_eq!(ss["status"], "active");
    assert!(ss["expires_at"].is_string());

    // An uploaded chain and key are checked: parse, match, not expired.
    let issued = nxmesh_server::certs::self_signed("shop.example.com", 30).unwrap();
    let custom = app
        .post(
            &path,
            t,
            json!({"domain": "shop.example.com", "provider": "custom", "certificate_pem": issued.certificate_pem, "private_key_pem": issued.private_key_pem}),
        )
        .await
        .ok(201);
    assert_eq!(custom["provider"], "custom");
    assert_eq!(custom["status"], "active");
    let other = nxmesh_server::certs::self_signed("shop.example.com", 30).unwrap();
    let e = app
        .post(
            &path,
            t,
            json!({"domain": "shop.example.com", "provider": "custom", "certificate_pem": issued.certificate_pem, "private_key_pem": other.private_key_pem}),
        )
        .await
        .err(422, "VALIDATION_ERROR");
    assert_eq!(e["error"]["details"][0]["field"], "private_key_pem");
    app.post(
        &path,
        t,
        json!({"domain": "shop.example.com", "provider": "custom"}),
    )
    .await
    .err(422, "VALIDATION_ERROR");
    app.post(
        &path,
        t,
        json!({"domain": "not a domain", "provider": "letsencrypt"}),
    )
    .await
    .err(422, "VALIDATION_ERROR");

    // No endpoint ever returns a private key.
    for c in [&le, &ss, &custom] {
        let got = app
            .get(&format!("/v1/certificates/{}", id(c)), t)
            .await
            .ok(200);
        assert!(!got.to_string().contains("PRIVATE KEY"), "{got}");
        assert!(got.get("private_key_pem").is_none());
    }
    let list = app.get(&path, t).await.ok(200);
    assert_eq!(list["meta"]["total"], 4);
    assert!(!list.to_string().contains("PRIVATE KEY"));
    // The key is stored sealed, and opens with the master's key.
    let (_, sealed) = app
        .state
        .store
        .certificate_material(id(&custom))
        .await
        .unwrap()
        .unwrap();
    assert!(!String::from_utf8_lossy(&sealed).contains("PRIVATE KEY"));
    assert_eq!(
        app.state.secrets.open(&sealed).unwrap(),
        issued.private_key_pem.as_bytes()
    );
}

async fn agents_and_registration_tokens(app: App) {
    let t = &app.admin;
    let (_, ws) = app.org_and_workspace(t, "acme").await;
    let path = format!("/v1/workspaces/{ws}/agents/tokens");
    let tok = app
        .post(&path, t, json!({"name": "web-server-02", "labels": {"env": "production", "region": "us-west-1"}, "expires_in_hours": 24}))
        .await
        .ok(201);
    assert!(tok["token"].as_str().unwrap().starts_with("nxmesh_agent_"));
    let agent_id = tok["agent_id"].as_str().unwrap().to_owned();
    app.post(
        &path,
        t,
        json!({"name": "staging-1", "labels": {"env": "staging"}}),
    )
    .await
    .ok(201);
    app.post(&path, t, json!({"name": "x", "expires_in_hours": 0}))
        .await
        .err(422, "VALIDATION_ERROR");
    app.post(&path, t, json!({"name": "x", "labels": {"bad key!": "v"}}))
        .await
        .err(422, "VALIDATION_ERROR");

    let agent = app.get(&format!("/v1/agents/{agent_id}"), t).await.ok(200);
    assert_eq!(agent["state"], "offline");
    assert_eq!(agent["labels"]["env"], "production");
    assert_eq!(agent["hostname"], Value::Null);

    let all = app
        .get(&format!("/v1/workspaces/{ws}/agents"), t)
        .await
        .ok(200);
    assert_eq!(all["meta"]["total"], 2);
    let prod = app
        .get(
            &format!("/v1/workspaces/{ws}/agents?label_selector=env%3Dproduction"),
            t,
        )
        .await
        .ok(200);
    assert_eq!(prod["meta"]["total"], 1);
    assert_eq!(prod["data"][0]["id"], json!(agent_id));
    let online = app
        .get(&format!("/v1/workspaces/{ws}/agents?state=online"), t)
        .await
        .ok(200);
    assert_eq!(online["meta"]["total"], 0);
    let offline = app
        .get(
            &format!("/v1/workspaces/{ws}/agents?state=offline&per_page=1"),
            t,
        )
        .await
        .ok(200);
    assert_eq!(
        offline["meta"],
        json!({"page": 1, "per_page": 1, "total": 2})
    );
    let e = app
        .get(&format!("/v1/workspaces/{ws}/agents?state=sleeping"), t)
        .await
        .err(422, "VALIDATION_ERROR");
    assert_eq!(e["error"]["details"][0]["field"], "state");
    let e = app
        .get(
            &format!("/v1/workspaces/{ws}/agents?label_selector=env%20in%20(a"),
            t,
        )
        .await
        .err(422, "VALIDATION_ERROR");
    assert_eq!(e["error"]["details"][0]["field"], "label_selector");

    let renamed = app
        .patch(&format!("/v1/agents/{agent_id}"), t, json!({"name": "web-server-01-renamed", "labels": {"env": "production", "tier": "web"}}))
        .await
        .ok(200);
    assert_eq!(
        renamed["labels"],
        json!({"env": "production", "tier": "web"})
    );

    // Nobody is connected: a reload cannot be delivered.
    app.post(&format!("/v1/agents/{agent_id}/reload"), t, json!({}))
        .await
        .err(503, "SERVICE_UNAVAILABLE");

    app.delete(&format!("/v1/agents/{agent_id}"), t)
        .await
        .ok(204);
    app.get(&format!("/v1/agents/{agent_id}"), t)
        .await
        .err(404, "NOT_FOUND");
}

async fn telemetry_queries(app: App) {
    use nxmesh_core::model::AccessLogEntry;
    use nxmesh_core::protocol::{Metric, MetricType, MetricsBatch};
    let t = &app.admin;
    let (_, ws) = app.org_and_workspace(t, "acme").await;
    let tok = app
        .post(
            &format!("/v1/workspaces/{ws}/agents/tokens"),
            t,
            json!({"name": "a"}),
        )
        .await
        .ok(201);
    let agent: Uuid = tok["agent_id"].as_str().unwrap().parse().unwrap();

    // What the agent protocol stores, through the same storage traits.
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z")
        .unwrap()
        .to_utc();
    let sample = |name: &str, value: f64, secs: i64, labels: &[(&str, &str)]| Metric {
        name: name.into(),
        value,
        timestamp: t0 + chrono::Duration::seconds(secs),
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        kind: MetricType::Counter,
    };
    let batch = MetricsBatch {
        timestamp: t0,
        metrics: vec![
            sample("nginx_http_requests_total", 1000.0, 0, &[]),
            sample("nginx_http_requests_total", 1600.0, 60, &[]),
            sample("nginx_http_responses_total", 900.0, 0, &[("status", "2xx")]),
            sample(
                "nginx_http_responses_total",
                1490.0,
                60,
                &[("status", "2xx")],
            ),
            sample("nginx_http_responses_total", 10.0, 0, &[("status", "5xx")]),
            sample("nginx_http_responses_total", 20.0, 60, &[("status", "5xx")]),
            sample("nginx_http_response_bytes_total", 0.0, 0, &[]),
            sample("nginx_http_response_bytes_total", 5000.0, 60, &[]),
            sample("nginx_http_request_bytes_total", 100.0, 0, &[]),
            sample("nginx_http_request_bytes_total", 1300.0, 60, &[]),
            Metric {
                kind: MetricType::Gauge,
                ..sample("nginx_connections_active", 42.0, 60, &[])
            },
        ],
    };
    app.state.store.insert_metrics(agent, &batch).await.unwrap();
    let q = "from=2026-03-01T00:00:00Z&to=2026-03-01T00:02:00Z";
    let m = app
        .get(&format!("/v1/workspaces/{ws}/metrics?{q}"), t)
        .await
        .ok(200);
    assert_eq!(m["requests_total"], 600);
    assert_eq!(m["requests_per_second"], 5.0);
    assert_eq!(
        m["status_codes"],
        json!({"2xx": 590, "3xx": 0, "4xx": 0, "5xx": 10})
    );
    assert_eq!(m["error_rate"], 10.0 / 600.0);
    assert_eq!(m["bandwidth"]["out_bytes"], 5000);
    assert_eq!(m["bandwidth"]["in_bytes"], 1200);
    assert_eq!(m["active_connections"], 42);
    let am = app
        .get(&format!("/v1/agents/{agent}/metrics?{q}"), t)
        .await
        .ok(200);
    assert_eq!(am, m);
    let empty = app
        .get(
            &format!(
                "/v1/workspaces/{ws}/metrics?from=2027-01-01T00:00:00Z&to=2027-01-02T00:00:00Z"
            ),
            t,
        )
        .await
        .ok(200);
    assert_eq!(empty["requests_total"], 0);
    app.get(
        &format!("/v1/workspaces/{ws}/metrics?from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z"),
        t,
    )
    .await
    .err(422, "VALIDATION_ERROR");
    app.get(&format!("/v1/workspaces/{ws}/metrics"), t)
        .await
        .err(422, "VALIDATION_ERROR");

    let entry = |i: u32, status: u16| AccessLogEntry {
        id: Uuid::new_v4(),
        agent_id: agent,
        timestamp: t0 + chrono::Duration::seconds(i64::from(i)),
        remote_addr: "192.168.1.100".into(),
        method: "GET".into(),
        uri: format!("/r/{i}"),
        protocol: "HTTP/1.1".into(),
        host: "api.example.com".into(),
        status,
        body_bytes_sent: 123,
        response_time_ms: 150.5,
        user_agent: Some("curl".into()),
        referer: None,
        request_id: Some(format!("req-{i}")),
    };
    let entries: Vec<_> = (0..30)
        .map(|i| entry(i, if i % 3 == 0 { 500 } else { 200 }))
        .collect();
    app.state.store.insert_access_logs(&entries).await.unwrap();
    let logs = app
        .get(&format!("/v1/workspaces/{ws}/access-logs?from=2026-03-01T00:00:00Z&to=2026-03-02T00:00:00Z&status_code=500&limit=4"), t)
        .await
        .ok(200);
    assert_eq!(logs["meta"], json!({"total": 10, "limit": 4}));
    assert_eq!(logs["data"].as_array().unwrap().len(), 4);
    assert_eq!(logs["data"][0]["uri"], "/r/27", "newest first");
    assert!(
        logs["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["status"] == 500)
    );
    app.get(&format!("/v1/workspaces/{ws}/access-logs?limit=0"), t)
        .await
        .err(422, "VALIDATION_ERROR");
}

async fn errors_are_the_specification_body(app: App) {
    let t = &app.admin;
    let (_, ws) = app.org_and_workspace(t, "acme").await;
    // 422 with field details, in the specification's shape.
    let e = app
        .post(
            &format!("/v1/workspaces/{ws}/virtual-hosts"),
            t,
            json!({"name": "x", "server_name": "bad name;", "listen_port": 80}),
        )
        .await
        .err(422, "VALIDATION_ERROR");
    assert_eq!(e["error"]["message"], "Request validation failed");
    assert_eq!(e["error"]["details"][0]["field"], "server_name");
    assert_eq!(e["error"]["details"][0]["code"], "INVALID_FORMAT");
    // Unknown fields are refused by name, at any depth, also through the
    // flattened virtual-host body.
    let e = app
        .post(
            "/v1/organizations",
            t,
            json!({"name": "A", "slug": "a-b", "colour": "red"}),
        )
        .await
        .err(422, "VALIDATION_ERROR");
    assert_eq!(e["error"]["details"][0]["field"], "colour");
    let e = app
        .post(&format!("/v1/workspaces/{ws}/virtual-hosts"), t, json!({"name": "x", "sever_name": "a.example.com", "server_name": "a.example.com", "listen_port": 80}))
        .await
        .err(422, "VALIDATION_ERROR");
    assert_eq!(e["error"]["details"][0]["field"], "sever_name");
    let e = app
        .post(
            &format!("/v1/workspaces/{ws}/virtual-hosts"),
            t,
            json!({"name": "x", "server_name": "a.example.com", "listen_port": 80, "locations": [{"path": "/", "proxypass": "http://a"}]}),
        )
        .await
        .err(422, "VALIDATION_ERROR");
    assert!(
        e["error"]["details"][0]["field"]
            .as_str()
            .unwrap()
            .contains("proxypass"),
        "{e}"
    );
    let e = app
        .post(
            &format!("/v1/workspaces/{ws}/virtual-hosts"),
            t,
            json!({"name": "x", "server_name": "a.example.com", "listen_port": 80, "target_agents": {"type": "all", "extra": 1}}),
        )
        .await
        .err(422, "VALIDATION_ERROR");
    assert_eq!(e["error"]["details"][0]["field"], "target_agents.extra");
    assert_eq!(
        app.get(&format!("/v1/workspaces/{ws}/virtual-hosts"), t)
            .await
            .ok(200)["meta"]["total"],
        0,
        "nothing was created"
    );
    // Malformed bodies and queries.
    app.call(
        Method::POST,
        "/v1/organizations",
        Some(t),
        Some(json!({"name": 5})),
    )
    .await
    .err(422, "VALIDATION_ERROR");
    app.call(Method::POST, "/v1/organizations", Some(t), None)
        .await
        .err(422, "VALIDATION_ERROR");
    app.get("/v1/organizations?per_page=101", t)
        .await
        .err(422, "VALIDATION_ERROR");
    app.get("/v1/organizations?page=zero", t)
        .await
        .err(422, "VALIDATION_ERROR");
    // Unknown ids, malformed ids, unknown routes.
    app.get(&format!("/v1/workspaces/{}", Uuid::new_v4()), t)
        .await
        .err(404, "NOT_FOUND");
    app.get("/v1/workspaces/not-a-uuid", t)
        .await
        .err(404, "NOT_FOUND");
    app.get("/v1/nothing-here", t).await.err(404, "NOT_FOUND");
    // No credentials, bad credentials.
    app.call(Method::GET, "/v1/organizations", None, None)
        .await
        .err(401, "UNAUTHORIZED");
    app.call(Method::GET, "/v1/organizations", Some("garbage"), None)
        .await
        .err(401, "UNAUTHORIZED");
    // The request id of an error is the one in the response header.
    let r = app.get("/v1/nothing-here", t).await;
    let header = r
        .headers
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(r.body["error"]["request_id"], header);
    // Oversized bodies are refused before they are parsed.
    let huge = "x".repeat(2 * 1024 * 1024);
    app.post("/v1/organizations", t, json!({"name": huge, "slug": "big"}))
        .await
        .err(422, "VALIDATION_ERROR");
    // Health needs no credentials.
    app.call(Method::GET, "/healthz", None, None).await.ok(200);
    app.call(Method::GET, "/readyz", None, None).await.ok(200);
}

async fn members_and_audit_log(app: App) {
    let t = &app.admin;
    let (org, ws) = app.org_and_workspace(t, "acme").await;
    let (bob, bob_token) = app.user("bob@example.com").await;
    let members = format!("/v1/organizations/{org}/members");
    let m = app
        .post(
            &members,
            t,
            json!({"email": "bob@example.com", "role": "viewer"}),
        )
        .await
        .ok(201);
    assert_eq!(m["role"], "viewer");
    assert_eq!(m["user_id"], json!(bob));
    app.post(&members, t, json!({"user_id": bob, "role": "editor"}))
        .await
        .err(409, "CONFLICT");
    app.post(
        &members,
        t,
        json!({"email": "nobody@example.com", "role": "viewer"}),
    )
    .await
    .err(422, "VALIDATION_ERROR");
    let list = app.get(&members, t).await.ok(200);
    assert_eq!(list["meta"]["total"], 2);
    // Bob can now read the workspace.
    app.get(&format!("/v1/workspaces/{ws}"), &bob_token)
        .await
        .ok(200);
    app.patch(&format!("{members}/{bob}"), t, json!({"role": "editor"}))
        .await
        .ok(200);
    // The last owner stays.
    let admin_id = app.get("/v1/users/me", t).await.ok(200)["id"].clone();
    app.patch(
        &format!("{members}/{}", admin_id.as_str().unwrap()),
        t,
        json!({"role": "admin"}),
    )
    .await
    .err(409, "CONFLICT");
    app.delete(&format!("{members}/{}", admin_id.as_str().unwrap()), t)
        .await
        .err(409, "CONFLICT");
    app.delete(&format!("{members}/{bob}"), t).await.ok(204);
    app.get(&format!("/v1/workspaces/{ws}"), &bob_token)
        .await
        .err(404, "NOT_FOUND");

    let audit = app
        .get(&format!("/v1/organizations/{org}/audit-log"), t)
        .await
        .ok(200);
    let actions: Vec<&str> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "member.remove",
            "member.update",
            "member.add",
            "workspace.create",
            "organization.create"
        ]
    );
    assert!(
        audit["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["actor"] == "admin@example.com")
    );

    // Users: only administrators create them; everybody reads themselves.
    app.post(
        "/v1/users",
        &bob_token,
        json!({"email": "eve@example.com", "password": "a long enough password", "name": "Eve"}),
    )
    .await
    .err(403, "FORBIDDEN");
    app.post(
        "/v1/users",
        t,
        json!({"email": "bob@example.com", "password": "a long enough password", "name": "B"}),
    )
    .await
    .err(409, "CONFLICT");
    app.post(
        "/v1/users",
        t,
        json!({"email": "short@example.com", "password": "short", "name": "S"}),
    )
    .await
    .err(422, "VALIDATION_ERROR");
    assert_eq!(
        app.get("/v1/users/me", &bob_token).await.ok(200)["email"],
        "bob@example.com"
    );
}
