//! Storage of the reference master: sea-orm entities, migrations, and
//! [`SeaStore`], which implements the storage traits of `nxmesh-core`.

mod acme;
mod entities;
mod migration;
mod store;

pub use store::SeaStore;
