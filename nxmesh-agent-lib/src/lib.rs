//! The NxMesh agent as a library.
//!
//! This crate will hold the connection to the master, registration,
//! heartbeats, the safe apply pipeline against a real nginx and the
//! last-known-good cache (see `ARCHITECTURE.md`). What exists today is only
//! the crate boundary: it depends on `nxmesh-core` and `nxmesh-proto`, and
//! never on `nxmesh-server`.
