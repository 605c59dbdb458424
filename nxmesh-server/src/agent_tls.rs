//! The TLS identity of the agent service: at first start the master creates
//! its own CA and a serving certificate signed by it (agents pin the CA),
//! unless certificate and key files are given.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

use crate::auth::{KeyError, write_private};

/// PEM certificate chain and key the gRPC server presents.
pub struct ServerIdentity {
    /// The serving certificate (PEM).
    pub certificate_pem: String,
    /// Its key (PEM).
    pub key_pem: String,
    /// The CA agents must trust (PEM), when the master made its own.
    pub ca_pem: Option<String>,
    /// Where the CA file is, for the operator to hand to agents.
    pub ca_path: Option<PathBuf>,
}

impl std::fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerIdentity")
            .field("ca_path", &self.ca_path)
            .finish_non_exhaustive()
    }
}

/// Why the identity could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("TLS file")]
    Key(#[from] KeyError),
    /// Certificate generation or parsing failed.
    #[error("certificate generation")]
    Rcgen(#[from] rcgen::Error),
}

fn read(path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.display().to_string(),
        source,
    })
}

fn write(path: &Path, s: &str) -> Result<(), KeyError> {
    write_private(path, s.as_bytes()).map_err(|source| KeyError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Loads the given certificate and key, or loads/creates the master's own
/// CA (`agent-ca.pem`, `agent-ca.key`) and a serving certificate for
/// `names` (`agent-server.pem`, `agent-server.key`) in `data_dir`.
pub fn load_or_create(
    data_dir: &Path,
    given: Option<(&Path, &Path)>,
    names: &[String],
) -> Result<ServerIdentity, TlsError> {
    if let Some((cert, key)) = given {
        return Ok(ServerIdentity {
            certificate_pem: read(cert)?,
            key_pem: read(key)?,
            ca_pem: None,
            ca_path: None,
        });
    }
    let ca_path = data_dir.join("agent-ca.pem");
    let ca_key_path = data_dir.join("agent-ca.key");
    let (ca_pem, ca_key) = if ca_path.exists() {
        (read(&ca_path)?, KeyPair::from_pem(&read(&ca_key_path)?)?)
    } else {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params
            .distinguished_name
            .push(DnType::CommonName, "NxMesh agent CA");
        params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(3650);
        let cert = params.self_signed(&key)?;
        write(&ca_key_path, &key.serialize_pem())?;
        write(&ca_path, &cert.pem())?;
        (cert.pem(), key)
    };
    let server_path = data_dir.join("agent-server.pem");
    let server_key_path = data_dir.join("agent-server.key");
    let (certificate_pem, key_pem) = if server_path.exists() {
        (read(&server_path)?, read(&server_key_path)?)
    } else {
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.to_vec())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "NxMesh master");
        params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(825);
        let cert = params.signed_by(&key, &issuer)?;
        write(&server_key_path, &key.serialize_pem())?;
        write(&server_path, &cert.pem())?;
        (cert.pem(), key.serialize_pem())
    };
    Ok(ServerIdentity {
        certificate_pem,
        key_pem,
        ca_pem: Some(ca_pem),
        ca_path: Some(ca_path),
    })
}
