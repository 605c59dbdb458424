//! Architecture invariant: `nxmesh-core` does no IO. This test walks the
//! resolved dependency graph of its normal (non-dev, non-build)
//! dependencies and fails if a crate that does IO has entered it.

use std::collections::{BTreeSet, HashMap};
use std::process::Command;

use serde_json::Value;

/// Crates that open sockets, touch files, run an async runtime or talk to a
/// database. Any of them in core's graph breaks the invariant.
const IO_CRATES: &[&str] = &[
    "async-std",
    "axum",
    "curl",
    "glob",
    "h2",
    "hyper",
    "hyper-util",
    "mio",
    "native-tls",
    "notify",
    "openssl",
    "postgres",
    "reqwest",
    "rusqlite",
    "rustls",
    "sea-orm",
    "smol",
    "socket2",
    "sqlx",
    "tempfile",
    "tokio",
    "tokio-postgres",
    "tonic",
    "tower",
    "ureq",
    "walkdir",
];

#[test]
fn core_depends_on_nothing_that_does_io() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();

    let names: HashMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let nodes: HashMap<&str, &Value> = meta["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();
    let root = names
        .iter()
        .find(|(_, n)| **n == "nxmesh-core")
        .map(|(id, _)| *id)
        .unwrap();

    // Walk normal dependencies only (dev and build dependencies may do IO:
    // tests read fixtures, build scripts read the directive table).
    let mut seen = BTreeSet::new();
    let mut stack = vec![root];
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        for dep in nodes[id]["deps"].as_array().unwrap() {
            let normal = dep["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kind"].is_null());
            if normal {
                stack.push(dep["pkg"].as_str().unwrap());
            }
        }
    }
    let graph: BTreeSet<&str> = seen.iter().map(|id| names[id]).collect();
    assert!(
        graph.contains("serde"),
        "the walk found core's dependencies: {graph:?}"
    );
    let io: Vec<&&str> = IO_CRATES.iter().filter(|c| graph.contains(**c)).collect();
    assert!(
        io.is_empty(),
        "nxmesh-core depends on IO crates {io:?}; graph: {graph:?}"
    );
}
