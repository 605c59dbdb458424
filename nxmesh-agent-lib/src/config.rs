//! What the connection manager needs to know: where the master is, how to
//! trust it, where the credential lives, and who this agent is.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use nxmesh_core::model::{DeploymentMode, Labels};

use crate::backoff::BackoffConfig;
use crate::error::ConfigError;

/// Who this agent is, as reported in every registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentIdentity {
    /// Host name of the agent's machine.
    pub hostname: String,
    /// The agent's address.
    pub ip_address: String,
    /// Agent software version.
    pub version: String,
    /// Features of the agent's nginx (`http2`, `http3`, …).
    pub capabilities: Vec<String>,
    /// Labels the agent reports (matched by `target_agents` selectors).
    pub labels: Labels,
    /// How it runs beside nginx.
    pub deployment_mode: DeploymentMode,
}

impl AgentIdentity {
    /// An identity with this crate's version, no capabilities and no labels.
    pub fn new(
        hostname: impl Into<String>,
        ip_address: impl Into<String>,
        deployment_mode: DeploymentMode,
    ) -> Self {
        AgentIdentity {
            hostname: hostname.into(),
            ip_address: ip_address.into(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            capabilities: Vec::new(),
            labels: Labels::new(),
            deployment_mode,
        }
    }
}

/// Timeouts of the connection manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect plus TLS handshake.
    pub connect: Duration,
    /// From opening the stream to the master's `RegistrationResponse`.
    pub registration: Duration,
    /// HTTP/2 keepalive ping interval; a connection whose pings go
    /// unanswered for another interval is dropped and redialed, so a dead
    /// master is noticed even when nothing is sent.
    pub keepalive: Duration,
    /// How long shutdown waits for a running apply to finish.
    pub shutdown_grace: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            registration: Duration::from_secs(30),
            keepalive: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Configuration of [`crate::run`].
#[derive(Clone)]
pub struct AgentConfig {
    /// The master's gRPC addresses (`https://host:port`, or `http://` for
    /// tests). Several addresses are tried in turn: a failed connection
    /// moves to the next one.
    pub endpoints: Vec<String>,
    /// PEM file of the CA that signed the master's certificate (the master
    /// creates its own CA). Required for `https://` endpoints; only this CA
    /// is trusted, never the system roots.
    pub ca_file: Option<PathBuf>,
    /// The name to verify in the master's certificate, when it differs from
    /// the endpoint's host (for example when dialing an IP address).
    pub tls_server_name: Option<String>,
    /// Where the durable credential is kept (mode 0600).
    pub credential_file: PathBuf,
    /// The single-use registration token, used only while no credential is
    /// stored.
    pub registration_token: Option<String>,
    /// Who this agent is.
    pub identity: AgentIdentity,
    /// Reconnect delays.
    pub backoff: BackoffConfig,
    /// Timeouts.
    pub timeouts: Timeouts,
}

impl AgentConfig {
    /// A configuration with default backoff and timeouts, no CA and no
    /// token.
    pub fn new(endpoints: Vec<String>, credential_file: PathBuf, identity: AgentIdentity) -> Self {
        AgentConfig {
            endpoints,
            ca_file: None,
            tls_server_name: None,
            credential_file,
            registration_token: None,
            identity,
            backoff: BackoffConfig::default(),
            timeouts: Timeouts::default(),
        }
    }

    /// Checks everything that can be checked without IO.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.endpoints.is_empty() {
            return Err(ConfigError::NoEndpoint);
        }
        for e in &self.endpoints {
            if e.starts_with("https://") {
                if self.ca_file.is_none() {
                    return Err(ConfigError::MissingCa(e.clone()));
                }
            } else if !e.starts_with("http://") {
                return Err(ConfigError::Scheme(e.clone()));
            }
            tonic::transport::Endpoint::from_shared(e.clone()).map_err(|source| {
                ConfigError::Endpoint {
                    endpoint: e.clone(),
                    source,
                }
            })?;
        }
        let t = &self.timeouts;
        for (name, d) in [
            ("timeouts.connect", t.connect),
            ("timeouts.registration", t.registration),
            ("timeouts.keepalive", t.keepalive),
        ] {
            if d.is_zero() {
                return Err(ConfigError::Setting(name));
            }
        }
        let b = &self.backoff;
        if b.base.is_zero() || b.cap < b.base {
            return Err(ConfigError::Setting("backoff"));
        }
        Ok(())
    }
}

impl fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentConfig")
            .field("endpoints", &self.endpoints)
            .field("ca_file", &self.ca_file)
            .field("tls_server_name", &self.tls_server_name)
            .field("credential_file", &self.credential_file)
            .field(
                "registration_token",
                &self.registration_token.as_ref().map(|_| "<redacted>"),
            )
            .field("identity", &self.identity)
            .field("backoff", &self.backoff)
            .field("timeouts", &self.timeouts)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(endpoints: &[&str]) -> AgentConfig {
        AgentConfig::new(
            endpoints.iter().map(|s| (*s).to_owned()).collect(),
            "cred".into(),
            AgentIdentity::new("h", "127.0.0.1", DeploymentMode::Standalone),
        )
    }

    #[test]
    fn https_needs_a_ca_and_schemes_are_checked() {
        assert!(matches!(
            config(&[]).validate(),
            Err(ConfigError::NoEndpoint)
        ));
        assert!(matches!(
            config(&["https://m:1"]).validate(),
            Err(ConfigError::MissingCa(_))
        ));
        assert!(matches!(
            config(&["m:1"]).validate(),
            Err(ConfigError::Scheme(_))
        ));
        assert!(config(&["http://127.0.0.1:1"]).validate().is_ok());
        let mut c = config(&["https://m:1"]);
        c.ca_file = Some("ca.pem".into());
        assert!(c.validate().is_ok());
    }

    #[test]
    fn debug_redacts_the_token() {
        let mut c = config(&["http://m:1"]);
        c.registration_token = Some("secret-token".into());
        let s = format!("{c:?}");
        assert!(!s.contains("secret-token"), "{s}");
        assert!(s.contains("<redacted>"));
    }
}
