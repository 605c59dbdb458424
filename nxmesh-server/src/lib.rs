//! The NxMesh reference master.

pub mod db;
