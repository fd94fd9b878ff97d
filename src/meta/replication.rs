//! Replication metadata: on a source, the rules (one per source bucket); on a
//! replica, which buckets are replicas (read-only to S3 clients, written only by the
//! replication link).

use super::kv::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{
    COUNTERS, EventKind, MetaError, MetaResult, MetaStore, OBJECTS, OUTBOX, OutboxEvent, all_rows,
    append_outbox, decode_record, encode_record, get_bucket_w, list, now_ms, object_key,
};

/// Source bucket -> `RuleRecord`.
pub(super) const REPLICATION_RULES: TableDefinition<&str, &[u8]> =
    TableDefinition::new("replication_rules");
/// Source bucket -> the last key its resync sent ("" before the first): the objects
/// that existed before the rule, walked in key order. No row: no resync pending.
pub(super) const RESYNC: TableDefinition<&str, &str> = TableDefinition::new("replication_resync");
/// bucket \0 key \0 outbox seq (u64 BE) -> (): the outbox's events by key, kept
/// with the outbox in the same transactions, so a key's replication status is one
/// range lookup.
pub(super) const OUTBOX_KEYS: TableDefinition<&[u8], ()> = TableDefinition::new("outbox_keys");
/// bucket \0 key -> `FailedRecord`: keys whose sync failed in a way a retry cannot
/// mend (the replica refused it, or a chunk of it cannot be read here). They left
/// the queue so the bucket's later changes move; a requeue (by the admin, or the
/// sender's periodic one) puts them back.
pub(super) const REPLICATION_FAILED: TableDefinition<&[u8], &[u8]> =
    TableDefinition::new("replication_failed");
/// Target name -> a rule template (`replication::rules::AddRule` as JSON), sealed
/// whole since it holds the target's secret. S3 PutBucketReplication names one by
/// its ARN.
/// On PostgreSQL: bucket -> what the gateway sending its rule last published of its
/// progress (the sender's format; `meta` stores it as it is).
pub(super) const SENDER_REPORTS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("replication_sender_reports");
/// On PostgreSQL: bucket -> when a manual run was asked for (unix ms), on any
/// gateway, until the gateway sending the rule takes it.
pub(super) const MANUAL_RUNS: TableDefinition<&str, i64> =
    TableDefinition::new("replication_manual_runs");
pub(super) const REPLICATION_TARGETS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("replication_targets");
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

/// Why a key's replication failed, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedRecord {
    pub error: String,
    pub time_ms: i64,
}

