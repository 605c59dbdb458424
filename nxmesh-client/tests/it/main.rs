//! Integration tests of the `nxmesh` command line.

mod config;
