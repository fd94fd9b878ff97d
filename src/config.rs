//! `config` owns hoard's settings: the config file, `HOARD_*` environment variables
//! and command-line flags, and every default. Precedence, lowest first: defaults,
//! the TOML file (`--config`), environment, flags.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::meta::{BucketRecord, ChunkParams};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid setting: {0}")]
    Invalid(String),
}

/// Chunking settings as written in config (bytes). `min`/`max` default to avg/4 and
/// avg*4.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct ChunkingConfig {
    pub avg: Option<u32>,
    pub min: Option<u32>,
    pub max: Option<u32>,
}

pub const MIN_AVG_CHUNK: u32 = 16 * 1024;
pub const MAX_AVG_CHUNK: u32 = 4 * 1024 * 1024;
/// The largest chunk any setting can cut (a maximum of four times the largest
/// average); a chunk claiming more is not one of ours.
pub const MAX_CHUNK: u32 = 16 * 1024 * 1024;

impl ChunkingConfig {
    /// Resolves to concrete, valid FastCDC parameters.
    pub fn resolve(&self, fallback: ChunkParams) -> Result<ChunkParams, ConfigError> {
        let avg = self.avg.unwrap_or(fallback.avg);
        if !(MIN_AVG_CHUNK..=MAX_AVG_CHUNK).contains(&avg) {
            return Err(ConfigError::Invalid(format!(
                "average chunk size {avg} is outside {MIN_AVG_CHUNK}..={MAX_AVG_CHUNK}"
            )));
        }
        let same_avg = self.avg.is_none() || self.avg == Some(fallback.avg);
        let min = self
            .min
            .unwrap_or(if same_avg { fallback.min } else { avg / 4 });
        let max = self.max.unwrap_or(if same_avg {
            fallback.max
        } else {
            (avg * 4).min(MAX_CHUNK)
        });
        if !(min >= 64 && min <= avg && avg <= max && max <= MAX_CHUNK) {
            return Err(ConfigError::Invalid(format!(
                "chunk sizes must satisfy 64 <= min {min} <= avg {avg} <= max {max} <= 16 MiB"
            )));
        }
        // FastCDC wants even sizes.
        Ok(ChunkParams {
            min: min & !1,
            avg: avg & !1,
            max: max & !1,
        })
    }
}

/// Per-bucket settings applied when that bucket is created.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct BucketDefaults {
    #[serde(default)]
    pub chunking: ChunkingConfig,
    pub compression_level: Option<i32>,
}

