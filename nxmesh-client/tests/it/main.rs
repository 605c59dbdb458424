//! Integration tests of the client library and the `nxmesh` command line,
//! against a real master started in the test.

mod cli;
mod client;
mod config;
mod support;
mod walkthrough;
