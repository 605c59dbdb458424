//! Test support: the app over a fresh database (SQLite file, or a fresh
//! database on the PostgreSQL server named by `NXMESH_TEST_DATABASE_URL`),
//! and helpers to call it without a socket.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use ed25519_dalek::SigningKey;
use http_body_util::BodyExt as _;
use nxmesh_server::auth::TokenKeys;
use nxmesh_server::db::SeaStore;
use nxmesh_server::secrets::SecretBox;
use nxmesh_server::{ApiSettings, AppState, bootstrap, http};
use serde_json::{Value, json};
use tower::ServiceExt as _;
use uuid::Uuid;

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const PASSWORD: &str = "correct horse battery staple";

/// Which database a test runs on.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The URL of a fresh, empty database on `backend`.
pub async fn fresh_database(backend: Backend) -> Option<String> {
    match backend {
        Backend::Sqlite => {
            let dir = std::env::temp_dir().join(format!("nxmesh-test-{}", Uuid::new_v4()));
            std::fs::create_dir_all(&dir).unwrap();
            Some(format!(
                "sqlite://{}?mode=rwc",
                dir.join("db.sqlite").display()
            ))
        }
        Backend::Postgres => {
            let Ok(server) = std::env::var("NXMESH_TEST_DATABASE_URL") else {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "NXMESH_TEST_DATABASE_URL is not set: the PostgreSQL tests need a server (scripts/test.sh starts one)"
                );
                eprintln!(
                    "NXMESH_TEST_DATABASE_URL not set; skipping the PostgreSQL variant outside CI"
                );
                return None;
            };
            use sea_orm::ConnectionTrait as _;
            let admin = sea_orm::Database::connect(&server)
                .await
                .expect("connect to the PostgreSQL server");
            let name = format!("nxt_{}", Uuid::new_v4().simple());
            admin
                .execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .unwrap();
            let base = server.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap();
            Some(format!("{base}/{name}"))
        }
    }
}

/// The signing key of every test app (tests forge tokens with others).
pub fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&[42u8; 32])
}

pub struct App {
    pub router: Router,
    pub state: AppState,
    pub admin: String,
    /// The store itself (for what the core traits do not reach).
    pub sea: Arc<SeaStore>,
    /// Its database URL.
    pub url: String,
}

pub struct Response {
    pub status: StatusCode,
    pub body: Value,
    pub headers: HeaderMap,
}

impl Response {
    /// The `error.code` of an error body.
    pub fn code(&self) -> &str {
        self.body["error"]["code"]
            .as_str()
            .unwrap_or("<no error code>")
    }

    #[track_caller]
    pub fn ok(self, status: u16) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.body
        );
        self.body
    }

    #[track_caller]
    pub fn err(self, status: u16, code: &str) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.body
        );
        assert_eq!(self.code(), code, "body: {}", self.body);
        assert!(
            !self.body["error"]["request_id"]
                .as_str()
                .unwrap_or_default()
                .is_empty(),
            "every error carries a request id: {}",
            self.body
        );
        assert!(self.body["error"]["message"].is_string());
        self.body
    }
}

impl App {
    pub async fn new(backend: Backend) -> Option<App> {
        Self::with_settings(
            backend,
            ApiSettings {
                rate_limit_per_minute: 100_000,
                ..ApiSettings::default()
            },
        )
        .await
    }

    pub async fn with_settings(backend: Backend, settings: ApiSettings) -> Option<App> {
        let url = fresh_database(backend).await?;
        let store = Arc::new(SeaStore::connect(&url).await.unwrap());
        let dir = std::env::temp_dir();
        bootstrap::ensure_first_admin(store.as_ref(), &dir, Some(ADMIN_EMAIL), Some(PASSWORD))
            .await
            .unwrap();
        let keys = TokenKeys::from_signing_key(&signing_key(), 900).unwrap();
        let state = AppState::new(store.clone(), keys, SecretBox::new([9; 32]), settings);
        let router = http::app(state.clone());
        let mut app = App {
            router,
            state,
            admin: String::new(),
            sea: store,
            url,
        };
        app.admin = app.login(ADMIN_EMAIL, PASSWORD).await["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        Some(app)
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(b.to_string()))
                .unwrap(),
            None => req.body(Body::empty()).unwrap(),
        };
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Response {
            status,
            body,
            headers,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Response {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Response {
        self.call(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Response {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    pub async fn login(&self, email: &str, password: &str) -> Value {
        self.call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({"email": email, "password": password})),
        )
        .await
        .ok(200)
    }

    /// A new user (created by the admin) and their access token.
    pub async fn user(&self, email: &str) -> (Uuid, String) {
        let u = self
            .post(
                "/v1/users",
                &self.admin,
                json!({"email": email, "password": PASSWORD, "name": email}),
            )
            .await
            .ok(201);
        let token = self.login(email, PASSWORD).await["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        (id(&u), token)
    }

    /// An organization with one workspace, created by `token`'s user.
    pub async fn org_and_workspace(&self, token: &str, slug: &str) -> (Uuid, Uuid) {
        let org = self
            .post(
                "/v1/organizations",
                token,
                json!({"name": slug, "slug": slug}),
            )
            .await
            .ok(201);
        let ws = self
            .post(
                &format!("/v1/organizations/{}/workspaces", id(&org)),
                token,
                json!({"name": "Production", "slug": "production"}),
            )
            .await
            .ok(201);
        (id(&org), id(&ws))
    }
}

pub fn id(v: &Value) -> Uuid {
    v["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no id in {v}"))
}

/// Defines a test per backend for an `async fn(App)` scenario.
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(app) = $crate::support::App::new($crate::support::Backend::Sqlite).await {
                        super::$name(app).await;
                    }
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(app) = $crate::support::App::new($crate::support::Backend::Postgres).await {
                        super::$name(app).await;
                    }
                }
            )*
        }
    };
}
pub(crate) use on_every_backend;
