//! What the end-to-end tests share: REST calls to an in-process master as
//! its administrator.

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request};
use serde_json::{Value, json};
use tower::ServiceExt as _;
use uuid::Uuid;

/// The master's REST API, called in process as the administrator.
pub(crate) struct Rest {
    router: Router,
    admin: String,
}

impl Rest {
    /// `router` with the administrator `email` logged in.
    pub(crate) async fn login(router: Router, email: &str, password: &str) -> Rest {
        let mut rest = Rest {
            router,
            admin: String::new(),
        };
        let login = rest
            .ok(
                Method::POST,
                "/v1/auth/login",
                Some(json!({"email": email, "password": password})),
                200,
            )
            .await;
        rest.admin = login["access_token"].as_str().unwrap().to_owned();
        rest
    }

    /// One REST call as the administrator: status and JSON body.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if !self.admin.is_empty() {
            req = req.header("authorization", format!("Bearer {}", self.admin));
        }
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(b.to_string()))
                .unwrap(),
            None => req.body(Body::empty()).unwrap(),
        };
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status().as_u16();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, body)
    }

    /// A call that must answer `status`; its body.
    pub(crate) async fn ok(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        status: u16,
    ) -> Value {
        let (got, body) = self.call(method, path, body).await;
        assert_eq!(got, status, "{path}: {body}");
        body
    }

    /// A `GET` that must succeed.
    pub(crate) async fn get(&self, path: &str) -> Value {
        self.ok(Method::GET, path, None, 200).await
    }

    /// An organization with one workspace.
    pub(crate) async fn workspace(&self) -> Uuid {
        let org = self
            .ok(
                Method::POST,
                "/v1/organizations",
                Some(json!({"name": "Acme", "slug": "acme"})),
                201,
            )
            .await;
        let ws = self
            .ok(
                Method::POST,
                &format!("/v1/organizations/{}/workspaces", id(&org)),
                Some(json!({"name": "Production", "slug": "production"})),
                201,
            )
            .await;
        id(&ws)
    }
}

/// The `id` of a JSON object the API answered.
pub(crate) fn id(v: &Value) -> Uuid {
    v["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no id in {v}"))
}
