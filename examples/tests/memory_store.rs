//! `MemoryStore` passes the storage conformance suite: one test per suite,
//! each on a fresh store.

use std::sync::Arc;

use nxmesh_examples::MemoryStore;

nxmesh_conformance::conformance_tests!(Arc::new(MemoryStore::new()));
