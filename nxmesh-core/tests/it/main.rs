//! Integration tests of `nxmesh-core`, one binary with a module per area.

// Tests that need a tool which is missing outside CI say so on stderr.
#![allow(clippy::print_stderr)]
mod deps;
mod generator;
mod lint;
mod parser;
mod spec_json;
mod validation;
