//! The cheap-clone [`Client`]: base URL, authentication (a login session
//! refreshed before it expires, or an API token), retries with backoff,
//! and the JSON request/response plumbing every resource handle uses.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nxmesh_core::error::ErrorBody;
use nxmesh_core::model::{LoginRequest, LogoutRequest, RefreshRequest, TokenResponse};
use reqwest::{Method, StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;
use url::Url;

use crate::error::{Error, Result};

/// How the client authenticates.
#[derive(Clone)]
pub enum Auth {
    /// Log in with email and password; the access token is refreshed with
    /// the refresh token before it expires, and the client logs in again
    /// when the refresh is refused.
    Login {
        /// The user's email.
        email: String,
        /// The user's password.
        password: String,
    },
    /// An API token (`Authorization: Bearer <token>`), or an access token
    /// obtained elsewhere.
    Token(String),
    /// No credentials: only the public routes (login, health, OpenAPI).
    Anonymous,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Login { email, .. } => f
                .debug_struct("Login")
                .field("email", email)
                .field("password", &"<redacted>")
                .finish(),
            Auth::Token(_) => f.write_str("Token(<redacted>)"),
            Auth::Anonymous => f.write_str("Anonymous"),
        }
    }
}

/// When and how often a failed call is retried.
///
/// 429 and 503 are retried, waiting what `Retry-After` says (or an
/// exponential backoff without it), for idempotent methods (`GET`, `PUT`,
/// `DELETE`) only unless `retry_non_idempotent` is set.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Retries after the first attempt; 0 disables retrying.
    pub max_retries: u32,
    /// The first backoff delay; it doubles with every retry.
    pub base_delay: Duration,
    /// The longest the client waits before one retry. A `Retry-After`
    /// longer than this is not waited for: the error is returned.
    pub max_delay: Duration,
    /// Also retry `POST` and `PATCH`, which may then take effect twice.
    pub retry_non_idempotent: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
            retry_non_idempotent: false,
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> RetryPolicy {
        RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        }
    }

    /// The wait before retry number `attempt` (0-based): `Retry-After` when
    /// the server sent one, otherwise `base_delay * 2^attempt` with jitter;
    /// `None` when the wait would exceed `max_delay`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Option<Duration> {
        match retry_after {
            Some(d) if d > self.max_delay => None,
            Some(d) => Some(d),
            None => {
                let exp = self
                    .base_delay
                    .saturating_mul(2u32.saturating_pow(attempt.min(16)))
                    .min(self.max_delay);
                // Equal jitter: half fixed, half random, so clients that
                // failed together do not retry together.
                let half = exp / 2;
                Some(half + half.mul_f64(jitter()))
            }
        }
    }
}

/// A number in `[0, 1)` that differs from call to call; good enough to
/// spread retries, not for anything secret.
pub(crate) fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    f64::from(nanos % 1000) / 1000.0
}

/// Everything a [`Client`] needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The master's base URL, for example `https://nxmesh.example.com`
    /// (the client appends `/v1/...`).
    pub url: String,
    /// How to authenticate.
    pub auth: Auth,
    /// Retries on 429 and 503.
    pub retry: RetryPolicy,
    /// Timeout of one HTTP request.
    pub timeout: Duration,
}

impl Config {
    /// A configuration with default retries and a 30 s timeout.
    pub fn new(url: &str, auth: Auth) -> Config {
        Config {
            url: url.to_owned(),
            auth,
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(30),
        }
    }
}

/// A login session's tokens.
struct Session {
    access_token: String,
    refresh_token: String,
    /// When the access token should be replaced (a margin before expiry).
    refresh_at: Instant,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    auth: Auth,
    retry: RetryPolicy,
    /// The login session; a tokio mutex so that concurrent calls wait for
    /// one refresh rather than each refreshing.
    session: Mutex<Option<Session>>,
}

/// The NxMesh master's REST client. Cloning is cheap and clones share the
/// connection pool and the login session.
///
/// ```no_run
/// # async fn demo() -> nxmesh_client::Result<()> {
/// use nxmesh_client::{Auth, Client, Config, ListParams};
/// let client = Client::new(Config::new(
///     "http://127.0.0.1:8080",
///     Auth::Login { email: "admin@example.com".into(), password: "secret password".into() },
/// ))?;
/// let orgs = client.organizations().list(&ListParams::default()).await?;
/// println!("{} organizations", orgs.meta.total);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.inner.base.as_str())
            .field("auth", &self.inner.auth)
            .finish_non_exhaustive()
    }
}

/// One request, described before it is sent (so it can be sent again).
pub(crate) struct Request<'a> {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) query: Vec<(&'static str, String)>,
    pub(crate) body: Option<&'a (dyn erased::JsonBody + Sync)>,
}

/// Object-safe serialization of request bodies.
pub(crate) mod erased {
    /// A request body as JSON.
    pub(crate) trait JsonBody {
        fn to_json(&self) -> serde_json::Result<Vec<u8>>;
    }
    impl<T: serde::Serialize> JsonBody for T {
        fn to_json(&self) -> serde_json::Result<Vec<u8>> {
            serde_json::to_vec(self)
        }
    }
}

