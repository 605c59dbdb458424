//! Encryption at rest of private keys (TLS keys, ACME account keys) with
//! AES-256-GCM under keys that live outside the database: in a key file or
//! in the environment.
//!
//! A keyring holds one or more keys, each with a short id. The newest key
//! (the last one listed) seals; any key of the ring opens. A sealed value
//! starts with a header naming the key that sealed it, so a key can be
//! rotated by appending a new one and keeping the old ones until every value
//! has been sealed again.
//!
//! Keyring text (file or `NXMESH_SECRET_KEYS`): one key per line (or per
//! comma), `<id>:<base64 of 32 bytes>`; blank lines and `#` comments are
//! ignored. Ids are 1 to 32 characters of `[A-Za-z0-9_-]`.
//!
//! Sealed layout: `0x01` (format), the id's length (one byte), the id, a
//! 12-byte random nonce, then the ciphertext and its tag. The format byte and
//! the id are authenticated as associated data, so a value cannot be made to
//! name another key.

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::auth::{KeyError, random_bytes, write_private};

/// Why a sealed value could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The value is not in the sealed layout.
    #[error("sealed value is malformed")]
    Malformed,
    /// The value names a key the keyring does not hold.
    #[error("sealed value names key {0:?}, which is not in the keyring")]
    UnknownKey(String),
    /// Authentication failed: the value was altered or the key with its id
    /// is not the one that sealed it.
    #[error("sealed value is corrupt or was sealed with another key of the same id")]
    Corrupt,
}

/// Why a keyring could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// A line is not `<id>:<base64 of 32 bytes>`.
    #[error("keyring entry {line}: {reason}")]
    Entry {
        /// The 1-based entry number.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two entries have the same id.
    #[error("keyring has key id {0:?} twice")]
    Duplicate(String),
    /// No key at all.
    #[error("keyring is empty")]
    Empty,
    /// The key file could not be read or created.
    #[error(transparent)]
    Key(#[from] KeyError),
}

const FORMAT: u8 = 1;
const NONCE_LEN: usize = 12;
const MAX_ID_LEN: usize = 32;

struct Entry {
    id: String,
    cipher: Aes256Gcm,
}

/// Seals and opens secrets with AES-256-GCM under a keyring (see the module
/// documentation); each value carries its own random nonce.
pub struct SecretBox {
    /// Oldest first; the last one seals.
    keys: Vec<Entry>,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretBox")
            .field("key_ids", &self.key_ids())
            .finish_non_exhaustive()
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl SecretBox {
    /// A box with the single key `key`, id `k1`.
    pub fn new(key: [u8; 32]) -> SecretBox {
        SecretBox {
            keys: vec![Entry {
                id: "k1".to_owned(),
                cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key)),
            }],
        }
    }

    /// Parses keyring text (see the module documentation).
    pub fn from_keyring(text: &str) -> Result<SecretBox, KeyringError> {
        let mut keys: Vec<Entry> = Vec::new();
        let entries = text
            .split(['\n', ','])
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        for (i, entry) in entries.enumerate() {
            let line = i + 1;
            let bad = |reason| KeyringError::Entry { line, reason };
            let (id, b64) = entry
                .split_once(':')
                .ok_or(bad("expected <id>:<base64 key>"))?;
            let id = id.trim();
            if !valid_id(id) {
                return Err(bad("the id must be 1 to 32 characters of [A-Za-z0-9_-]"));
            }
            let bytes = STANDARD
                .decode(b64.trim())
                .map_err(|_| bad("the key is not base64"))?;
            let key: [u8; 32] = bytes
                .try_into()
                .map_err(|_| bad("the key must be 32 bytes"))?;
            if keys.iter().any(|k| k.id == id) {
                return Err(KeyringError::Duplicate(id.to_owned()));
            }
            keys.push(Entry {
                id: id.to_owned(),
                cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key)),
            });
        }
        if keys.is_empty() {
            return Err(KeyringError::Empty);
        }
        Ok(SecretBox { keys })
    }

    /// Loads the keyring from `path`, creating it (mode 0600, one new key
    /// with id `k1`) if absent.
    pub fn load_or_create(path: &Path) -> Result<SecretBox, KeyringError> {
        let display = path.display().to_string();
        let text = if path.exists() {
            std::fs::read_to_string(path).map_err(|source| KeyError::Io {
                path: display.clone(),
                source,
            })?
        } else {
            let line = new_keyring_entry("k1")?;
            write_private(path, line.as_bytes()).map_err(|source| KeyError::Io {
                path: display.clone(),
                source,
            })?;
            line
        };
        SecretBox::from_keyring(&text)
    }

    /// The ids of the keyring, oldest first; the last one seals.
    pub fn key_ids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.id.as_str()).collect()
    }

    fn current(&self) -> &Entry {
        self.keys
            .last()
            .expect("a keyring is never empty: every constructor checks")
    }

    /// Encrypts `plaintext` under the newest key.
    pub fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, KeyError> {
        let key = self.current();
        let mut nonce = [0u8; NONCE_LEN];
        random_bytes(&mut nonce)?;
        let mut out = Vec::with_capacity(2 + key.id.len() + NONCE_LEN + plaintext.len() + 16);
        out.push(FORMAT);
        out.push(key.id.len() as u8);
        out.extend_from_slice(key.id.as_bytes());
        let header_len = out.len();
        let ct = key
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &out[..header_len],
                },
            )
            .map_err(|_| KeyError::Random("encryption failed".into()))?;
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// The id of the key that sealed `sealed`, if it is in the sealed layout.
    pub fn sealed_key_id(sealed: &[u8]) -> Option<&str> {
        let (&format, rest) = sealed.split_first()?;
        let (&len, rest) = rest.split_first()?;
        if format != FORMAT || rest.len() < usize::from(len) {
            return None;
        }
        std::str::from_utf8(&rest[..usize::from(len)]).ok()
    }

    /// Whether `sealed` was sealed under a key other than the newest: a
    /// rotation is complete once nothing needs resealing.
    pub fn needs_reseal(&self, sealed: &[u8]) -> bool {
        SecretBox::sealed_key_id(sealed) != Some(self.current().id.as_str())
    }

    /// Decrypts what [`seal`](Self::seal) produced under any key of the ring.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        let id = SecretBox::sealed_key_id(sealed).ok_or(OpenError::Malformed)?;
        let header_len = 2 + id.len();
        if sealed.len() < header_len + NONCE_LEN {
            return Err(OpenError::Malformed);
        }
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| OpenError::UnknownKey(id.to_owned()))?;
        let (header, rest) = sealed.split_at(header_len);
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        key.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: header,
                },
            )
            .map_err(|_| OpenError::Corrupt)
    }

    /// Opens `sealed` and seals it again under the newest key.
    pub fn reseal(&self, sealed: &[u8]) -> Result<Vec<u8>, ResealError> {
        let plain = self.open(sealed)?;
        Ok(self.seal(&plain)?)
    }
}

