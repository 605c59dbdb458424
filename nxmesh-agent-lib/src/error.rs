//! The errors of the agent library.

use std::path::PathBuf;

/// Why [`crate::run`] stopped for good. Everything not listed here is
/// retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum FatalError {
    /// The configuration is unusable (checked before any connection).
    #[error("invalid agent configuration")]
    Config(#[source] ConfigError),
    /// The master refused the agent with a final status
    /// (`FAILED_PRECONDITION`, `INVALID_ARGUMENT`, or a refusal without a
    /// retryable status): the token is used, expired or unknown, or the
    /// agent was deleted. Retrying cannot help; an operator must act.
    #[error("the master refused this agent ({code:?}): {message}")]
    Refused {
        /// The gRPC status code the stream ended with.
        code: tonic::Code,
        /// The master's explanation.
        message: String,
    },
    /// There is neither a stored credential nor a registration token.
    #[error("no stored agent credential in {0} and no registration token configured")]
    NoCredential(PathBuf),
    /// The credential could not be read, or the one the master just issued
    /// could not be persisted (the token it replaced is already used).
    #[error("agent credential storage failed")]
    Credential(#[source] CredentialError),
}

/// An unusable [`crate::AgentConfig`].
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No master endpoint is configured.
    #[error("no master endpoint configured")]
    NoEndpoint,
    /// An endpoint is not an `http://` or `https://` URI.
    #[error("invalid master endpoint {endpoint:?}")]
    Endpoint {
        /// The endpoint as configured.
        endpoint: String,
        /// What is wrong with it.
        #[source]
        source: tonic::transport::Error,
    },
    /// An endpoint's scheme is neither `http` nor `https`.
    #[error("master endpoint {0:?} must start with http:// or https://")]
    Scheme(String),
    /// An `https://` endpoint needs the master's CA (`ca_file`).
    #[error("master endpoint {0:?} uses TLS but no CA file is configured")]
    MissingCa(String),
    /// The CA file could not be read.
    #[error("cannot read the master CA file {path}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A timeout or backoff setting is zero or inconsistent.
    #[error("invalid setting {0}: must be positive (and base <= cap for backoff)")]
    Setting(&'static str),
}

/// Reading or writing the credential file failed.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// Reading the file failed.
    #[error("cannot read the agent credential file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Writing, syncing or renaming the file failed.
    #[error("cannot write the agent credential file {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The blocking file task was cancelled or panicked.
    #[error("the credential file task did not complete")]
    Task(#[source] tokio::task::JoinError),
}

/// Opening a channel to the master failed (retried by [`crate::run`]).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The endpoint or its TLS settings were refused by the transport.
    #[error("invalid endpoint {endpoint:?}")]
    Endpoint {
        /// The endpoint.
        endpoint: String,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
    /// TCP connect, TLS handshake or HTTP/2 setup failed.
    #[error("cannot connect to {endpoint}")]
    Transport {
        /// The endpoint.
        endpoint: String,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
    /// The TCP connect, TLS handshake and HTTP/2 setup together took longer
    /// than the connect timeout.
    #[error("connecting to {endpoint} timed out after {timeout:?}")]
    Timeout {
        /// The endpoint.
        endpoint: String,
        /// The limit.
        timeout: std::time::Duration,
    },
}
