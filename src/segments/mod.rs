//! `segments` owns the segment store: the key layout, durable writes, ranged reads
//! and listing, on local files or through OpenDAL on an object store, and whether
//! the store seals what it writes; a cloud tier behind local files (mode "tiered").
//! The bytes of one segment are `format`'s; sealing (AES-256-GCM) is `seal`'s; the
//! restore cache in front of an object store is `cache`'s.
//!
//! Invariants:
//! - `write` returns only once the segment is durable: on the local backend it writes
//!   a temporary file in `<data>/tmp`, fsyncs it, renames it into place and fsyncs
//!   the fan-out directory so that the rename itself survives a crash; a guard
//!   removes the temporary file on every error path. On an object store (`s3`,
//!   through OpenDAL) it is one PutObject carrying the segment's Content-MD5: the
//!   store makes the object visible whole or not at all, refuses a body that does not
//!   match its MD5 (`400 BadDigest`), and its 200 is its promise of durability. So
//!   "temp name, fsync, rename" becomes "one checked PUT", and a failed or
//!   interrupted write leaves no object under the segment's key on either backend.
//! - A segment written but never indexed (the gateway died between the PUT or the
//!   rename and the index commit) is an orphan: `list` finds every segment on either
//!   backend (a directory walk, or an OpenDAL listing of `segments/`) and the cleaner
//!   removes those no row names.
//! - Every call to an object store has a timeout, is retried with backoff and jitter
//!   on transient errors, and waits for one of `max_requests` slots: none can hang.
//! - Keys are `segments/<2 hex>/<16 hex id>`; the fan-out directory is the id's low
//!   byte, so sequential ids spread evenly over 256 directories.
//! - A store holds one kind of segment, sealed or plain, and belongs to one key:
//!   `hoard-store.json`, written when the store is first opened, records both, and
//!   `bind_key` refuses another key (by name: "sealed under another secrets key",
//!   never "corrupt") and a change of `encrypt`. A sealing store gives the object
//!   store only ciphertext and sizes; every read of a payload opens it
//!   (`open_payload`), and a payload that does not open is corrupt.

use std::ops::Range;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::StreamExt;
use opendal::Operator;
use opendal::layers::{
    ConcurrentLimitLayer, LoggingLayer, PrometheusClientLayer, RetryLayer, TimeoutLayer,
};
use serde::{Deserialize, Serialize};

use crate::meta::ChunkId;

mod cache;
mod format;
mod seal;

pub use cache::{CacheCounters, CacheSettings};
pub use format::{SegmentBuilder, TrailerEntry};
pub use seal::SegmentKey;

#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("segment store: {0}")]
    Store(#[from] opendal::Error),
    #[error("segment store I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("segment {segment:016x} is corrupt: {reason}")]
    Corrupt { segment: u64, reason: String },
    #[error(
        "the segments were sealed under another secrets key (key check {found}; this \
         secrets key's is {expected}): start hoard with the secrets key the store was \
         created with"
    )]
    WrongKey { found: String, expected: String },
    #[error("{0}")]
    Settings(String),
    #[error("segment cache: {0}")]
    Cache(String),
}

impl SegmentError {
    /// Whether the segment is not in the store at all (the only error that may be
    /// taken to mean "missing": any other read error says nothing about the data).
    pub fn is_not_found(&self) -> bool {
        match self {
            SegmentError::Io(e) => e.kind() == std::io::ErrorKind::NotFound,
            SegmentError::Store(e) => e.kind() == opendal::ErrorKind::NotFound,
            _ => false,
        }
    }

    /// Whether an object store could not be reached or did not answer in time (after
    /// its retries): the request may succeed later, nothing about the data is known.
    pub fn is_unavailable(&self) -> bool {
        match self {
            SegmentError::Store(e) => matches!(
                e.kind(),
                opendal::ErrorKind::Unexpected | opendal::ErrorKind::RateLimited
            ),
            _ => false,
        }
    }
}

