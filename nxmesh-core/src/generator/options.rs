//! What the generator renders for: the target nginx version and the
//! directory layout of the instance.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{FieldErrorCode, ValidationErrors};
use crate::parser::table;
use crate::validate;

/// An nginx release, `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NginxVersion {
    /// Major number (1).
    pub major: u16,
    /// Minor number.
    pub minor: u16,
    /// Patch number.
    pub patch: u16,
}

impl NginxVersion {
    /// A version from its three numbers.
    pub const fn new(major: u16, minor: u16, patch: u16) -> Self {
        NginxVersion {
            major,
            minor,
            patch,
        }
    }

    /// `http2 on;` exists and the `listen … http2` parameter is deprecated.
    pub const HTTP2_DIRECTIVE: NginxVersion = NginxVersion::new(1, 25, 1);
    /// `listen … quic` (HTTP/3) exists.
    pub const HTTP3: NginxVersion = NginxVersion::new(1, 25, 0);
    /// The oldest release the generator renders for (the oldest release of
    /// the directive table).
    pub const OLDEST: NginxVersion = NginxVersion::new(1, 22, 1);
}

impl fmt::Display for NginxVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// A version string that is not `X.Y.Z`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an nginx version (expected X.Y.Z): {0:?}")]
pub struct InvalidVersion(pub String);

impl FromStr for NginxVersion {
    type Err = InvalidVersion;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidVersion(s.chars().take(32).collect());
        let mut parts = s
            .trim()
            .strip_prefix("nginx/")
            .unwrap_or(s.trim())
            .split('.');
        let mut next = || -> Result<u16, InvalidVersion> {
            let p = parts.next().ok_or_else(bad)?;
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            p.parse().map_err(|_| bad())
        };
        let v = NginxVersion::new(next()?, next()?, next()?);
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(v)
    }
}

impl Serialize for NginxVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for NginxVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The version rendered for when nothing else is known: Debian 12's nginx,
/// the oldest release of the directive table. The agent passes the version
/// its nginx reports instead.
pub const DEFAULT_NGINX_VERSION: NginxVersion = NginxVersion::OLDEST;

/// Where things live on the instance. Paths inside the rendered tree are
/// relative to the directory of `nginx.conf` (nginx resolves relative
/// `include` and certificate paths against it), so a tree can be staged in
/// any directory and tested there with `nginx -t -c DIR/nginx.conf`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Layout {
    /// The managed directory, relative to the configuration directory: one
    /// file per upstream in `upstreams/`, per virtual host in `servers/`.
    pub managed_dir: String,
    /// Certificates and keys, relative to the configuration directory.
    pub cert_dir: String,
    /// Absolute path of the pid file.
    pub pid_file: String,
    /// Absolute path of the error log.
    pub error_log: String,
    /// Absolute path of the JSON access log the agent tails.
    pub access_log: String,
    /// Absolute directory for nginx's temporary files (request bodies,
    /// proxied responses).
    pub temp_dir: String,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            managed_dir: "conf.d/nxmesh".to_owned(),
            cert_dir: "conf.d/nxmesh/certs".to_owned(),
            pid_file: "/run/nginx.pid".to_owned(),
            error_log: "/var/log/nginx/error.log".to_owned(),
            access_log: "/var/log/nginx/access.log".to_owned(),
            temp_dir: "/var/lib/nginx".to_owned(),
        }
    }
}

/// Everything besides the model that decides the rendered text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RenderOptions {
    /// The nginx release the text is for.
    pub nginx_version: NginxVersion,
    /// The directory layout.
    pub layout: Layout,
    /// Address the virtual hosts listen on; `None` is every address.
    pub listen_address: Option<IpAddr>,
    /// Port of the `stub_status` endpoint, which listens on 127.0.0.1 only.
    pub status_port: u16,
    /// Seconds old workers get to finish requests after a reload.
    pub worker_shutdown_timeout_secs: u32,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            nginx_version: DEFAULT_NGINX_VERSION,
            layout: Layout::default(),
            listen_address: None,
            status_port: 18080,
            worker_shutdown_timeout_secs: 30,
        }
    }
}

impl RenderOptions {
    /// The default options for nginx `version`.
    pub fn for_version(version: NginxVersion) -> Self {
        RenderOptions {
            nginx_version: version,
            ..RenderOptions::default()
        }
    }

    /// The directive table of the newest release in the table that is not
    /// newer than the target (directives are added far more often than
    /// removed, so this never claims a directive the target lacks because of
    /// a later addition), or `None` when the target is older than the table.
    pub fn directive_table(&self) -> Option<table::DirectiveTable> {
        let mut best = None;
        for v in table::versions() {
            let parsed: NginxVersion = v.parse().ok()?;
            if parsed <= self.nginx_version {
                best = Some(v);
            }
        }
        best.and_then(|v| table::DirectiveTable::new(v, false))
    }

    pub(crate) fn check(&self, errors: &mut ValidationErrors) {
        if self.nginx_version < NginxVersion::OLDEST {
            errors.push(
                "options.nginx_version",
                FieldErrorCode::OutOfRange,
                format!(
                    "nginx {} is older than {}, the oldest supported release",
                    self.nginx_version,
                    NginxVersion::OLDEST
                ),
            );
        }
        let l = &self.layout;
        for (field, v) in [
            ("options.layout.managed_dir", &l.managed_dir),
            ("options.layout.cert_dir", &l.cert_dir),
        ] {
            if !is_relative_dir(v) {
                errors.push(
                    field,
                    FieldErrorCode::InvalidFormat,
                    "a relative directory of letters, digits, '.', '_' and '-' components, without '..'",
                );
            }
        }
        for (field, v) in [
            ("options.layout.pid_file", &l.pid_file),
            ("options.layout.error_log", &l.error_log),
            ("options.layout.access_log", &l.access_log),
            ("options.layout.temp_dir", &l.temp_dir),
        ] {
            validate::abs_path(errors, field, v);
        }
        validate::port(errors, "options.status_port", self.status_port);
        validate::range(
            errors,
            "options.worker_shutdown_timeout_secs",
            u64::from(self.worker_shutdown_timeout_secs),
            1,
            86_400,
        );
    }
}

fn is_relative_dir(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        })
}
