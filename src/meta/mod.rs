//! `meta` owns all metadata: buckets, object records and manifests, the chunk index
//! rows with their reference counts, segment rows with their live bytes, per-bucket
//! counters and the replication outbox. Backend: redb under the data dir.
//!
//! Every public write is one domain operation applied atomically in one redb write
//! transaction. Writes go through a single *committer* thread that groups the
//! operations queued at the same moment into one transaction; the transaction is
//! durable (fsync) when any operation in it asked to be. An operation validates before
//! it mutates, so a domain error (for example `NoSuchBucket`) leaves the transaction
//! untouched for the others; a storage error aborts the whole group and every
//! operation in it fails.
//!
//! Invariants kept here:
//! - A chunk's `refs` equals the number of times committed manifests name it plus the
//!   references recorded under holds: uploads still in flight (`held`, taken by
//!   `take_refs` and `add_segment` in the same transaction) and replication transfers
//!   (`replicated`). A commit takes its upload's references over in its own
//!   transaction; a release never takes a count below zero (`RefUnderflow`). Overwrite and delete release the old manifest's references in the
//!   same transaction that commits the change.
//! - `SegmentRow::live_bytes` is the sum of the stored lengths of the chunks whose row
//!   points into the segment and has `refs > 0`.
//! - Every committed object change appends exactly one outbox event in its own
//!   transaction, so no committed change can miss replication.
//! - Non-durable operations (reference takes, index rows) may be lost by a crash only
//!   together with every later commit, because a durable commit persists all earlier
//!   ones: an object commit that was acknowledged never names a lost row.

mod gc;
mod held;
mod list;
mod multipart;
mod quota;
pub mod records;
mod repair;
mod replicated;
mod replication;
mod users;
mod verify;
mod versions;

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;

use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition, WriteTransaction,
};
use tokio::sync::oneshot;

pub use gc::{Freed, KeptChunk, SegmentCandidate};
pub use held::{HeldBatch, HeldRefs, UploadHold};
pub use list::{ListEntry, ListPage, ListQuery};
pub use multipart::{CompletedUpload, UploadEntry, UploadPage, UploadQuery};
pub use quota::Quotas;
use quota::{QuotaCheck, ensure_quota};
pub use records::*;
pub use repair::CountFix;
pub use replicated::{Applied, HOLD_TTL_SECS, HoldId, VersionDiff, VersionStamp, new_hold_id};
pub use replication::{FailedRecord, ReplicaRecord, ReplicationState, RuleRecord, TargetTrust};
pub use users::{Permission, UserRecord};
pub use verify::DamagedObject;
use versions::put_object_record;
pub use versions::{
    DeleteOutcome, VersionEntry, VersionPage, VersionQuery, check_tags, parse_version_id,
};

const BUCKETS: TableDefinition<&str, &[u8]> = TableDefinition::new("buckets");
const BUCKET_STATS: TableDefinition<&str, &[u8]> = TableDefinition::new("bucket_stats");
/// key: bucket \0 object key
const OBJECTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("objects");
const MANIFESTS: TableDefinition<u64, &[u8]> = TableDefinition::new("manifests");
const CHUNKS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("chunks");
const SEGMENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("segments");
/// key: segment id (big endian) ++ chunk id; lets the index find a segment's chunks.
const SEGMENT_CHUNKS: TableDefinition<&[u8], ()> = TableDefinition::new("segment_chunks");
const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");
/// bucket \0 key \0 upload id -> UploadRecord
const UPLOADS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("uploads");
/// segment id -> the bucket whose write stored it (for per-bucket stored bytes)
const SEGMENT_BUCKETS: TableDefinition<u64, &str> = TableDefinition::new("segment_buckets");
/// segment id -> unix time after which its file may be deleted (compacted away)
const PENDING_DELETES: TableDefinition<u64, u64> = TableDefinition::new("pending_deletes");
/// bucket \0 key \0 !seq (u64 BE) -> ObjectRecord of a noncurrent version
const VERSIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("versions");
/// upload id | part number (u32 BE) -> PartRecord
const PARTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("parts");
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");

const C_NEXT_SEGMENT: &str = "next_segment_id";
const C_NEXT_MANIFEST: &str = "next_manifest_id";
const C_OUTBOX_SEQ: &str = "outbox_seq";
const C_NEXT_UPLOAD: &str = "next_upload_id";
const C_NEXT_VERSION: &str = "next_version_seq";
/// The record format the store was written with.
const C_SCHEMA: &str = "schema";
const C_SEGMENTS: &str = "segments";
const C_SEGMENT_BYTES: &str = "segment_bytes";
const C_CHUNKS: &str = "chunks";
const C_CHUNK_RAW: &str = "chunk_raw_bytes";
const C_CHUNK_STORED: &str = "chunk_stored_bytes";
const C_INLINE_BYTES: &str = "inline_bytes";

/// Most operations grouped into one transaction.
const MAX_GROUP: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("no such bucket")]
    NoSuchBucket,
    #[error("bucket already exists")]
    BucketExists,
    #[error("bucket is not empty")]
    BucketNotEmpty,
    #[error("no such multipart upload")]
    NoSuchUpload,
    #[error("the copy source changed or disappeared")]
    SourceChanged,
    #[error("no such key")]
    NoSuchKey,
    #[error("no such version")]
    NoSuchVersion,
    #[error("the version is a delete marker")]
    DeleteMarker,
    #[error("part {0} was replaced while the upload completed")]
    InvalidPart(u32),
    /// The message names the quota, the usage and what the write adds.
    #[error("{0}")]
    QuotaExceeded(String),
    /// A replicated version does not fit the parts staged for it.
    #[error("{0}")]
    Unfit(String),
    #[error("metadata storage error: {0}")]
    Storage(#[from] redb::Error),
    #[error("corrupt metadata: {0}")]
    Corrupt(String),
    #[error("metadata transaction did not complete")]
    Closed,
    /// A release would take a chunk's count below zero: a bug, surfaced rather than
    /// clamped (`hoard_refcount_underflow_total`).
    #[error("the reference count of chunk {0} would fall below zero")]
    RefUnderflow(String),
    #[error("a metadata operation panicked: {0}")]
    Panicked(String),
}