/// `[segments.s3]`: an S3-compatible bucket through OpenDAL's `s3` service. Keys and
/// secrets not given here come from the standard AWS environment and files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    /// `http(s)://host:port`; AWS's own endpoint when not given.
    pub endpoint: Option<String>,
    pub bucket: String,
    /// Key prefix inside the bucket, so several stores can share one bucket.
    #[serde(default)]
    pub prefix: String,
    pub region: Option<String>,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    /// `bucket.host` addressing instead of `host/bucket` (path style, the default).
    #[serde(default)]
    pub virtual_hosted: bool,
    /// Longest wait for one call (and for each read or write of its body), seconds.
    #[serde(default = "S3Settings::default_timeout_secs")]
    pub timeout_secs: u64,
    /// Retries of a call that failed with a transient error.
    #[serde(default = "S3Settings::default_retries")]
    pub retries: usize,
    /// Calls in flight at most.
    #[serde(default = "S3Settings::default_max_requests")]
    pub max_requests: usize,
}

impl S3Settings {
    fn default_timeout_secs() -> u64 {
        60
    }
    fn default_retries() -> usize {
        4
    }
    fn default_max_requests() -> usize {
        64
    }
}

/// `hoard-store.json` at the root of a store, written when it is first opened:
/// whether its segments are sealed, and the check of the key they belong to.
#[derive(Debug, Serialize, Deserialize)]
struct StoreMarker {
    sealed: bool,
    key_check: String,
}

const MARKER: &str = "hoard-store.json";

/// The segment store over one OpenDAL operator.
#[derive(Clone)]
pub struct SegmentStore {
    op: Operator,
    /// Set for the local `fs` backend: where the fan-out directories live, so that a
    /// write can fsync its directory.
    local_root: Option<PathBuf>,
    /// Set when the store seals what it writes (and so opens what it reads).
    key: Option<SegmentKey>,
    /// The cloud tier behind a local store (mode "tiered").
    tier: Option<Operator>,
    /// The restore cache in front of the object store, when there is one.
    cache: Option<std::sync::Arc<cache::SegmentCache>>,
}

impl SegmentStore {
    /// The embedded default: segments under `<data_dir>/segments`.
    pub fn open_local(data_dir: &Path) -> Result<SegmentStore, SegmentError> {
        let tmp = data_dir.join("tmp");
        // Leftovers of interrupted writes are never named by anything.
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        std::fs::create_dir_all(&tmp)?;
        let root = data_dir.join("segments");
        let mut created = false;
        for fan in 0..=255u8 {
            let d = root.join(format!("{fan:02x}"));
            if !d.exists() {
                std::fs::create_dir_all(&d)?;
                created = true;
            }
        }
        if created {
            fsync_dir(&root)?;
            fsync_dir(data_dir)?;
        }
        let builder = opendal::services::Fs::default()
            .root(&data_dir.to_string_lossy())
            .atomic_write_dir(&tmp.to_string_lossy());
        let op = Operator::new(builder)?;
        Ok(SegmentStore {
            op,
            local_root: Some(root),
            key: None,
            tier: None,
            cache: None,
        })
    }

    /// Segments in an S3-compatible bucket (`backend = "s3"`); `observe` counts and
    /// times every call to it.
    pub fn open_s3(
        s: &S3Settings,
        observe: &PrometheusClientLayer,
    ) -> Result<SegmentStore, SegmentError> {
        Ok(SegmentStore {
            op: s3_operator(s, observe)?,
            local_root: None,
            key: None,
            tier: None,
            cache: None,
        })
    }

    /// Adds a cloud tier behind a local store (mode "tiered"): new segments are
    /// written locally; `copy_to_tier` and `drop_local` move them; a read of a
    /// segment whose local file is gone goes to the tier.
    pub fn with_tier(
        mut self,
        s: &S3Settings,
        observe: &PrometheusClientLayer,
    ) -> Result<SegmentStore, SegmentError> {
        self.tier = Some(s3_operator(s, observe)?);
        Ok(self)
    }

