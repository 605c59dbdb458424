//! The `nxmesh-agent` binary refuses bad configuration before it touches
//! nginx or dials the master.

use std::process::Command;

fn agent(args: &[&str], data_dir: &std::path::Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_nxmesh-agent"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("NXMESH_MASTER")
        .env_remove("NXMESH_DATA_DIR")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.success(), text)
}

#[test]
fn bad_configuration_exits_non_zero_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, text) = agent(&["--master", "ftp://master:1"], dir.path());
    assert!(!ok);
    assert!(
        text.contains("must start with http:// or https://"),
        "{text}"
    );
    let (ok, text) = agent(&["--master", "https://master:1"], dir.path());
    assert!(!ok);
    assert!(text.contains("no CA file"), "{text}");
    let (ok, text) = agent(
        &["--master", "http://m:1", "--labels", "novalue"],
        dir.path(),
    );
    assert!(!ok);
    assert!(text.contains("not key=value"), "{text}");
    let (ok, text) = agent(&[], dir.path());
    assert!(!ok);
    assert!(text.contains("--master"), "{text}");
    // Nothing was created: configuration is checked before any IO.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
