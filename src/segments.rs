//! `segments` owns the segment store: the key layout, the segment format, durable
//! writes and ranged reads through OpenDAL.
//!
//! A segment is immutable once written. Layout:
//!
//! ```text
//! header   "HOARDSG1" | format u32 LE (1) | reserved u32
//! payloads chunk payloads back to back (zstd frame or raw bytes)
//! trailer  N x (chunk id 32 | offset u32 | stored_len u32 | raw_len u32 | codec u8)
//!          N u32 | first 16 bytes of BLAKE3(trailer entries) | "HOARDEND"
//! ```
//! The trailer lets a segment be checked and re-indexed on its own.
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

use std::ops::Range;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use opendal::Operator;
use opendal::layers::{ConcurrentLimitLayer, LoggingLayer, RetryLayer, TimeoutLayer};
use serde::Deserialize;

use crate::meta::{ChunkId, Codec};

pub const HEADER_LEN: usize = 16;
const MAGIC: &[u8; 8] = b"HOARDSG1";
const END_MAGIC: &[u8; 8] = b"HOARDEND";
const FORMAT: u32 = 1;
const ENTRY_LEN: usize = 45;
const FOOTER_LEN: usize = 4 + 16 + 8;

#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("segment store: {0}")]
    Store(#[from] opendal::Error),
    #[error("segment store I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("segment {segment:016x} is corrupt: {reason}")]
    Corrupt { segment: u64, reason: String },
}

impl SegmentError {
    /// Whether the segment is not in the store at all (the only error that may be
    /// taken to mean "missing": any other read error says nothing about the data).
    pub fn is_not_found(&self) -> bool {
        match self {
            SegmentError::Io(e) => e.kind() == std::io::ErrorKind::NotFound,
            SegmentError::Store(e) => e.kind() == opendal::ErrorKind::NotFound,
            SegmentError::Corrupt { .. } => false,
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

/// One chunk as listed in a segment's trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrailerEntry {
    pub id: ChunkId,
    pub offset: u32,
    pub stored_len: u32,
    pub raw_len: u32,
    pub codec: Codec,
}

/// Accumulates one segment's chunks in memory until it is sealed.
pub struct SegmentBuilder {
    buf: Vec<u8>,
    entries: Vec<TrailerEntry>,
}

impl SegmentBuilder {
    pub fn new(capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity);
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&FORMAT.to_le_bytes());
        buf.extend_from_slice(&0u32.to_le_bytes());
        SegmentBuilder {
            buf,
            entries: Vec::new(),
        }
    }

    /// Appends one chunk's stored payload.
    pub fn push(
        &mut self,
        id: ChunkId,
        raw_len: u32,
        codec: Codec,
        payload: &[u8],
    ) -> TrailerEntry {
        let entry = TrailerEntry {
            id,
            offset: self.buf.len() as u32,
            stored_len: payload.len() as u32,
            raw_len,
            codec,
        };
        self.buf.extend_from_slice(payload);
        self.entries.push(entry);
        entry
    }

    /// Bytes so far (header and payloads).
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends the trailer; returns the segment bytes and its entries.
    pub fn finish(mut self) -> (Bytes, Vec<TrailerEntry>) {
        let start = self.buf.len();
        for e in &self.entries {
            self.buf.extend_from_slice(&e.id);
            self.buf.extend_from_slice(&e.offset.to_le_bytes());
            self.buf.extend_from_slice(&e.stored_len.to_le_bytes());
            self.buf.extend_from_slice(&e.raw_len.to_le_bytes());
            self.buf.push(e.codec as u8);
        }
        let digest = blake3::hash(&self.buf[start..]);
        self.buf
            .extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(&digest.as_bytes()[..16]);
        self.buf.extend_from_slice(END_MAGIC);
        (Bytes::from(self.buf), self.entries)
    }
}