    /// Puts a restore cache (files under `dir`) in front of the object store; a
    /// store of local files alone needs none and is left as it is.
    pub async fn with_cache(
        mut self,
        dir: &Path,
        s: &CacheSettings,
    ) -> Result<SegmentStore, SegmentError> {
        if self.remote().is_some() {
            self.cache = Some(std::sync::Arc::new(
                cache::SegmentCache::open(dir, s).await?,
            ));
        }
        Ok(self)
    }

    /// What the restore cache did since start (none without one).
    pub fn cache_counters(&self) -> Option<CacheCounters> {
        self.cache.as_ref().map(|c| c.counters())
    }

    /// Whether the store has a cloud tier.
    pub fn is_tiered(&self) -> bool {
        self.tier.is_some()
    }

    /// Binds the store to the secrets key's data key. The first time a store is
    /// opened, `hoard-store.json` records whether it seals (`seal`, else
    /// `seal_default`) and the key's check; every later open must bring the same key,
    /// and may not change whether it seals: a store holds one kind of segment.
    pub async fn bind_key(
        mut self,
        key: SegmentKey,
        seal: Option<bool>,
        seal_default: bool,
    ) -> Result<SegmentStore, SegmentError> {
        let check = hex::encode(key.check());
        let sealed = match self.read_marker().await? {
            Some(m) if m.key_check != check => {
                return Err(SegmentError::WrongKey {
                    found: m.key_check,
                    expected: check,
                });
            }
            Some(m) => match seal {
                Some(want) if want != m.sealed => {
                    return Err(SegmentError::Settings(format!(
                        "segments.encrypt = {want}, but this store was created with encrypt = {}: \
                         whether a store seals its segments is chosen once, when it is created",
                        m.sealed
                    )));
                }
                _ => m.sealed,
            },
            None => {
                let sealed = seal.unwrap_or(seal_default);
                if sealed && !self.list().await?.is_empty() {
                    return Err(SegmentError::Settings(
                        "this store already holds unsealed segments: encryption is chosen \
                         once, when a store is created (set segments.encrypt = false)"
                            .into(),
                    ));
                }
                self.write_marker(&StoreMarker {
                    sealed,
                    key_check: check,
                })
                .await?;
                sealed
            }
        };
        self.key = sealed.then_some(key);
        Ok(self)
    }

    /// Whether the store answers now (a gateway's `/ready`): its marker is read.
    pub async fn ping(&self) -> Result<(), SegmentError> {
        self.read_marker().await.map(|_| ())
    }

    async fn read_marker(&self) -> Result<Option<StoreMarker>, SegmentError> {
        let bytes = match self.op.read(MARKER).await {
            Ok(b) => b.to_vec(),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| SegmentError::Settings(format!("{MARKER}: {e}")))
    }

    async fn write_marker(&self, m: &StoreMarker) -> Result<(), SegmentError> {
        let text = serde_json::to_vec_pretty(m)
            .map_err(|e| SegmentError::Settings(format!("{MARKER}: {e}")))?;
        match &self.local_root {
            Some(root) => {
                let path = root.with_file_name(MARKER);
                blocking(move || crate::durable::write(&path, &text, 0o644)).await?;
            }
            None => self.op.write(MARKER, text).await.map(drop)?,
        }
        Ok(())
    }

    /// Whether new segments are sealed.
    pub fn seals(&self) -> bool {
        self.key.is_some()
    }

    /// A builder for a new segment, sealing when the store does.
    pub fn builder(&self, capacity: usize) -> SegmentBuilder {
        SegmentBuilder::new(capacity, self.key.clone())
    }

    /// Parses and checks a whole segment's header and trailer.
    pub fn parse_trailer(
        &self,
        segment: u64,
        data: &[u8],
    ) -> Result<Vec<TrailerEntry>, SegmentError> {
        format::parse_trailer(segment, data, self.key.as_ref())
    }

