//! Runnable examples of the ways people use NxMesh; see `examples/examples/`.
//!
//! Run one with `cargo run -p nxmesh-examples --example <name>`; the test
//! suite runs each of them too.
//!
//! - `model_and_selectors`: the core model and label selectors.
//! - `embed_router`: the NxMesh REST API mounted inside another axum
//!   application, driven over real HTTP.
//! - `memory_store`: [`MemoryStore`], a storage backend of your own (here,
//!   in memory), checked by the storage conformance suite that the sea-orm
//!   reference store passes on SQLite and PostgreSQL.
//!
//! The library part of this crate hosts [`MemoryStore`], so that the
//! `memory_store` example and the `tests/memory_store.rs` test (one test
//! per conformance suite) share it.

pub mod memory;

pub use memory::MemoryStore;
