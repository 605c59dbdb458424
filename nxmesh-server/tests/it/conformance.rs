//! The storage conformance suite on `SeaStore`: one test per suite, on
//! SQLite and on PostgreSQL (skipped outside CI when
//! `NXMESH_TEST_DATABASE_URL` is not set, like the other PostgreSQL tests).

use std::sync::Arc;

use nxmesh_server::db::SeaStore;

use crate::support::{Backend, fresh_database};

/// A `SeaStore` over a fresh database, or `None` when the backend is not
/// available.
async fn store(backend: Backend) -> Option<Arc<SeaStore>> {
    let url = fresh_database(backend).await?;
    Some(Arc::new(SeaStore::connect(&url).await.unwrap()))
}

mod sqlite {
    nxmesh_conformance::conformance_tests!(
        super::store(crate::support::Backend::Sqlite)
            .await
            .expect("SQLite is always available")
    );
}

mod postgres {
    nxmesh_conformance::conformance_tests!(match super::store(crate::support::Backend::Postgres)
        .await
    {
        Some(store) => store,
        None => return,
    });
}