    /// A chunk's payload from what its segment holds at its location: opened when
    /// the store seals, as it is otherwise.
    pub fn open_payload(
        &self,
        segment: u64,
        id: &ChunkId,
        stored: Bytes,
    ) -> Result<Bytes, SegmentError> {
        let Some(key) = &self.key else {
            return Ok(stored);
        };
        key.open_chunk(id, &stored).ok_or_else(|| {
            self.forget_cached(segment);
            SegmentError::Corrupt {
                segment,
                reason: format!("chunk {} does not open: its bytes changed", hex::encode(id)),
            }
        })
    }

    /// Drops the restore cache's copy of a segment: one deleted, or one a chunk
    /// failed its check in, so that the next read fetches the store's bytes again
    /// (mended by then, or still damaged and reported again), not the copy kept of
    /// the damage.
    pub fn forget_cached(&self, segment: u64) {
        if let Some(c) = &self.cache {
            c.forget(segment);
        }
    }

    pub fn key(id: u64) -> String {
        format!("segments/{:02x}/{id:016x}", id & 0xff)
    }

    /// Writes a whole segment durably (see the module invariants). On the local
    /// backend the write is done here, on one blocking thread, without OpenDAL's
    /// extra buffer copy: temp file, fsync, rename, fsync of the directory.
    pub async fn write(&self, id: u64, data: Bytes) -> Result<(), SegmentError> {
        match (self.local_path(id), &self.local_root) {
            (Some(path), Some(root)) => {
                let tmp = root.with_file_name("tmp").join(format!("{id:016x}.seg"));
                blocking(move || crate::durable::write_via(&tmp, &path, &data, 0o644)).await?;
            }
            _ => self.op.write(&Self::key(id), data).await.map(drop)?,
        }
        Ok(())
    }

    /// Reads `range` (byte offsets within the segment).
    ///
    /// On the local backend this is one positional read on a blocking thread:
    /// OpenDAL's `fs` reader moves data through extra buffers, which costs GET a
    /// tenth of its throughput. A tiered store reads a segment whose local file is
    /// gone from the tier.
    pub async fn read_range(&self, id: u64, range: Range<u64>) -> Result<Bytes, SegmentError> {
        let want = range.end - range.start;
        let bytes = match self.local_path(id) {
            Some(path) => {
                let r = range.clone();
                match blocking(move || read_at(&path, r)).await {
                    Err(e) if e.is_not_found() && self.tier.is_some() => {
                        self.read_remote(id, Some(range), true).await?
                    }
                    r => r?,
                }
            }
            None => self.read_remote(id, Some(range), true).await?,
        };
        if bytes.len() as u64 != want {
            return Err(SegmentError::Corrupt {
                segment: id,
                reason: format!("short read: {} of {want} bytes", bytes.len()),
            });
        }
        Ok(bytes)
    }

    /// Starts fetching segments that a reader will want next into the restore cache,
    /// in the order given and at most `[segments.cache] read_ahead` at a time, so that
    /// a restore from an object store streams instead of waiting for each segment in
    /// turn. The reader's own reads join these fetches. Does nothing without a cache;
    /// skips segments that have a local file.
    pub fn read_ahead(&self, ids: Vec<u64>) {
        let Some(depth) = self.cache.as_ref().map(|c| c.read_ahead).filter(|d| *d > 0) else {
            return;
        };
        let store = self.clone();
        tokio::spawn(async move {
            let store = &store;
            futures::stream::iter(ids)
                .for_each_concurrent(depth, |id| async move {
                    if let Some(path) = store.local_path(id)
                        && tokio::fs::try_exists(path).await.unwrap_or(false)
                    {
                        return;
                    }
                    if let Err(e) = store.read_remote(id, None, true).await {
                        tracing::debug!(segment = id, error = %e, "read-ahead failed");
                    }
                })
                .await;
        });
    }

    /// Reads a whole segment from the store itself, never from the restore cache:
    /// verify, scrub and repair check what the store holds (from the tier when the
    /// local file is gone).
    pub async fn read_all(&self, id: u64) -> Result<Bytes, SegmentError> {
        match self.local_path(id) {
            Some(path) => match tokio::fs::read(path).await {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.tier.is_some() => {
                    self.read_remote(id, None, false).await
                }
                r => Ok(Bytes::from(r?)),
            },
            None => self.read_remote(id, None, false).await,
        }
    }

