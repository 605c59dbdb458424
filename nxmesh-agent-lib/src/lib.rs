//! The NxMesh agent as a library: the connection to the master.
//!
//! [`run`] is the connection manager. It dials the master's
//! `AgentService.Stream` (gRPC over TLS), registers with the single-use
//! registration token the first time and with the durable credential it
//! persisted ([`CredentialStore`]) every time after, sends heartbeats at the
//! interval the master sets, hands configuration updates to a
//! [`ConfigApplier`] and commands to a [`CommandHandler`], reports the
//! outcomes, and reconnects with exponential backoff and full jitter until a
//! final refusal or the shutdown token.
//!
//! The nginx runtime plugs in through the traits of [`runtime`]:
//! [`ConfigApplier`], [`CommandHandler`], [`HealthSource`] and optionally
//! [`TelemetrySource`]. This crate never depends on `nxmesh-server`; it meets
//! the master only through `nxmesh-proto` and `nxmesh-core`.
//!
//! ```no_run
//! # async fn example(handlers: nxmesh_agent_lib::Handlers) -> Result<(), nxmesh_agent_lib::FatalError> {
//! use nxmesh_agent_lib::{AgentConfig, AgentIdentity, run};
//! use nxmesh_core::model::DeploymentMode;
//! use tokio_util::sync::CancellationToken;
//!
//! let identity = AgentIdentity::new("web-1", "10.0.0.5", DeploymentMode::Standalone);
//! let mut config = AgentConfig::new(
//!     vec!["https://master.example:50051".into()],
//!     "/var/lib/nxmesh/credential".into(),
//!     identity,
//! );
//! config.ca_file = Some("/etc/nxmesh/ca.pem".into());
//! config.registration_token = Some("nxr_first_run_token".into());
//! let shutdown = CancellationToken::new();
//! run(config, handlers, shutdown).await
//! # }
//! ```

pub mod accesslog;
mod apply;
mod backoff;
mod config;
mod connection;
mod credential;
pub mod drift;
mod error;
mod failpoint;
pub mod health;
pub mod nginx;
pub mod pipeline;
pub mod runtime;
pub mod store;
pub mod telemetry;
mod transport;
mod unary;
pub mod upstream_health;
pub mod validate_raw;

pub use backoff::BackoffConfig;
pub use config::{AgentConfig, AgentIdentity, Timeouts};
pub use connection::{Handlers, run};
pub use credential::CredentialStore;
pub use error::{ConfigError, ConnectError, CredentialError, FatalError};
pub use pipeline::{NginxRuntime, RuntimeConfig};
pub use runtime::{
    ApplyOutcome, CommandHandler, ConfigApplier, HealthSource, Telemetry, TelemetrySource,
};
pub use transport::connect;
pub use unary::{report_health, report_metrics};

/// Re-exported so that embedders use the same cancellation type as [`run`].
pub use tokio_util::sync::CancellationToken;
