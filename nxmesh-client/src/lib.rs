//! NxMesh client library. It will hold the typed REST client of the master
//! (one cheap-clone `Client` plus a handle per resource); for now the crate
//! only ships the `nxmesh` command line (`src/bin/nxmesh`).