impl MetaError {
    fn aborts_group(&self) -> bool {
        matches!(
            self,
            MetaError::Storage(_)
                | MetaError::Corrupt(_)
                | MetaError::Closed
                | MetaError::RefUnderflow(_)
                | MetaError::Panicked(_)
        )
    }
    fn shared(&self) -> MetaError {
        match self {
            MetaError::NoSuchBucket => MetaError::NoSuchBucket,
            MetaError::BucketExists => MetaError::BucketExists,
            MetaError::BucketNotEmpty => MetaError::BucketNotEmpty,
            MetaError::NoSuchUpload => MetaError::NoSuchUpload,
            MetaError::SourceChanged => MetaError::SourceChanged,
            MetaError::NoSuchKey => MetaError::NoSuchKey,
            MetaError::NoSuchVersion => MetaError::NoSuchVersion,
            MetaError::DeleteMarker => MetaError::DeleteMarker,
            MetaError::InvalidPart(n) => MetaError::InvalidPart(*n),
            MetaError::QuotaExceeded(m) => MetaError::QuotaExceeded(m.clone()),
            MetaError::Unfit(m) => MetaError::Unfit(m.clone()),
            MetaError::Closed => MetaError::Closed,
            other => MetaError::Corrupt(format!("transaction group failed: {other}")),
        }
    }
}

macro_rules! storage_from {
    ($($t:ty),*) => {$(
        impl From<$t> for MetaError {
            fn from(e: $t) -> Self { MetaError::Storage(redb::Error::from(e)) }
        }
    )*};
}
storage_from!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

pub type MetaResult<T> = Result<T, MetaError>;

type Completion = Box<dyn FnOnce(Option<&MetaError>) + Send>;
type Op = Box<dyn FnOnce(&WriteTransaction) -> (Completion, Option<MetaError>) + Send>;

struct Job {
    op: Op,
    durable: bool,
}

/// Chunks whose reference count would have fallen below zero
/// (`hoard_refcount_underflow_total`); shared with `metrics` by cloning.
pub static REFCOUNT_UNDERFLOWS: std::sync::LazyLock<prometheus_client::metrics::counter::Counter> =
    std::sync::LazyLock::new(Default::default);

/// Who holds the references a new segment's chunks carry until their commit.
#[derive(Debug, Clone, Copy)]
pub enum Holder {
    /// An upload, under this batch of its hold (`held`).
    Upload(HeldBatch),
    /// A replication source's transfer (`replicated::HOLDS`).
    Replica(HoldId),
}

/// A new chunk stored in a sealed segment, to be indexed.
#[derive(Debug, Clone, Copy)]
pub struct NewChunk {
    pub id: ChunkId,
    pub offset: u32,
    pub stored_len: u32,
    pub raw_len: u32,
    pub codec: Codec,
    /// References the writing stream holds on it.
    pub refs: u32,
}

/// Totals over the whole store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreTotals {
    pub segments: u64,
    pub segment_bytes: u64,
    pub unique_chunks: u64,
    pub chunk_raw_bytes: u64,
    pub chunk_stored_bytes: u64,
    pub inline_bytes: u64,
}

/// The metadata store. Cheap to clone.
#[derive(Clone)]
pub struct MetaStore {
    db: Arc<Database>,
    jobs: mpsc::Sender<Job>,
    /// The first segment id this run may hand out: a file of a lower id that no row
    /// names was written by an earlier run and is known to be debris.
    run_first_segment: u64,
}

