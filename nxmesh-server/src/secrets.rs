//! Encryption at rest of private keys (TLS keys, ACME account keys) with a
//! key that lives in a file of its own, never in the database.

use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

use crate::auth::{KeyError, random_bytes, write_private};

/// Why a sealed value could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("sealed value is corrupt or was sealed with another key")]
pub struct OpenError;

/// Seals and opens secrets with ChaCha20-Poly1305; each value carries its
/// own random nonce.
pub struct SecretBox {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox { .. }")
    }
}

const NONCE_LEN: usize = 12;

impl SecretBox {
    /// Loads the 32-byte key from `path`, creating it (mode 0600) if absent.
    pub fn load_or_create(path: &Path) -> Result<SecretBox, KeyError> {
        let display = path.display().to_string();
        let bytes = if path.exists() {
            std::fs::read(path).map_err(|source| KeyError::Io {
                path: display.clone(),
                source,
            })?
        } else {
            let mut k = [0u8; 32];
            random_bytes(&mut k)?;
            write_private(path, &k).map_err(|source| KeyError::Io {
                path: display.clone(),
                source,
            })?;
            k.to_vec()
        };
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| KeyError::Format { path: display })?;
        Ok(SecretBox::new(key))
    }

    /// A box with this key.
    pub fn new(key: [u8; 32]) -> SecretBox {
        SecretBox {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
        }
    }

    /// Encrypts `plaintext`: nonce followed by ciphertext and tag.
    pub fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut nonce = [0u8; NONCE_LEN];
        random_bytes(&mut nonce)?;
        let mut out = nonce.to_vec();
        let ct = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext)
            .map_err(|_| KeyError::Random("encryption failed".into()))?;
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Decrypts what [`seal`](Self::seal) produced.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        if sealed.len() < NONCE_LEN {
            return Err(OpenError);
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), ct)
            .map_err(|_| OpenError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open() {
        let b = SecretBox::new([1; 32]);
        let s = b.seal(b"private key").unwrap();
        assert_ne!(&s[NONCE_LEN..], b"private key");
        assert_eq!(b.open(&s).unwrap(), b"private key");
        assert!(SecretBox::new([2; 32]).open(&s).is_err());
        let mut tampered = s.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(b.open(&tampered).is_err());
    }
}
