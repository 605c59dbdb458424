//! TLS certificates as the REST API shows them (never with a private key).

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Timestamp;
use crate::error::{FieldErrorCode, ValidationErrors};
use crate::validate::{self, Validate};

/// Where a certificate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CertificateProvider {
    /// Issued by an ACME CA (Let's Encrypt or any RFC 8555 CA).
    Letsencrypt,
    /// Issued by the master itself.
    SelfSigned,
    /// Uploaded by the user.
    Custom,
}

/// Where a certificate is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CertificateStatus {
    /// Being issued.
    Pending,
    /// Issued and valid.
    Active,
    /// Issuance or renewal failed.
    Failed,
    /// Past its expiry.
    Expired,
}

/// A certificate as stored and returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Certificate {
    /// Its id.
    pub id: Uuid,
    /// The workspace it belongs to.
    pub workspace_id: Uuid,
    /// The domain it is for (without `*.` for wildcards).
    pub domain: String,
    /// Whether it covers `*.domain`.
    pub is_wildcard: bool,
    /// Where it comes from.
    pub provider: CertificateProvider,
    /// Where it is in its life.
    pub status: CertificateStatus,
    /// When it was issued.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub issued_at: Option<Timestamp>,
    /// When it expires.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub expires_at: Option<Timestamp>,
    /// Whether the master renews it before expiry.
    pub auto_renew: bool,
    /// Why issuance last failed, when `status` is `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When it was created.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
}

/// `POST /workspaces/{id}/certificates`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateCertificate {
    /// The domain; `*.example.com` requests a wildcard.
    pub domain: String,
    /// Where it comes from.
    pub provider: CertificateProvider,
    /// Whether the master renews it before expiry.
    #[serde(default = "default_true")]
    pub auto_renew: bool,
    /// For `custom`: the PEM certificate chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_pem: Option<String>,
    /// For `custom`: the PEM private key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_pem: Option<String>,
}

fn default_true() -> bool {
    true
}

impl fmt::Debug for CreateCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateCertificate")
            .field("domain", &self.domain)
            .field("provider", &self.provider)
            .field("auto_renew", &self.auto_renew)
            .field(
                "certificate_pem",
                &self.certificate_pem.as_ref().map(|_| "<pem>"),
            )
            .field(
                "private_key_pem",
                &self.private_key_pem.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl CreateCertificate {
    /// Whether the request is for a wildcard certificate.
    pub fn is_wildcard(&self) -> bool {
        self.domain.starts_with("*.")
    }
}

impl Validate for CreateCertificate {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        validate::certificate_domain(&mut errors, "domain", &self.domain);
        let custom = self.provider == CertificateProvider::Custom;
        for (field, v) in [
            ("certificate_pem", &self.certificate_pem),
            ("private_key_pem", &self.private_key_pem),
        ] {
            match (custom, v) {
                (true, None) => errors.push(
                    field,
                    FieldErrorCode::Required,
                    "required for a custom certificate",
                ),
                (false, Some(_)) => errors.push(
                    field,
                    FieldErrorCode::NotAllowed,
                    "only a custom certificate is uploaded",
                ),
                (true, Some(pem)) => validate::pem(&mut errors, field, pem),
                (false, None) => {}
            }
        }
        errors.into_result()
    }
}
