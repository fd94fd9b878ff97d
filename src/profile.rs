//! `profile` owns where the `hoard` CLI finds the server it talks to: endpoint,
//! region, CA and keys. Each comes from the first of:
//!
//! 1. a flag, or its environment variable (`--endpoint`/`HOARD_ENDPOINT`,
//!    `--region`/`HOARD_REGION`, `--ca`/`HOARD_CA`,
//!    `--access-key`/`HOARD_ACCESS_KEY` with `--secret-key`/`HOARD_SECRET_KEY`);
//! 2. for the keys only, `HOARD_ROOT_ACCESS_KEY`/`HOARD_ROOT_SECRET_KEY`;
//! 3. the CLI config file: `--config`/`HOARD_CLI_CONFIG`, else
//!    `$XDG_CONFIG_HOME/hoard/cli.toml`, else `~/.config/hoard/cli.toml`;
//! 4. for the keys only, the root-credentials file of `--data-dir` (a CLI on the
//!    server's own machine);
//! 5. the defaults: `http://127.0.0.1:9000`, `us-east-1`, no CA.
//!
//! A config file that holds a secret and is readable by others gets a warning.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::auth::Credentials;

pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:9000";
pub const DEFAULT_REGION: &str = "us-east-1";

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("CLI config {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("CLI config {path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("give both an access key and a secret key ({0})")]
    HalfKey(&'static str),
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    #[error(
        "no credentials: give --access-key and --secret-key, set them in the CLI config file, \
         or point --data-dir at the server's data dir"
    )]
    NoCredentials,
}

/// The contents of `cli.toml`; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CliFile {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub ca: Option<PathBuf>,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
}

/// What the command line and environment said.
#[derive(Debug, Default)]
pub struct Given {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub ca: Option<PathBuf>,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    pub config: Option<PathBuf>,
    pub data_dir: PathBuf,
}

/// Everything the CLI needs to reach the server.
#[derive(Debug)]
pub struct Profile {
    pub endpoint: String,
    pub region: String,
    pub ca: Option<PathBuf>,
    pub creds: Credentials,
}

impl Profile {
    pub fn resolve(given: Given) -> Result<Profile, ProfileError> {
        let file = match &given.config {
            Some(path) => read_file(path, true)?,
            None => match default_path() {
                Some(path) => read_file(&path, false)?,
                None => CliFile::default(),
            },
        };
        let mut creds = pair(given.access_key, given.secret_key, "flags or environment")?;
        if creds.is_none() {
            creds = Credentials::from_env()?;
        }
        if creds.is_none() {
            creds = pair(file.access_key, file.secret_key, "CLI config")?;
        }
        if creds.is_none() {
            creds = Credentials::from_data_dir(&given.data_dir)?;
        }
        let creds = creds.ok_or(ProfileError::NoCredentials)?;
        Ok(Profile {
            endpoint: given
                .endpoint
                .or(file.endpoint)
                .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned()),
            region: given
                .region
                .or(file.region)
                .unwrap_or_else(|| DEFAULT_REGION.to_owned()),
            ca: given.ca.or(file.ca),
            creds,
        })
    }
}

fn pair(
    access_key: Option<String>,
    secret_key: Option<String>,
    from: &'static str,
) -> Result<Option<Credentials>, ProfileError> {
    match (access_key, secret_key) {
        (Some(access_key), Some(secret_key)) => Ok(Some(Credentials {
            access_key,
            secret_key,
        })),
        (None, None) => Ok(None),
        _ => Err(ProfileError::HalfKey(from)),
    }
}

fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("hoard").join("cli.toml"))
}

/// Reads a config file; a missing file is an error only when it was named.
fn read_file(path: &Path, named: bool) -> Result<CliFile, ProfileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !named => {
            return Ok(CliFile::default());
        }
        Err(source) => {
            return Err(ProfileError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    let file: CliFile = toml::from_str(&text).map_err(|e| ProfileError::Syntax {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    #[cfg(unix)]
    if file.secret_key.is_some() {
        use std::os::unix::fs::PermissionsExt;
        if std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0) {
            eprintln!(
                "hoard: warning: {} holds a secret key and others can read it; chmod 600 it",
                path.display()
            );
        }
    }
    Ok(file)
}