impl MetaStore {
    /// Opens (or creates) the store at `path`; `cache_bytes` bounds redb's page cache.
    pub fn open(path: &Path, cache_bytes: usize) -> MetaResult<MetaStore> {
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)?;
        let txn = db.begin_write()?;
        let run_first_segment;
        {
            txn.open_table(BUCKETS)?;
            txn.open_table(BUCKET_STATS)?;
            txn.open_table(OBJECTS)?;
            txn.open_table(MANIFESTS)?;
            txn.open_table(CHUNKS)?;
            txn.open_table(SEGMENTS)?;
            txn.open_table(SEGMENT_CHUNKS)?;
            txn.open_table(OUTBOX)?;
            txn.open_table(COUNTERS)?;
            txn.open_table(UPLOADS)?;
            txn.open_table(PARTS)?;
            txn.open_table(VERSIONS)?;
            txn.open_table(SEGMENT_BUCKETS)?;
            txn.open_table(PENDING_DELETES)?;
            txn.open_table(quota::QUOTAS)?;
            txn.open_table(repair::LOST_CHUNKS)?;
            txn.open_table(users::USERS)?;
            txn.open_table(replication::REPLICATION_RULES)?;
            txn.open_table(replication::REPLICA_BUCKETS)?;
            txn.open_table(replication::RESYNC)?;
            txn.open_table(replication::OUTBOX_KEYS)?;
            txn.open_table(replication::REPLICATION_FAILED)?;
            txn.open_table(replication::REPLICATION_TARGETS)?;
            txn.open_table(replicated::HOLDS)?;
            txn.open_table(replicated::HOLD_TOUCHED)?;
            txn.open_table(replicated::STAGED)?;
            txn.open_table(held::UPLOAD_HOLDS)?;
            txn.open_table(multipart::COMPLETED_UPLOADS)?;
            let empty = ReadableTableMetadata::is_empty(&txn.open_table(BUCKETS)?)?;
            let mut counters = txn.open_table(COUNTERS)?;
            let schema = counter(&counters, C_SCHEMA)?;
            if schema != u64::from(RECORD_FORMAT) && !empty {
                return Err(MetaError::Corrupt(format!(
                    "{} was written with metadata format {schema}; this hoard reads format {RECORD_FORMAT} and will not touch it",
                    path.display()
                )));
            }
            counters.insert(C_SCHEMA, u64::from(RECORD_FORMAT))?;
            run_first_segment = counter(&counters, C_NEXT_SEGMENT)?;
        }
        // No upload of an earlier run can commit any more.
        let (holds, refs) = held::release_all(&txn, unix_secs())?;
        if holds > 0 {
            tracing::info!(
                holds,
                references = refs,
                "released the references of uploads interrupted by the last stop"
            );
        }
        txn.commit()?;
        let db = Arc::new(db);
        let (jobs, rx) = mpsc::channel::<Job>();
        let committer_db = db.clone();
        std::thread::Builder::new()
            .name("hoard-meta-commit".into())
            .spawn(move || run_committer(&committer_db, &rx))
            .map_err(|e| MetaError::Corrupt(format!("cannot start committer thread: {e}")))?;
        Ok(MetaStore {
            db,
            jobs,
            run_first_segment,
        })
    }

    /// Queues `f` for the committer; the receiver yields its result once the group
    /// it ran in has committed.
    fn submit<R, F>(&self, durable: bool, f: F) -> oneshot::Receiver<MetaResult<R>>
    where
        R: Send + 'static,
        F: FnOnce(&WriteTransaction) -> MetaResult<R> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let op: Op = Box::new(move |txn| {
            let result = f(txn);
            let fatal = match &result {
                Err(e) if e.aborts_group() => Some(e.shared()),
                _ => None,
            };
            let completion: Completion = Box::new(move |group_err| {
                let out = match group_err {
                    Some(e) => Err(e.shared()),
                    None => result,
                };
                let _ = tx.send(out);
            });
            (completion, fatal)
        });
        // If the committer is gone the receiver reports Closed.
        let _ = self.jobs.send(Job { op, durable });
        rx
    }

    async fn write<R, F>(&self, durable: bool, f: F) -> MetaResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&WriteTransaction) -> MetaResult<R> + Send + 'static,
    {
        self.submit(durable, f)
            .await
            .unwrap_or(Err(MetaError::Closed))
    }

    /// The same as `write`, for callers on blocking threads.
    fn write_blocking<R, F>(&self, durable: bool, f: F) -> MetaResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&WriteTransaction) -> MetaResult<R> + Send + 'static,
    {
        self.submit(durable, f)
            .blocking_recv()
            .unwrap_or(Err(MetaError::Closed))
    }

    /// Runs a read-only closure on a blocking thread against a fresh snapshot.
    pub async fn read<R, F>(&self, f: F) -> MetaResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&ReadTransaction) -> MetaResult<R> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read()?;
            f(&txn)
        })
        .await
        .map_err(|e| MetaError::Corrupt(format!("read task failed: {e}")))?
    }

    /// Runs a read-only closure on the calling (blocking) thread.
    pub fn read_blocking<R>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> MetaResult<R>,
    ) -> MetaResult<R> {
        let txn = self.db.begin_read()?;
        f(&txn)
    }

    // ----- buckets -----

    pub async fn create_bucket(&self, name: &str, rec: BucketRecord) -> MetaResult<()> {
        let name = name.to_owned();
        self.write(true, move |txn| {
            let mut buckets = txn.open_table(BUCKETS)?;
            if buckets.get(name.as_str())?.is_some() {
                return Err(MetaError::BucketExists);
            }
            buckets.insert(name.as_str(), encode_record(&rec)?.as_slice())?;
            let mut stats = txn.open_table(BUCKET_STATS)?;
            stats.insert(
                name.as_str(),
                encode_record(&BucketStats::default())?.as_slice(),
            )?;
            Ok(())
        })
        .await
    }

    pub async fn delete_bucket(&self, name: &str) -> MetaResult<()> {
        let name = name.to_owned();
        self.write(true, move |txn| {
            let mut buckets = txn.open_table(BUCKETS)?;
            if buckets.get(name.as_str())?.is_none() {
                return Err(MetaError::NoSuchBucket);
            }
            let objects = txn.open_table(OBJECTS)?;
            let (lo, hi) = list::bucket_bounds(&name, "");
            if objects
                .range(lo.as_slice()..hi.as_slice())?
                .next()
                .is_some()
            {
                return Err(MetaError::BucketNotEmpty);
            }
            drop(objects);
            buckets.remove(name.as_str())?;
            txn.open_table(BUCKET_STATS)?.remove(name.as_str())?;
            quota::forget_bucket_quota(txn, &name)?;
            replication::forget_bucket(txn, &name)?;
            // Uploads still in progress die with the bucket and release their parts.
            multipart::abort_uploads_in(txn, &name)?;
            Ok(())
        })
        .await
    }

    pub async fn get_bucket(&self, name: &str) -> MetaResult<Option<BucketRecord>> {
        let name = name.to_owned();
        self.read(move |txn| get_bucket(txn, &name)).await
    }

    pub async fn list_buckets(&self) -> MetaResult<Vec<(String, BucketRecord)>> {
        self.read(|txn| {
            let t = txn.open_table(BUCKETS)?;
            let mut out = Vec::new();
            for row in t.iter()? {
                let (k, v) = row?;
                out.push((k.value().to_owned(), decode_record(v.value())?));
            }
            Ok(out)
        })
        .await
    }

    // ----- objects -----

    pub async fn get_manifest(&self, id: u64) -> MetaResult<Vec<ChunkRef>> {
        self.read(move |txn| {
            let t = txn.open_table(MANIFESTS)?;
            match t.get(id)? {
                Some(v) => decode_manifest(v.value()),
                None => Err(MetaError::Corrupt(format!("manifest {id} missing"))),
            }
        })
        .await
    }

    pub async fn list_objects(&self, bucket: &str, q: ListQuery) -> MetaResult<ListPage> {
        self.list_keys(bucket, q, list::list).await
    }

    /// Like `list_objects`, also listing keys whose current version is a delete
    /// marker.
    pub async fn list_keys_with_markers(&self, bucket: &str, q: ListQuery) -> MetaResult<ListPage> {
        self.list_keys(bucket, q, list::list_all).await
    }

    async fn list_keys(
        &self,
        bucket: &str,
        q: ListQuery,
        scan: fn(
            &redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
            &str,
            &ListQuery,
        ) -> MetaResult<ListPage>,
    ) -> MetaResult<ListPage> {
        let bucket = bucket.to_owned();
        self.read(move |txn| {
            if get_bucket(txn, &bucket)?.is_none() {
                return Err(MetaError::NoSuchBucket);
            }
            scan(&txn.open_table(OBJECTS)?, &bucket, &q)
        })
        .await
    }

    /// Commits an object version: inserts the record (and its manifest), releases the
    /// references of the version it replaces, updates the bucket's counters and
    /// appends one outbox event — all in one durable transaction. The references for
    /// `manifest` must be held under `hold` (taken while ingesting); the commit takes
    /// them over from the hold in the same transaction.
    pub async fn commit_object(
        &self,
        bucket: &str,
        key: &str,
        mut rec: ObjectRecord,
        manifest: Option<Vec<ChunkRef>>,
        hold: Option<HoldId>,
    ) -> MetaResult<String> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        self.write(true, move |txn| {
            if get_bucket_w(txn, &bucket)?.is_none() {
                return Err(MetaError::NoSuchBucket);
            }
            ensure_quota(
                txn,
                &QuotaCheck {
                    bucket: &bucket,
                    key: Some(&key),
                    size: rec.size,
                },
            )?;
            let now = unix_secs();
            let mut counters = txn.open_table(COUNTERS)?;
            if let Some(m) = &manifest {
                rec.data = ObjectData::Chunked {
                    manifest: insert_manifest(txn, &mut counters, m)?,
                    chunks: m.len() as u32,
                };
            }
            let version = put_object_record(txn, &mut counters, &bucket, &key, &rec, now)?;
            if let Some(h) = &hold {
                held::transfer(txn, h)?;
            }
            Ok(version)
        })
        .await
    }

    /// Deletes a key or one version of it (see `versions::delete_key`); `None` when
    /// there was nothing to delete, which changes nothing.
    pub async fn delete_object(
        &self,
        bucket: &str,
        key: &str,
        version: Option<String>,
    ) -> MetaResult<Option<DeleteOutcome>> {
        let mut out = self
            .delete_objects(bucket, vec![(key.to_owned(), version)])
            .await?;
        Ok(out.pop().flatten())
    }

    /// Deletes several keys (or versions) in one durable transaction.
    pub async fn delete_objects(
        &self,
        bucket: &str,
        keys: Vec<(String, Option<String>)>,
    ) -> MetaResult<Vec<Option<DeleteOutcome>>> {
        let bucket = bucket.to_owned();
        self.write(true, move |txn| {
            if get_bucket_w(txn, &bucket)?.is_none() {
                return Err(MetaError::NoSuchBucket);
            }
            let mut counters = txn.open_table(COUNTERS)?;
            let now = unix_secs();
            keys.iter()
                .map(|(key, version)| {
                    versions::delete_key(txn, &mut counters, &bucket, key, version.as_deref(), now)
                })
                .collect()
        })
        .await
    }

    /// Copies an object by sharing its chunks: the copy gets its own manifests (the
    /// same chunk ids) and takes one more reference per chunk occurrence; no stored
    /// byte is read or written. `rec` is the copy's record; its body is taken from the
    /// source, which must still be the version the caller checked (`etag`,
    /// `modified_ms`), or the copy fails with `SourceChanged` and changes nothing.
    pub async fn copy_object(
        &self,
        src: (&str, &str, Option<String>),
        expect: (&str, i64),
        dst: (&str, &str),
        mut rec: ObjectRecord,
    ) -> MetaResult<String> {
        let (sb, sk, sv) = (src.0.to_owned(), src.1.to_owned(), src.2);
        let (db, dk) = (dst.0.to_owned(), dst.1.to_owned());
        let (etag, modified) = (expect.0.to_owned(), expect.1);
        self.write(true, move |txn| {
            if get_bucket_w(txn, &sb)?.is_none() || get_bucket_w(txn, &db)?.is_none() {
                return Err(MetaError::NoSuchBucket);
            }
            let source = {
                let objects = txn.open_table(OBJECTS)?;
                let versions = txn.open_table(VERSIONS)?;
                versions::find_version(&objects, &versions, &sb, &sk, sv.as_deref())?
            };
            let source = match source {
                Some((_, s)) if !s.delete_marker && s.etag == etag && s.modified_ms == modified => {
                    s
                }
                _ => return Err(MetaError::SourceChanged),
            };
            ensure_quota(
                txn,
                &QuotaCheck {
                    bucket: &db,
                    key: Some(&dk),
                    size: source.size,
                },
            )?;
            let now = unix_secs();
            let mut counters = txn.open_table(COUNTERS)?;
            rec.data = share_data(txn, &mut counters, &source.data, now)?;
            put_object_record(txn, &mut counters, &db, &dk, &rec, now)
        })
        .await
    }

    // ----- chunk index -----

    /// Takes `n` references on each chunk `(id, n)` that has an index row, recorded
    /// under the upload's hold as `batch`. `result[i]` tells whether chunk `i` was
    /// found (and is now referenced); a chunk without a row must be stored anew by
    /// the caller.
    pub fn take_refs_blocking(
        &self,
        refs: Vec<(ChunkId, u32)>,
        batch: HeldBatch,
    ) -> MetaResult<Vec<bool>> {
        self.write_blocking(false, move |txn| {
            let now = unix_secs();
            let found = {
                let mut chunks = txn.open_table(CHUNKS)?;
                let mut segments = txn.open_table(SEGMENTS)?;
                refs.iter()
                    .map(|(id, n)| adjust_refs(&mut chunks, &mut segments, id, i64::from(*n), now))
                    .collect::<MetaResult<Vec<bool>>>()?
            };
            let taken = refs.iter().zip(&found).filter(|(_, f)| **f);
            held::record(txn, &batch, taken.map(|(r, _)| *r))?;
            Ok(found)
        })
    }

    /// Releases every reference an upload that will not commit holds; after its
    /// commit, a no-op.
    pub async fn release_upload_hold(&self, hold: HoldId) -> MetaResult<u64> {
        self.write(false, move |txn| held::release(txn, &hold, unix_secs()))
            .await
    }

    /// `release_upload_hold`, for callers outside the async runtime.
    pub fn release_upload_hold_blocking(&self, hold: HoldId) -> MetaResult<u64> {
        self.write_blocking(false, move |txn| held::release(txn, &hold, unix_secs()))
    }

    /// Indexes the chunks of a segment that is already durable in the segment store,
    /// recording each entry's references under `holder`. A chunk that meanwhile got
    /// a row from another stream keeps that row (the copy in this segment is dead
    /// bytes) and receives this stream's references.
    pub async fn add_segment(
        &self,
        bucket: &str,
        segment: u64,
        size: u64,
        entries: Vec<NewChunk>,
        holder: Option<Holder>,
    ) -> MetaResult<()> {
        let bucket = bucket.to_owned();
        self.write(false, move |txn| {
            let now = unix_secs();
            match holder {
                Some(Holder::Upload(batch)) => {
                    held::record(txn, &batch, entries.iter().map(|e| (e.id, e.refs)))?;
                }
                Some(Holder::Replica(h)) => {
                    let mut holds = txn.open_table(replicated::HOLDS)?;
                    for e in &entries {
                        let mut k = h.to_vec();
                        k.extend_from_slice(&e.id);
                        holds.insert(k.as_slice(), ())?;
                    }
                    txn.open_table(replicated::HOLD_TOUCHED)?
                        .insert(h.as_slice(), now)?;
                }
                None => {}
            }
            let mut chunks = txn.open_table(CHUNKS)?;
            let mut segments = txn.open_table(SEGMENTS)?;
            let mut seg_chunks = txn.open_table(SEGMENT_CHUNKS)?;
            // Lost chunks are rare: one look at the table, not one per chunk.
            let mut lost = txn.open_table(repair::LOST_CHUNKS)?;
            let any_lost = !ReadableTableMetadata::is_empty(&lost)?;
            let mut row = SegmentRow {
                size,
                created: now,
                ..SegmentRow::default()
            };
            segments.insert(segment, row.encode().as_slice())?;
            let mut added = BucketStats::default();
            for e in &entries {
                if adjust_refs(&mut chunks, &mut segments, &e.id, i64::from(e.refs), now)? {
                    continue;
                }
                // Content that was lost comes back: its damaged objects' references
                // move onto the new row.
                let was_lost = match any_lost {
                    true => lost.remove(e.id.as_slice())?.map_or(0, |v| v.value()),
                    false => 0,
                };
                let refs = u32::try_from(u64::from(e.refs) + was_lost).unwrap_or(u32::MAX);
                let chunk = ChunkRow {
                    loc: ChunkLocation {
                        segment,
                        offset: e.offset,
                        stored_len: e.stored_len,
                        raw_len: e.raw_len,
                        codec: e.codec,
                    },
                    refs,
                    zero_since: if refs == 0 { now } else { 0 },
                };
                chunks.insert(e.id.as_slice(), chunk.encode().as_slice())?;
                seg_chunks.insert(segment_chunk_key(segment, &e.id).as_slice(), ())?;
                row.chunks += 1;
                if refs > 0 {
                    row.live_chunks += 1;
                    row.live_bytes += u64::from(e.stored_len);
                }
                added.new_chunks += 1;
                added.new_raw_bytes += u64::from(e.raw_len);
            }
            segments.insert(segment, row.encode().as_slice())?;
            let stored: u64 = entries.iter().map(|e| u64::from(e.stored_len)).sum();
            let mut counters = txn.open_table(COUNTERS)?;
            bump(&mut counters, C_SEGMENTS, 1)?;
            bump(&mut counters, C_SEGMENT_BYTES, size as i64)?;
            bump(&mut counters, C_CHUNKS, added.new_chunks as i64)?;
            bump(&mut counters, C_CHUNK_RAW, added.new_raw_bytes as i64)?;
            bump(&mut counters, C_CHUNK_STORED, stored as i64)?;
            // The bucket may have been deleted meanwhile; the chunks stay indexed.
            if get_bucket_w(txn, &bucket)?.is_some() {
                txn.open_table(SEGMENT_BUCKETS)?
                    .insert(segment, bucket.as_str())?;
                let mut stats = bucket_stats_w(txn, &bucket)?;
                stats.new_chunks += added.new_chunks;
                stats.new_raw_bytes += added.new_raw_bytes;
                stats.stored_bytes += size;
                stats.segments += 1;
                put_bucket_stats(txn, &bucket, &stats)?;
            }
            Ok(())
        })
        .await
    }

    /// Reserves `n` segment ids; durable, so that no id is handed out twice even
    /// across crashes.
    pub fn allocate_segment_ids_blocking(&self, n: u64) -> MetaResult<Range<u64>> {
        self.write_blocking(true, move |txn| {
            let mut counters = txn.open_table(COUNTERS)?;
            next_ids(&mut counters, C_NEXT_SEGMENT, n)
        })
    }

    pub fn chunk_row_blocking(&self, id: &ChunkId) -> MetaResult<Option<ChunkRow>> {
        self.read_blocking(|txn| chunk_row(txn, id))
    }

    /// Locations of `ids` in one snapshot; `None` for a chunk without a row.
    pub async fn chunk_locations(
        &self,
        ids: Vec<ChunkId>,
    ) -> MetaResult<Vec<Option<ChunkLocation>>> {
        self.read(move |txn| {
            let t = txn.open_table(CHUNKS)?;
            ids.iter()
                .map(|id| {
                    Ok(t.get(id.as_slice())?
                        .map(|v| ChunkRow::decode(v.value()))
                        .transpose()?
                        .map(|r| r.loc))
                })
                .collect()
        })
        .await
    }

    /// The ids of the chunks indexed in `segment`.
    pub fn segment_chunk_ids_blocking(&self, segment: u64) -> MetaResult<Vec<ChunkId>> {
        self.read_blocking(|txn| gc::chunks_of(&txn.open_table(SEGMENT_CHUNKS)?, segment))
    }

    /// Calls `f` with every indexed chunk id (start-up filter fill).
    pub fn for_each_chunk_id(&self, mut f: impl FnMut(&ChunkId)) -> MetaResult<u64> {
        self.read_blocking(|txn| {
            let t = txn.open_table(CHUNKS)?;
            let mut n = 0;
            for row in t.iter()? {
                let (k, _) = row?;
                if let Ok(id) = <&ChunkId>::try_from(k.value()) {
                    f(id);
                    n += 1;
                }
            }
            Ok(n)
        })
    }

    // ----- stats and outbox -----

    pub async fn stats(&self) -> MetaResult<(Vec<(String, BucketStats)>, StoreTotals)> {
        self.read(|txn| {
            let t = txn.open_table(BUCKET_STATS)?;
            let mut buckets = Vec::new();
            for row in t.iter()? {
                let (k, v) = row?;
                buckets.push((k.value().to_owned(), decode_record(v.value())?));
            }
            let c = txn.open_table(COUNTERS)?;
            let get = |name: &str| -> MetaResult<u64> {
                Ok(c.get(name)?.map(|v| v.value()).unwrap_or(0))
            };
            let totals = StoreTotals {
                segments: get(C_SEGMENTS)?,
                segment_bytes: get(C_SEGMENT_BYTES)?,
                unique_chunks: get(C_CHUNKS)?,
                chunk_raw_bytes: get(C_CHUNK_RAW)?,
                chunk_stored_bytes: get(C_CHUNK_STORED)?,
                inline_bytes: get(C_INLINE_BYTES)?,
            };
            Ok((buckets, totals))
        })
        .await
    }

    /// Outbox events with sequence numbers `>= from`, at most `limit`.
    pub async fn outbox_events(
        &self,
        from: u64,
        limit: usize,
    ) -> MetaResult<Vec<(u64, OutboxEvent)>> {
        self.read(move |txn| {
            let t = txn.open_table(OUTBOX)?;
            let mut out = Vec::new();
            for row in t.range(from..)?.take(limit) {
                let (k, v) = row?;
                out.push((k.value(), decode_record(v.value())?));
            }
            Ok(out)
        })
        .await
    }
}

