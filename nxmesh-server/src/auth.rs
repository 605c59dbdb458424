//! Credentials: the JWT signing key, access tokens, password hashing, and
//! the opaque secrets (refresh tokens, API tokens, agent tokens and
//! credentials) that are shown once and stored only as hashes.
//!
//! Access tokens are EdDSA (Ed25519) JWTs: asymmetric, the algorithm pinned
//! when verifying, the key named by `kid` so that keys can rotate.

use std::collections::HashMap;
use std::path::Path;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{
    DecodePrivateKey, EncodePrivateKey, EncodePublicKey, spki::der::pem::LineEnding,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The issuer claim of every access token.
pub const ISSUER: &str = "nxmesh";

/// Why key material could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing the key file failed.
    #[error("key file {path}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The key file does not hold an Ed25519 PKCS#8 key.
    #[error("key file {path} is not an Ed25519 PKCS#8 PEM key")]
    Format {
        /// The file.
        path: String,
    },
    /// The operating system's random source failed.
    #[error("random source failed: {0}")]
    Random(String),
}

/// Fills `buf` from the operating system's random source.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), KeyError> {
    getrandom::fill(buf).map_err(|e| KeyError::Random(e.to_string()))
}

/// A new secret: `prefix` and 32 random bytes, base64url.
pub fn new_secret(prefix: &str) -> Result<String, KeyError> {
    let mut b = [0u8; 32];
    random_bytes(&mut b)?;
    Ok(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(b)))
}

/// The stored form of a secret: SHA-256, hex. Secrets are 256 random bits,
/// so a fast hash is enough (unlike passwords).
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Hashes a password with Argon2id and a random salt (PHC string).
pub fn hash_password(password: &str) -> Result<String, KeyError> {
    let mut salt = [0u8; 16];
    random_bytes(&mut salt)?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| KeyError::Random(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| KeyError::Random(e.to_string()))
}

/// Whether `password` matches the stored Argon2 hash.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A hash to verify against when the account does not exist, so that a
/// login for an unknown email takes as long as one for a known email.
pub fn dummy_password_hash() -> &'static str {
    use std::sync::OnceLock;
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| hash_password("not the password of anyone").unwrap_or_default())
}

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user.
    pub sub: Uuid,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Expires at (Unix seconds).
    pub exp: i64,
    /// Always [`ISSUER`].
    pub iss: String,
    /// A unique id.
    pub jti: Uuid,
}

/// Why an access token was refused. Deliberately not detailed to clients.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Not a well-formed token, wrong algorithm, bad signature, expired…
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The `kid` names no key of ours.
    #[error("unknown signing key")]
    UnknownKey,
}

/// Signs and verifies access tokens.
pub struct TokenKeys {
    kid: String,
    encoding: EncodingKey,
    decoding: HashMap<String, DecodingKey>,
    /// Lifetime of access tokens, in seconds.
    pub access_ttl: i64,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl TokenKeys {
    /// Loads the signing key from `path`, creating it (mode 0600) if absent.
    pub fn load_or_create(path: &Path, access_ttl: i64) -> Result<TokenKeys, KeyError> {
        let display = path.display().to_string();
        let io = |source| KeyError::Io {
            path: display.clone(),
            source,
        };
        let key = if path.exists() {
            let pem = std::fs::read_to_string(path).map_err(io)?;
            SigningKey::from_pkcs8_pem(&pem).map_err(|_| KeyError::Format {
                path: display.clone(),
            })?
        } else {
            let mut seed = [0u8; 32];
            random_bytes(&mut seed)?;
            let key = SigningKey::from_bytes(&seed);
            let pem = key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|_| KeyError::Format {
                    path: display.clone(),
                })?;
            write_private(path, pem.as_bytes()).map_err(io)?;
            key
        };
        Self::from_signing_key(&key, access_ttl).ok_or(KeyError::Format { path: display })
    }

    /// Keys for `key` (used by tests and embedders with their own storage).
    pub fn from_signing_key(key: &SigningKey, access_ttl: i64) -> Option<TokenKeys> {
        let private = key.to_pkcs8_pem(LineEnding::LF).ok()?;
        let public = key.verifying_key().to_public_key_pem(LineEnding::LF).ok()?;
        let kid = hex::encode(&Sha256::digest(key.verifying_key().as_bytes())[..8]);
        let encoding = EncodingKey::from_ed_pem(private.as_bytes()).ok()?;
        let decoding = DecodingKey::from_ed_pem(public.as_bytes()).ok()?;
        Some(TokenKeys {
            kid: kid.clone(),
            encoding,
            decoding: HashMap::from([(kid, decoding)]),
            access_ttl,
        })
    }

    /// The id of the current signing key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// A new access token for `user`.
    pub fn issue(&self, user: Uuid) -> Result<String, TokenError> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: user,
            iat: now,
            exp: now + self.access_ttl,
            iss: ISSUER.to_owned(),
            jti: Uuid::new_v4(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| TokenError::Invalid(e.to_string()))
    }

    /// Verifies a token: EdDSA only, a known `kid`, a valid signature, not
    /// expired, our issuer.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Invalid(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|k| self.decoding.get(k))
            .ok_or(TokenError::UnknownKey)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "sub", "iss"]);
        validation.leeway = 5;
        jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map(|d| d.claims)
            .map_err(|e| TokenError::Invalid(e.to_string()))
    }
}

/// Writes a file readable only by its owner (created with mode 0600, so
/// that it is never briefly readable by others).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::from_signing_key(&SigningKey::from_bytes(&[7u8; 32]), 900).unwrap()
    }

    #[test]
    fn issue_and_verify() {
        let k = keys();
        let u = Uuid::new_v4();
        let t = k.issue(u).unwrap();
        assert_eq!(k.verify(&t).unwrap().sub, u);
    }

    #[test]
    fn another_key_is_refused() {
        let other = TokenKeys::from_signing_key(&SigningKey::from_bytes(&[8u8; 32]), 900).unwrap();
        let t = other.issue(Uuid::new_v4()).unwrap();
        assert!(matches!(keys().verify(&t), Err(TokenError::UnknownKey)));
    }

    #[test]
    fn passwords() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "not a hash"));
    }
}
