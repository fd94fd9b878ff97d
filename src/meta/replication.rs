//! Replication metadata: on a source, the rules (several per source bucket, each
//! with its own cursor into the outbox); on a replica, which buckets are replicas
//! (read-only to S3 clients, written only by the replication link).
//!
//! A rule is named by its rule key: `bucket/ID`, or the bare bucket name for the
//! rule with id `FIRST_RULE_ID` (the one rule a bucket had before rules had ids,
//! whose rows keep their keys). Every per-rule table (resync, cursors, failed keys,
//! sender reports, manual runs) is keyed by the rule key.
//!
//! Invariants:
//! - An outbox event is removed only when every rule of its bucket has passed it
//!   (its cursor is beyond the event's sequence number), or its bucket has no rule;
//!   cursors only grow (`settle_outbox`).
//! - A new rule's cursor starts at the next sequence number, in the transaction
//!   that stores it: the events before it are not its own (its resync, if any,
//!   sends what exists).

use super::kv::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{
    C_OUTBOX_SEQ, COUNTERS, EventKind, MetaError, MetaResult, MetaStore, OBJECTS, OUTBOX,
    OutboxEvent, all_rows, append_outbox, decode_record, encode_record, get_bucket_w, list, now_ms,
    object_key,
};

/// Rule key -> `RuleRecord`.
pub(super) const REPLICATION_RULES: TableDefinition<&str, &[u8]> =
    TableDefinition::new("replication_rules");
/// Rule key -> the outbox sequence number below which the rule has dealt with
/// every event of its bucket. No row: 0 (a rule made before cursors existed).
pub(super) const CURSORS: TableDefinition<&str, u64> = TableDefinition::new("replication_cursors");
/// rule key \0 key -> the `seq` of the newest source version of the key a plain S3
/// target has (written, or deleted by its delete marker): what makes writes to such
/// a target idempotent.
pub(super) const TARGET_SEQS: TableDefinition<&[u8], u64> =
    TableDefinition::new("replication_target_seqs");
/// Rule key -> the last key its resync sent ("" before the first): the objects
/// that existed before the rule, walked in key order. No row: no resync pending.
pub(super) const RESYNC: TableDefinition<&str, &str> = TableDefinition::new("replication_resync");
/// bucket \0 key \0 outbox seq (u64 BE) -> (): the outbox's events by key, kept
/// with the outbox in the same transactions, so a key's replication status is one
/// range lookup.
pub(super) const OUTBOX_KEYS: TableDefinition<&[u8], ()> = TableDefinition::new("outbox_keys");
/// rule key \0 key -> `FailedRecord`: keys whose sync failed in a way a retry cannot
/// mend (the replica refused it, or a chunk of it cannot be read here). They left
/// the queue so the bucket's later changes move; a requeue (by the admin, or the
/// sender's periodic one) puts them back.
pub(super) const REPLICATION_FAILED: TableDefinition<&[u8], &[u8]> =
    TableDefinition::new("replication_failed");
/// Target name -> a rule template (`replication::rules::AddRule` as JSON), sealed
/// whole since it holds the target's secret. S3 PutBucketReplication names one by
/// its ARN.
/// On PostgreSQL: rule key -> what the gateway sending the rule last published of its
/// progress (the sender's format; `meta` stores it as it is).
pub(super) const SENDER_REPORTS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("replication_sender_reports");
/// On PostgreSQL: rule key -> when a manual run was asked for (unix ms), on any
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
    /// None: a plain S3 target reached over http:// (bodies are signed, not
    /// encrypted).
    PlainHttp,
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
    /// What the rule sends (record format 6); `None`: all of it (`RuleScope::default`).
    pub scope: Option<RuleScope>,
    /// What the target is (record format 7); `None`: another hoard.
    pub kind: Option<TargetKind>,
}

/// What a rule's target speaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TargetKind {
    /// Another hoard: the replication protocol, sending only the chunks it lacks.
    Hoard,
    /// A plain S3 bucket (AWS S3, another vendor, a hoard's ordinary bucket):
    /// objects rehydrated and written with PUT or multipart, path-style, SigV4 in
    /// `region`.
    S3 { region: String },
}

