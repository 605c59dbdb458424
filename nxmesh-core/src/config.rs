//! What an agent receives and renders: the desired configuration of one
//! agent at one version, and the status it reports back.
//!
//! These types are the domain side of the protocol's `ConfigUpdate` and
//! `ConfigStatus`; they are also the model file of the standalone agent and
//! of `nxmesh config render`, hence serializable.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{FieldErrorCode, ValidationErrors};
use crate::model::{Timestamp, UpstreamSpec, VirtualHostSpec};
use crate::validate::{self, Validate};

/// A virtual host as sent to an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualHostConfig {
    /// The virtual host's id.
    pub id: Uuid,
    /// Its content.
    #[serde(flatten)]
    pub spec: VirtualHostSpec,
}

/// An upstream as sent to an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamConfig {
    /// The upstream's id.
    pub id: Uuid,
    /// Its content.
    #[serde(flatten)]
    pub spec: UpstreamSpec,
}

/// A certificate with its private key, as sent to the agents that serve it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateBundle {
    /// The certificate's id.
    pub id: Uuid,
    /// Its domain.
    pub domain: String,
    /// The PEM certificate chain.
    pub certificate_pem: String,
    /// The PEM private key.
    pub private_key_pem: String,
    /// When it expires.
    pub expires_at: Timestamp,
}

impl fmt::Debug for CertificateBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateBundle")
            .field("id", &self.id)
            .field("domain", &self.domain)
            .field("private_key_pem", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Settings for the whole nginx instance.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GlobalSettings {
    /// Extra `http`-level directives from an allowlist (name → arguments).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub nginx_directives: BTreeMap<String, String>,
    /// Environment variables for the nginx process the agent starts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env_vars: BTreeMap<String, String>,
    /// ACME HTTP-01 challenges this instance answers while the master
    /// orders a certificate (beyond the specification; absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acme_challenges: Vec<AcmeChallenge>,
}

/// One ACME HTTP-01 challenge: nginx answers
/// `GET /.well-known/acme-challenge/<token>` with the key authorization, on
/// the plain-HTTP virtual hosts that name `domain` and on the catch-all
/// server of every plain-HTTP port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcmeChallenge {
    /// The name being validated (no `*.`: HTTP-01 cannot validate wildcards).
    pub domain: String,
    /// The challenge token (base64url).
    pub token: String,
    /// `<token>.<account key thumbprint>` (base64url and one dot).
    pub key_authorization: String,
}

/// The URL path prefix of HTTP-01 challenges (RFC 8555, section 8.3).
pub const ACME_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

impl AcmeChallenge {
    /// The exact path nginx answers.
    pub fn path(&self) -> String {
        format!("{ACME_CHALLENGE_PREFIX}{}", self.token)
    }

    /// Whether a virtual host serving `server_name` (one name of its
    /// `server_name`, possibly `*.example.com`) answers for this domain.
    pub fn is_served_by(&self, server_name: &str) -> bool {
        match server_name.strip_prefix("*.") {
            Some(parent) => self
                .domain
                .split_once('.')
                .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(parent)),
            None => server_name.eq_ignore_ascii_case(&self.domain),
        }
    }

    fn validate_into(&self, errors: &mut ValidationErrors, field: &str) {
        let base64url = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        validate::certificate_domain(errors, &format!("{field}.domain"), &self.domain);
        if self.domain.starts_with("*.") {
            errors.push(
                format!("{field}.domain"),
                FieldErrorCode::NotAllowed,
                "HTTP-01 cannot validate a wildcard",
            );
        }
        if self.token.is_empty() || self.token.len() > 128 || !base64url(&self.token) {
            errors.push(
                format!("{field}.token"),
                FieldErrorCode::InvalidFormat,
                "a token is 1 to 128 base64url characters",
            );
        }
        let ka_ok = self
            .key_authorization
            .split_once('.')
            .is_some_and(|(t, thumb)| {
                t == self.token && !thumb.is_empty() && thumb.len() <= 128 && base64url(thumb)
            });
        if !ka_ok {
            errors.push(
                format!("{field}.key_authorization"),
                FieldErrorCode::InvalidFormat,
                "a key authorization is the token, a dot and a base64url thumbprint",
            );
        }
    }
}

