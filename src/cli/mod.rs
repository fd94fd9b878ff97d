//! The `hoard` CLI: one module per verb, each with its arguments and what it runs;
//! `main` only dispatches. This module holds what the admin verbs share: how they
//! reach a running server (`Target`, resolved through `hoard::profile`), the sizes
//! and durations they parse, and printing an answer as JSON or as text (`render`).

pub mod bucket;
pub mod cert;
pub mod gc;
pub mod lifecycle;
pub mod progress;
pub mod quota;
pub mod render;
pub mod replication;
pub mod seed;
pub mod serve;
pub mod stats;
pub mod user;
pub mod verify;

use std::path::PathBuf;

use hoard::client::AdminClient;
use hoard::profile::{Given, Profile};

/// How the admin verbs reach a running server. Unset values come from the CLI config
/// file (~/.config/hoard/cli.toml), then the defaults; see `hoard::profile`.
#[derive(clap::Args)]
pub struct Target {
    /// Endpoint of the running hoard [default: http://127.0.0.1:9000].
    #[arg(long, env = "HOARD_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Access key of a user holding the admin grant on * (or root).
    #[arg(long, env = "HOARD_ACCESS_KEY")]
    pub access_key: Option<String>,
    #[arg(long, env = "HOARD_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
    /// Data dir whose root-credentials file to use when no key is given otherwise.
    #[arg(long, env = "HOARD_DATA_DIR", default_value = "./hoard-data")]
    pub data_dir: PathBuf,
    /// [default: us-east-1]
    #[arg(long, env = "HOARD_REGION")]
    pub region: Option<String>,
    /// CA certificate (PEM) to trust for an https endpoint, e.g. the server's
    /// <data-dir>/tls/ca.pem.
    #[arg(long, env = "HOARD_CA")]
    pub ca: Option<PathBuf>,
    /// CLI config file [default: ~/.config/hoard/cli.toml].
    #[arg(long, env = "HOARD_CLI_CONFIG")]
    pub config: Option<PathBuf>,
}

/// The admin client `t` names.
pub fn client(t: Target) -> Result<AdminClient, String> {
    let p = Profile::resolve(Given {
        endpoint: t.endpoint,
        region: t.region,
        ca: t.ca,
        access_key: t.access_key,
        secret_key: t.secret_key,
        config: t.config,
        data_dir: t.data_dir,
    })
    .map_err(|e| e.to_string())?;
    AdminClient::new(&p.endpoint, &p.region, p.creds, p.ca.as_deref()).map_err(|e| e.to_string())
}

/// A size: bytes, or with KB MB GB TB (powers of 1000) or KiB MiB GiB TiB (powers
/// of 1024), as `bytesize` reads them.
pub fn parse_size(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| {
            format!(
                "not a size, or an unknown unit in {s} ({e}): use KB MB GB TB or KiB MiB GiB TiB"
            )
        })
}

/// A duration as `humantime` reads it (`90s`, `10m`, `1h 30m`, `2d`); a bare number
/// is seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(std::time::Duration::from_secs(secs));
    }
    humantime::parse_duration(s).map_err(|e| format!("not a duration: {s} ({e})"))
}

/// Prints a report as JSON or as its table.
pub fn print_report<T: serde::Serialize>(
    json: bool,
    report: &T,
    render: impl Fn(&T) -> String,
) -> Result<(), String> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", render(report));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_both_unit_families() {
        assert_eq!(parse_size("10MiB"), Ok(10 << 20));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("1 GiB"), Ok(1 << 30));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5 parsecs").is_err());
    }

    #[test]
    fn durations_take_units_or_plain_seconds() {
        use std::time::Duration;
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(2 * 86400)));
        assert!(parse_duration("soon").is_err());
    }
}