    /// The object store behind the local files: the bucket of mode "cloud", the
    /// tier of mode "tiered"; none for local files alone.
    fn remote(&self) -> Option<&Operator> {
        match self.local_root {
            None => Some(&self.op),
            Some(_) => self.tier.as_ref(),
        }
    }

    async fn read_remote(
        &self,
        id: u64,
        range: Option<Range<u64>>,
        cached: bool,
    ) -> Result<Bytes, SegmentError> {
        let Some(op) = self.remote() else {
            return Err(std::io::Error::from(std::io::ErrorKind::NotFound).into());
        };
        let key = Self::key(id);
        if let Some(cache) = self.cache.as_ref().filter(|_| cached) {
            // Whole segments are cached: a restore reads every one of them anyway.
            let whole = cache
                .get(id, || fetch_whole(op.clone(), key.clone()))
                .await?;
            return Ok(match range {
                Some(r) => {
                    let end = (r.end as usize).min(whole.len());
                    whole.slice((r.start as usize).min(end)..end)
                }
                None => whole,
            });
        }
        let read = op.read_with(&key);
        let read = match range {
            Some(r) => read.range(r),
            None => read,
        };
        Ok(read.await?.to_bytes())
    }

    /// Deletes a segment (its local file and its object, as the store has them);
    /// deleting one that is already gone succeeds.
    pub async fn delete(&self, id: u64) -> Result<(), SegmentError> {
        if let Some(path) = self.local_path(id) {
            match tokio::fs::remove_file(&path).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        if let Some(op) = self.remote() {
            op.delete(&Self::key(id)).await?;
        }
        self.forget_cached(id);
        Ok(())
    }

    /// Moves a damaged segment out of the store, to `quarantine/<id>` (under the data
    /// dir for a local file, under the prefix for an object), where an operator can
    /// inspect it; nothing reads it there. Moving one that is already gone succeeds.
    pub async fn quarantine(&self, id: u64) -> Result<(), SegmentError> {
        self.forget_cached(id);
        if let (Some(path), Some(root)) = (self.local_path(id), &self.local_root) {
            let dir = root.with_file_name("quarantine");
            let to = dir.join(format!("{id:016x}"));
            blocking(move || -> std::io::Result<()> {
                std::fs::create_dir_all(&dir)?;
                match std::fs::rename(&path, &to) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                    _ => {
                        fsync_dir(&dir)?;
                        path.parent().map_or(Ok(()), fsync_dir)
                    }
                }
            })
            .await?;
        }
        if let Some(op) = self.remote() {
            let key = Self::key(id);
            if op.exists(&key).await? {
                op.copy(&key, &format!("quarantine/{id:016x}")).await?;
                op.delete(&key).await?;
            }
        }
        Ok(())
    }

    /// Ids and modification times of every segment in the store: a walk of the
    /// fan-out directories for local files, an OpenDAL listing of an object store,
    /// both for a tiered store (the later time where a segment is in both).
    pub async fn list(&self) -> Result<Vec<(u64, std::time::SystemTime)>, SegmentError> {
        let mut found = std::collections::HashMap::new();
        if let Some(root) = self.local_root.clone() {
            found.extend(blocking(move || list_local(&root)).await?);
        }
        if let Some(op) = self.remote() {
            for (id, t) in list_objects(op).await? {
                let seen = found.entry(id).or_insert(t);
                *seen = (*seen).max(t);
            }
        }
        Ok(found.into_iter().collect())
    }

