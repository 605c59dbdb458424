//! Test support: a temporary nginx prefix, a test certificate, and the
//! external tools (`nginx`, `gixy`), which must be present under `CI=true`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use nxmesh_core::generator::Rendered;

/// A directory removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    /// A fresh directory under the system temp dir.
    pub(crate) fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("nxmesh-gen-{}-{n}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// Its path.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    /// Its path as UTF-8.
    pub(crate) fn str(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Finds a tool; under `CI=true` its absence fails the test, otherwise the
/// test prints a notice and is skipped by the caller.
// Outside CI a missing tool skips the test with a notice on stderr.
#[allow(clippy::print_stderr)]
pub(crate) fn tool(candidates: &[PathBuf], what: &str) -> Option<PathBuf> {
    let found = candidates.iter().find(|p| p.is_file()).cloned();
    if found.is_none() {
        assert!(
            !ci(),
            "{what} is required under CI=true (looked at {candidates:?})"
        );
        eprintln!("notice: {what} not found ({candidates:?}); skipping");
    }
    found
}

/// Debian's nginx.
pub(crate) fn nginx() -> Option<PathBuf> {
    let mut c = Vec::new();
    if let Ok(p) = std::env::var("NXMESH_NGINX") {
        c.push(PathBuf::from(p));
    }
    c.push(PathBuf::from("/usr/sbin/nginx"));
    tool(&c, "nginx")
}

/// gixy-ng: `NXMESH_GIXY`, else `<repo>/.venv/bin/gixy`.
pub(crate) fn gixy() -> Option<PathBuf> {
    let mut c = Vec::new();
    if let Ok(p) = std::env::var("NXMESH_GIXY") {
        c.push(PathBuf::from(p));
    }
    c.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/gixy"));
    tool(&c, "gixy-ng")
}

/// Writes the rendered tree into `dir`, with the directories nginx needs,
/// and replaces every certificate and key by a real self-signed pair.
pub(crate) fn write_tree(dir: &Path, rendered: &Rendered) {
    for sub in ["logs", "temp"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let mut pair: Option<(Vec<u8>, Vec<u8>)> = None;
    for f in &rendered.files {
        let path = dir.join(&f.path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let bytes = if f.path.ends_with(".crt") || f.path.ends_with(".key") {
            let (crt, key) = pair.get_or_insert_with(|| self_signed(dir));
            if f.path.ends_with(".crt") {
                crt.clone()
            } else {
                key.clone()
            }
        } else {
            f.bytes.clone()
        };
        std::fs::write(path, bytes).unwrap();
    }
}

/// A self-signed certificate from `openssl req` (fixed argument vector).
fn self_signed(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let crt = dir.join("test-cert.pem");
    let key = dir.join("test-key.pem");
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=example.test",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (std::fs::read(&crt).unwrap(), std::fs::read(&key).unwrap())
}

/// `nginx -t -p DIR -c DIR/nginx.conf`: `Ok` or nginx's output.
pub(crate) fn nginx_t(nginx: &Path, dir: &Path) -> Result<String, String> {
    let out = Command::new(nginx)
        .arg("-t")
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .output()
        .expect("nginx runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

/// gixy's findings of medium severity or higher, as JSON values.
pub(crate) fn gixy_findings(gixy: &Path, dir: &Path) -> Vec<serde_json::Value> {
    let out = Command::new(gixy)
        .arg("-ll")
        .arg("-f")
        .arg("json")
        .arg(dir.join("nginx.conf"))
        .output()
        .expect("gixy runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let parsed: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "gixy output is not JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    parsed.as_array().cloned().unwrap_or_default()
}
