//! Integration tests of `nxmesh-core`, one binary with a module per area.