    /// Copies a local segment to the tier and reads the copy back: returns its size
    /// once the tier holds exactly the local bytes. The local file stays.
    pub async fn copy_to_tier(&self, id: u64) -> Result<u64, SegmentError> {
        let (Some(tier), Some(path)) = (&self.tier, self.local_path(id)) else {
            return Err(SegmentError::Settings("the store has no tier".into()));
        };
        let data = Bytes::from(tokio::fs::read(&path).await?);
        let key = Self::key(id);
        tier.write(&key, data.clone()).await?;
        let back = tier.read(&key).await?.to_bytes();
        if back.len() != data.len() || blake3::hash(&back) != blake3::hash(&data) {
            tier.delete(&key).await?;
            return Err(SegmentError::Corrupt {
                segment: id,
                reason: "the tier's copy read back differs from the local file".into(),
            });
        }
        Ok(data.len() as u64)
    }

    /// Removes a segment's local file once its tier copy is recorded.
    pub async fn drop_local(&self, id: u64) -> Result<(), SegmentError> {
        let Some(path) = self.local_path(id) else {
            return Ok(());
        };
        blocking(move || match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => path.parent().map_or(Ok(()), fsync_dir),
        })
        .await
    }

    /// Whether a segment has a local file (a tiered store's segments may not).
    pub fn is_local(&self, id: u64) -> bool {
        self.local_path(id).is_some_and(|p| p.exists())
    }

    /// Removes a segment's tier copy (one the mover made for a segment the cleaner
    /// removed meanwhile).
    pub async fn delete_from_tier(&self, id: u64) -> Result<(), SegmentError> {
        match &self.tier {
            Some(t) => Ok(t.delete(&Self::key(id)).await?),
            None => Ok(()),
        }
    }

    /// The local file of a segment, for the `fs` backend (tests and repair tools).
    pub fn local_path(&self, id: u64) -> Option<PathBuf> {
        self.local_root.as_ref().map(|r| {
            r.join(format!("{:02x}", id & 0xff))
                .join(format!("{id:016x}"))
        })
    }
}

/// An OpenDAL operator on an S3-compatible bucket, with its layers: a timeout on
/// every call, retries with backoff and jitter, a limit on calls in flight, logs,
/// and metrics of every call and HTTP request (`observe`).
fn s3_operator(s: &S3Settings, observe: &PrometheusClientLayer) -> Result<Operator, SegmentError> {
    // OpenDAL's HTTP services need its process-wide transport (reqwest); installing
    // it again is a no-op.
    opendal::install_default();
    let mut b = opendal::services::S3::default()
        .bucket(&s.bucket)
        .root(&format!("/{}", s.prefix.trim_matches('/')))
        // Every PutObject carries its Content-MD5; the store refuses a body that does
        // not match it.
        .checksum_algorithm("md5");
    if let Some(e) = &s.endpoint {
        b = b.endpoint(e);
    }
    if let Some(r) = &s.region {
        b = b.region(r);
    }
    if let (Some(k), Some(secret)) = (&s.access_key, &s.secret_key) {
        b = b.access_key_id(k).secret_access_key(secret);
    }
    if s.virtual_hosted {
        b = b.enable_virtual_host_style();
    }
    let timeout = std::time::Duration::from_secs(s.timeout_secs.max(1));
    Ok(Operator::new(b)?
        .layer(
            TimeoutLayer::new()
                .with_timeout(timeout)
                .with_io_timeout(timeout),
        )
        .layer(RetryLayer::new().with_jitter().with_max_times(s.retries))
        .layer(ConcurrentLimitLayer::new(s.max_requests.max(1)))
        .layer(LoggingLayer::default())
        .layer(observe.clone()))
}

async fn fetch_whole(op: Operator, key: String) -> Result<Bytes, opendal::Error> {
    Ok(op.read(&key).await?.to_bytes())
}

/// Runs blocking file work off the runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, SegmentError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SegmentError::Io(std::io::Error::other(e)))?
        .map_err(SegmentError::Io)
}