/// Why a value could not be sealed again.
#[derive(Debug, thiserror::Error)]
pub enum ResealError {
    /// It could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// It could not be sealed.
    #[error(transparent)]
    Seal(#[from] KeyError),
}

/// A new keyring entry `<id>:<base64 of 32 random bytes>` with a trailing
/// newline: append it to the keyring file to rotate.
pub fn new_keyring_entry(id: &str) -> Result<String, KeyError> {
    let mut k = [0u8; 32];
    random_bytes(&mut k)?;
    Ok(format!("{id}:{}\n", STANDARD.encode(k)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open() {
        let b = SecretBox::new([1; 32]);
        let s = b.seal(b"private key").unwrap();
        assert_eq!(SecretBox::sealed_key_id(&s), Some("k1"));
        assert!(!s.windows(11).any(|w| w == b"private key"));
        assert_eq!(b.open(&s).unwrap(), b"private key");
        assert!(matches!(
            SecretBox::new([2; 32]).open(&s),
            Err(OpenError::Corrupt)
        ));
        let mut tampered = s.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(matches!(b.open(&tampered), Err(OpenError::Corrupt)));
        assert!(matches!(b.open(&s[..5]), Err(OpenError::Malformed)));
    }

    #[test]
    fn rotation_keeps_old_values_readable() {
        let old_line = new_keyring_entry("2025").unwrap();
        let old = SecretBox::from_keyring(&old_line).unwrap();
        let sealed_old = old.seal(b"account key").unwrap();

        let new_line = new_keyring_entry("2026").unwrap();
        let ring = SecretBox::from_keyring(&format!("# rotated\n{old_line}\n{new_line}")).unwrap();
        assert_eq!(ring.key_ids(), ["2025", "2026"]);
        assert_eq!(ring.open(&sealed_old).unwrap(), b"account key");
        assert!(ring.needs_reseal(&sealed_old));
        let sealed_new = ring.reseal(&sealed_old).unwrap();
        assert_eq!(SecretBox::sealed_key_id(&sealed_new), Some("2026"));
        assert!(!ring.needs_reseal(&sealed_new));

        // The old box alone cannot open what the new key sealed.
        assert!(matches!(
            old.open(&sealed_new),
            Err(OpenError::UnknownKey(id)) if id == "2026"
        ));
    }

    #[test]
    fn the_key_id_is_authenticated() {
        let a = new_keyring_entry("a").unwrap();
        let b = a.replacen("a:", "b:", 1);
        let ring = SecretBox::from_keyring(&format!("{a},{b}")).unwrap();
        let sealed = ring.seal(b"x").unwrap();
        // Same key bytes under another id: the header no longer matches.
        let mut renamed = sealed.clone();
        renamed[2] = b'a';
        assert!(matches!(ring.open(&renamed), Err(OpenError::Corrupt)));
    }

    #[test]
    fn bad_keyrings_are_refused() {
        assert!(matches!(
            SecretBox::from_keyring(""),
            Err(KeyringError::Empty)
        ));
        assert!(matches!(
            SecretBox::from_keyring("k1:AAAA"),
            Err(KeyringError::Entry { line: 1, .. })
        ));
        assert!(matches!(
            SecretBox::from_keyring("bad id:AAAA"),
            Err(KeyringError::Entry { .. })
        ));
        let e = new_keyring_entry("x").unwrap();
        assert!(matches!(
            SecretBox::from_keyring(&format!("{e}{e}")),
            Err(KeyringError::Duplicate(_))
        ));
    }

    #[test]
    fn key_file_is_created_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("nxmesh-secrets-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secret.keys");
        let b = SecretBox::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let sealed = b.seal(b"k").unwrap();
        let again = SecretBox::load_or_create(&path).unwrap();
        assert_eq!(again.open(&sealed).unwrap(), b"k");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