fn run_committer(db: &Database, rx: &mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let durable = jobs.iter().any(|j| j.durable);
        let txn = db.begin_write().map_err(MetaError::from).and_then(|mut t| {
            t.set_durability(if durable {
                Durability::Immediate
            } else {
                Durability::None
            })?;
            Ok(t)
        });
        let txn = match txn {
            Ok(t) => t,
            Err(e) => {
                // Dropping the jobs unrun makes every caller see `Closed`.
                tracing::error!(error = %e, "metadata: cannot begin write transaction");
                continue;
            }
        };
        let mut completions = Vec::with_capacity(jobs.len());
        let mut fatal: Option<MetaError> = None;
        for j in jobs {
            if fatal.is_some() {
                // The group is lost; the remaining operations are dropped unrun.
                continue;
            }
            // A panicking operation fails its group, never the committer: later
            // groups commit as before. Its caller's channel is dropped (`Closed`).
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (j.op)(&txn))) {
                Ok((done, err)) => {
                    completions.push(done);
                    fatal = err;
                }
                Err(panic) => {
                    let why = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".into());
                    fatal = Some(MetaError::Panicked(why));
                }
            }
        }
        let outcome = match fatal {
            Some(e) => {
                txn.abort().ok();
                Some(e)
            }
            None => txn.commit().err().map(MetaError::from),
        };
        if let Some(e) = &outcome {
            tracing::error!(error = %e, "metadata: transaction group failed");
        }
        for done in completions {
            done(outcome.as_ref());
        }
    }
}

