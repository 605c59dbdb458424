//! A storage backend of your own: [`MemoryStore`] implements every storage
//! trait of `nxmesh-core` in memory, and passes the whole storage
//! conformance suite — the same one `SeaStore` runs on SQLite and
//! PostgreSQL — first every suite on one shared store, then each on a
//! fresh one. Last, it is used as what `AppState` takes: an
//! `Arc<dyn Storage>`.

// An example reports what it did on standard output.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::Instant;

use nxmesh_core::model::CreateOrganization;
use nxmesh_core::pagination::PageParams;
use nxmesh_core::storage::Storage;
use nxmesh_examples::MemoryStore;

#[tokio::main]
async fn main() {
    // Every suite on one store: the suites only touch what they create.
    let shared = MemoryStore::new();
    let started = Instant::now();
    nxmesh_conformance::run_all(&shared).await;
    println!(
        "all {} conformance suites passed on one shared MemoryStore in {:?}",
        nxmesh_conformance::SUITES.len(),
        started.elapsed()
    );

    // And each on a fresh store, as the test binary does.
    for (name, suite) in nxmesh_conformance::SUITES {
        suite(&MemoryStore::new()).await;
        println!("  {name}: ok");
    }

    // The store is an ordinary `Arc<dyn Storage>`, what `AppState` takes.
    let store: Arc<dyn Storage> = Arc::new(MemoryStore::new());
    let org = store
        .create_organization(&CreateOrganization {
            name: "Acme".to_owned(),
            slug: "acme".to_owned(),
        })
        .await
        .expect("a fresh store accepts an organization");
    let listed = store
        .list_organizations(&[org.id], PageParams::default())
        .await
        .expect("list_organizations");
    assert_eq!(listed.data, vec![org]);
    assert_eq!(listed.meta.total, 1);
    println!("an Arc<dyn Storage> over MemoryStore works like any other store");
}
