//! `meta` owns all metadata: buckets, object records and manifests, the chunk index
//! rows with their reference counts, segment rows with their live bytes, per-bucket
//! counters and the replication outbox. Backend: redb under the data dir.
//!
//! This file opens the store (every table, the format check, releasing the holds of
//! an earlier run) and defines its errors. The rest, one seam each: `committer` (the
//! write thread and reads), `tables` (table definitions, counters, keys, row
//! helpers), `objects` (buckets and object commits), `refs` (chunk references and
//! segment rows), `versions`, `multipart`, `list`, `gc`, `quota`, `users`, `held`,
//! `replication` and `replicated`, `repair`, `verify`, `tier` (segments moved to the
//! cloud tier, bucket tier policies), `retention` (the retention clock's saved state), `records` (the row formats).
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

mod bucket_config;
mod committer;
mod gateways;
mod gc;
mod held;
mod history;
mod kv;
mod list;
mod multipart;
mod objects;
mod pg;
mod quota;
pub mod records;
mod refs;
mod repair;
mod replicated;
mod replication;
mod retention;
mod tables;
#[cfg(test)]
mod tests;
mod tier;
mod users;
mod verify;
mod versions;

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;

use kv::{Engine, ReadableTable, WriteTransaction};

use committer::{Job, run_committer};
pub use objects::StoreTotals;
use objects::{append_outbox, forget_object};
pub use refs::{Holder, NewChunk, REFCOUNT_UNDERFLOWS, RefMismatch};
use refs::{adjust_refs, count_locked, drop_manifest, insert_manifest, release_refs_at};
use tables::*;

pub use bucket_config::BucketConfigKind;
pub use gateways::{GatewayLoad, WorkerBusy, WorkerTurn};
pub use gc::{Freed, KeptChunk, OrphanScan, SegmentCandidate};
pub use held::{HeldBatch, HeldRefs, UploadHold};
pub use history::HistoryPoint;
pub use list::{ListEntry, ListPage, ListQuery};
pub use multipart::{CompletedUpload, UploadEntry, UploadPage, UploadQuery};
pub use quota::Quotas;
use quota::{QuotaCheck, ensure_quota};
pub use records::*;
pub use repair::CountFix;
pub use replicated::{Applied, HOLD_TTL_SECS, HoldId, VersionDiff, VersionStamp, new_hold_id};
pub use replication::{
    Backlog, FIRST_RULE_ID, FailedRecord, ReplicaRecord, ReplicationState, RuleRecord, RuleScope,
    TargetKind, TargetTrust, rule_key, split_rule_key,
};
pub use retention::ClockReading;
pub use tier::{TierCandidate, TierPolicy};
pub use users::{Permission, UserRecord};
pub use verify::DamagedObject;
use versions::put_object_record;
pub use versions::{
    DeleteCondition, DeleteOutcome, DeleteTarget, LockCheck, VersionEntry, VersionPage,
    VersionQuery, WriteCondition, check_tags, parse_version_id,
};

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
    /// Object Lock forbids the change; the message says which lock.
    #[error("{0}")]
    ObjectLocked(String),
    /// The bucket's state does not allow the change (Object Lock and versioning).
    #[error("{0}")]
    InvalidBucketState(String),
    /// A conditional write's precondition (`If-None-Match`, `If-Match`) did not hold.
    #[error("the write's precondition did not hold")]
    PreconditionFailed,
    #[error("metadata storage error: {0}")]
    Storage(#[from] redb::Error),
    /// The metadata database (PostgreSQL) did not answer: a request gets 503.
    #[error("the metadata database is unavailable: {0}")]
    Unavailable(String),
    /// The metadata database refused a statement.
    #[error("metadata database error: {0}")]
    Database(String),
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
                | MetaError::Unavailable(_)
                | MetaError::Database(_)
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
            MetaError::ObjectLocked(m) => MetaError::ObjectLocked(m.clone()),
            MetaError::InvalidBucketState(m) => MetaError::InvalidBucketState(m.clone()),
            MetaError::PreconditionFailed => MetaError::PreconditionFailed,
            MetaError::Closed => MetaError::Closed,
            MetaError::Unavailable(m) => MetaError::Unavailable(m.clone()),
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

/// The metadata store. Cheap to clone.
#[derive(Clone)]
pub struct MetaStore {
    db: Arc<Engine>,
    jobs: mpsc::Sender<Job>,
    /// The first segment id this run may hand out: a file of a lower id that no row
    /// names was written by an earlier run and is known to be debris.
    run_first_segment: u64,
    /// On PostgreSQL: this gateway's lease, whose id begins its uploads' holds.
    gateway: Option<Arc<gateways::Gateway>>,
}

impl MetaStore {
    /// Opens (or creates) the store at `path`; `cache_bytes` bounds redb's page cache.
    pub fn open(path: &Path, cache_bytes: usize) -> MetaResult<MetaStore> {
        let db = redb::Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)?;
        MetaStore::start(Engine::Redb(db), &path.display().to_string(), 0)
    }

    /// Connects to the PostgreSQL database at `url` (migrating its schema to this
    /// binary's), with at most `connections` connections, over TLS with `tls` when
    /// given, and a gateway lease of `lease_secs`. The synchronous client blocks, so
    /// this runs on a thread of its own: callable from async code too.
    pub fn open_postgres(
        url: &str,
        connections: u32,
        tls: Option<rustls::ClientConfig>,
        lease_secs: u64,
    ) -> MetaResult<MetaStore> {
        let url = url.to_owned();
        std::thread::spawn(move || {
            let pool = pg::PgPool::open(&url, connections, tls)?;
            MetaStore::start(Engine::Pg(pool), "the metadata database", lease_secs)
        })
        .join()
        .map_err(|_| MetaError::Panicked("opening the metadata database".into()))?
    }

    /// Whether other gateways share this metadata (PostgreSQL): what this process
    /// keeps in memory of it (users, say) must then be read again now and then.
    pub fn is_shared(&self) -> bool {
        matches!(*self.db, Engine::Pg(_))
    }

    /// Whether the metadata engine answers now (`/ready`).
    pub async fn ping(&self) -> MetaResult<()> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.ping())
            .await
            .map_err(|e| MetaError::Corrupt(format!("ping task failed: {e}")))?
    }

    /// Checks the record format, creates missing tables, releases the holds of an
    /// earlier run and starts the committer.
    fn start(db: Engine, name: &str, lease_secs: u64) -> MetaResult<MetaStore> {
        let txn = db.begin_write(true)?;
        // On PostgreSQL other gateways' uploads may hold references right now: only
        // those of gateways whose lease expired are released (`gateways`).
        let gateway = match db {
            Engine::Redb(_) => None,
            Engine::Pg(_) => Some(gateways::Gateway::new(lease_secs)?),
        };
        let first_segment = prepare(&txn, name, gateway.is_none())?;
        // Other gateways may be writing segments of lower ids right now: on
        // PostgreSQL no id is debris merely for being older than this run, and an
        // orphan waits out the cleaner's orphan grace period.
        let run_first_segment = if gateway.is_none() { first_segment } else { 0 };
        if let Some(g) = &gateway {
            g.renew_and_reap(&txn, unix_secs())?;
        }
        txn.commit()?;
        let db = Arc::new(db);
        if let Some(g) = &gateway {
            gateways::keep_lease(Arc::downgrade(&db), g.clone())?;
            tracing::info!(gateway = %format!("{:016x}", g.id()), lease_secs, "this gateway holds its lease");
        }
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
            gateway,
        })
    }
}