impl<'a> Request<'a> {
    pub(crate) fn new(method: Method, path: String) -> Request<'a> {
        Request {
            method,
            path,
            query: Vec::new(),
            body: None,
        }
    }

    pub(crate) fn json(mut self, body: &'a (dyn erased::JsonBody + Sync)) -> Request<'a> {
        self.body = Some(body);
        self
    }

    pub(crate) fn query(mut self, pairs: Vec<(&'static str, String)>) -> Request<'a> {
        self.query = pairs;
        self
    }
}

impl Client {
    /// A client for `config.url`. Nothing is sent yet: a login session logs
    /// in on the first call (or on [`Client::login`]).
    pub fn new(config: Config) -> Result<Client> {
        let mut base = Url::parse(&config.url).map_err(Error::InvalidUrl)?;
        match base.scheme() {
            "http" | "https" => {}
            other => return Err(Error::UnsupportedScheme(other.to_owned())),
        }
        // `join` treats the last segment as a file unless the path ends
        // with `/`, and the API lives under `/v1/`.
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .user_agent(concat!("nxmesh-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(Error::Transport)?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base,
                auth: config.auth,
                retry: config.retry,
                session: Mutex::new(None),
            }),
        })
    }

    /// The master's base URL.
    pub fn base_url(&self) -> &Url {
        &self.inner.base
    }

    /// The URL of an API path such as `v1/organizations`.
    pub(crate) fn url(&self, path: &str) -> Result<Url> {
        self.inner
            .base
            .join(path.trim_start_matches('/'))
            .map_err(Error::InvalidUrl)
    }

    /// Logs in now (a login session only), so bad credentials show at once
    /// rather than on the first call.
    pub async fn login(&self) -> Result<()> {
        let mut session = self.inner.session.lock().await;
        if let Auth::Login { email, password } = &self.inner.auth {
            *session = Some(self.new_session(email, password).await?);
        }
        Ok(())
    }

    /// Ends the login session on the master (revoking its refresh token).
    pub async fn logout(&self) -> Result<()> {
        let session = self.inner.session.lock().await.take();
        if let Some(s) = session {
            let body = LogoutRequest {
                refresh_token: s.refresh_token,
            };
            self.send_raw(
                &Request::new(Method::POST, "v1/auth/logout".into()).json(&body),
                None,
            )
            .await?;
        }
        Ok(())
    }

    /// The bearer token the next call would send: an API token as given, or
    /// a login session's current access token (logging in or refreshing
    /// first when needed). Useful to hand the session to another tool.
    pub async fn bearer_token(&self) -> Result<Option<String>> {
        match &self.inner.auth {
            Auth::Anonymous => Ok(None),
            Auth::Token(t) => Ok(Some(t.clone())),
            Auth::Login { email, password } => {
                let mut guard = self.inner.session.lock().await;
                let fresh = match guard.take() {
                    Some(s) if Instant::now() < s.refresh_at => s,
                    Some(s) => match self.refresh(&s.refresh_token).await {
                        Ok(new) => new,
                        Err(e) => {
                            tracing::debug!(error = %e, "refresh refused; logging in again");
                            self.new_session(email, password).await?
                        }
                    },
                    None => self.new_session(email, password).await?,
                };
                let token = fresh.access_token.clone();
                *guard = Some(fresh);
                Ok(Some(token))
            }
        }
    }

    /// Forgets the access token after the master refused it, so the next
    /// call refreshes. Returns whether there was a session to retry with.
    async fn invalidate_access(&self) -> bool {
        let mut guard = self.inner.session.lock().await;
        match guard.as_mut() {
            Some(s) => {
                s.refresh_at = Instant::now();
                true
            }
            None => false,
        }
    }

    async fn new_session(&self, email: &str, password: &str) -> Result<Session> {
        let body = LoginRequest {
            email: email.to_owned(),
            password: password.to_owned(),
        };
        let res: TokenResponse = self
            .decode(
                self.send_raw(
                    &Request::new(Method::POST, "v1/auth/login".into()).json(&body),
                    None,
                )
                .await?,
            )
            .await?;
        Ok(Session::from_response(res))
    }

    async fn refresh(&self, refresh_token: &str) -> Result<Session> {
        let body = RefreshRequest {
            refresh_token: refresh_token.to_owned(),
        };
        let res: TokenResponse = self
            .decode(
                self.send_raw(
                    &Request::new(Method::POST, "v1/auth/refresh".into()).json(&body),
                    None,
                )
                .await?,
            )
            .await?;
        Ok(Session::from_response(res))
    }

    /// Sends with authentication, retries and error mapping; returns the
    /// successful response.
    pub(crate) async fn send(&self, req: &Request<'_>) -> Result<reqwest::Response> {
        let token = self.bearer_token().await?;
        match self.send_raw(req, token.as_deref()).await {
            // An access token can be refused before its expiry (a restarted
            // master with a new key, a clock skew): refresh once and retry.
            Err(Error::Api { status: 401, .. })
                if matches!(self.inner.auth, Auth::Login { .. })
                    && self.invalidate_access().await =>
            {
                let token = self.bearer_token().await?;
                self.send_raw(req, token.as_deref()).await
            }
            other => other,
        }
    }

    /// Sends one request with retries on 429/503, without touching the
    /// session.
    async fn send_raw(&self, req: &Request<'_>, token: Option<&str>) -> Result<reqwest::Response> {
        let url = self.url(&req.path)?;
        let body = match req.body {
            Some(b) => Some(b.to_json().map_err(Error::Decode)?),
            None => None,
        };
        let policy = &self.inner.retry;
        let idempotent = matches!(
            req.method,
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
        );
        let may_retry = idempotent || policy.retry_non_idempotent;
        let mut attempt = 0u32;
        loop {
            let mut builder = self.inner.http.request(req.method.clone(), url.clone());
            if !req.query.is_empty() {
                builder = builder.query(&req.query);
            }
            if let Some(t) = token {
                builder = builder.bearer_auth(t);
            }
            if let Some(b) = &body {
                builder = builder
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(b.clone());
            }
            let res = builder.send().await.map_err(Error::Transport)?;
            let status = res.status();
            if status.is_success() {
                return Ok(res);
            }
            let err = error_from(res).await;
            let retryable = matches!(
                status,
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
            );
            if !(retryable && may_retry && attempt < policy.max_retries) {
                return Err(err);
            }
            let retry_after = match &err {
                Error::Api { retry_after, .. } => *retry_after,
                _ => None,
            };
            let Some(wait) = policy.delay(attempt, retry_after) else {
                return Err(err);
            };
            tracing::debug!(%status, attempt, ?wait, path = %req.path, "retrying");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    pub(crate) async fn decode<T: DeserializeOwned>(&self, res: reqwest::Response) -> Result<T> {
        let bytes = res.bytes().await.map_err(Error::Transport)?;
        serde_json::from_slice(&bytes).map_err(Error::Decode)
    }

    /// `GET path?query` decoded as `T`.
    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        path: String,
        query: Vec<(&'static str, String)>,
    ) -> Result<T> {
        let res = self
            .send(&Request::new(Method::GET, path).query(query))
            .await?;
        self.decode(res).await
    }

    /// `method path` with a JSON body, decoded as `T`.
    pub(crate) async fn send_json<T: DeserializeOwned, B: Serialize + Sync>(
        &self,
        method: Method,
        path: String,
        body: &B,
    ) -> Result<T> {
        let res = self.send(&Request::new(method, path).json(body)).await?;
        self.decode(res).await
    }

    /// `DELETE path`, expecting no body.
    pub(crate) async fn delete_path(&self, path: String) -> Result<()> {
        self.send(&Request::new(Method::DELETE, path)).await?;
        Ok(())
    }
}

impl Session {
    fn from_response(res: TokenResponse) -> Session {
        let ttl = Duration::from_secs(res.expires_in);
        // Refresh a quarter of the lifetime (at most 60 s) early, so a call
        // never leaves with a token about to expire in flight.
        let margin = (ttl / 4).min(Duration::from_secs(60));
        Session {
            access_token: res.access_token,
            refresh_token: res.refresh_token,
            refresh_at: Instant::now() + ttl.saturating_sub(margin),
        }
    }
}

/// Maps an error response to [`Error::Api`] (the server's body) or
/// [`Error::UnexpectedResponse`].
async fn error_from(res: reqwest::Response) -> Error {
    let status = res.status().as_u16();
    let retry_after = res
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let bytes = match res.bytes().await {
        Ok(b) => b,
        Err(e) => return Error::Transport(e),
    };
    match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(ErrorBody { error }) => Error::Api {
            status,
            code: error.code,
            message: error.message,
            request_id: error.request_id,
            details: error.details,
            retry_after,
        },
        Err(_) => {
            let text = String::from_utf8_lossy(&bytes);
            Error::UnexpectedResponse {
                status,
                body: text.chars().take(200).collect(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_honoured_up_to_max_delay() {
        let p = RetryPolicy {
            max_delay: Duration::from_secs(5),
            ..RetryPolicy::default()
        };
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(2))),
            Some(Duration::from_secs(2))
        );
        assert_eq!(p.delay(0, Some(Duration::from_secs(60))), None);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        for attempt in 0..3 {
            let d = p.delay(attempt, None).unwrap();
            let full = Duration::from_millis(100 * 2u64.pow(attempt));
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
        assert!(p.delay(10, None).unwrap() <= Duration::from_secs(1));
    }

    #[test]
    fn base_url_gets_a_trailing_slash() {
        let c = Client::new(Config::new("http://h:1/prefix", Auth::Anonymous)).unwrap();
        assert_eq!(c.url("v1/x").unwrap().as_str(), "http://h:1/prefix/v1/x");
        let e = Client::new(Config::new("ftp://h", Auth::Anonymous)).unwrap_err();
        assert!(matches!(e, Error::UnsupportedScheme(_)));
    }
}
