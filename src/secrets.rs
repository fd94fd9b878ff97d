//! `secrets` owns the secrets key and sealing with it: AES-256-GCM (ring) under a
//! 32-byte key from `HOARD_SECRETS_KEY` (64 hex digits; keep it apart from the data),
//! else `<data-dir>/secrets.key` (mode 0600, created and synced on first start). Users' secrets and replication targets' secrets are stored
//! only sealed; a value sealed under one key never opens under another. Keys for
//! other purposes (the segments' data key) are derived from it, never the key itself.

use std::path::{Path, PathBuf};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

pub const ENV_SECRETS_KEY: &str = "HOARD_SECRETS_KEY";
const KEY_FILE: &str = "secrets.key";

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("secrets key file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the secrets key ({0}) must be 64 hex digits")]
    MalformedKey(String),
    #[error("generating a key failed")]
    Random,
}

/// Seals and opens secrets with the store's secrets key.
pub struct SecretBox {
    key: LessSafeKey,
    /// Keyed BLAKE3 of the key, for keys derived from it (`derive_key`).
    kdf: [u8; 32],
    rng: SystemRandom,
}

impl SecretBox {
    /// The key from the environment, else the data dir's key file, else a new one
    /// written there.
    pub fn load_or_generate(data_dir: &Path) -> Result<SecretBox, SecretsError> {
        let rng = SystemRandom::new();
        let hex_key = match std::env::var(ENV_SECRETS_KEY) {
            Ok(v) if !v.is_empty() => v,
            _ => Self::key_file(data_dir, &rng)?,
        };
        let bytes = hex::decode(hex_key.trim())
            .ok()
            .filter(|b| b.len() == 32)
            .ok_or_else(|| SecretsError::MalformedKey(ENV_SECRETS_KEY.to_owned()))?;
        let key = UnboundKey::new(&AES_256_GCM, &bytes)
            .map_err(|_| SecretsError::MalformedKey(ENV_SECRETS_KEY.to_owned()))?;
        Ok(SecretBox {
            key: LessSafeKey::new(key),
            kdf: blake3::derive_key("hoard secrets key derivation v1", &bytes),
            rng,
        })
    }

    fn key_file(data_dir: &Path, rng: &SystemRandom) -> Result<String, SecretsError> {
        let path = data_dir.join(KEY_FILE);
        let io = |source| SecretsError::Io {
            path: path.clone(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => return Ok(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        let mut key = [0u8; 32];
        rng.fill(&mut key).map_err(|_| SecretsError::Random)?;
        let text = format!("{}\n", hex::encode(key));
        crate::auth::write_private(&path, &text).map_err(io)?;
        Ok(text)
    }

    /// A box whose key is derived from a passphrase (PBKDF2-HMAC-SHA256 over
    /// `salt`), for data that travels outside the store, like a seed.
    pub fn from_passphrase(passphrase: &str, salt: &[u8]) -> SecretBox {
        let mut key = [0u8; 32];
        ring::pbkdf2::derive(
            ring::pbkdf2::PBKDF2_HMAC_SHA256,
            std::num::NonZeroU32::new(PASSPHRASE_ROUNDS).unwrap_or(std::num::NonZeroU32::MIN),
            salt,
            passphrase.as_bytes(),
            &mut key,
        );
        SecretBox {
            key: LessSafeKey::new(
                UnboundKey::new(&AES_256_GCM, &key).unwrap_or_else(|_| unreachable!("32-byte key")),
            ),
            kdf: blake3::derive_key("hoard secrets key derivation v1", &key),
            rng: SystemRandom::new(),
        }
    }

    /// A 32-byte key for `purpose`, derived from the secrets key: the same key and
    /// purpose always give the same bytes, and nothing about the secrets key or
    /// another purpose's key can be learned from them.
    pub fn derive_key(&self, purpose: &str) -> [u8; 32] {
        *blake3::keyed_hash(&self.kdf, purpose.as_bytes()).as_bytes()
    }

    /// nonce || ciphertext || tag, with `access_key` (what the secret belongs to) as
    /// associated data, so a sealed value cannot be moved to another owner.
    pub fn seal(&self, access_key: &str, secret: &str) -> Result<Vec<u8>, SecretsError> {
        self.seal_bytes(access_key, secret.as_bytes().to_vec())
    }

    pub fn open(&self, access_key: &str, sealed: &[u8]) -> Option<String> {
        String::from_utf8(self.open_bytes(access_key, sealed.to_vec())?).ok()
    }

    /// Seals `data` in place: nonce || ciphertext || tag, `label` as associated data.
    pub fn seal_bytes(&self, label: &str, mut data: Vec<u8>) -> Result<Vec<u8>, SecretsError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| SecretsError::Random)?;
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(label.as_bytes()),
                &mut data,
            )
            .map_err(|_| SecretsError::Random)?;
        data.splice(0..0, nonce);
        Ok(data)
    }

    /// Opens what `seal_bytes` sealed under the same `label`; `None` when the key
    /// or label differ or a byte changed.
    pub fn open_bytes(&self, label: &str, mut sealed: Vec<u8>) -> Option<Vec<u8>> {
        let nonce = Nonce::try_assume_unique_for_key(sealed.get(..NONCE_LEN)?).ok()?;
        let plain_len = self
            .key
            .open_within(nonce, Aad::from(label.as_bytes()), &mut sealed, NONCE_LEN..)
            .ok()?
            .len();
        sealed.truncate(plain_len);
        Some(sealed)
    }
}

/// PBKDF2 rounds for a passphrase key.
const PASSPHRASE_ROUNDS: u32 = 200_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_access_key() {
        let dir = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let a = SecretBox::load_or_generate(dir.path()).unwrap();
        let sealed = a.seal("AK1", "the secret").unwrap();
        assert!(!sealed.windows(10).any(|w| w == b"the secret"));
        assert_eq!(a.open("AK1", &sealed).as_deref(), Some("the secret"));
        // The key persists in the data dir.
        let again = SecretBox::load_or_generate(dir.path()).unwrap();
        assert_eq!(again.open("AK1", &sealed).as_deref(), Some("the secret"));
        // Another access key, another secrets key, or a flipped bit: refused.
        assert_eq!(a.open("AK2", &sealed), None);
        let b = SecretBox::load_or_generate(other.path()).unwrap();
        assert_eq!(b.open("AK1", &sealed), None);
        let mut flipped = sealed.clone();
        flipped[NONCE_LEN] ^= 1;
        assert_eq!(a.open("AK1", &flipped), None);
    }
}
