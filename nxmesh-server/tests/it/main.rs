//! Integration tests of the reference master, on SQLite and on PostgreSQL.

// Test helpers are `pub` for the test modules; nothing here is an API.
#![allow(unreachable_pub, clippy::print_stderr)]

mod access;
mod acme;
mod agents;
mod api;
mod cluster;
mod conformance;
mod durability;
mod openapi;
mod support;
mod tokens;