/// The whole configuration, as read from the TOML file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// S3 (and admin, metrics) listener.
    pub listen: SocketAddr,
    /// Everything hoard stores lives under here.
    pub data_dir: PathBuf,
    /// Region reported by GetBucketLocation and accepted in signatures.
    pub region: String,
    /// Base domains for virtual-hosted-style requests (`bucket.DOMAIN`).
    pub domains: Vec<String>,
    /// Concurrent ingest streams (PUT bodies) at most.
    pub max_streams: usize,
    /// How long a PUT waits for a stream slot before 503 SlowDown, in milliseconds.
    pub stream_wait_ms: u64,
    /// Default chunking for new buckets.
    pub chunking: ChunkingConfig,
    /// zstd level for chunk compression.
    pub compression_level: i32,
    /// Target size of a segment in bytes.
    pub segment_size: usize,
    /// Bodies up to this size are kept inline in metadata instead of being chunked.
    pub inline_max: usize,
    /// Page cache of the metadata database, in MiB.
    pub meta_cache_mib: usize,
    /// Where the metadata lives: none for redb under the data dir (the embedded
    /// default), or a PostgreSQL URL (`postgres://user:password@host:5432/db`) that
    /// every gateway of a scale-out shares.
    pub meta: Option<String>,
    /// Connections to PostgreSQL one gateway opens at most.
    pub meta_connections: u32,
    /// A PEM file of the CA certificates PostgreSQL's server certificate must chain
    /// to: the connection is then encrypted when the server offers TLS, and must be
    /// with `sslmode=require` in the URL.
    pub meta_ca: Option<PathBuf>,
    /// A gateway that has not renewed its lease for this many seconds is taken for
    /// dead: the others release the references its uploads in flight held.
    pub meta_lease_secs: u64,
    /// Chunks the in-memory "seen before?" filter is sized for (grows on restart).
    pub filter_expected_chunks: u64,
    /// Segment ids whose chunk lists the locality cache keeps.
    pub locality_segments: usize,
    /// Ranged segment reads a GET keeps in flight.
    pub get_prefetch: usize,
    /// Largest single ranged read a GET issues, in bytes.
    pub get_read_max: usize,
    /// A client must send a request's headers within this many seconds (slow clients
    /// are cut off).
    pub header_timeout_secs: u64,
    /// A request body that brings no byte for this many seconds is aborted with
    /// `400 RequestTimeout`, releasing its stream slot; a slow body that keeps
    /// moving is never cut.
    pub body_idle_timeout_secs: u64,
    /// Multipart uploads not completed or aborted within this many seconds are
    /// aborted by a background task, releasing their parts.
    pub multipart_max_age_secs: u64,
    /// The largest file a browser POST upload may carry: s3s holds the file in
    /// memory before the upload is stored, so this bounds a request's memory.
    pub post_max_bytes: u64,
    /// Where segments live.
    pub segments: SegmentsConfig,
    /// A cloud tier behind the local segments (mode "tiered"); none by default.
    pub tier: Option<TierConfig>,
    /// The cleaner (garbage collection and compaction).
    pub cleaner: CleanerConfig,
    /// The background scrub.
    pub scrub: ScrubConfig,
    /// Replication from this hoard's buckets.
    pub replication: ReplicationConfig,
    /// The web dashboard at `/ui/`.
    pub ui: UiConfig,
    /// Buckets' lifecycle rules, carried out by a background pass.
    pub lifecycle: LifecycleConfig,
    /// The retention clock Object Lock judges expiry by.
    pub retention: crate::retention::RetentionSettings,
    /// TLS on the listener.
    pub tls: TlsConfig,
    /// A second listener serving plain HTTP while `listen` serves TLS (for backup
    /// software that needs HTTP); none by default.
    pub listen_plain: Option<SocketAddr>,
    /// Settings for buckets created with these names.
    pub buckets: HashMap<String, BucketDefaults>,
    /// Log filter (tracing-subscriber env-filter syntax).
    pub log: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 9000)),
            data_dir: PathBuf::from("./hoard-data"),
            region: "us-east-1".into(),
            domains: vec!["localhost".into()],
            max_streams: 64,
            stream_wait_ms: 10_000,
            chunking: ChunkingConfig {
                avg: Some(64 * 1024),
                min: Some(16 * 1024),
                max: Some(256 * 1024),
            },
            compression_level: 1,
            segment_size: 4 * 1024 * 1024,
            inline_max: 16 * 1024,
            meta_cache_mib: 64,
            meta: None,
            meta_connections: 16,
            meta_ca: None,
            meta_lease_secs: 30,
            filter_expected_chunks: 8 * 1024 * 1024,
            locality_segments: 256,
            get_prefetch: 4,
            get_read_max: 4 * 1024 * 1024,
            header_timeout_secs: 60,
            body_idle_timeout_secs: 60,
            multipart_max_age_secs: 7 * 24 * 3600,
            post_max_bytes: 64 * 1024 * 1024,
            segments: SegmentsConfig::default(),
            tier: None,
            cleaner: CleanerConfig::default(),
            scrub: ScrubConfig::default(),
            replication: ReplicationConfig::default(),
            ui: UiConfig::default(),
            lifecycle: LifecycleConfig::default(),
            retention: Default::default(),
            tls: TlsConfig::default(),
            listen_plain: None,
            buckets: HashMap::new(),
            // s3s logs every client error at ERROR level; hoard logs what matters itself.
            log: "info,s3s=off".into(),
        }
    }
}

