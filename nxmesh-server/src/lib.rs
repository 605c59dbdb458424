//! The NxMesh reference master.
//!
//! This crate will hold the axum REST API, the WebSocket event feed, the
//! tonic `AgentService` and the sea-orm storage of the reference master
//! (see `ARCHITECTURE.md`). What exists today is only the crate boundary:
//! it depends on `nxmesh-core` and `nxmesh-proto`, and never on
//! `nxmesh-agent-lib`.
