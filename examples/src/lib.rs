//! Runnable examples of the ways people use NxMesh; see `examples/examples/`.
//!
//! Run one with `cargo run -p nxmesh-examples --example <name>`; the test
//! suite runs each of them too.