/// Parses and checks a whole segment's header and trailer.
pub fn parse_trailer(segment: u64, data: &[u8]) -> Result<Vec<TrailerEntry>, SegmentError> {
    let corrupt = |reason: &str| SegmentError::Corrupt {
        segment,
        reason: reason.to_owned(),
    };
    if data.len() < HEADER_LEN + FOOTER_LEN || &data[..8] != MAGIC {
        return Err(corrupt("bad header"));
    }
    if data[8..12] != FORMAT.to_le_bytes() {
        return Err(corrupt("unknown format version"));
    }
    let footer = &data[data.len() - FOOTER_LEN..];
    if &footer[20..28] != END_MAGIC {
        return Err(corrupt("bad trailer magic"));
    }
    let n = u32::from_le_bytes([footer[0], footer[1], footer[2], footer[3]]) as usize;
    let trailer_len = n
        .checked_mul(ENTRY_LEN)
        .ok_or_else(|| corrupt("entry count overflows"))?;
    let end = data.len() - FOOTER_LEN;
    let start = end
        .checked_sub(trailer_len)
        .filter(|s| *s >= HEADER_LEN)
        .ok_or_else(|| corrupt("entry count too large"))?;
    let trailer = &data[start..end];
    if blake3::hash(trailer).as_bytes()[..16] != footer[4..20] {
        return Err(corrupt("trailer checksum mismatch"));
    }
    let mut out = Vec::with_capacity(n);
    for e in trailer.chunks_exact(ENTRY_LEN) {
        let mut id = [0u8; 32];
        id.copy_from_slice(&e[..32]);
        let u = |i: usize| u32::from_le_bytes([e[i], e[i + 1], e[i + 2], e[i + 3]]);
        let codec = match e[44] {
            0 => Codec::Raw,
            1 => Codec::Zstd,
            _ => return Err(corrupt("unknown codec")),
        };
        let entry = TrailerEntry {
            id,
            offset: u(32),
            stored_len: u(36),
            raw_len: u(40),
            codec,
        };
        if (entry.offset as usize) < HEADER_LEN
            || entry.offset as usize + entry.stored_len as usize > start
        {
            return Err(corrupt("entry outside payload area"));
        }
        out.push(entry);
    }
    Ok(out)
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

/// The segment store over one OpenDAL operator.
#[derive(Clone)]
pub struct SegmentStore {
    op: Operator,
    /// Set for the local `fs` backend: where the fan-out directories live, so that a
    /// write can fsync its directory.
    local_root: Option<PathBuf>,
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
        })
    }

    /// Segments in an S3-compatible bucket (`backend = "s3"`).
    pub fn open_s3(s: &S3Settings) -> Result<SegmentStore, SegmentError> {
        // OpenDAL's HTTP services need its process-wide transport (reqwest);
        // installing it again is a no-op.
        opendal::install_default();
        let mut b = opendal::services::S3::default()
            .bucket(&s.bucket)
            .root(&format!("/{}", s.prefix.trim_matches('/')))
            // Every PutObject carries its Content-MD5; the store refuses a body
            // that does not match it.
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
        let op = Operator::new(b)?
            .layer(
                TimeoutLayer::new()
                    .with_timeout(timeout)
                    .with_io_timeout(timeout),
            )
            .layer(RetryLayer::new().with_jitter().with_max_times(s.retries))
            .layer(ConcurrentLimitLayer::new(s.max_requests.max(1)))
            .layer(LoggingLayer::default());
        Ok(SegmentStore {
            op,
            local_root: None,
        })
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
                tokio::task::spawn_blocking(move || {
                    crate::durable::write_via(&tmp, &path, &data, 0o644)
                })
                .await
                .map_err(|e| SegmentError::Io(std::io::Error::other(e)))??;
            }
            _ => self.op.write(&Self::key(id), data).await.map(drop)?,
        }
        Ok(())
    }

    /// Reads `range` (byte offsets within the segment).
    ///
    /// On the local backend this is one positional read on a blocking thread:
    /// OpenDAL's `fs` reader moves data through extra buffers, which costs GET a
    /// tenth of its throughput.
    pub async fn read_range(&self, id: u64, range: Range<u64>) -> Result<Bytes, SegmentError> {
        let want = range.end - range.start;
        let bytes = match self.local_path(id) {
            Some(path) => tokio::task::spawn_blocking(move || read_at(&path, range))
                .await
                .map_err(|e| SegmentError::Io(std::io::Error::other(e)))??,
            None => self
                .op
                .read_with(&Self::key(id))
                .range(range)
                .await?
                .to_bytes(),
        };
        if bytes.len() as u64 != want {
            return Err(SegmentError::Corrupt {
                segment: id,
                reason: format!("short read: {} of {want} bytes", bytes.len()),
            });
        }
        Ok(bytes)
    }

    /// Reads a whole segment.
    pub async fn read_all(&self, id: u64) -> Result<Bytes, SegmentError> {
        match self.local_path(id) {
            Some(path) => Ok(Bytes::from(tokio::fs::read(path).await?)),
            None => Ok(self.op.read(&Self::key(id)).await?.to_bytes()),
        }
    }

    /// Deletes a segment; deleting one that is already gone succeeds.
    pub async fn delete(&self, id: u64) -> Result<(), SegmentError> {
        match self.local_path(id) {
            Some(path) => match tokio::fs::remove_file(&path).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
                _ => Ok(()),
            },
            None => Ok(self.op.delete(&Self::key(id)).await?),
        }
    }

    /// Moves a damaged segment out of the store, to `quarantine/<id>` (under the data
    /// dir on the local backend), where an operator can inspect it; nothing reads it
    /// there. Moving one that is already gone succeeds.
    pub async fn quarantine(&self, id: u64) -> Result<(), SegmentError> {
        let aside = format!("quarantine/{id:016x}");
        match (self.local_path(id), &self.local_root) {
            (Some(path), Some(root)) => {
                let dir = root.with_file_name("quarantine");
                let to = dir.join(format!("{id:016x}"));
                tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                    std::fs::create_dir_all(&dir)?;
                    match std::fs::rename(&path, &to) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                        _ => {
                            fsync_dir(&dir)?;
                            path.parent().map_or(Ok(()), fsync_dir)
                        }
                    }
                })
                .await
                .map_err(|e| SegmentError::Io(std::io::Error::other(e)))??;
            }
            _ => {
                let key = Self::key(id);
                if self.op.exists(&key).await? {
                    self.op.copy(&key, &aside).await?;
                    self.op.delete(&key).await?;
                }
            }
        }
        Ok(())
    }

    /// Ids and modification times of every segment in the store: a walk of the
    /// fan-out directories on the local backend, an OpenDAL listing elsewhere.
    pub async fn list(&self) -> Result<Vec<(u64, std::time::SystemTime)>, SegmentError> {
        let Some(root) = self.local_root.clone() else {
            return self.list_objects().await;
        };
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for fan in std::fs::read_dir(&root)? {
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
        })
        .await
        .map_err(|e| SegmentError::Io(std::io::Error::other(e)))?
    }

    /// The segments under `segments/` of an object store; an object without a
    /// modification time counts as new (so the orphan grace protects it).
    async fn list_objects(&self) -> Result<Vec<(u64, std::time::SystemTime)>, SegmentError> {
        let entries = self.op.list_with("segments/").recursive(true).await?;
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

    /// The local file of a segment, for the `fs` backend (tests and repair tools).
    pub fn local_path(&self, id: u64) -> Option<PathBuf> {
        self.local_root.as_ref().map(|r| {
            r.join(format!("{:02x}", id & 0xff))
                .join(format!("{id:016x}"))
        })
    }
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

    #[test]
    fn trailer_round_trips_and_detects_damage() {
        let mut b = SegmentBuilder::new(0);
        let e1 = b.push([1; 32], 5, Codec::Raw, b"hello");
        let e2 = b.push([2; 32], 100, Codec::Zstd, b"xyz");
        let (data, entries) = b.finish();
        assert_eq!(entries, vec![e1, e2]);
        assert_eq!(&data[e1.offset as usize..][..5], b"hello");
        assert_eq!(parse_trailer(1, &data).unwrap(), entries);
        let mut bad = data.to_vec();
        let n = bad.len();
        bad[n - 30] ^= 1;
        assert!(parse_trailer(1, &bad).is_err());
        assert!(parse_trailer(1, &data[..20]).is_err());
    }

    #[tokio::test]
    async fn write_is_readable_by_range_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = SegmentStore::open_local(dir.path()).unwrap();
        let mut b = SegmentBuilder::new(0);
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
}
