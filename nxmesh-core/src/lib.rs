//! NxMesh core: the domain model and its validation, label selectors, the
//! nginx configuration parser, and the storage and transport traits that the
//! reference master, the agent and embedders build on.
//!
//! Architecture invariant: this crate does no IO. It opens no sockets, reads
//! no files, starts no runtime and talks to no database; a test in
//! `tests/it/deps.rs` fails if a crate that does enters its dependencies.

pub mod config;
pub mod error;
pub mod event;
pub mod generator;
pub mod ledger;
pub mod lint;
pub mod model;
pub mod pagination;
pub mod parser;
pub mod protocol;
pub mod selector;
pub mod storage;
pub mod transport;
pub mod validate;
