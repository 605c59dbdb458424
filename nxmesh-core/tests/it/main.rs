//! Integration tests of `nxmesh-core`, one binary with a module per area.
mod deps;
mod generator;
mod lint;
mod parser;
mod spec_json;
mod validation;
