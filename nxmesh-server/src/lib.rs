//! The NxMesh reference master, as a library.
//!
//! [`http::app`] is the whole REST API as an axum `Router` over an
//! [`AppState`], whose storage is any implementation of the core storage
//! traits ([`db::SeaStore`] is the sea-orm one); [`grpc::AgentService`] is
//! the agents' gRPC service over the same state. The `nxmesh-server` binary
//! wires both to sockets.

pub mod acme;
pub mod agent_tls;
pub mod auth;
pub mod bootstrap;
pub mod certs;
pub mod cluster;
pub mod db;
pub mod events;
pub mod fleet;
pub mod grpc;
pub mod http;
mod reports;
pub mod rollout;
pub mod secrets;
pub mod state;
pub mod wire;

pub use state::{ApiSettings, AppState};
