//! Replication metadata: on a source, the rules (one per source bucket); on a
//! replica, which buckets are replicas (read-only to S3 clients, written only by the
//! replication link).

use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{
    MetaError, MetaResult, MetaStore, OBJECTS, OUTBOX, all_rows, encode_record, get_bucket_w, list,
};

/// Source bucket -> `RuleRecord`.
pub(super) const REPLICATION_RULES: TableDefinition<&str, &[u8]> =
    TableDefinition::new("replication_rules");
/// Source bucket -> the last key its resync sent ("" before the first): the objects
/// that existed before the rule, walked in key order. No row: no resync pending.
pub(super) const RESYNC: TableDefinition<&str, &str> = TableDefinition::new("replication_resync");
/// Replica bucket -> `ReplicaRecord`.
pub(super) const REPLICA_BUCKETS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("replica_buckets");

/// How a source trusts the replica's certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TargetTrust {
    /// CA certificates (PEM), copied into the rule when it was added.
    Ca(String),
    /// SHA-256 of the replica's end-entity certificate, 64 hex digits.
    Fingerprint(String),
}

/// A replication rule as stored on the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleRecord {
    /// `https://HOST:PORT` of the replica.
    pub target: String,
    pub target_bucket: String,
    pub access_key: String,
    /// The replication key's secret, sealed (see `secrets`).
    pub sealed_secret: Vec<u8>,
    pub trust: TargetTrust,
    /// Daily windows, minutes after midnight UTC, [start, end); empty: continuous.
    pub windows: Vec<(u32, u32)>,
    pub connections: u32,
    /// Bytes per second; 0: unlimited.
    pub bandwidth: u64,
    pub paused: bool,
    pub created_ms: i64,
}

/// A replica bucket, as the replica records it at the first hello.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaRecord {
    /// The source's software version, as its hello said.
    pub source_software: String,
    pub since_ms: i64,
}

impl MetaStore {
    /// Stores a rule; with `resync`, the bucket's existing objects are queued too (a
    /// resync from the first key), in the same transaction.
    pub async fn put_rule(&self, bucket: &str, rule: &RuleRecord, resync: bool) -> MetaResult<()> {
        let bucket = bucket.to_owned();
        let bytes = encode_record(rule)?;
        self.write(true, move |txn| {
            if get_bucket_w(txn, &bucket)?.is_none() {
                return Err(MetaError::NoSuchBucket);
            }
            txn.open_table(REPLICATION_RULES)?
                .insert(bucket.as_str(), bytes.as_slice())?;
            if resync {
                txn.open_table(RESYNC)?.insert(bucket.as_str(), "")?;
            }
            Ok(())
        })
        .await
    }

    /// Where `bucket`'s resync stands (the last key sent), if one is pending.
    pub async fn resync_cursor(&self, bucket: &str) -> MetaResult<Option<String>> {
        let bucket = bucket.to_owned();
        self.read(move |txn| {
            Ok(txn
                .open_table(RESYNC)?
                .get(bucket.as_str())?
                .map(|v| v.value().to_owned()))
        })
        .await
    }

    /// Moves `bucket`'s resync past `key`, or ends it (`None`), durably; a resync that
    /// was cancelled meanwhile (rule removed) stays ended.
    pub async fn advance_resync(&self, bucket: &str, key: Option<String>) -> MetaResult<()> {
        let bucket = bucket.to_owned();
        self.write(true, move |txn| {
            let mut t = txn.open_table(RESYNC)?;
            if t.get(bucket.as_str())?.is_none() {
                return Ok(());
            }
            match key {
                Some(k) => t.insert(bucket.as_str(), k.as_str())?,
                None => t.remove(bucket.as_str())?,
            };
            Ok(())
        })
        .await
    }

    /// Removes a rule; true if there was one.
    pub async fn remove_rule(&self, bucket: &str) -> MetaResult<bool> {
        let bucket = bucket.to_owned();
        self.write(true, move |txn| {
            txn.open_table(RESYNC)?.remove(bucket.as_str())?;
            Ok(txn
                .open_table(REPLICATION_RULES)?
                .remove(bucket.as_str())?
                .is_some())
        })
        .await
    }

    pub async fn rules(&self) -> MetaResult<Vec<(String, RuleRecord)>> {
        self.read(|txn| all_rows(txn, REPLICATION_RULES)).await
    }

    /// Makes `bucket` a replica, unless it is one already. A bucket that holds objects
    /// and is not a replica is refused (`BucketNotEmpty`): its objects would mix with
    /// the source's.
    pub async fn mark_replica(&self, bucket: &str, rec: ReplicaRecord) -> MetaResult<()> {
        let bucket = bucket.to_owned();
        let bytes = encode_record(&rec)?;
        self.write(true, move |txn| {
            if get_bucket_w(txn, &bucket)?.is_none() {
                return Err(MetaError::NoSuchBucket);
            }
            let mut replicas = txn.open_table(REPLICA_BUCKETS)?;
            if replicas.get(bucket.as_str())?.is_some() {
                return Ok(());
            }
            let (lo, hi) = list::bucket_bounds(&bucket, "");
            if txn
                .open_table(OBJECTS)?
                .range(lo.as_slice()..hi.as_slice())?
                .next()
                .is_some()
            {
                return Err(MetaError::BucketNotEmpty);
            }
            replicas.insert(bucket.as_str(), bytes.as_slice())?;
            Ok(())
        })
        .await
    }

    /// Makes a replica bucket writable again (promotion); true if it was a replica.
    pub async fn unmark_replica(&self, bucket: &str) -> MetaResult<bool> {
        let bucket = bucket.to_owned();
        self.write(true, move |txn| {
            Ok(txn
                .open_table(REPLICA_BUCKETS)?
                .remove(bucket.as_str())?
                .is_some())
        })
        .await
    }

    /// Removes outbox events a replica acknowledged (or that no rule wants), durably.
    pub async fn remove_outbox(&self, seqs: Vec<u64>) -> MetaResult<()> {
        if seqs.is_empty() {
            return Ok(());
        }
        self.write(true, move |txn| {
            let mut outbox = txn.open_table(OUTBOX)?;
            for seq in seqs {
                outbox.remove(seq)?;
            }
            Ok(())
        })
        .await
    }

    /// The replica buckets, on the calling thread (start-up).
    pub fn replica_buckets_blocking(&self) -> MetaResult<Vec<(String, ReplicaRecord)>> {
        self.read_blocking(|txn| all_rows(txn, REPLICA_BUCKETS))
    }
}

/// Drops a deleted bucket's rule and replica mark.
pub(super) fn forget_bucket(txn: &redb::WriteTransaction, bucket: &str) -> MetaResult<()> {
    txn.open_table(REPLICATION_RULES)?.remove(bucket)?;
    txn.open_table(RESYNC)?.remove(bucket)?;
    txn.open_table(REPLICA_BUCKETS)?.remove(bucket)?;
    Ok(())
}
