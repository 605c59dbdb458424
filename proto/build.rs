//! Compiles `nxmesh/agent/v1/agent.proto` with protox (a pure-Rust protobuf
//! compiler, so no system `protoc` is needed) and generates the tonic/prost
//! code, plus the encoded file descriptor set for reflection and tests.

use std::{env, error::Error, fs, path::PathBuf};

use prost::Message as _;

fn main() -> Result<(), Box<dyn Error>> {
    let proto = "nxmesh/agent/v1/agent.proto";
    println!("cargo:rerun-if-changed={proto}");

    let fds = protox::compile([proto], ["."])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("agent_descriptor.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(false)
        .compile_fds(fds)?;
    Ok(())
}