/// `[segments]` in the config file: which OpenDAL service holds the segments, with
/// that service's settings in the sub-table of its name (`[segments.s3]`). Another
/// service (gcs, azblob) would be one more `Backend` value, its OpenDAL feature and
/// its own settings table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SegmentsConfig {
    pub backend: Backend,
    pub s3: Option<crate::segments::S3Settings>,
    /// Seal every chunk payload and trailer (AES-256-GCM) under a key derived from
    /// the secrets key. Chosen when a store is created (default: on for an object
    /// store, off for local files) and fixed from then on.
    pub encrypt: Option<bool>,
    /// The restore cache in front of an object store (modes "cloud", "tiered").
    pub cache: crate::segments::CacheSettings,
}

/// `[tier]`: a cloud tier behind local segments (mode "tiered"). Segments are
/// written locally; the mover copies sealed segments to the tier's bucket by policy
/// and then gives up their local files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    /// Segments older than this move ("7d", "12h", "0s"); without it only bucket
    /// policies (`hoard bucket tier`) and free space move segments.
    pub after: Option<String>,
    /// While the data dir's file system has less than this percentage free, the
    /// oldest local segments move whatever their age.
    pub min_free_percent: Option<u8>,
    /// Seconds between the mover's passes (and its first wait after an error).
    #[serde(default = "TierConfig::default_interval_secs")]
    pub interval_secs: u64,
    /// The tier's bucket, as `[segments.s3]`.
    pub s3: crate::segments::S3Settings,
}

impl TierConfig {
    fn default_interval_secs() -> u64 {
        60
    }

    /// `after` in seconds.
    pub fn after_secs(&self) -> Result<Option<u64>, ConfigError> {
        self.after
            .as_deref()
            .map(|a| {
                humantime::parse_duration(a)
                    .map(|d| d.as_secs())
                    .map_err(|e| ConfigError::Invalid(format!("tier.after = {a:?}: {e}")))
            })
            .transpose()
    }
}

/// Where segments live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Files under `<data_dir>/segments` (the embedded default).
    #[default]
    Fs,
    /// An S3-compatible bucket, `[segments.s3]` (mode "cloud").
    S3,
}

/// `[cleaner]` in the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CleanerConfig {
    /// Seconds a chunk's reference count must have been zero before it is dead; also
    /// how long a compacted segment's file stays for readers that looked it up.
    pub grace_secs: u64,
    /// Segments whose live bytes are below this percentage of their size are compacted.
    pub sparse_percent: u64,
    /// Seconds before a segment file no metadata names (left by a crash) is removed.
    pub orphan_grace_secs: u64,
    /// Daily window (UTC, "HH:MM-HH:MM") in which one pass runs; none by default.
    pub window: Option<String>,
    /// Run a pass once no S3 request came for this many minutes (after requests
    /// since the last pass); 0 turns it off.
    pub idle_minutes: f64,
    /// How often the schedule is checked, in seconds.
    pub check_secs: u64,
    /// Percentage of wall time a pass may work while uploads stream in; it pauses
    /// between steps for the rest.
    pub busy_percent: u64,
}

impl Default for CleanerConfig {
    fn default() -> Self {
        CleanerConfig {
            grace_secs: 600,
            sparse_percent: 50,
            orphan_grace_secs: 24 * 3600,
            window: None,
            idle_minutes: 0.0,
            check_secs: 60,
            busy_percent: 25,
        }
    }
}

/// `[tls]` in the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Serve HTTPS on `listen`. Without `cert`/`key`, a private CA and a server
    /// certificate are generated under `<data_dir>/tls/` on first start.
    pub enabled: bool,
    /// Your own PEM certificate chain and private key (reloaded on SIGHUP).
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Key type of generated certificates.
    pub key_type: crate::tls::KeyType,
    /// Extra names for the generated server certificate (besides `domains`,
    /// localhost, 127.0.0.1, ::1 and the machine's host name).
    pub hostnames: Vec<String>,
}

impl TlsConfig {
    /// The certificate and key files to serve, when TLS is on.
    pub fn files(&self, data_dir: &Path) -> Option<crate::tls::TlsFiles> {
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some(crate::tls::TlsFiles {
                ca: None,
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ if self.enabled => Some(crate::tls::TlsFiles::generated(data_dir)),
            _ => None,
        }
    }
}

/// `[scrub]` in the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScrubConfig {
    /// Segment bytes read and verified per second, in MiB; 0 turns the scrub off.
    pub rate_mib: f64,
    /// A new cycle over the whole store starts at most this often, in seconds.
    pub cycle_secs: u64,
}