/// The id of the rule whose rows are keyed by the bare bucket name: the one rule a
/// bucket had before rules had ids (and what GetBucketReplication called it).
pub const FIRST_RULE_ID: &str = "hoard";

/// The key of rule `id` of `bucket` in the per-rule tables.
pub fn rule_key(bucket: &str, id: &str) -> String {
    match id {
        FIRST_RULE_ID => bucket.to_owned(),
        id => format!("{bucket}/{id}"),
    }
}

/// (bucket, rule id) of a rule key.
pub fn split_rule_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or((key, FIRST_RULE_ID))
}

/// Which versions a rule sends, as S3's replication rule `Filter`, `Priority`,
/// `DeleteMarkerReplication` and `ExistingObjectReplication` say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleScope {
    /// Among rules of a bucket towards the same replica bucket whose filters both
    /// match a version, the higher priority sends it.
    pub priority: u32,
    /// Keys starting with it ("" : every key).
    pub prefix: String,
    /// Versions carrying all these tags (key, value).
    pub tags: Vec<(String, String)>,
    /// Delete markers are sent (S3 `DeleteMarkerReplication: Enabled`).
    pub delete_markers: bool,
    /// The objects that existed before the rule are sent (a resync).
    pub existing_objects: bool,
}

impl Default for RuleScope {
    fn default() -> Self {
        RuleScope {
            priority: 0,
            prefix: String::new(),
            tags: Vec::new(),
            delete_markers: true,
            existing_objects: true,
        }
    }
}

impl RuleScope {
    /// Whether the filter admits `key` at all (its prefix).
    pub fn admits_key(&self, key: &str) -> bool {
        key.starts_with(&self.prefix)
    }

    /// Whether the filter admits a version of `key` with `tags`.
    pub fn admits(&self, key: &str, tags: &[(String, String)]) -> bool {
        self.admits_key(key) && self.tags.iter().all(|t| tags.contains(t))
    }
}

impl RuleRecord {
    pub fn scope(&self) -> RuleScope {
        self.scope.clone().unwrap_or_default()
    }
}

/// A rule's backlog (`MetaStore::outbox_backlog`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backlog {
    pub events: u64,
    pub bytes: u64,
    /// Commit time (unix ms) of the oldest event.
    pub oldest_ms: Option<i64>,
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
    /// The stores (hex ids) the bucket's data came through, the source first, as
    /// the last hello said (record format 6).
    pub chain: Option<Vec<String>>,
}

impl MetaStore {
    /// Stores a rule under its rule key; with `resync`, the bucket's existing objects
    /// are queued for it too (a resync from the first key), in the same transaction.
    /// A new rule's cursor starts at the next outbox event.
    pub async fn put_rule(
        &self,
        rule_key: &str,
        rule: &RuleRecord,
        resync: bool,
    ) -> MetaResult<()> {
        let key = rule_key.to_owned();
        let bytes = encode_record(rule)?;
        self.write(true, move |txn| {
            if get_bucket_w(txn, split_rule_key(&key).0)?.is_none() {
                return Err(MetaError::NoSuchBucket);
            }
            let mut rules = txn.open_table(REPLICATION_RULES)?;
            if rules.insert(key.as_str(), bytes.as_slice())?.is_none() {
                let next = super::counter(&txn.open_table(COUNTERS)?, C_OUTBOX_SEQ)?.max(1);
                txn.open_table(CURSORS)?.insert(key.as_str(), next)?;
            }
            if resync {
                txn.open_table(RESYNC)?.insert(key.as_str(), "")?;
            }
            Ok(())
        })
        .await
    }

    /// Where a rule's resync stands (the last key sent), if one is pending.
    pub async fn resync_cursor(&self, rule_key: &str) -> MetaResult<Option<String>> {
        let key = rule_key.to_owned();
        self.read(move |txn| {
            Ok(txn
                .open_table(RESYNC)?
                .get(key.as_str())?
                .map(|v| v.value().to_owned()))
        })
        .await
    }

