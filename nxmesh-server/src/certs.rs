//! Certificates issued or checked by the master itself: self-signed
//! certificates, and uploaded (custom) chains whose key must match, parse
//! and not be expired.

use chrono::{DateTime, TimeZone, Utc};
use nxmesh_core::error::{FieldErrorCode, ValidationErrors};
use rcgen::{CertificateParams, KeyPair};

/// A certificate with its key, ready to store.
pub struct Issued {
    /// PEM chain.
    pub certificate_pem: String,
    /// PEM private key (PKCS#8).
    pub private_key_pem: String,
    /// Not before.
    pub issued_at: DateTime<Utc>,
    /// Not after.
    pub expires_at: DateTime<Utc>,
    /// The subject's domain.
    pub domain: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("domain", &self.domain)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Issues a self-signed certificate for `domain` (a wildcard when it starts
/// with `*.`), valid for `days`.
pub fn self_signed(domain: &str, days: i64) -> Result<Issued, rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![domain.to_owned()])?;
    let now = Utc::now();
    let expires = now + chrono::Duration::days(days);
    params.not_before = to_offset(now);
    params.not_after = to_offset(expires);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, domain);
    let cert = params.self_signed(&key)?;
    Ok(Issued {
        certificate_pem: cert.pem(),
        private_key_pem: key.serialize_pem(),
        issued_at: truncate(now),
        expires_at: truncate(expires),
        domain: domain.trim_start_matches("*.").to_owned(),
    })
}

fn to_offset(t: DateTime<Utc>) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// X.509 times have whole seconds.
fn truncate(t: DateTime<Utc>) -> DateTime<Utc> {
    Utc.timestamp_opt(t.timestamp(), 0).single().unwrap_or(t)
}

/// Checks an uploaded chain and key: both parse, the key is the
/// certificate's, and the certificate is valid now. Returns what the
/// certificate says (domain, validity).
pub fn check_custom(
    certificate_pem: &str,
    private_key_pem: &str,
    requested_domain: &str,
) -> Result<Issued, ValidationErrors> {
    let mut errors = ValidationErrors::default();
    let fail = |errors: &mut ValidationErrors, field: &str, msg: String| {
        errors.push(field, FieldErrorCode::InvalidFormat, msg);
    };
    let pem = match x509_parser::pem::parse_x509_pem(certificate_pem.as_bytes()) {
        Ok((_, pem)) => pem,
        Err(e) => {
            fail(
                &mut errors,
                "certificate_pem",
                format!("not a PEM certificate: {e}"),
            );
            return Err(errors);
        }
    };
    let cert = match pem.parse_x509() {
        Ok(c) => c,
        Err(e) => {
            fail(
                &mut errors,
                "certificate_pem",
                format!("not an X.509 certificate: {e}"),
            );
            return Err(errors);
        }
    };
    let key = match KeyPair::from_pem(private_key_pem) {
        Ok(k) => k,
        Err(e) => {
            fail(
                &mut errors,
                "private_key_pem",
                format!("not a PKCS#8 PEM private key: {e}"),
            );
            return Err(errors);
        }
    };
    if key.public_key_raw() != cert.public_key().subject_public_key.data.as_ref() {
        errors.push(
            "private_key_pem",
            FieldErrorCode::InvalidFormat,
            "the key does not belong to the certificate",
        );
    }
    let not_before = Utc
        .timestamp_opt(cert.validity().not_before.timestamp(), 0)
        .single();
    let not_after = Utc
        .timestamp_opt(cert.validity().not_after.timestamp(), 0)
        .single();
    let (Some(not_before), Some(not_after)) = (not_before, not_after) else {
        fail(
            &mut errors,
            "certificate_pem",
            "validity dates out of range".into(),
        );
        return Err(errors);
    };
    if not_after <= Utc::now() {
        errors.push(
            "certificate_pem",
            FieldErrorCode::OutOfRange,
            format!("the certificate expired at {not_after}"),
        );
    }
    let names: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some((*d).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let covered = names
        .iter()
        .any(|n| n.eq_ignore_ascii_case(requested_domain));
    if !covered {
        errors.push(
            "domain",
            FieldErrorCode::InvalidFormat,
            format!(
                "the certificate does not name {requested_domain} (it names {})",
                names.join(", ")
            ),
        );
    }
    errors.into_result()?;
    Ok(Issued {
        certificate_pem: certificate_pem.to_owned(),
        private_key_pem: private_key_pem.to_owned(),
        issued_at: not_before,
        expires_at: not_after,
        domain: requested_domain.trim_start_matches("*.").to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_passes_the_custom_checks() {
        let c = self_signed("api.example.com", 30).unwrap();
        let checked =
            check_custom(&c.certificate_pem, &c.private_key_pem, "api.example.com").unwrap();
        assert_eq!(checked.expires_at, c.expires_at);
        let other = self_signed("api.example.com", 30).unwrap();
        let e = check_custom(
            &c.certificate_pem,
            &other.private_key_pem,
            "api.example.com",
        )
        .unwrap_err();
        assert_eq!(e.errors[0].field, "private_key_pem");
        let e =
            check_custom(&c.certificate_pem, &c.private_key_pem, "www.example.com").unwrap_err();
        assert_eq!(e.errors[0].field, "domain");
    }
}
