//! Using the core model on its own: validate a virtual host as the master
//! would before storing it, and pick the agents a label selector targets.
//!
//! Run with `cargo run -p nxmesh-examples --example model_and_selectors`.

// An example talks to its reader on stdout.
#![allow(clippy::print_stdout)]

use nxmesh_core::model::{CreateVirtualHost, Labels, TargetAgents};
use nxmesh_core::validate::Validate;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A request body as a client would send it.
    let good: CreateVirtualHost = serde_json::from_str(
        r#"{
            "name": "API Gateway",
            "server_name": "api.example.com",
            "listen_port": 80,
            "locations": [{"path": "/health", "proxy_pass": "http://localhost:8080/health"}],
            "target_agents": {"type": "selector", "label_selector": "env=production,region in (us-east,us-west)"}
        }"#,
    )?;
    good.validate()?;

    // The same request with an injection attempt is refused, field by field.
    let mut bad = good.clone();
    bad.spec.server_name = "api.example.com; include /etc/shadow".into();
    bad.spec.locations[0].path = "/x {".into();
    let errors = bad.validate().expect_err("hostile input is refused");
    assert_eq!(errors.errors.len(), 2);
    for e in &errors.errors {
        println!("refused {}: {} ({:?})", e.field, e.message, e.code);
    }

    // Which agents does the virtual host reach?
    let fleet = [
        (
            "web-1",
            labels(&[("env", "production"), ("region", "us-east")]),
        ),
        (
            "web-2",
            labels(&[("env", "staging"), ("region", "us-east")]),
        ),
        (
            "web-3",
            labels(&[("env", "production"), ("region", "eu-west")]),
        ),
    ];
    let TargetAgents::Selector { label_selector } = &good.target_agents else {
        unreachable!("the request above uses a selector")
    };
    let selector: nxmesh_core::selector::LabelSelector = label_selector.parse()?;
    let targeted: Vec<&str> = fleet
        .iter()
        .filter(|(_, l)| selector.matches(l))
        .map(|(n, _)| *n)
        .collect();
    println!("{selector} targets {targeted:?}");
    assert_eq!(targeted, ["web-1"]);
    Ok(())
}