    /// Moves a rule's resync past `after`, or ends it (`None`), durably; a resync
    /// that was cancelled meanwhile (rule removed) stays ended.
    pub async fn advance_resync(&self, rule_key: &str, after: Option<String>) -> MetaResult<()> {
        let key = rule_key.to_owned();
        self.write(true, move |txn| {
            let mut t = txn.open_table(RESYNC)?;
            if t.get(key.as_str())?.is_none() {
                return Ok(());
            }
            match after {
                Some(k) => t.insert(key.as_str(), k.as_str())?,
                None => t.remove(key.as_str())?,
            };
            Ok(())
        })
        .await
    }

    /// Removes a rule with its cursor, resync and failed keys; true if there was one.
    /// The events only it still needed go at the sender's next sweep.
    pub async fn remove_rule(&self, rule_key: &str) -> MetaResult<bool> {
        let key = rule_key.to_owned();
        self.write(true, move |txn| forget_rule(txn, &key)).await
    }

    /// The outbox sequence number below which a rule has dealt with every event.
    pub async fn rule_cursor(&self, rule_key: &str) -> MetaResult<u64> {
        let key = rule_key.to_owned();
        self.read(move |txn| {
            Ok(txn
                .open_table(CURSORS)?
                .get(key.as_str())?
                .map_or(0, |v| v.value()))
        })
        .await
    }