/// What `x-amz-replication-status` says of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicationState {
    /// A change of the key waits in the queue, or the resync has not reached it.
    Pending,
    Completed,
    /// Its last sync failed for good; it waits for a requeue.
    Failed,
    /// The bucket is a replica.
    Replica,
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
            forget_failed(txn, &bucket)?;
            txn.open_table(RESYNC)?.remove(bucket.as_str())?;
            Ok(txn
                .open_table(REPLICATION_RULES)?
                .remove(bucket.as_str())?
                .is_some())
        })
        .await
    }

    /// Stores (or replaces) a sealed target template.
    pub async fn put_target(&self, name: &str, sealed: Vec<u8>) -> MetaResult<()> {
        let name = name.to_owned();
        let value = encode_record(&sealed)?;
        self.write(true, move |txn| {
            txn.open_table(REPLICATION_TARGETS)?
                .insert(name.as_str(), value.as_slice())?;
            Ok(())
        })
        .await
    }

    /// The sealed target templates, by name.
    pub async fn targets(&self) -> MetaResult<Vec<(String, Vec<u8>)>> {
        self.read(|txn| all_rows(txn, REPLICATION_TARGETS)).await
    }

    /// Removes a target; true if there was one.
    pub async fn remove_target(&self, name: &str) -> MetaResult<bool> {
        let name = name.to_owned();
        self.write(true, move |txn| {
            Ok(txn
                .open_table(REPLICATION_TARGETS)?
                .remove(name.as_str())?
                .is_some())
        })
        .await
    }

    /// Publishes what this gateway's sender reports of `bucket`'s rule, for the
    /// other gateways' status (gateways sharing the metadata only; a no-op on redb).
    pub async fn publish_sender_report(&self, bucket: &str, report: Vec<u8>) -> MetaResult<()> {
        if !self.is_shared() {
            return Ok(());
        }
        let bucket = bucket.to_owned();
        self.write(false, move |txn| {
            txn.open_table(SENDER_REPORTS)?
                .insert(bucket.as_str(), report.as_slice())?;
            Ok(())
        })
        .await
    }

    /// The last report the sender of `bucket`'s rule published (`None` on redb).
    pub async fn sender_report(&self, bucket: &str) -> MetaResult<Option<Vec<u8>>> {
        if !self.is_shared() {
            return Ok(None);
        }
        let bucket = bucket.to_owned();
        self.read(move |txn| {
            Ok(txn
                .open_table(SENDER_REPORTS)?
                .get(bucket.as_str())?
                .map(|v| v.value().to_vec()))
        })
        .await
    }

    /// Asks the gateway sending `bucket`'s rule, whichever it is, for a manual run.
    pub async fn ask_manual_run(&self, bucket: &str) -> MetaResult<()> {
        if !self.is_shared() {
            return Ok(());
        }
        let bucket = bucket.to_owned();
        self.write(true, move |txn| {
            txn.open_table(MANUAL_RUNS)?
                .insert(bucket.as_str(), super::now_ms())?;
            Ok(())
        })
        .await
    }

    /// Takes the manual runs asked for of `buckets` (the rules this gateway sends).
    pub async fn take_manual_runs(&self, buckets: Vec<String>) -> MetaResult<Vec<String>> {
        if !self.is_shared() || buckets.is_empty() {
            return Ok(Vec::new());
        }
        self.write(false, move |txn| {
            let mut runs = txn.open_table(MANUAL_RUNS)?;
            let mut taken = Vec::new();
            for b in buckets {
                if runs.remove(b.as_str())?.is_some() {
                    taken.push(b);
                }
            }
            Ok(taken)
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
            let mut by_key = txn.open_table(OUTBOX_KEYS)?;
            for seq in seqs {
                if let Some(v) = outbox.remove(seq)? {
                    let ev: OutboxEvent = decode_record(v.value())?;
                    by_key.remove(outbox_key(&ev.bucket, &ev.key, seq).as_slice())?;
                }
            }
            Ok(())
        })
        .await
    }

    /// Records, durably, that a key's sync failed for good.
    pub async fn mark_failed(&self, bucket: &str, key: &str, error: String) -> MetaResult<()> {
        let k = object_key(bucket, key);
        let rec = encode_record(&FailedRecord {
            error,
            time_ms: now_ms(),
        })?;
        self.write(true, move |txn| {
            txn.open_table(REPLICATION_FAILED)?
                .insert(k.as_slice(), rec.as_slice())?;
            Ok(())
        })
        .await
    }

    /// Forgets a key's failure once it replicated (a read when there is none).
    pub async fn clear_failed(&self, bucket: &str, key: &str) -> MetaResult<()> {
        let k = object_key(bucket, key);
        let probe = k.clone();
        let failed = self
            .read(move |txn| {
                let t = txn.open_table(REPLICATION_FAILED)?;
                Ok(t.get(probe.as_slice())?.is_some())
            })
            .await?;
        if failed {
            self.write(true, move |txn| {
                txn.open_table(REPLICATION_FAILED)?.remove(k.as_slice())?;
                Ok(())
            })
            .await?;
        }
        Ok(())
    }

    /// Up to `max` failed keys of a bucket with their records, and how many there are.
    pub async fn failed_keys(
        &self,
        bucket: &str,
        max: usize,
    ) -> MetaResult<(Vec<(String, FailedRecord)>, u64)> {
        let bucket = bucket.to_owned();
        self.read(move |txn| {
            let t = txn.open_table(REPLICATION_FAILED)?;
            let (lo, hi) = list::bucket_bounds(&bucket, "");
            let (mut out, mut n) = (Vec::new(), 0);
            for row in t.range(lo.as_slice()..hi.as_slice())? {
                let (k, v) = row?;
                n += 1;
                if out.len() < max {
                    let key = String::from_utf8_lossy(&k.value()[bucket.len() + 1..]).into_owned();
                    out.push((key, decode_record(v.value())?));
                }
            }
            Ok((out, n))
        })
        .await
    }

    /// Puts a bucket's failed keys back into the queue (one event each); returns
    /// how many.
    pub async fn requeue_failed(&self, bucket: &str) -> MetaResult<usize> {
        let bucket = bucket.to_owned();
        self.write(true, move |txn| {
            let (lo, hi) = list::bucket_bounds(&bucket, "");
            let keys: Vec<Vec<u8>> = {
                let t = txn.open_table(REPLICATION_FAILED)?;
                t.range(lo.as_slice()..hi.as_slice())?
                    .map(|row| row.map(|(k, _)| k.value().to_vec()))
                    .collect::<Result<_, _>>()?
            };
            let mut counters = txn.open_table(COUNTERS)?;
            let mut failed = txn.open_table(REPLICATION_FAILED)?;
            for k in &keys {
                failed.remove(k.as_slice())?;
                let key = String::from_utf8_lossy(&k[bucket.len() + 1..]).into_owned();
                let ev = OutboxEvent {
                    bucket: bucket.clone(),
                    key,
                    version_id: String::new(),
                    kind: EventKind::Requeued,
                    time_ms: now_ms(),
                };
                append_outbox(txn, &mut counters, &ev)?;
            }
            Ok(keys.len())
        })
        .await
    }

    /// The replication status of a key, for `x-amz-replication-status`; `None`
    /// when no rule covers the bucket and it is no replica.
    pub async fn replication_state(
        &self,
        bucket: &str,
        key: &str,
    ) -> MetaResult<Option<ReplicationState>> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        self.read(move |txn| {
            if txn
                .open_table(REPLICA_BUCKETS)?
                .get(bucket.as_str())?
                .is_some()
            {
                return Ok(Some(ReplicationState::Replica));
            }
            if txn
                .open_table(REPLICATION_RULES)?
                .get(bucket.as_str())?
                .is_none()
            {
                return Ok(None);
            }
            let k = object_key(&bucket, &key);
            if txn
                .open_table(REPLICATION_FAILED)?
                .get(k.as_slice())?
                .is_some()
            {
                return Ok(Some(ReplicationState::Failed));
            }
            let lo = outbox_key(&bucket, &key, 0);
            let hi = outbox_key(&bucket, &key, u64::MAX);
            let queued = txn
                .open_table(OUTBOX_KEYS)?
                .range(lo.as_slice()..=hi.as_slice())?
                .next()
                .is_some();
            let resync = txn.open_table(RESYNC)?;
            let unreached = resync
                .get(bucket.as_str())?
                .is_some_and(|after| after.value().is_empty() || key.as_str() > after.value());
            Ok(Some(match queued || unreached {
                true => ReplicationState::Pending,
                false => ReplicationState::Completed,
            }))
        })
        .await
    }

    /// The replica buckets, on the calling thread (start-up).
    pub fn replica_buckets_blocking(&self) -> MetaResult<Vec<(String, ReplicaRecord)>> {
        self.read_blocking(|txn| all_rows(txn, REPLICA_BUCKETS))
    }
}

/// Drops a deleted bucket's rule and replica mark.
pub(super) fn forget_bucket(txn: &WriteTransaction, bucket: &str) -> MetaResult<()> {
    forget_failed(txn, bucket)?;
    txn.open_table(REPLICATION_RULES)?.remove(bucket)?;
    txn.open_table(RESYNC)?.remove(bucket)?;
    txn.open_table(REPLICA_BUCKETS)?.remove(bucket)?;
    Ok(())
}

/// Drops a bucket's failed keys (its rule or the bucket went).
fn forget_failed(txn: &WriteTransaction, bucket: &str) -> MetaResult<()> {
    let (lo, hi) = list::bucket_bounds(bucket, "");
    txn.open_table(REPLICATION_FAILED)?
        .retain_in(lo.as_slice()..hi.as_slice(), |_, _| false)?;
    Ok(())
}

/// The `OUTBOX_KEYS` row of an event.
pub(super) fn outbox_key(bucket: &str, key: &str, seq: u64) -> Vec<u8> {
    let mut k = object_key(bucket, key);
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}