impl Default for ScrubConfig {
    fn default() -> Self {
        ScrubConfig {
            rate_mib: 8.0,
            cycle_secs: 7 * 24 * 3600,
        }
    }
}

/// `[replication]` in the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicationConfig {
    /// A rule whose backlog holds more events than this is warned about (log,
    /// `hoard replication status`); 0: never.
    pub backlog_warn_events: u64,
    /// ... or whose oldest waiting change is older than this many seconds; 0: never.
    pub backlog_warn_age_secs: u64,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            backlog_warn_events: 100_000,
            backlog_warn_age_secs: 24 * 3600,
        }
    }
}

/// `[ui]` in the config file: the web dashboard.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiConfig {
    /// Serve the dashboard at `/ui/` on the S3 listener.
    pub enabled: bool,
    /// A session ends this many seconds after sign-in.
    pub session_secs: u64,
    /// Seconds between two points of the storage history it charts.
    pub sample_secs: u64,
    /// Sign-in attempts one client address may make per minute (a burst of as many).
    pub signins_per_minute: u32,
    /// Seconds between two refreshes of an open page.
    pub refresh_secs: u64,
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            enabled: true,
            session_secs: 8 * 3600,
            sample_secs: 300,
            signins_per_minute: 10,
            refresh_secs: 5,
        }
    }
}

/// `[lifecycle]` in the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleConfig {
    /// Seconds between two passes over the buckets with lifecycle rules; 0 runs
    /// passes only on demand (`hoard lifecycle run`). S3 counts lifecycle days to
    /// midnight UTC, so an hourly pass acts within the hour a version is due.
    pub interval_secs: u64,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            interval_secs: 3600,
        }
    }
}

/// Overrides from the environment and flags (clap fills these; `None` = not given).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Overrides {
    /// TOML config file.
    #[arg(long = "config", env = "HOARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Listen address for S3, admin and metrics.
    #[arg(long, env = "HOARD_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Data directory.
    #[arg(long, env = "HOARD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL URL of the shared metadata (scale-out); redb under the data dir if
    /// none.
    #[arg(long, env = "HOARD_META")]
    pub meta: Option<String>,
    /// Connections to PostgreSQL this gateway opens at most.
    #[arg(long, env = "HOARD_META_CONNECTIONS")]
    pub meta_connections: Option<u32>,
    /// CA certificates (PEM) for TLS to PostgreSQL.
    #[arg(long, env = "HOARD_META_CA")]
    pub meta_ca: Option<PathBuf>,
    /// Seconds without a lease renewal after which a gateway is taken for dead.
    #[arg(long, env = "HOARD_META_LEASE_SECS")]
    pub meta_lease_secs: Option<u64>,
    /// Region name.
    #[arg(long, env = "HOARD_REGION")]
    pub region: Option<String>,
    /// Base domain(s) for virtual-hosted-style requests, comma separated.
    #[arg(long, env = "HOARD_DOMAINS", value_delimiter = ',')]
    pub domains: Option<Vec<String>>,
    /// Concurrent ingest streams at most.
    #[arg(long, env = "HOARD_MAX_STREAMS")]
    pub max_streams: Option<usize>,
    /// Milliseconds a PUT waits for a stream slot before 503 SlowDown.
    #[arg(long, env = "HOARD_STREAM_WAIT_MS")]
    pub stream_wait_ms: Option<u64>,
    /// Default average chunk size for new buckets, bytes.
    #[arg(long, env = "HOARD_CHUNK_AVG")]
    pub chunk_avg: Option<u32>,
    /// zstd level for chunks.
    #[arg(long, env = "HOARD_COMPRESSION_LEVEL")]
    pub compression_level: Option<i32>,
    /// Seconds after which an unfinished multipart upload is aborted.
    #[arg(long, env = "HOARD_MULTIPART_MAX_AGE_SECS")]
    pub multipart_max_age_secs: Option<u64>,
    /// Seconds a request body may bring no byte before it is aborted.
    #[arg(long, env = "HOARD_BODY_IDLE_TIMEOUT_SECS")]
    pub body_idle_timeout_secs: Option<u64>,
    /// Log filter.
    #[arg(long, env = "HOARD_LOG")]
    pub log: Option<String>,
    /// Serve HTTPS (a private CA and certificate are generated under <data-dir>/tls/
    /// unless --tls-cert and --tls-key are given).
    #[arg(long, env = "HOARD_TLS")]
    pub tls: bool,
    /// Your own PEM certificate chain (implies --tls); reloaded on SIGHUP.
    #[arg(long, env = "HOARD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "HOARD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Key type of generated certificates.
    #[arg(long, env = "HOARD_TLS_KEY_TYPE", value_enum)]
    pub tls_key_type: Option<crate::tls::KeyType>,
    /// Also serve plain HTTP on this address while --listen serves TLS.
    #[arg(long, env = "HOARD_LISTEN_PLAIN")]
    pub listen_plain: Option<SocketAddr>,
}

