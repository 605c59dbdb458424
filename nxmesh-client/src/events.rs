//! The WebSocket event feed (`/v1/events`) as a stream of typed events.
//!
//! [`Client::events`] connects, subscribes and waits for the server's
//! confirmation, so a refused subscription or bad credentials show at once.
//! The stream then reconnects on its own, with exponential backoff and
//! jitter, whenever the connection drops; events published while it was
//! disconnected are not replayed (the feed keeps no history).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt as _, Stream, StreamExt as _};
use nxmesh_core::event::{ClientMessage, Event, Subscription};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::client::{Client, jitter};
use crate::error::{Error, Result};

/// A stream of events; it ends only after an error it cannot recover from
/// (the subscription or the credentials refused).
pub type EventStream = Pin<Box<dyn Stream<Item = Result<Event>> + Send>>;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What the server sent, once understood.
enum Incoming {
    Event(Box<Event>),
    Subscribed,
    Refused(String),
    /// Pings, pongs, unknown event types of a newer master.
    Ignored,
    Closed,
}

impl Client {
    /// Subscribes to the event feed: `subscription.events` are patterns
    /// such as `agent.*`, and `subscription.filter` narrows the feed to
    /// one workspace.
    ///
    /// ```no_run
    /// # async fn demo(client: nxmesh_client::Client) -> nxmesh_client::Result<()> {
    /// use futures_util::StreamExt as _;
    /// use nxmesh_core::event::Subscription;
    /// let mut events = client
    ///     .events(Subscription { events: vec!["agent.*".into()], filter: None })
    ///     .await?;
    /// while let Some(event) = events.next().await {
    ///     println!("{}", event?.event_type());
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn events(&self, subscription: Subscription) -> Result<EventStream> {
        let socket = connect(self, &subscription).await?;
        struct State {
            client: Client,
            subscription: Subscription,
            socket: Option<Socket>,
            failures: u32,
            done: bool,
        }
        let state = State {
            client: self.clone(),
            subscription,
            socket: Some(socket),
            failures: 0,
            done: false,
        };
        let stream = futures_util::stream::unfold(state, |mut st| async move {
            if st.done {
                return None;
            }
            loop {
                let Some(socket) = st.socket.as_mut() else {
                    let wait = backoff(st.failures);
                    tokio::time::sleep(wait).await;
                    match connect(&st.client, &st.subscription).await {
                        Ok(s) => {
                            tracing::debug!("event feed reconnected");
                            st.socket = Some(s);
                            st.failures = 0;
                        }
                        // Refusals will not change by retrying.
                        Err(e @ (Error::Subscription(_) | Error::Api { status: 401, .. })) => {
                            st.done = true;
                            return Some((Err(e), st));
                        }
                        Err(e) => {
                            st.failures = st.failures.saturating_add(1);
                            tracing::warn!(error = %e, attempt = st.failures, "event feed reconnect failed");
                        }
                    }
                    continue;
                };
                match read(socket).await {
                    Ok(Incoming::Event(e)) => return Some((Ok(*e), st)),
                    Ok(Incoming::Subscribed | Incoming::Ignored) => {}
                    Ok(Incoming::Refused(message)) => {
                        st.done = true;
                        return Some((Err(Error::Subscription(message)), st));
                    }
                    Ok(Incoming::Closed) => {
                        tracing::info!("event feed closed by the master; reconnecting");
                        st.socket = None;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "event feed lost; reconnecting");
                        st.socket = None;
                    }
                }
            }
        });
        Ok(Box::pin(stream))
    }
}

fn backoff(failures: u32) -> Duration {
    let exp = Duration::from_millis(250)
        .saturating_mul(2u32.saturating_pow(failures.min(16)))
        .min(MAX_BACKOFF);
    exp / 2 + (exp / 2).mul_f64(jitter())
}

/// Opens the socket, subscribes and waits for the confirmation.
async fn connect(client: &Client, subscription: &Subscription) -> Result<Socket> {
    let mut url = client.url("v1/events")?;
    let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
    url.set_scheme(scheme)
        .map_err(|()| Error::UnsupportedScheme(scheme.to_owned()))?;
    let mut request = url.as_str().into_client_request()?;
    if let Some(token) = client.bearer_token().await? {
        let value = format!("Bearer {token}").parse().map_err(
            |e: tokio_tungstenite::tungstenite::http::header::InvalidHeaderValue| {
                Error::from(tokio_tungstenite::tungstenite::Error::HttpFormat(e.into()))
            },
        )?;
        request.headers_mut().insert("authorization", value);
    }
    let connector = Connector::Rustls(tls_config()?);
    let (mut socket, _) = match tokio_tungstenite::connect_async_tls_with_config(
        request,
        None,
        false,
        Some(connector),
    )
    .await
    {
        Ok(ok) => ok,
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            let status = res.status().as_u16();
            let body = res
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            return Err(
                match serde_json::from_str::<nxmesh_core::error::ErrorBody>(&body) {
                    Ok(b) => Error::Api {
                        status,
                        code: b.error.code,
                        message: b.error.message,
                        request_id: b.error.request_id,
                        details: b.error.details,
                        retry_after: None,
                    },
                    Err(_) => Error::UnexpectedResponse { status, body },
                },
            );
        }
        Err(e) => return Err(e.into()),
    };
    let hello = serde_json::to_string(&ClientMessage::Subscribe(subscription.clone()))
        .map_err(Error::Decode)?;
    socket.send(Message::text(hello)).await?;
    loop {
        match read(&mut socket).await? {
            Incoming::Subscribed => return Ok(socket),
            Incoming::Refused(message) => return Err(Error::Subscription(message)),
            // Events that raced the subscription were sent under the
            // default (everything) and are dropped rather than delivered
            // unfiltered.
            Incoming::Event(_) | Incoming::Ignored => {}
            Incoming::Closed => {
                return Err(tokio_tungstenite::tungstenite::Error::ConnectionClosed.into());
            }
        }
    }
}

/// Reads one message and classifies it.
async fn read(socket: &mut Socket) -> Result<Incoming> {
    let Some(message) = socket.next().await else {
        return Ok(Incoming::Closed);
    };
    let text = match message? {
        Message::Text(t) => t,
        Message::Close(_) => return Ok(Incoming::Closed),
        _ => return Ok(Incoming::Ignored),
    };
    let value: serde_json::Value = serde_json::from_str(&text).map_err(Error::Decode)?;
    match value.get("type").and_then(|t| t.as_str()) {
        Some("subscribed") => Ok(Incoming::Subscribed),
        Some("error") => Ok(Incoming::Refused(
            value
                .get("message")
                .and_then(|m| m.as_str())
                .unwrap_or("the master refused the subscription")
                .to_owned(),
        )),
        _ => match serde_json::from_value::<Event>(value) {
            Ok(e) => Ok(Incoming::Event(Box::new(e))),
            Err(e) => {
                tracing::debug!(error = %e, "skipping an event this client does not know");
                Ok(Incoming::Ignored)
            }
        },
    }
}

/// rustls with the ring provider and the Mozilla roots: no system OpenSSL.
fn tls_config() -> Result<Arc<rustls::ClientConfig>> {
    let roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(Error::Tls)?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}