impl Validate for GlobalSettings {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        validate::custom_directives(
            &mut errors,
            "nginx_directives",
            &self.nginx_directives,
            validate::DirectiveContext::Http,
        );
        for (k, v) in &self.env_vars {
            let field = format!("env_vars.{k}");
            let name_ok = !k.is_empty()
                && k.len() <= 128
                && !k.starts_with(|c: char| c.is_ascii_digit())
                && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !name_ok {
                errors.push(
                    field.clone(),
                    FieldErrorCode::InvalidFormat,
                    "not a valid environment variable name",
                );
            }
            validate::plain_text(&mut errors, &field, v, validate::MAX_VALUE_LEN);
        }
        for (i, ch) in self.acme_challenges.iter().enumerate() {
            ch.validate_into(&mut errors, &format!("acme_challenges[{i}]"));
        }
        errors.into_result()
    }
}

/// The complete desired configuration of one agent at one version.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ConfigUpdate {
    /// Identifies this configuration (stable for the same content).
    pub config_id: String,
    /// Monotonic per agent; an agent ignores versions it has passed.
    pub version: i64,
    /// The virtual hosts to serve.
    #[serde(default)]
    pub virtual_hosts: Vec<VirtualHostConfig>,
    /// The upstreams they proxy to.
    #[serde(default)]
    pub upstreams: Vec<UpstreamConfig>,
    /// Certificates by id.
    #[serde(default)]
    pub certificates: BTreeMap<String, CertificateBundle>,
    /// Instance-wide settings.
    #[serde(default)]
    pub global_settings: GlobalSettings,
}

impl Validate for ConfigUpdate {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        if self.version < 0 {
            errors.push(
                "version",
                FieldErrorCode::OutOfRange,
                "version must not be negative",
            );
        }
        for (i, vh) in self.virtual_hosts.iter().enumerate() {
            let mut inner = ValidationErrors::default();
            vh.spec.validate_into(&mut inner);
            if !inner.is_empty() {
                prefix(&mut errors, &format!("virtual_hosts[{i}]"), inner);
            }
            for (j, l) in vh.spec.locations.iter().enumerate() {
                if let Some(up) = l.upstream_id
                    && !self.upstreams.iter().any(|u| u.id == up)
                {
                    errors.push(
                        format!("virtual_hosts[{i}].locations[{j}].upstream_id"),
                        FieldErrorCode::NotFound,
                        format!("upstream {up} is not in this configuration"),
                    );
                }
            }
            if let Some(cert) = vh.spec.ssl_certificate_id
                && vh.spec.ssl_enabled
                && !self.certificates.contains_key(&cert.to_string())
            {
                errors.push(
                    format!("virtual_hosts[{i}].ssl_certificate_id"),
                    FieldErrorCode::NotFound,
                    format!("certificate {cert} is not in this configuration"),
                );
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, up) in self.upstreams.iter().enumerate() {
            let mut inner = ValidationErrors::default();
            up.spec.validate_into(&mut inner);
            if !inner.is_empty() {
                prefix(&mut errors, &format!("upstreams[{i}]"), inner);
            }
            if !names.insert(up.spec.name.as_str()) {
                errors.push(
                    format!("upstreams[{i}].name"),
                    FieldErrorCode::InvalidFormat,
                    "duplicate upstream name",
                );
            }
        }
        for (key, cert) in &self.certificates {
            if *key != cert.id.to_string() {
                errors.push(
                    format!("certificates.{key}"),
                    FieldErrorCode::InvalidFormat,
                    "certificates are keyed by their id",
                );
            }
            validate::pem(
                &mut errors,
                &format!("certificates.{key}.certificate_pem"),
                &cert.certificate_pem,
            );
            validate::pem(
                &mut errors,
                &format!("certificates.{key}.private_key_pem"),
                &cert.private_key_pem,
            );
        }
        if let Err(inner) = self.global_settings.validate() {
            prefix(&mut errors, "global_settings", inner);
        }
        errors.into_result()
    }
}

fn prefix(errors: &mut ValidationErrors, prefix: &str, inner: ValidationErrors) {
    for mut e in inner.errors {
        e.field = format!("{prefix}.{}", e.field);
        errors.errors.push(e);
    }
}

/// Where an apply is (`ConfigApplyStatus` of the protocol).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigApplyStatus {
    /// Received, not started.
    Pending,
    /// Running `nginx -t` on the staged tree.
    Validating,
    /// Switching the tree and reloading.
    Applying,
    /// nginx serves the new version.
    Success,
    /// Refused before it touched the live tree.
    Failed,
    /// Applied, then restored to the last good tree.
    RolledBack,
}

/// What an agent reports about one configuration version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigStatus {
    /// The configuration's id.
    pub config_id: String,
    /// Its version.
    pub version: i64,
    /// Where the apply is.
    pub status: ConfigApplyStatus,
    /// nginx's own error text when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// When it was applied (or failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<Timestamp>,
    /// Checksum of the tree the agent now serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_checksum: Option<String>,
}