/// The segment files under the fan-out directories of `root`.
fn list_local(root: &Path) -> std::io::Result<Vec<(u64, std::time::SystemTime)>> {
    let mut out = Vec::new();
    for fan in std::fs::read_dir(root)? {
        for f in std::fs::read_dir(fan?.path())? {
            let f = f?;
            let id = f
                .file_name()
                .to_str()
                .and_then(|n| u64::from_str_radix(n, 16).ok());
            if let Some(id) = id {
                out.push((id, f.metadata()?.modified()?));
            }
        }
    }
    Ok(out)
}

/// The segments under `segments/` of an object store; an object without a
/// modification time counts as new (so the orphan grace protects it).
async fn list_objects(op: &Operator) -> Result<Vec<(u64, std::time::SystemTime)>, SegmentError> {
    let entries = op.list_with("segments/").recursive(true).await?;
    Ok(entries
        .into_iter()
        .filter_map(|e| {
            let name = e.path().rsplit('/').next()?;
            let id = (name.len() == 16).then(|| u64::from_str_radix(name, 16).ok())??;
            let modified = e
                .metadata()
                .last_modified()
                .map_or_else(std::time::SystemTime::now, std::time::SystemTime::from);
            Some((id, modified))
        })
        .collect())
}

fn read_at(path: &Path, range: Range<u64>) -> std::io::Result<Bytes> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; (range.end - range.start) as usize];
    file.read_exact_at(&mut buf, range.start)?;
    Ok(Bytes::from(buf))
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::Codec;

    #[tokio::test]
    async fn write_is_readable_by_range_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = SegmentStore::open_local(dir.path()).unwrap();
        let mut b = store.builder(0);
        let e = b.push([3; 32], 4, Codec::Raw, b"abcd");
        let (data, _) = b.finish();
        store.write(0x1ff, data.clone()).await.unwrap();
        let got = store
            .read_range(0x1ff, u64::from(e.offset)..u64::from(e.offset) + 4)
            .await
            .unwrap();
        assert_eq!(&got[..], b"abcd");
        assert_eq!(store.read_all(0x1ff).await.unwrap(), data);
        assert!(
            store
                .local_path(0x1ff)
                .unwrap()
                .ends_with("segments/ff/00000000000001ff")
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[tokio::test]
    async fn a_store_keeps_its_key_and_its_choice_to_seal() {
        let dir = tempfile::tempdir().unwrap();
        let open = || SegmentStore::open_local(dir.path()).unwrap();
        let key = SegmentKey::new([1; 32]);
        let store = open().bind_key(key.clone(), None, true).await.unwrap();
        assert!(store.seals());
        let mut b = store.builder(0);
        let e = b.push([4; 32], 6, Codec::Raw, b"secret");
        let (data, _) = b.finish();
        store.write(7, data).await.unwrap();
        let file = std::fs::read(store.local_path(7).unwrap()).unwrap();
        assert!(!file.windows(6).any(|w| w == b"secret"));
        let stored = store
            .read_range(7, u64::from(e.offset)..u64::from(e.offset + e.stored_len))
            .await
            .unwrap();
        assert_eq!(
            &store.open_payload(7, &[4; 32], stored).unwrap()[..],
            b"secret"
        );

        // The same key opens it again, whatever the default; another key is named.
        let again = open().bind_key(key.clone(), None, false).await.unwrap();
        assert!(again.seals());
        let wrong = open().bind_key(SegmentKey::new([2; 32]), None, true).await;
        assert!(
            matches!(wrong, Err(SegmentError::WrongKey { .. })),
            "{:?}",
            wrong.err()
        );
        let unseal = open().bind_key(key, Some(false), true).await;
        assert!(matches!(unseal, Err(SegmentError::Settings(_))));

        // A store that already holds plain segments cannot start sealing.
        let plain = tempfile::tempdir().unwrap();
        let store = SegmentStore::open_local(plain.path()).unwrap();
        let (data, _) = store.builder(0).finish();
        store.write(1, data).await.unwrap();
        let late = SegmentStore::open_local(plain.path())
            .unwrap()
            .bind_key(SegmentKey::new([1; 32]), Some(true), false)
            .await;
        assert!(matches!(late, Err(SegmentError::Settings(_))));
    }
}