// ----- transaction helpers -----

fn object_key(bucket: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(bucket.len() + 1 + key.len());
    k.extend_from_slice(bucket.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

fn segment_chunk_key(segment: u64, id: &ChunkId) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..8].copy_from_slice(&segment.to_be_bytes());
    k[8..].copy_from_slice(id);
    k
}

/// Every row of a name-keyed table of records.
fn all_rows<T: serde::de::DeserializeOwned>(
    txn: &ReadTransaction,
    table: TableDefinition<&str, &[u8]>,
) -> MetaResult<Vec<(String, T)>> {
    let mut out = Vec::new();
    for row in txn.open_table(table)?.iter()? {
        let (k, v) = row?;
        out.push((k.value().to_owned(), decode_record(v.value())?));
    }
    Ok(out)
}

fn get_bucket(txn: &ReadTransaction, name: &str) -> MetaResult<Option<BucketRecord>> {
    bucket_in(&txn.open_table(BUCKETS)?, name)
}

fn get_bucket_w(txn: &WriteTransaction, name: &str) -> MetaResult<Option<BucketRecord>> {
    bucket_in(&txn.open_table(BUCKETS)?, name)
}

fn bucket_in(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    name: &str,
) -> MetaResult<Option<BucketRecord>> {
    t.get(name)?.map(|v| decode_record(v.value())).transpose()
}