impl Config {
    /// Defaults, then the file, then the overrides.
    pub fn load(o: &Overrides) -> Result<Config, ConfigError> {
        let mut c = match &o.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        macro_rules! set {
            ($($f:ident),*) => {$( if let Some(v) = &o.$f { c.$f = v.clone(); } )*};
        }
        set!(
            listen,
            data_dir,
            region,
            domains,
            max_streams,
            stream_wait_ms,
            compression_level,
            multipart_max_age_secs,
            body_idle_timeout_secs,
            meta_connections,
            meta_lease_secs,
            log
        );
        if o.meta.is_some() {
            c.meta = o.meta.clone();
        }
        if o.meta_ca.is_some() {
            c.meta_ca = o.meta_ca.clone();
        }
        if o.tls {
            c.tls.enabled = true;
        }
        if let (Some(cert), Some(key)) = (&o.tls_cert, &o.tls_key) {
            (c.tls.cert, c.tls.key, c.tls.enabled) = (Some(cert.clone()), Some(key.clone()), true);
        }
        if let Some(k) = o.tls_key_type {
            c.tls.key_type = k;
        }
        if o.listen_plain.is_some() {
            c.listen_plain = o.listen_plain;
        }
        if let Some(avg) = o.chunk_avg {
            c.chunking = ChunkingConfig {
                avg: Some(avg),
                min: None,
                max: None,
            };
        }
        c.validate()?;
        Ok(c)
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source: Box::new(source),
        })
    }

    /// Whether a new store seals when `segments.encrypt` is not set: yes when any
    /// segment leaves the machine (modes "cloud" and "tiered").
    pub fn seals_by_default(&self) -> bool {
        self.segments.backend != Backend::Fs || self.tier.is_some()
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.default_chunking()?;
        for (name, b) in &self.buckets {
            b.chunking
                .resolve(self.default_chunking()?)
                .map_err(|e| ConfigError::Invalid(format!("bucket {name}: {e}")))?;
        }
        if self.segments.backend == Backend::S3 && self.segments.s3.is_none() {
            return Err(ConfigError::Invalid(
                "segments.backend = \"s3\" needs a [segments.s3] table (bucket, endpoint, ...)"
                    .into(),
            ));
        }
        if let Some(t) = &self.tier {
            if self.segments.backend != Backend::Fs {
                return Err(ConfigError::Invalid(
                    "[tier] adds a cloud tier behind local segments: it needs segments.backend = \"fs\"".into(),
                ));
            }
            t.after_secs()?;
            if t.min_free_percent.is_some_and(|p| p > 99) {
                return Err(ConfigError::Invalid(
                    "tier.min_free_percent must be below 100".into(),
                ));
            }
        }
        if let Some(w) = &self.cleaner.window {
            parse_window(w).map_err(ConfigError::Invalid)?;
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(ConfigError::Invalid(
                "tls.cert and tls.key go together".into(),
            ));
        }
        if self.listen_plain.is_some() && self.tls.files(&self.data_dir).is_none() {
            return Err(ConfigError::Invalid(
                "listen_plain is for a plain HTTP listener beside a TLS one; turn TLS on, or use listen".into(),
            ));
        }
        if self.retention.catch_up_per_day_secs > 86_400 {
            return Err(ConfigError::Invalid(
                "retention.catch_up_per_day_secs is at most 86400 (a day per day)".into(),
            ));
        }
        if self.max_streams == 0 {
            return Err(ConfigError::Invalid(
                "max_streams must be at least 1".into(),
            ));
        }
        if self.segment_size < 64 * 1024 {
            return Err(ConfigError::Invalid(
                "segment_size must be at least 64 KiB".into(),
            ));
        }
        if !(-7..=22).contains(&self.compression_level) {
            return Err(ConfigError::Invalid(
                "compression_level must be within -7..=22".into(),
            ));
        }
        Ok(())
    }

    /// The chunking every new bucket gets unless its own settings say otherwise.
    pub fn default_chunking(&self) -> Result<ChunkParams, ConfigError> {
        let base = ChunkParams {
            min: 16 * 1024,
            avg: 64 * 1024,
            max: 256 * 1024,
        };
        self.chunking.resolve(base)
    }

    /// The settings a new bucket gets: explicit ones, else the bucket's entry in the
    /// config file, else the defaults.
    pub fn bucket_record(
        &self,
        name: &str,
        chunking: Option<ChunkingConfig>,
        compression_level: Option<i32>,
    ) -> Result<BucketRecord, ConfigError> {
        let per_bucket = self.buckets.get(name);
        let base = match per_bucket {
            Some(b) => b.chunking.resolve(self.default_chunking()?)?,
            None => self.default_chunking()?,
        };
        let params = match chunking {
            Some(c) => c.resolve(base)?,
            None => base,
        };
        let level = compression_level
            .or(per_bucket.and_then(|b| b.compression_level))
            .unwrap_or(self.compression_level);
        if !(-7..=22).contains(&level) {
            return Err(ConfigError::Invalid(
                "compression_level must be within -7..=22".into(),
            ));
        }
        Ok(BucketRecord {
            created_ms: crate::meta::now_ms(),
            chunking: params,
            compression_level: level,
            versioning: crate::meta::Versioning::Unversioned,
            tags: Vec::new(),
            object_lock: None,
        })
    }

    pub fn stream_wait(&self) -> Duration {
        Duration::from_millis(self.stream_wait_ms)
    }

    pub fn meta_path(&self) -> PathBuf {
        self.data_dir.join("meta.redb")
    }
}