    /// Moves a rule's cursor to `passed` (never back; not for a rule removed
    /// meanwhile), then removes those of the events `seqs` that every rule of their
    /// bucket has passed or whose bucket has no rule, in one durable transaction.
    pub async fn settle_outbox(
        &self,
        advance: Option<(String, u64)>,
        seqs: Vec<u64>,
    ) -> MetaResult<()> {
        self.write(true, move |txn| {
            let mut cursors = txn.open_table(CURSORS)?;
            if let Some((key, passed)) = advance {
                let exists = txn
                    .open_table(REPLICATION_RULES)?
                    .get(key.as_str())?
                    .is_some();
                let old = cursors.get(key.as_str())?.map_or(0, |v| v.value());
                if exists && passed > old {
                    cursors.insert(key.as_str(), passed)?;
                }
            }
            if seqs.is_empty() {
                return Ok(());
            }
            // The lowest cursor of each bucket's rules: its events below it are done.
            let mut lowest: std::collections::HashMap<String, u64> = Default::default();
            for row in txn.open_table(REPLICATION_RULES)?.range::<&str>(..)? {
                let (k, _) = row?;
                let cursor = cursors.get(k.value())?.map_or(0, |v| v.value());
                let low = lowest
                    .entry(split_rule_key(k.value()).0.to_owned())
                    .or_insert(u64::MAX);
                *low = (*low).min(cursor);
            }
            let mut outbox = txn.open_table(OUTBOX)?;
            let mut by_key = txn.open_table(OUTBOX_KEYS)?;
            for seq in seqs {
                let Some(ev) = outbox
                    .get(seq)?
                    .map(|v| decode_record::<OutboxEvent>(v.value()))
                else {
                    continue;
                };
                let ev = ev?;
                if lowest.get(&ev.bucket).is_some_and(|low| *low <= seq) {
                    continue;
                }
                outbox.remove(seq)?;
                by_key.remove(outbox_key(&ev.bucket, &ev.key, seq).as_slice())?;
            }
            Ok(())
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

    /// Publishes what this gateway's sender reports of a rule (by rule key), for the
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

    /// The last report the sender of a rule (by rule key) published (`None` on redb).
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

    /// Asks the gateway sending a rule (by rule key), whichever it is, for a manual run.
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

    /// Takes the manual runs asked for of `buckets` (the rule keys this gateway sends).
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

    /// This store's id (random, made at its first open).
    pub async fn store_id(&self) -> MetaResult<u64> {
        self.read(|txn| super::counter(&txn.open_table(COUNTERS)?, super::C_STORE_ID))
            .await
    }

    /// The stores a replica bucket's data came through (the source first), as its
    /// source's last hello said; `None` when the bucket is no replica.
    pub async fn replica_chain(&self, bucket: &str) -> MetaResult<Option<Vec<String>>> {
        let bucket = bucket.to_owned();
        self.read(move |txn| {
            let t = txn.open_table(REPLICA_BUCKETS)?;
            let Some(v) = t.get(bucket.as_str())? else {
                return Ok(None);
            };
            let rec: ReplicaRecord = decode_record(v.value())?;
            Ok(Some(rec.chain.unwrap_or_default()))
        })
        .await
    }

    /// Makes `bucket` a replica, or records the chain of a new hello if it is one
    /// already. A bucket that holds objects and is not a replica is refused
    /// (`BucketNotEmpty`): its objects would mix with the source's.
    pub async fn mark_replica(&self, bucket: &str, rec: ReplicaRecord) -> MetaResult<()> {
        let bucket = bucket.to_owned();
        let bytes = encode_record(&rec)?;
        self.write(true, move |txn| {
            if get_bucket_w(txn, &bucket)?.is_none() {
                return Err(MetaError::NoSuchBucket);
            }
            let mut replicas = txn.open_table(REPLICA_BUCKETS)?;
            let held = replicas
                .get(bucket.as_str())?
                .map(|v| decode_record::<ReplicaRecord>(v.value()))
                .transpose()?;
            if let Some(old) = held {
                let chain = decode_record::<ReplicaRecord>(&bytes)?.chain;
                if old.chain != chain {
                    let updated = encode_record(&ReplicaRecord { chain, ..old })?;
                    replicas.insert(bucket.as_str(), updated.as_slice())?;
                }
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

    /// What a rule has still to send from `from` on: the events of `bucket` under
    /// `prefix`, the logical bytes of the versions they wrote, the oldest's time.
    pub async fn outbox_backlog(
        &self,
        bucket: &str,
        prefix: &str,
        from: u64,
    ) -> MetaResult<Backlog> {
        let (bucket, prefix) = (bucket.to_owned(), prefix.to_owned());
        self.read(move |txn| {
            let mut backlog = Backlog::default();
            for row in txn.open_table(OUTBOX)?.range(from..)? {
                let (_, v) = row?;
                let ev: OutboxEvent = decode_record(v.value())?;
                if ev.bucket != bucket || !ev.key.starts_with(&prefix) {
                    continue;
                }
                backlog.events += 1;
                if let EventKind::Put { size, .. } = ev.kind {
                    backlog.bytes += size;
                }
                backlog.oldest_ms.get_or_insert(ev.time_ms);
            }
            Ok(backlog)
        })
        .await
    }

    /// The `seq` of the newest version of `key` a rule's plain S3 target has (0:
    /// none).
    pub async fn target_seq(&self, rule_key: &str, key: &str) -> MetaResult<u64> {
        let k = object_key(rule_key, key);
        self.read(move |txn| {
            Ok(txn
                .open_table(TARGET_SEQS)?
                .get(k.as_slice())?
                .map_or(0, |v| v.value()))
        })
        .await
    }

    /// Records, durably, that a rule's plain S3 target has the versions of `key` up
    /// to `seq`.
    pub async fn set_target_seq(&self, rule_key: &str, key: &str, seq: u64) -> MetaResult<()> {
        let k = object_key(rule_key, key);
        self.write(true, move |txn| {
            txn.open_table(TARGET_SEQS)?.insert(k.as_slice(), seq)?;
            Ok(())
        })
        .await
    }

    /// Records, durably, that a key's sync by a rule (by rule key) failed for good.
    pub async fn mark_failed(&self, rule_key: &str, key: &str, error: String) -> MetaResult<()> {
        let k = object_key(rule_key, key);
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

    /// Forgets a key's failure once a rule replicated it (a read when there is none).
    pub async fn clear_failed(&self, rule_key: &str, key: &str) -> MetaResult<()> {
        let k = object_key(rule_key, key);
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

    /// Up to `max` failed keys of a rule (by rule key) with their records, and how
    /// many there are.
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

    /// Puts a rule's failed keys back into the queue (one event each, which the
    /// bucket's other rules see as a harmless re-check); returns how many.
    pub async fn requeue_failed(&self, rule_key: &str) -> MetaResult<usize> {
        let bucket = rule_key.to_owned();
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
                    bucket: split_rule_key(&bucket).0.to_owned(),
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
            let rules = bucket_rule_keys(&txn.open_table(REPLICATION_RULES)?, &bucket)?;
            if rules.is_empty() {
                return Ok(None);
            }
            let failed = txn.open_table(REPLICATION_FAILED)?;
            for rule in &rules {
                if failed.get(object_key(rule, &key).as_slice())?.is_some() {
                    return Ok(Some(ReplicationState::Failed));
                }
            }
            let lo = outbox_key(&bucket, &key, 0);
            let hi = outbox_key(&bucket, &key, u64::MAX);
            let queued = txn
                .open_table(OUTBOX_KEYS)?
                .range(lo.as_slice()..=hi.as_slice())?
                .next()
                .is_some();
            let resync = txn.open_table(RESYNC)?;
            let mut unreached = false;
            for rule in &rules {
                unreached |= resync
                    .get(rule.as_str())?
                    .is_some_and(|after| after.value().is_empty() || key.as_str() > after.value());
            }
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

/// Drops a deleted bucket's rules and replica mark.
pub(super) fn forget_bucket(txn: &WriteTransaction, bucket: &str) -> MetaResult<()> {
    let rules = bucket_rule_keys(&txn.open_table(REPLICATION_RULES)?, bucket)?;
    for rule in rules {
        forget_rule(txn, &rule)?;
    }
    txn.open_table(REPLICA_BUCKETS)?.remove(bucket)?;
    Ok(())
}

/// Drops a rule with its cursor, resync and failed keys; true if there was one.
fn forget_rule(txn: &WriteTransaction, rule_key: &str) -> MetaResult<bool> {
    let (lo, hi) = list::bucket_bounds(rule_key, "");
    txn.open_table(REPLICATION_FAILED)?
        .retain_in(lo.as_slice()..hi.as_slice(), |_, _| false)?;
    txn.open_table(TARGET_SEQS)?
        .retain_in(lo.as_slice()..hi.as_slice(), |_, _| false)?;
    txn.open_table(RESYNC)?.remove(rule_key)?;
    txn.open_table(CURSORS)?.remove(rule_key)?;
    Ok(txn
        .open_table(REPLICATION_RULES)?
        .remove(rule_key)?
        .is_some())
}

/// The rule keys of `bucket`'s rules.
fn bucket_rule_keys(
    rules: &impl ReadableTable<&'static str, &'static [u8]>,
    bucket: &str,
) -> MetaResult<Vec<String>> {
    // "bucket" and "bucket/ID" sort between "bucket" and "bucket0" ('0' follows '/').
    let hi = format!("{bucket}0");
    let mut out = Vec::new();
    for row in rules.range(bucket..hi.as_str())? {
        let (k, _) = row?;
        if split_rule_key(k.value()).0 == bucket {
            out.push(k.value().to_owned());
        }
    }
    Ok(out)
}

/// The `OUTBOX_KEYS` row of an event.
pub(super) fn outbox_key(bucket: &str, key: &str, seq: u64) -> Vec<u8> {
    let mut k = object_key(bucket, key);
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> RuleRecord {
        RuleRecord {
            target: "https://replica:9000".into(),
            target_bucket: "mirror".into(),
            access_key: "k".into(),
            sealed_secret: Vec::new(),
            trust: TargetTrust::Fingerprint("00".repeat(32)),
            windows: Vec::new(),
            connections: 1,
            bandwidth: 0,
            paused: false,
            created_ms: 0,
            scope: None,
            kind: None,
        }
    }

    /// Appends one outbox event of `bucket` per key (through a failed key's requeue).
    async fn events(meta: &MetaStore, bucket: &str, keys: &[&str]) {
        for k in keys {
            meta.mark_failed(bucket, k, "x".into()).await.unwrap();
        }
        meta.requeue_failed(bucket).await.unwrap();
    }

    async fn outbox(meta: &MetaStore) -> Vec<u64> {
        let page = meta.outbox_events(0, 100).await.unwrap();
        page.into_iter().map(|(seq, _)| seq).collect()
    }

    #[tokio::test]
    async fn an_event_leaves_the_outbox_when_every_rule_of_its_bucket_passed_it() {
        let dir = tempfile::tempdir().unwrap();
        let meta = MetaStore::open(&dir.path().join("meta.redb"), 1 << 20).unwrap();
        for b in ["b", "c"] {
            meta.create_bucket(b, super::super::test_bucket())
                .await
                .unwrap();
        }
        meta.put_rule("b", &rule(), false).await.unwrap();
        meta.put_rule(&rule_key("b", "far"), &rule(), false)
            .await
            .unwrap();
        events(&meta, "b", &["k1", "k2"]).await;
        events(&meta, "c", &["other"]).await;
        let seqs = outbox(&meta).await;
        assert_eq!(seqs.len(), 3);
        let (e1, e2, e3) = (seqs[0], seqs[1], seqs[2]);
        assert_eq!(
            meta.replication_state("b", "k1").await.unwrap(),
            Some(ReplicationState::Pending)
        );

        // The first rule passes both: the far rule still needs them. The event of
        // the bucket without a rule goes.
        meta.settle_outbox(Some(("b".into(), e2 + 1)), vec![e1, e2, e3])
            .await
            .unwrap();
        assert_eq!(outbox(&meta).await, [e1, e2]);
        let backlog = meta.outbox_backlog("b", "", e1).await.unwrap();
        assert_eq!(backlog.events, 2);
        meta.settle_outbox(Some((rule_key("b", "far"), e2)), vec![e1])
            .await
            .unwrap();
        assert_eq!(outbox(&meta).await, [e2]);

        // Cursors never move back; a new rule does not hold older events; once the
        // far rule is removed nothing holds the last one.
        meta.settle_outbox(Some(("b".into(), 1)), Vec::new())
            .await
            .unwrap();
        assert_eq!(meta.rule_cursor("b").await.unwrap(), e2 + 1);
        meta.put_rule(&rule_key("b", "late"), &rule(), false)
            .await
            .unwrap();
        assert!(meta.rule_cursor(&rule_key("b", "late")).await.unwrap() > e3);
        meta.settle_outbox(None, vec![e2]).await.unwrap();
        assert_eq!(outbox(&meta).await, [e2]);
        assert!(meta.remove_rule(&rule_key("b", "far")).await.unwrap());
        meta.settle_outbox(None, vec![e2]).await.unwrap();
        assert!(outbox(&meta).await.is_empty());
        assert_eq!(
            meta.replication_state("b", "k1").await.unwrap(),
            Some(ReplicationState::Completed)
        );

        // A key failed for one of the rules is FAILED.
        meta.mark_failed(&rule_key("b", "late"), "k1", "refused".into())
            .await
            .unwrap();
        assert_eq!(
            meta.replication_state("b", "k1").await.unwrap(),
            Some(ReplicationState::Failed)
        );
        assert_eq!(meta.rules().await.unwrap().len(), 2);
    }

    #[test]
    fn rule_keys_name_the_bucket_and_the_id() {
        assert_eq!(rule_key("data", FIRST_RULE_ID), "data");
        assert_eq!(rule_key("data", "far/site 2"), "data/far/site 2");
        assert_eq!(split_rule_key("data"), ("data", FIRST_RULE_ID));
        assert_eq!(split_rule_key("data/far/site 2"), ("data", "far/site 2"));
        let scope = RuleScope {
            prefix: "logs/".into(),
            tags: vec![("keep".into(), "yes".into())],
            ..RuleScope::default()
        };
        let tags = |t: &[(&str, &str)]| -> Vec<(String, String)> {
            t.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(scope.admits("logs/a", &tags(&[("team", "ops"), ("keep", "yes")])));
        assert!(!scope.admits("logs/a", &tags(&[("keep", "no")])));
        assert!(!scope.admits("other/a", &tags(&[("keep", "yes")])));
        assert!(RuleScope::default().admits("anything", &[]));
    }
}