fn chunk_row(txn: &ReadTransaction, id: &ChunkId) -> MetaResult<Option<ChunkRow>> {
    let t = txn.open_table(CHUNKS)?;
    t.get(id.as_slice())?
        .map(|v| ChunkRow::decode(v.value()))
        .transpose()
}

fn bucket_stats_w(txn: &WriteTransaction, bucket: &str) -> MetaResult<BucketStats> {
    let t = txn.open_table(BUCKET_STATS)?;
    Ok(t.get(bucket)?
        .map(|v| decode_record(v.value()))
        .transpose()?
        .unwrap_or_default())
}

fn put_bucket_stats(txn: &WriteTransaction, bucket: &str, stats: &BucketStats) -> MetaResult<()> {
    txn.open_table(BUCKET_STATS)?
        .insert(bucket, encode_record(stats)?.as_slice())?;
    Ok(())
}

type CounterTable<'t> = redb::Table<'t, &'static str, u64>;

fn counter(counters: &impl ReadableTable<&'static str, u64>, name: &str) -> MetaResult<u64> {
    Ok(counters.get(name)?.map(|v| v.value()).unwrap_or(0))
}

fn bump(counters: &mut CounterTable<'_>, name: &str, delta: i64) -> MetaResult<()> {
    let v = counter(counters, name)?.saturating_add_signed(delta);
    counters.insert(name, v)?;
    Ok(())
}

/// Hands out `n` ids from the named counter; ids start at 1. A counter that cannot
/// be read or written fails the operation: ids that restarted would overwrite rows.
fn next_ids(counters: &mut CounterTable<'_>, name: &str, n: u64) -> MetaResult<Range<u64>> {
    let start = counter(counters, name)?.max(1);
    let end = start
        .checked_add(n)
        .ok_or_else(|| MetaError::Corrupt(format!("counter {name} is exhausted")))?;
    counters.insert(name, end)?;
    Ok(start..end)
}

fn append_outbox(
    txn: &WriteTransaction,
    counters: &mut CounterTable<'_>,
    ev: &OutboxEvent,
) -> MetaResult<()> {
    let seq = next_ids(counters, C_OUTBOX_SEQ, 1)?.start;
    txn.open_table(OUTBOX)?
        .insert(seq, encode_record(ev)?.as_slice())?;
    txn.open_table(replication::OUTBOX_KEYS)?.insert(
        replication::outbox_key(&ev.bucket, &ev.key, seq).as_slice(),
        (),
    )?;
    Ok(())
}

/// Drops a replaced or deleted object version: its counters, its manifest and the
/// references that manifest held.
fn forget_object(
    txn: &WriteTransaction,
    counters: &mut CounterTable<'_>,
    stats: &mut BucketStats,
    old: &ObjectRecord,
    now: u64,
) -> MetaResult<()> {
    if old.delete_marker {
        return Ok(());
    }
    stats.objects = stats.objects.saturating_sub(1);
    stats.logical_bytes = stats.logical_bytes.saturating_sub(old.size);
    if let ObjectData::Inline(d) = &old.data {
        stats.stored_bytes = stats.stored_bytes.saturating_sub(d.len() as u64);
        stats.inline_bytes = stats.inline_bytes.saturating_sub(d.len() as u64);
        bump(counters, C_INLINE_BYTES, -(d.len() as i64))?;
    }
    for (manifest, _) in old.manifests() {
        drop_manifest(txn, manifest, now)?;
    }
    Ok(())
}

/// A copy of an object body that shares its chunks: inline bytes are copied, each
/// manifest is stored again under a new id and its chunks gain one reference per
/// occurrence.
fn share_data(
    txn: &WriteTransaction,
    counters: &mut CounterTable<'_>,
    data: &ObjectData,
    now: u64,
) -> MetaResult<ObjectData> {
    let mut share = |manifest: u64| -> MetaResult<u64> {
        let refs = txn
            .open_table(MANIFESTS)?
            .get(manifest)?
            .map(|v| decode_manifest(v.value()))
            .transpose()?
            .ok_or_else(|| MetaError::Corrupt(format!("manifest {manifest} missing")))?;
        let mut chunks = txn.open_table(CHUNKS)?;
        let mut segments = txn.open_table(SEGMENTS)?;
        for (id, n) in &ref_counts(&refs) {
            if !adjust_refs(&mut chunks, &mut segments, id, i64::from(*n), now)? {
                return Err(MetaError::Corrupt(format!(
                    "chunk {} of manifest {manifest} has no index row",
                    hex::encode(id)
                )));
            }
        }
        drop((chunks, segments));
        insert_manifest(txn, counters, &refs)
    };
    Ok(match data {
        ObjectData::Inline(d) => ObjectData::Inline(d.clone()),
        ObjectData::Chunked { manifest, chunks } => ObjectData::Chunked {
            manifest: share(*manifest)?,
            chunks: *chunks,
        },
        ObjectData::Parts(parts) => ObjectData::Parts(
            parts
                .iter()
                .map(|p| {
                    Ok(PartPiece {
                        manifest: share(p.manifest)?,
                        ..*p
                    })
                })
                .collect::<MetaResult<Vec<_>>>()?,
        ),
    })
}

/// Removes a manifest and releases the references it held.
fn drop_manifest(txn: &WriteTransaction, manifest: u64, now: u64) -> MetaResult<()> {
    let refs = {
        let mut manifests = txn.open_table(MANIFESTS)?;
        let removed = manifests.remove(manifest)?;
        match removed {
            Some(v) => decode_manifest(v.value())?,
            None => return Err(MetaError::Corrupt(format!("manifest {manifest} missing"))),
        }
    };
    release_refs_at(txn, &ref_counts(&refs), now)
}

