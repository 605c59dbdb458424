//! The deployment examples (`examples/deploy/`) run the real binary: the
//! agent arguments of the docker-compose file and of the Kubernetes
//! manifest are parsed by `nxmesh-agent` itself, the environment variables
//! they and the Dockerfile set are the agent's, and nginx is started on the
//! configuration the agent writes.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize as _;
use serde_yaml::Value;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/deploy")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .unwrap_or_else(|| panic!("not a list: {v:?}"))
        .iter()
        .map(|x| match x {
            Value::String(s) => s.clone(),
            other => panic!("not a string: {other:?}"),
        })
        .collect()
}

fn agent_help() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_nxmesh-agent"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// `nxmesh-agent ARGS --help` succeeds only if clap accepts every
/// argument and value before `--help`.
fn assert_agent_accepts(args: &[String], what: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_nxmesh-agent"))
        .args(args)
        .arg("--help")
        .env_remove("NXMESH_MASTER")
        .env_remove("NXMESH_CONFIG_FILE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{what}: nxmesh-agent refuses {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn value_after<'a>(args: &'a [String], flag: &str) -> &'a str {
    let i = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("{flag} missing in {args:?}"));
    &args[i + 1]
}

/// The nginx arguments match the agent's: `-p` is its prefix and `-c` the
/// `live/nginx.conf` of its data directory, in the foreground.
fn assert_nginx_matches(nginx: &[String], agent: &[String], what: &str) {
    let data = value_after(agent, "--data-dir");
    let prefix = value_after(agent, "--prefix");
    assert_eq!(value_after(nginx, "-p"), prefix, "{what}");
    assert_eq!(
        value_after(nginx, "-c"),
        format!("{data}/nginx/live/nginx.conf"),
        "{what}"
    );
    assert_eq!(
        value_after(nginx, "-e"),
        format!("{prefix}/logs/error.log"),
        "{what}"
    );
    assert_eq!(value_after(nginx, "-g"), "daemon off;", "{what}");
    assert_eq!(
        value_after(agent, "--pid-file"),
        format!("{prefix}/logs/nginx.pid"),
        "{what}"
    );
}

#[test]
fn the_deployment_files_use_the_agents_real_flags() {
    let help = agent_help();
    let dir = deploy_dir();

    let compose: Value =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("docker-compose.yml")).unwrap())
            .unwrap();
    let services = &compose["services"];
    let agent = strings(&services["agent"]["command"]);
    assert_agent_accepts(&agent, "docker-compose agent");
    assert_eq!(value_after(&agent, "--mode"), "docker-sidecar");
    for (k, _) in services["agent"]["environment"].as_mapping().unwrap() {
        let k = k.as_str().unwrap();
        if k.starts_with("NXMESH_") {
            assert!(help.contains(&format!("[env: {k}")), "compose sets {k}");
        }
    }
    let mut nginx = strings(&services["nginx"]["entrypoint"]);
    nginx.extend(strings(&services["nginx"]["command"]));
    assert_eq!(nginx[0], "/usr/sbin/nginx");
    assert_eq!(value_after(&agent, "--nginx-binary"), "/usr/sbin/nginx");
    assert_nginx_matches(&nginx[1..], &agent, "docker-compose");
    assert_eq!(services["nginx"]["pid"].as_str(), Some("service:agent"));

    let text = std::fs::read_to_string(dir.join("kubernetes.yaml")).unwrap();
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .collect();
    let deployment = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("Deployment"))
        .unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["shareProcessNamespace"].as_bool(), Some(true));
    let sidecar = &pod["initContainers"][0];
    assert_eq!(sidecar["restartPolicy"].as_str(), Some("Always"));
    let agent = strings(&sidecar["args"]);
    assert_agent_accepts(&agent, "kubernetes agent");
    assert_eq!(value_after(&agent, "--mode"), "kubernetes-sidecar");
    let env = sidecar["env"].as_sequence().unwrap();
    for e in env {
        let k = e["name"].as_str().unwrap();
        if k.starts_with("NXMESH_") {
            assert!(help.contains(&format!("[env: {k}")), "manifest sets {k}");
        }
    }
    let token = env
        .iter()
        .find(|e| e["name"].as_str() == Some("NXMESH_REGISTRATION_TOKEN"))
        .unwrap();
    assert!(token["valueFrom"]["secretKeyRef"]["name"].is_string());
    let nginx = strings(&pod["containers"][0]["command"]);
    assert_nginx_matches(&nginx[1..], &agent, "kubernetes");

    // The agent stage of the Dockerfile sets only the agent's variables.
    let dockerfile = std::fs::read_to_string(dir.join("Dockerfile")).unwrap();
    let agent_stage = dockerfile.split("AS agent").nth(1).unwrap();
    let mut seen = 0;
    for word in agent_stage.split(|c: char| c.is_whitespace() || c == '=') {
        if word.starts_with("NXMESH_") {
            assert!(
                help.contains(&format!("[env: {word}")),
                "Dockerfile sets {word}"
            );
            seen += 1;
        }
    }
    assert!(seen >= 3);
    assert!(dockerfile.contains("--bin nxmesh-agent"));
}
