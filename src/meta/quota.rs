//! Quotas: limits on the *logical* bytes (the sum of object sizes, every stored version
//! counted, as `hoard stats` reports them) of one bucket, and of all buckets together.
//! Logical bytes, not stored bytes, because that is what a client can predict and what
//! a write can be checked against before a byte of it is stored; dedup and compression
//! never turn an accepted write into a refused one later. (Data Domain's MTree quotas
//! count the same way.) The disk's own free space is in `hoard stats`.
//!
//! Invariant: a commit that would raise a bucket's logical bytes above its quota, or
//! the store's above the store quota, fails with `QuotaExceeded` before it changes
//! anything. The check runs inside the commit transaction, so concurrent writers cannot
//! both squeeze under one limit. A write that shrinks usage (an overwrite with a smaller
//! body, a delete) is always allowed, even over a quota that was lowered below usage.
//! S3 handlers also check before reading a body whose length is declared, so a write
//! refused there stores nothing at all; one refused at commit releases its references
//! and its chunks are reclaimed by the cleaner.

use super::kv::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{
    BUCKET_STATS, BUCKETS, BucketRecord, BucketStats, MetaError, MetaResult, MetaStore, OBJECTS,
    ObjectRecord, VERSIONS, Versioning, bucket_in, decode_record, object_key, versions::noncurrent,
};

/// Bucket name -> limit in logical bytes; the row named `STORE_ROW` holds the store's.
pub(super) const QUOTAS: TableDefinition<&str, u64> = TableDefinition::new("quotas");
/// No bucket name is empty, so the empty name is free for the store-wide quota.
const STORE_ROW: &str = "";

/// The quotas in force.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quotas {
    pub store: Option<u64>,
    pub buckets: Vec<(String, u64)>,
}

/// A write to check: `size` logical bytes into `bucket`, replacing what a write to
/// `key` replaces (an object) or nothing (`key` is `None`: an upload part).
pub struct QuotaCheck<'a> {
    pub bucket: &'a str,
    pub key: Option<&'a str>,
    pub size: u64,
}

/// The tables a check reads, from a read or a write transaction.
struct Tables<Q, S, O> {
    quotas: Q,
    stats: S,
    buckets: S,
    objects: O,
    versions: O,
}

/// Opens the tables of a check in a read or a write transaction.
macro_rules! tables {
    ($txn:expr) => {
        Tables {
            quotas: $txn.open_table(QUOTAS)?,
            stats: $txn.open_table(BUCKET_STATS)?,
            buckets: $txn.open_table(BUCKETS)?,
            objects: $txn.open_table(OBJECTS)?,
            versions: $txn.open_table(VERSIONS)?,
        }
    };
}