/// Stores a manifest under a new id.
fn insert_manifest(
    txn: &WriteTransaction,
    counters: &mut CounterTable<'_>,
    refs: &[ChunkRef],
) -> MetaResult<u64> {
    let id = next_ids(counters, C_NEXT_MANIFEST, 1)?.start;
    txn.open_table(MANIFESTS)?
        .insert(id, encode_manifest(refs).as_slice())?;
    Ok(id)
}

fn release_refs_at(txn: &WriteTransaction, refs: &[(ChunkId, u32)], now: u64) -> MetaResult<()> {
    let mut chunks = txn.open_table(CHUNKS)?;
    let mut segments = txn.open_table(SEGMENTS)?;
    for (id, n) in refs {
        if !adjust_refs(&mut chunks, &mut segments, id, -i64::from(*n), now)?
            && !repair::release_lost(txn, id, *n)?
        {
            tracing::warn!(chunk = %hex::encode(id), "releasing references of a chunk with no index row");
        }
    }
    Ok(())
}

/// Adds `delta` to a chunk's reference count, keeping its segment's live bytes in
/// step. Returns false (and changes nothing) when the chunk has no row.
fn adjust_refs(
    chunks: &mut redb::Table<'_, &'static [u8], &'static [u8]>,
    segments: &mut redb::Table<'_, u64, &'static [u8]>,
    id: &ChunkId,
    delta: i64,
    now: u64,
) -> MetaResult<bool> {
    let row = chunks
        .get(id.as_slice())?
        .map(|v| ChunkRow::decode(v.value()))
        .transpose()?;
    let Some(mut row) = row else { return Ok(false) };
    let before = row.refs;
    let after = i64::from(before) + delta;
    if after < 0 {
        REFCOUNT_UNDERFLOWS.inc();
        tracing::error!(chunk = %hex::encode(id), before, delta, "reference count would fall below zero; the operation is refused");
        return Err(MetaError::RefUnderflow(hex::encode(id)));
    }
    row.refs = u32::try_from(after).unwrap_or(u32::MAX);
    let live_delta: i64 = match (before > 0, row.refs > 0) {
        (false, true) => {
            row.zero_since = 0;
            1
        }
        (true, false) => {
            row.zero_since = now;
            -1
        }
        _ => 0,
    };
    chunks.insert(id.as_slice(), row.encode().as_slice())?;
    if live_delta != 0 {
        let seg = segments
            .get(row.loc.segment)?
            .map(|v| SegmentRow::decode(v.value()))
            .transpose()?;
        if let Some(mut seg) = seg {
            seg.live_chunks = seg.live_chunks.saturating_add_signed(live_delta as i32);
            seg.live_bytes = seg
                .live_bytes
                .saturating_add_signed(live_delta * i64::from(row.loc.stored_len));
            segments.insert(row.loc.segment, seg.encode().as_slice())?;
        }
    }
    Ok(true)
}

pub fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A chunk whose stored reference count disagrees with the committed manifests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefMismatch {
    pub id: ChunkId,
    /// `None`: a manifest names the chunk but it has no index row.
    pub stored: Option<u32>,
    pub counted: u64,
}

impl MetaStore {
    /// Chunks and stored bytes still referenced, summed over all segment rows.
    pub fn live_usage_blocking(&self) -> MetaResult<(u64, u64)> {
        self.read_blocking(|txn| {
            let (mut chunks, mut bytes) = (0u64, 0u64);
            for row in txn.open_table(SEGMENTS)?.iter()? {
                let (_, v) = row?;
                let seg = SegmentRow::decode(v.value())?;
                chunks += u64::from(seg.live_chunks);
                bytes += seg.live_bytes;
            }
            Ok((chunks, bytes))
        })
    }

    /// Recounts references from every committed manifest and every hold (replication
    /// transfers, uploads in flight) and compares them with the stored counts; the
    /// two must always agree.
    pub fn audit_refs_blocking(&self) -> MetaResult<Vec<RefMismatch>> {
        self.read_blocking(|txn| {
            let mut counted = repair::recount(
                &txn.open_table(MANIFESTS)?,
                &txn.open_table(replicated::HOLDS)?,
                &txn.open_table(held::UPLOAD_HOLDS)?,
            )?;
            let mut out = Vec::new();
            for row in txn.open_table(CHUNKS)?.iter()? {
                let (k, v) = row?;
                let Ok(id) = <ChunkId>::try_from(k.value()) else {
                    continue;
                };
                let stored = ChunkRow::decode(v.value())?.refs;
                let n = counted.remove(&id).unwrap_or(0);
                if u64::from(stored) != n {
                    out.push(RefMismatch {
                        id,
                        stored: Some(stored),
                        counted: n,
                    });
                }
            }
            // A lost chunk's count lives in its lost row.
            let lost = txn.open_table(repair::LOST_CHUNKS)?;
            for (id, counted) in counted {
                let stored = lost.get(id.as_slice())?.map(|v| v.value());
                if stored != Some(counted) {
                    out.push(RefMismatch {
                        id,
                        stored: stored.map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
                        counted,
                    });
                }
            }
            Ok(out)
        })
    }
}

