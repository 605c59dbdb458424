//! The NxMesh master-agent protocol (`nxmesh.agent.v1`).
//!
//! [`pb`] holds the code generated from `nxmesh/agent/v1/agent.proto`;
//! [`convert`] holds the `From`/`TryFrom` conversions between those wire
//! types and the domain types of `nxmesh-core`. Domain code never mentions
//! `pb`: it converts at the edge.

pub mod convert;

/// Generated protobuf messages and the tonic client and server of
/// `AgentService`.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/nxmesh.agent.v1.rs"));
}

/// The encoded `FileDescriptorSet` of `agent.proto`, for gRPC reflection and
/// for checking the schema against the specification.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/agent_descriptor.bin"));

pub use convert::{InvalidMessage, Result};