impl<Q, S, O> Tables<Q, S, O>
where
    Q: ReadableTable<&'static str, u64>,
    S: ReadableTable<&'static str, &'static [u8]>,
    O: ReadableTable<&'static [u8], &'static [u8]>,
{
    fn check(&self, w: &QuotaCheck<'_>) -> MetaResult<()> {
        let limit = |name: &str| -> MetaResult<Option<u64>> {
            Ok(self.quotas.get(name)?.map(|v| v.value()))
        };
        let (bucket_limit, store_limit) = (limit(w.bucket)?, limit(STORE_ROW)?);
        if bucket_limit.is_none() && store_limit.is_none() {
            return Ok(());
        }
        let freed = match w.key {
            Some(key) => self.replaced_bytes(w.bucket, key)?,
            None => 0,
        };
        if w.size <= freed {
            return Ok(());
        }
        let grows = w.size - freed;
        if let Some(limit) = bucket_limit {
            let used = self.logical(w.bucket)?;
            if used.saturating_add(grows) > limit {
                return Err(MetaError::QuotaExceeded(format!(
                    "Bucket {} is over its quota: the quota is {limit} bytes, {used} bytes are stored, and this write adds {grows}.",
                    w.bucket
                )));
            }
        }
        if let Some(limit) = store_limit {
            let mut used = 0u64;
            for row in self.stats.iter()? {
                used += decode_record::<BucketStats>(row?.1.value())?.logical_bytes;
            }
            if used.saturating_add(grows) > limit {
                return Err(MetaError::QuotaExceeded(format!(
                    "The store is over its quota: the quota is {limit} bytes, {used} bytes are stored in all buckets, and this write adds {grows}."
                )));
            }
        }
        Ok(())
    }

    fn logical(&self, bucket: &str) -> MetaResult<u64> {
        Ok(self
            .stats
            .get(bucket)?
            .map(|v| decode_record::<BucketStats>(v.value()))
            .transpose()?
            .unwrap_or_default()
            .logical_bytes)
    }

    /// Logical bytes a new current version of `key` drops, as `put_object_record`
    /// does: the "null" version it replaces unless versioning is enabled.
    fn replaced_bytes(&self, bucket: &str, key: &str) -> MetaResult<u64> {
        let versioning = bucket_in(&self.buckets, bucket)?
            .map(|b: BucketRecord| b.versioning)
            .unwrap_or_default();
        if versioning == Versioning::Enabled {
            return Ok(0);
        }
        let size = |r: &ObjectRecord| {
            if r.delete_marker || r.version_id != super::NULL_VERSION {
                0
            } else {
                r.size
            }
        };
        let mut freed = self
            .objects
            .get(object_key(bucket, key).as_slice())?
            .map(|v| decode_record::<ObjectRecord>(v.value()))
            .transpose()?
            .map_or(0, |r| size(&r));
        if versioning == Versioning::Suspended {
            freed += noncurrent(&self.versions, bucket, key)?
                .iter()
                .map(size)
                .sum::<u64>();
        }
        Ok(freed)
    }
}

/// Fails with `QuotaExceeded` when the write would break a quota; changes nothing.
pub(super) fn ensure_quota(txn: &WriteTransaction, w: &QuotaCheck<'_>) -> MetaResult<()> {
    tables!(txn).check(w)
}

impl MetaStore {
    /// The same check against the latest commit, for a handler about to read a body.
    pub async fn check_quota(&self, bucket: &str, key: Option<&str>, size: u64) -> MetaResult<()> {
        let (bucket, key) = (bucket.to_owned(), key.map(str::to_owned));
        self.read(move |txn| {
            tables!(txn).check(&QuotaCheck {
                bucket: &bucket,
                key: key.as_deref(),
                size,
            })
        })
        .await
    }

    /// Sets (or with `None` removes) the quota of `bucket`, or of the store when
    /// `bucket` is `None`.
    pub async fn set_quota(&self, bucket: Option<String>, bytes: Option<u64>) -> MetaResult<()> {
        self.write(true, move |txn| {
            let name = match &bucket {
                Some(b) => {
                    if bucket_in(&txn.open_table(BUCKETS)?, b)?.is_none() {
                        return Err(MetaError::NoSuchBucket);
                    }
                    b.as_str()
                }
                None => STORE_ROW,
            };
            let mut quotas = txn.open_table(QUOTAS)?;
            match bytes {
                Some(n) => quotas.insert(name, n)?,
                None => quotas.remove(name)?,
            };
            Ok(())
        })
        .await
    }

    pub async fn quotas(&self) -> MetaResult<Quotas> {
        self.read(|txn| {
            let mut out = Quotas::default();
            for row in txn.open_table(QUOTAS)?.iter()? {
                let (k, v) = row?;
                match k.value() {
                    STORE_ROW => out.store = Some(v.value()),
                    b => out.buckets.push((b.to_owned(), v.value())),
                }
            }
            Ok(out)
        })
        .await
    }
}

/// Drops a deleted bucket's quota.
pub(super) fn forget_bucket_quota(txn: &WriteTransaction, bucket: &str) -> MetaResult<()> {
    txn.open_table(QUOTAS)?.remove(bucket)?;
    Ok(())
}
