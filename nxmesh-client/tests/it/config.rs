//! `nxmesh config render|lint|import|parse|fmt` on real files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn nxmesh(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nxmesh"))
        .args(args)
        .output()
        .expect("run nxmesh")
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nxmesh-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

const MODEL: &str = r#"
config_id: demo
version: 1
virtual_hosts:
  - id: 880e8400-e29b-41d4-a716-446655440004
    name: Main
    server_name: example.com www.example.com
    listen_port: 8088
    locations:
      - path: /api
        upstream_id: aa0e8400-e29b-41d4-a716-446655440006
        custom_headers:
          - name: X-Frame-Options
            value: DENY
      - path: /
        root: /var/www/html
upstreams:
  - id: aa0e8400-e29b-41d4-a716-446655440006
    name: api
    algorithm: least_connections
    servers:
      - address: 127.0.0.1:9000
        weight: 2
      - address: 127.0.0.1:9001
"#;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn render_lint_import_round_trip() {
    let dir = temp_dir("render");
    let model = dir.join("model.yaml");
    std::fs::write(&model, MODEL).unwrap();
    let out = dir.join("tree");
    let r = nxmesh(&["config", "render", "--model", s(&model), "--out", s(&out)]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(String::from_utf8_lossy(&r.stdout).contains("checksum"));
    let conf = out.join("nginx.conf");
    let server = std::fs::read_to_string(
        out.join("conf.d/nxmesh/servers/880e8400-e29b-41d4-a716-446655440004.conf"),
    )
    .unwrap();
    assert!(
        server.contains("server_name example.com www.example.com;"),
        "{server}"
    );
    assert!(
        server.contains("add_header X-Frame-Options DENY"),
        "{server}"
    );

    // Rendering again into a non-empty directory is refused.
    let again = nxmesh(&["config", "render", "--model", s(&model), "--out", s(&out)]);
    assert!(!again.status.success());

    // Our own output lints clean and imports back to the same servers.
    let lint = nxmesh(&["config", "lint", s(&conf), "--json"]);
    assert!(
        lint.status.success(),
        "{}",
        String::from_utf8_lossy(&lint.stdout)
    );
    let findings: serde_json::Value = serde_json::from_slice(&lint.stdout).unwrap();
    assert_eq!(findings, serde_json::json!([]));
    let import = nxmesh(&["config", "import", s(&conf)]);
    assert!(import.status.success());
    let imported: serde_json::Value = serde_json::from_slice(&import.stdout).unwrap();
    assert_eq!(
        imported["update"]["virtual_hosts"][0]["server_name"],
        "example.com www.example.com"
    );
    assert_eq!(
        imported["update"]["upstreams"][0]["algorithm"],
        "least_connections"
    );

    // parse and fmt read the same tree.
    let parse = nxmesh(&["config", "parse", s(&conf)]);
    assert!(parse.status.success());
    let payload: serde_json::Value = serde_json::from_slice(&parse.stdout).unwrap();
    assert_eq!(payload["status"], "ok");
    let fmt = nxmesh(&["config", "fmt", s(&conf)]);
    assert!(fmt.status.success());
}

#[test]
fn hostile_models_are_refused_with_field_errors() {
    let dir = temp_dir("hostile");
    let model = dir.join("model.json");
    let bad = MODEL.replace(
        "example.com www.example.com",
        "\"example.com; include /etc/shadow\"",
    );
    let as_json: serde_json::Value = serde_yaml::from_str(&bad).unwrap();
    std::fs::write(&model, as_json.to_string()).unwrap();
    let out = dir.join("tree");
    let r = nxmesh(&["config", "render", "--model", s(&model), "--out", s(&out)]);
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("virtual_hosts[0].server_name"), "{err}");
    assert!(
        !out.join("nginx.conf").exists(),
        "nothing is written for a refused model"
    );
}

#[test]
fn lint_flags_a_hand_written_problem() {
    let dir = temp_dir("lint");
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        "events {}\nhttp {\n  server {\n    listen 80;\n    location /files {\n      alias /var/www/;\n    }\n  }\n}\n",
    )
    .unwrap();
    let lint = nxmesh(&["config", "lint", s(&conf), "--json"]);
    let findings: serde_json::Value = serde_json::from_slice(&lint.stdout).unwrap();
    let ids: Vec<&str> = findings
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"alias_traversal"), "{findings}");
    assert!(
        !lint.status.success(),
        "a medium or high finding fails the command"
    );
}
