//! The client's one error type: the server's error body apart from
//! transport, decoding and WebSocket failures.

use std::time::Duration;

use nxmesh_core::error::{ErrorCode, FieldError};

/// The result of every client call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in a call to the master.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The master answered with its error body (`{"error": {...}}`).
    #[error("{code} ({status}): {message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The specification's error code.
        code: ErrorCode,
        /// The server's message.
        message: String,
        /// The request id, for the server's log.
        request_id: String,
        /// Field-level problems of a `VALIDATION_ERROR`.
        details: Vec<FieldError>,
        /// For 429 and 503: how long the server asked the client to wait.
        retry_after: Option<Duration>,
    },
    /// The master (or something in front of it) answered with a status
    /// and a body that is not the error body.
    #[error("unexpected response {status}: {body}")]
    UnexpectedResponse {
        /// The HTTP status.
        status: u16,
        /// The start of the body, for diagnosis.
        body: String,
    },
    /// The request could not be sent or the response not read.
    #[error("transport error")]
    Transport(#[source] reqwest::Error),
    /// A success response whose body is not the expected type.
    #[error("cannot decode the response")]
    Decode(#[source] serde_json::Error),
    /// The base URL is not usable.
    #[error("invalid master URL")]
    InvalidUrl(#[source] url::ParseError),
    /// The URL's scheme is neither `http` nor `https`.
    #[error("unsupported URL scheme {0:?}: use http or https")]
    UnsupportedScheme(String),
    /// The WebSocket connection of the event feed failed.
    #[error("event feed connection failed")]
    WebSocket(#[source] Box<tokio_tungstenite::tungstenite::Error>),
    /// The event feed refused the subscription (the server's message).
    #[error("subscription refused: {0}")]
    Subscription(String),
    /// The TLS configuration could not be built.
    #[error("TLS configuration")]
    Tls(#[source] rustls::Error),
}

impl Error {
    /// The HTTP status of an API error or unexpected response.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } | Error::UnexpectedResponse { status, .. } => Some(*status),
            Error::Transport(e) => e.status().map(|s| s.as_u16()),
            _ => None,
        }
    }

    /// The specification's error code of an API error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether this is the master's `NOT_FOUND`.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(ErrorCode::NotFound)
    }
}

impl From<tokio_tungstenite::tungstenite::Error> for Error {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        Error::WebSocket(Box::new(e))
    }
}