/// Opens every table (creating them on redb), checks and records the record format,
/// and answers the first segment id this run may hand out.
fn prepare(txn: &WriteTransaction, name: &str, release_holds: bool) -> MetaResult<u64> {
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
        txn.open_table(tier::TIERED)?;
        txn.open_table(tier::BUCKET_TIER)?;
        txn.open_table(repair::LOST_CHUNKS)?;
        txn.open_table(users::USERS)?;
        txn.open_table(replication::REPLICATION_RULES)?;
        txn.open_table(replication::REPLICA_BUCKETS)?;
        txn.open_table(replication::RESYNC)?;
        txn.open_table(replication::CURSORS)?;
        txn.open_table(replication::TARGET_SEQS)?;
        txn.open_table(replication::OUTBOX_KEYS)?;
        txn.open_table(replication::REPLICATION_FAILED)?;
        txn.open_table(replication::REPLICATION_TARGETS)?;
        txn.open_table(replicated::HOLDS)?;
        txn.open_table(replicated::HOLD_TOUCHED)?;
        txn.open_table(replicated::STAGED)?;
        txn.open_table(held::UPLOAD_HOLDS)?;
        txn.open_table(multipart::COMPLETED_UPLOADS)?;
        txn.open_table(bucket_config::BUCKET_CONFIGS)?;
        txn.open_table(history::STATS_HISTORY)?;
        let empty = ReadableTable::is_empty(&txn.open_table(BUCKETS)?)?;
        let mut counters = txn.open_table(COUNTERS)?;
        let schema = counter(&counters, C_SCHEMA)?;
        let readable = u64::from(OLDEST_RECORD_FORMAT)..=u64::from(RECORD_FORMAT);
        if !readable.contains(&schema) && !empty {
            return Err(MetaError::Corrupt(format!(
                "{} was written with metadata format {schema}; this hoard reads formats {OLDEST_RECORD_FORMAT} to {RECORD_FORMAT} and will not touch it",
                name
            )));
        }
        counters.insert(C_SCHEMA, u64::from(RECORD_FORMAT))?;
        if counter(&counters, C_STORE_ID)? == 0 {
            counters.insert(C_STORE_ID, rand::random::<u64>().max(1))?;
        }
        run_first_segment = counter(&counters, C_NEXT_SEGMENT)?;
    }
    if !release_holds {
        return Ok(run_first_segment);
    }
    // No upload of an earlier run can commit any more.
    let (holds, refs) = held::release_all(txn, unix_secs())?;
    if holds > 0 {
        tracing::info!(
            holds,
            references = refs,
            "released the references of uploads interrupted by the last stop"
        );
    }
    Ok(run_first_segment)
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
        object_lock: None,
    }
}
