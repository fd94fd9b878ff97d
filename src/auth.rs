//! `auth` owns the root credentials (the SigV4 secret lookup for every user is in
//! `users`).
//!
//! Root credentials come from `HOARD_ROOT_ACCESS_KEY` / `HOARD_ROOT_SECRET_KEY`, or
//! from `<data-dir>/root-credentials` (mode 0600), which is generated on first start.
//! The secret is never logged.

use std::path::{Path, PathBuf};

use rand::Rng;

pub const ENV_ACCESS_KEY: &str = "HOARD_ROOT_ACCESS_KEY";
pub const ENV_SECRET_KEY: &str = "HOARD_ROOT_SECRET_KEY";
const FILE_NAME: &str = "root-credentials";

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("credentials file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("credentials file {0} is malformed")]
    Malformed(PathBuf),
    #[error("set both {ENV_ACCESS_KEY} and {ENV_SECRET_KEY}, or neither")]
    HalfSet,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key: String,
    pub secret_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key", &self.access_key)
            .finish_non_exhaustive()
    }
}

/// Where the root credentials came from.
pub enum Origin {
    Environment,
    File,
    Generated(PathBuf),
}

impl Credentials {
    /// `HOARD_ROOT_ACCESS_KEY` and `HOARD_ROOT_SECRET_KEY`, if set.
    pub fn from_env() -> Result<Option<Credentials>, AuthError> {
        match (
            std::env::var(ENV_ACCESS_KEY).ok(),
            std::env::var(ENV_SECRET_KEY).ok(),
        ) {
            (Some(a), Some(s)) if !a.is_empty() && !s.is_empty() => Ok(Some(Credentials {
                access_key: a,
                secret_key: s,
            })),
            (None, None) => Ok(None),
            _ => Err(AuthError::HalfSet),
        }
    }

    /// Reads the credentials file of a data dir, if present.
    pub fn from_data_dir(data_dir: &Path) -> Result<Option<Credentials>, AuthError> {
        let path = data_dir.join(FILE_NAME);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(AuthError::Io { path, source }),
        };
        let field = |name: &str| {
            text.lines().find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|r| r.strip_prefix('='))
                    .map(|v| v.trim().to_owned())
            })
        };
        match (field("access_key"), field("secret_key")) {
            (Some(a), Some(s)) if !a.is_empty() && !s.is_empty() => Ok(Some(Credentials {
                access_key: a,
                secret_key: s,
            })),
            _ => Err(AuthError::Malformed(path)),
        }
    }

    /// Environment, else the data dir's file, else newly generated into that file.
    pub fn load_or_generate(data_dir: &Path) -> Result<(Credentials, Origin), AuthError> {
        if let Some(c) = Self::from_env()? {
            return Ok((c, Origin::Environment));
        }
        if let Some(c) = Self::from_data_dir(data_dir)? {
            return Ok((c, Origin::File));
        }
        let c = Credentials::generate();
        let path = data_dir.join(FILE_NAME);
        write_private(
            &path,
            &format!("access_key={}\nsecret_key={}\n", c.access_key, c.secret_key),
        )
        .map_err(|source| AuthError::Io {
            path: path.clone(),
            source,
        })?;
        Ok((c, Origin::Generated(path)))
    }

    /// A fresh random key pair (20-character access key, 40-character secret).
    pub fn generate() -> Credentials {
        const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        const ANY: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut rng = rand::rng();
        let mut pick = |set: &[u8], n: usize| -> String {
            (0..n)
                .map(|_| set[rng.random_range(0..set.len())] as char)
                .collect()
        };
        Credentials {
            access_key: format!("HOARD{}", pick(UPPER, 15)),
            secret_key: pick(ANY, 40),
        }
    }
}

/// Writes `text` durably (`durable`) to a file readable by its owner only.
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    crate::durable::write(path, text.as_bytes(), 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_credentials_persist_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let c = Credentials::generate();
        write_private(
            &path,
            &format!("access_key={}\nsecret_key={}\n", c.access_key, c.secret_key),
        )
        .unwrap();
        assert_eq!(Credentials::from_data_dir(dir.path()).unwrap(), Some(c));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        std::fs::write(&path, "nonsense").unwrap();
        assert!(Credentials::from_data_dir(dir.path()).is_err());
    }
}