/// Parses "HH:MM-HH:MM" into minutes after midnight.
pub fn parse_window(w: &str) -> Result<(u32, u32), String> {
    let minutes = |t: &str| -> Option<u32> {
        let (h, m) = t.trim().split_once(':')?;
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
    };
    w.split_once('-')
        .and_then(|(a, b)| Some((minutes(a)?, minutes(b)?)))
        .filter(|(a, b)| a != b)
        .ok_or_else(|| format!("a window must look like \"01:00-05:00\" (UTC), not {w:?}"))
}

/// Whether `minute` (after midnight) falls in the window [start, end).
pub fn in_window((start, end): (u32, u32), minute: u32) -> bool {
    if start < end {
        (start..end).contains(&minute)
    } else {
        minute >= start || minute < end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunking_resolution_scales_min_and_max_with_avg() {
        let c = ChunkingConfig {
            avg: Some(1024 * 1024),
            min: None,
            max: None,
        };
        let p = c
            .resolve(ChunkParams {
                min: 16384,
                avg: 65536,
                max: 262144,
            })
            .unwrap();
        assert_eq!(
            p,
            ChunkParams {
                min: 262144,
                avg: 1048576,
                max: 4194304
            }
        );
        let bad = ChunkingConfig {
            avg: Some(8 * 1024),
            min: None,
            max: None,
        };
        assert!(bad.resolve(p).is_err());
    }

    #[test]
    fn file_then_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hoard.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:9100\"\nmax_streams = 3\n[buckets.big]\nchunking = { avg = 1048576 }\n").unwrap();
        let o = Overrides {
            config: Some(path),
            max_streams: Some(5),
            ..Overrides::default()
        };
        let c = Config::load(&o).unwrap();
        assert_eq!(c.listen.port(), 9100);
        assert_eq!(c.max_streams, 5);
        assert_eq!(c.buckets["big"].chunking.avg, Some(1048576));
    }

    #[test]
    fn the_s3_backend_needs_its_settings_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hoard.toml");
        std::fs::write(&path, "[segments]\nbackend = \"s3\"\n").unwrap();
        let refused = Config::from_file(&path).and_then(|c| c.validate().map(|()| c));
        assert!(refused.is_err(), "{refused:?}");
        std::fs::write(
            &path,
            "[segments]\nbackend = \"s3\"\n[segments.s3]\nbucket = \"segs\"\nendpoint = \"http://127.0.0.1:9100\"\n",
        )
        .unwrap();
        let c = Config::from_file(&path).unwrap();
        c.validate().unwrap();
        assert_eq!(c.segments.backend, Backend::S3);
        let s3 = c.segments.s3.unwrap();
        assert_eq!(
            (s3.bucket.as_str(), s3.timeout_secs, s3.retries),
            ("segs", 60, 4)
        );
        std::fs::write(&path, "[segments]\nbackend = \"gcs\"\n").unwrap();
        assert!(
            Config::from_file(&path).is_err(),
            "an unknown backend is refused"
        );
        assert_eq!(Config::default().segments.backend, Backend::Fs);
    }

    #[test]
    fn the_retention_catch_up_can_be_lowered_but_not_raised_above_a_day() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hoard.toml");
        assert_eq!(Config::default().retention.catch_up_per_day_secs, 3600);
        std::fs::write(&path, "[retention]\ncatch_up_per_day_secs = 0\n").unwrap();
        let c = Config::from_file(&path).unwrap();
        c.validate().unwrap();
        assert_eq!(c.retention.catch_up_per_day_secs, 0);
        std::fs::write(&path, "[retention]\ncatch_up_per_day_secs = 86401\n").unwrap();
        let refused = Config::from_file(&path).and_then(|c| c.validate().map(|()| c));
        assert!(refused.is_err(), "{refused:?}");
    }

    #[test]
    fn a_tier_needs_local_segments_and_a_valid_age() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hoard.toml");
        let tier = "[tier]\nafter = \"7d\"\nmin_free_percent = 15\n[tier.s3]\nbucket = \"cold\"\n";
        std::fs::write(&path, tier).unwrap();
        let c = Config::from_file(&path).unwrap();
        c.validate().unwrap();
        let t = c.tier.as_ref().unwrap();
        assert_eq!(t.after_secs().unwrap(), Some(7 * 86_400));
        assert_eq!((t.interval_secs, t.min_free_percent), (60, Some(15)));
        assert!(c.seals_by_default());
        assert!(!Config::default().seals_by_default());
        for bad in [
            tier.replace("7d", "a week"),
            tier.replace("15", "100"),
            format!("[segments]\nbackend = \"s3\"\n[segments.s3]\nbucket = \"x\"\n{tier}"),
        ] {
            std::fs::write(&path, &bad).unwrap();
            let c = Config::from_file(&path).unwrap();
            assert!(c.validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_settings_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hoard.toml");
        std::fs::write(&path, "listne = \"127.0.0.1:9100\"\n").unwrap();
        assert!(Config::from_file(&path).is_err());
    }

    #[test]
    fn windows_parse_and_wrap_past_midnight() {
        assert_eq!(parse_window("01:00-05:00"), Ok((60, 300)));
        let night = parse_window("22:30-02:00").unwrap();
        assert!(in_window(night, 23 * 60));
        assert!(in_window(night, 60));
        assert!(!in_window(night, 12 * 60));
        assert!(!in_window((60, 300), 300));
        for bad in ["1-5", "01:00", "25:00-01:00", "01:60-02:00", "03:00-03:00"] {
            assert!(parse_window(bad).is_err(), "{bad}");
        }
    }
}