/// A plain bucket's record, for unit tests.
#[cfg(test)]
pub(super) fn test_bucket() -> BucketRecord {
    BucketRecord {
        created_ms: 0,
        chunking: ChunkParams {
            min: 16384,
            avg: 65536,
            max: 262_144,
        },
        compression_level: 1,
        versioning: Versioning::Unversioned,
        tags: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_store_written_with_another_record_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.redb");
        {
            let meta = MetaStore::open(&path, 1 << 20).unwrap();
            meta.create_bucket("b", test_bucket()).await.unwrap();
        }
        // The committer thread lets go of the file once it sees the store dropped.
        let reopen = || {
            for _ in 0..100 {
                match MetaStore::open(&path, 1 << 20) {
                    Err(MetaError::Storage(redb::Error::DatabaseAlreadyOpen)) => {
                        std::thread::sleep(std::time::Duration::from_millis(20))
                    }
                    other => return other,
                }
            }
            Err(MetaError::Closed)
        };
        // Reopening the same format works; a store claiming format 1 is refused.
        drop(reopen().unwrap());
        {
            let db = (0..100)
                .find_map(|_| {
                    let db = Database::create(&path).ok();
                    if db.is_none() {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                    db
                })
                .expect("database released");
            let txn = db.begin_write().unwrap();
            txn.open_table(COUNTERS)
                .unwrap()
                .insert(C_SCHEMA, 1)
                .unwrap();
            txn.commit().unwrap();
        }
        let err = reopen().err().expect("refused");
        assert!(err.to_string().contains("format 1"), "{err}");
    }

    /// Reopens a store whose previous handle was just dropped (its committer thread
    /// lets go of the file shortly after).
    fn reopen(path: &Path) -> MetaStore {
        for _ in 0..200 {
            match MetaStore::open(path, 1 << 20) {
                Err(MetaError::Storage(redb::Error::DatabaseAlreadyOpen)) => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                other => return other.unwrap(),
            }
        }
        panic!("store not released");
    }

    fn new_chunk(id: ChunkId, offset: u32) -> NewChunk {
        NewChunk {
            id,
            offset,
            stored_len: 1,
            raw_len: 1,
            codec: Codec::Raw,
            refs: 1,
        }
    }

    fn chunked_record() -> ObjectRecord {
        let mut rec = ObjectRecord::delete_marker(1);
        rec.delete_marker = false;
        rec.version_id = NULL_VERSION.into();
        rec.size = 3;
        rec
    }

    async fn refs(meta: &MetaStore, id: ChunkId) -> u32 {
        meta.read(move |txn| Ok(chunk_row(txn, &id)?.map_or(0, |r| r.refs)))
            .await
            .unwrap()
    }

    /// Takes one reference on `id` under an upload hold's batch.
    pub(super) async fn take(meta: &MetaStore, id: ChunkId, batch: HeldBatch) {
        let m = meta.clone();
        let found = tokio::task::spawn_blocking(move || m.take_refs_blocking(vec![(id, 1)], batch))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found, vec![true]);
    }

    /// An upload's references are counted while in flight (a recount does not
    /// lower them), taken over by its commit (a release afterwards changes
    /// nothing), released when it does not commit, and released at the next start
    /// when the process stopped first.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn upload_holds_are_counted_taken_over_by_their_commit_or_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.redb");
        let meta = MetaStore::open(&path, 1 << 20).unwrap();
        meta.create_bucket("b", test_bucket()).await.unwrap();
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let hold = UploadHold::new().unwrap();
        let seal = Holder::Upload(hold.next_batch());
        meta.add_segment(
            "b",
            1,
            2,
            vec![new_chunk(a, 0), new_chunk(b, 1)],
            Some(seal),
        )
        .await
        .unwrap();
        take(&meta, a, hold.next_batch()).await;
        assert_eq!((refs(&meta, a).await, refs(&meta, b).await), (2, 1));
        let m = meta.clone();
        let audit = tokio::task::spawn_blocking(move || m.audit_refs_blocking());
        assert_eq!(
            audit.await.unwrap().unwrap(),
            Vec::new(),
            "held references are counted"
        );
        assert_eq!(meta.fix_counts().await.unwrap().fixed, 0);
        assert_eq!(
            refs(&meta, a).await,
            2,
            "a recount does not undo an upload's take"
        );

        // A commit that fails keeps the hold; the commit that succeeds takes it over.
        let manifest = vec![
            ChunkRef { id: a, len: 1 },
            ChunkRef { id: a, len: 1 },
            ChunkRef { id: b, len: 1 },
        ];
        let failed = meta
            .commit_object(
                "nobucket",
                "k",
                chunked_record(),
                Some(manifest.clone()),
                Some(hold.id()),
            )
            .await;
        assert!(matches!(failed, Err(MetaError::NoSuchBucket)));
        meta.commit_object("b", "k", chunked_record(), Some(manifest), Some(hold.id()))
            .await
            .unwrap();
        assert_eq!(meta.release_upload_hold(hold.id()).await.unwrap(), 0);
        assert_eq!((refs(&meta, a).await, refs(&meta, b).await), (2, 1));

        // An upload that does not commit: its release gives back exactly its takes.
        let dropped = UploadHold::new().unwrap();
        take(&meta, b, dropped.next_batch()).await;
        assert_eq!(meta.release_upload_hold(dropped.id()).await.unwrap(), 1);
        assert_eq!(refs(&meta, b).await, 1);

        // One in flight when the process stops is released at the next start.
        let interrupted = UploadHold::new().unwrap();
        take(&meta, b, interrupted.next_batch()).await;
        take(&meta, a, interrupted.next_batch()).await;
        assert_eq!((refs(&meta, a).await, refs(&meta, b).await), (3, 2));
        drop(meta);
        let meta = reopen(&path);
        assert_eq!((refs(&meta, a).await, refs(&meta, b).await), (2, 1));
        let audit = tokio::task::spawn_blocking(move || meta.audit_refs_blocking());
        assert_eq!(audit.await.unwrap().unwrap(), Vec::new());
    }

    #[tokio::test]
    async fn a_panicking_operation_fails_alone_and_later_writes_commit() {
        let dir = tempfile::tempdir().unwrap();
        let meta = MetaStore::open(&dir.path().join("meta.redb"), 1 << 20).unwrap();
        let panicked: MetaResult<()> = meta.write(true, |_| panic!("an operation's bug")).await;
        assert!(panicked.is_err());
        meta.create_bucket("after", test_bucket()).await.unwrap();
        assert!(meta.get_bucket("after").await.unwrap().is_some());
    }

    /// A release that would take a count below zero is refused with the metric
    /// raised, and the delete that asked for it changes nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_release_below_zero_is_refused_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let meta = MetaStore::open(&dir.path().join("meta.redb"), 1 << 20).unwrap();
        meta.create_bucket("b", test_bucket()).await.unwrap();
        let a = [9u8; 32];
        let hold = UploadHold::new().unwrap();
        meta.add_segment(
            "b",
            1,
            1,
            vec![new_chunk(a, 0)],
            Some(Holder::Upload(hold.next_batch())),
        )
        .await
        .unwrap();
        let manifest = vec![ChunkRef { id: a, len: 1 }];
        meta.commit_object("b", "k", chunked_record(), Some(manifest), Some(hold.id()))
            .await
            .unwrap();
        // A bug elsewhere left the count at zero.
        meta.write(true, move |txn| {
            let mut chunks = txn.open_table(CHUNKS)?;
            let mut segments = txn.open_table(SEGMENTS)?;
            adjust_refs(&mut chunks, &mut segments, &a, -1, 0).map(drop)
        })
        .await
        .unwrap();
        let before = REFCOUNT_UNDERFLOWS.get();
        let err = meta.delete_object("b", "k", None).await.unwrap_err();
        assert!(err.to_string().contains(&hex::encode(a)), "{err}");
        assert_eq!(REFCOUNT_UNDERFLOWS.get(), before + 1);
        assert!(meta.get_version("b", "k", None).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_counter_that_cannot_advance_fails_the_operation() {
        let dir = tempfile::tempdir().unwrap();
        let meta = MetaStore::open(&dir.path().join("meta.redb"), 1 << 20).unwrap();
        meta.create_bucket("b", test_bucket()).await.unwrap();
        meta.write(true, |txn| {
            txn.open_table(COUNTERS)?
                .insert(C_NEXT_MANIFEST, u64::MAX)?;
            Ok(())
        })
        .await
        .unwrap();
        let err = meta
            .commit_object("b", "k", chunked_record(), Some(Vec::new()), None)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("exhausted"), "{err}");
        assert!(meta.get_version("b", "k", None).await.unwrap().is_none());
    }
}
