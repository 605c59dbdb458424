//! Integration tests of `nxmesh-proto`.

mod descriptor;
mod round_trip;
