//! Versions as a replica stores them. Each keeps the version id, `seq`, time and
//! tags the source gave it, so the replica lists, reads and deletes the same
//! versions under the same ids, ordered by the source's `seq` as on the source.
//!
//! The sync of one key (driven by `replication::sender`), every step idempotent:
//! 1. the source sends a stamp of each of its versions (`VersionStamp`);
//!    `version_diff` answers which the replica lacks (or holds with other tags) and
//!    how many it holds that the source does not;
//! 2. `apply_version` stores each lacking version (a stamp already held changes
//!    nothing, or only its tags);
//! 3. `prune_versions` removes the versions the source no longer has.
//!
//! Invariants, besides those of `versions`:
//! - A replica holds at most one version per (version id, seq), and at most one
//!   "null" version: a "null" version received replaces the one held.
//! - The replica's version counter stays above every `seq` it received, so a
//!   version written after a promotion is the newest.
//! - Applying and pruning append outbox events like any commit, so a replica can be
//!   the source of a rule of its own.
//!
//! Holds: chunks a source sends ahead of a version's commit carry one reference
//! each under the source's hold id (`HOLDS` row hold ++ chunk id, taken at most once
//! per chunk and hold), so the cleaner cannot collect them however long the
//! transfer takes. The commit releases the hold after taking the manifest's own
//! references; a hold nobody released (the source crashed or gave up) expires after
//! `HOLD_TTL` untouched (`expire_holds`, run by the cleaner). Recounts of references
//! (verify, repair) count hold rows like manifest entries.

use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::versions::{count_in, delete_key, key_versions, version_key};
use super::{
    BUCKETS, C_NEXT_VERSION, CHUNKS, COUNTERS, ChunkId, ChunkRef, CounterTable, EventKind,
    MetaError, MetaResult, MetaStore, NULL_VERSION, OBJECTS, ObjectData, ObjectRecord, OutboxEvent,
    PartPiece, SEGMENTS, VERSIONS, Versioning, adjust_refs, append_outbox, bucket_stats_w, counter,
    decode_record, encode_record, get_bucket, get_bucket_w, insert_manifest, object_key,
    put_bucket_stats, release_refs_at, unix_secs,
};

/// hold id (16 bytes) ++ chunk id -> (): one reference held on the chunk.
pub(super) const HOLDS: TableDefinition<&[u8], ()> = TableDefinition::new("replica_holds");
/// hold id -> unix seconds it was last added to.
pub(super) const HOLD_TOUCHED: TableDefinition<&[u8], u64> =
    TableDefinition::new("replica_hold_touched");
/// A hold untouched this long is released.
pub const HOLD_TTL_SECS: u64 = 24 * 3600;

pub type HoldId = [u8; 16];

fn hold_key(hold: &HoldId, id: &ChunkId) -> Vec<u8> {
    let mut k = hold.to_vec();
    k.extend_from_slice(id);
    k
}

/// What identifies a version across the two hoards, and its tags (which change
/// without a new version).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionStamp {
    pub version_id: String,
    pub seq: u64,
    pub tags: Vec<(String, String)>,
}

impl VersionStamp {
    pub fn of(rec: &ObjectRecord) -> VersionStamp {
        VersionStamp {
            version_id: rec.version_id.clone(),
            seq: rec.seq,
            tags: rec.tags.clone(),
        }
    }

    fn same_version(&self, rec: &ObjectRecord) -> bool {
        self.version_id == rec.version_id && self.seq == rec.seq
    }
}

/// How a replica's versions of a key differ from the source's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionDiff {
    /// Version ids the replica lacks, or holds with other tags.
    pub lacking: Vec<String>,
    /// How many versions the replica holds that the source does not.
    pub extra: usize,
}

/// What `apply_version` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Stored as a new version: it now holds the references the caller took.
    Stored,
    /// Already held; at most its tags changed. The caller releases its references.
    Held,
}

impl MetaStore {
    /// All versions of a key, newest first (delete markers included); empty when the
    /// key or its bucket is gone.
    pub async fn key_versions(&self, bucket: &str, key: &str) -> MetaResult<Vec<ObjectRecord>> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        self.read(move |txn| {
            if get_bucket(txn, &bucket)?.is_none() {
                return Ok(Vec::new());
            }
            let (objects, versions) = (txn.open_table(OBJECTS)?, txn.open_table(VERSIONS)?);
            Ok(key_versions(&objects, &versions, &bucket, &key)?
                .into_iter()
                .map(|(r, _)| r)
                .collect())
        })
        .await
    }

    /// Compares the source's stamps of a key with the versions held here.
    pub async fn version_diff(
        &self,
        bucket: &str,
        key: &str,
        theirs: Vec<VersionStamp>,
    ) -> MetaResult<VersionDiff> {
        let ours = self.key_versions(bucket, key).await?;
        let lacking = theirs
            .iter()
            .filter(|s| !ours.iter().any(|r| s.same_version(r) && s.tags == r.tags))
            .map(|s| s.version_id.clone())
            .collect();
        let extra = ours
            .iter()
            .filter(|r| !theirs.iter().any(|s| s.same_version(r)))
            .count();
        Ok(VersionDiff { lacking, extra })
    }

    /// Stores a version received from a source under its own id and `seq`, its body
    /// in `manifest` (every part's chunk references in order; the caller holds one
    /// reference per occurrence). Idempotent: a version already held only takes the
    /// tags it came with.
    pub async fn apply_version(
        &self,
        bucket: &str,
        key: &str,
        rec: ObjectRecord,
        manifest: Vec<ChunkRef>,
    ) -> MetaResult<Applied> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        self.write(true, move |txn| {
            let mut bucket_rec = get_bucket_w(txn, &bucket)?.ok_or(MetaError::NoSuchBucket)?;
            if retag_held(txn, &bucket, &key, &rec)? {
                return Ok(Applied::Held);
            }
            let now = unix_secs();
            let mut counters = txn.open_table(COUNTERS)?;
            if rec.version_id == NULL_VERSION {
                delete_key(txn, &mut counters, &bucket, &key, Some(NULL_VERSION), now)?;
            }
            let mut rec = rec;
            rec.data = place_body(txn, &mut counters, &rec, &manifest)?;
            insert_by_seq(txn, &bucket, &key, &rec)?;
            let mut stats = bucket_stats_w(txn, &bucket)?;
            count_in(&mut stats, &mut counters, &rec)?;
            put_bucket_stats(txn, &bucket, &stats)?;
            if counter(&counters, C_NEXT_VERSION)? <= rec.seq {
                counters.insert(C_NEXT_VERSION, rec.seq + 1)?;
            }
            // The replica's versioning follows the versions it holds.
            if rec.version_id != NULL_VERSION && bucket_rec.versioning == Versioning::Unversioned {
                bucket_rec.versioning = Versioning::Enabled;
                txn.open_table(BUCKETS)?
                    .insert(bucket.as_str(), encode_record(&bucket_rec)?.as_slice())?;
            }
            let kind = match rec.delete_marker {
                true => EventKind::Delete,
                false => EventKind::Put {
                    etag: rec.etag.clone(),
                    size: rec.size,
                },
            };
            append_outbox(
                txn,
                &mut counters,
                &OutboxEvent {
                    bucket: bucket.clone(),
                    key: key.clone(),
                    version_id: rec.version_id.clone(),
                    kind,
                    time_ms: rec.modified_ms,
                },
            )?;
            Ok(Applied::Stored)
        })
        .await
    }

    /// Removes every version of the key that is not among `keep` (the source's
    /// stamps); returns how many were removed.
    pub async fn prune_versions(
        &self,
        bucket: &str,
        key: &str,
        keep: Vec<VersionStamp>,
    ) -> MetaResult<usize> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        self.write(true, move |txn| {
            if get_bucket_w(txn, &bucket)?.is_none() {
                return Err(MetaError::NoSuchBucket);
            }
            let extra: Vec<String> = {
                let (objects, versions) = (txn.open_table(OBJECTS)?, txn.open_table(VERSIONS)?);
                key_versions(&objects, &versions, &bucket, &key)?
                    .into_iter()
                    .filter(|(r, _)| !keep.iter().any(|s| s.same_version(r)))
                    .map(|(r, _)| r.version_id)
                    .collect()
            };
            let now = unix_secs();
            let mut counters = txn.open_table(COUNTERS)?;
            for id in &extra {
                delete_key(txn, &mut counters, &bucket, &key, Some(id), now)?;
            }
            Ok(extra.len())
        })
        .await
    }
}

impl MetaStore {
    /// Which of `ids` the hold has a reference on already.
    pub async fn held(&self, hold: HoldId, ids: Vec<ChunkId>) -> MetaResult<Vec<bool>> {
        self.read(move |txn| {
            let t = txn.open_table(HOLDS)?;
            ids.iter()
                .map(|id| Ok(t.get(hold_key(&hold, id).as_slice())?.is_some()))
                .collect()
        })
        .await
    }

    /// Takes one reference under the hold on each of `ids` that is indexed and not
    /// held by it yet; returns which ids had no chunk row (not held).
    pub async fn hold_chunks(&self, hold: HoldId, ids: Vec<ChunkId>) -> MetaResult<Vec<ChunkId>> {
        self.write(false, move |txn| {
            let now = unix_secs();
            let mut chunks = txn.open_table(CHUNKS)?;
            let mut segments = txn.open_table(SEGMENTS)?;
            let mut holds = txn.open_table(HOLDS)?;
            let mut gone = Vec::new();
            for id in ids {
                let k = hold_key(&hold, &id);
                if holds.get(k.as_slice())?.is_some() {
                    continue;
                }
                match adjust_refs(&mut chunks, &mut segments, &id, 1, now)? {
                    true => {
                        holds.insert(k.as_slice(), ())?;
                    }
                    false => gone.push(id),
                }
            }
            txn.open_table(HOLD_TOUCHED)?.insert(hold.as_slice(), now)?;
            Ok(gone)
        })
        .await
    }

    /// Releases a hold: one reference off each chunk it holds.
    pub async fn release_hold(&self, hold: HoldId) -> MetaResult<()> {
        self.write(false, move |txn| drop_hold(txn, &hold, unix_secs()))
            .await
    }

    /// Releases the holds untouched since `before` (unix seconds); returns how many.
    pub async fn expire_holds(&self, before: u64) -> MetaResult<usize> {
        self.write(true, move |txn| {
            let stale: Vec<HoldId> = {
                let t = txn.open_table(HOLD_TOUCHED)?;
                let mut out = Vec::new();
                for row in t.iter()? {
                    let (k, v) = row?;
                    if v.value() < before
                        && let Ok(h) = HoldId::try_from(k.value())
                    {
                        out.push(h);
                    }
                }
                out
            };
            let now = unix_secs();
            for h in &stale {
                drop_hold(txn, h, now)?;
            }
            Ok(stale.len())
        })
        .await
    }
}

fn drop_hold(txn: &redb::WriteTransaction, hold: &HoldId, now: u64) -> MetaResult<()> {
    let lo = hold_key(hold, &[0; 32]);
    let hi = hold_key(hold, &[0xff; 32]);
    let ids: Vec<ChunkId> = {
        let holds = txn.open_table(HOLDS)?;
        let mut out = Vec::new();
        for row in holds.range(lo.as_slice()..=hi.as_slice())? {
            let (k, _) = row?;
            if let Ok(id) = ChunkId::try_from(&k.value()[16..]) {
                out.push(id);
            }
        }
        out
    };
    let refs: Vec<(ChunkId, u32)> = ids.iter().map(|id| (*id, 1)).collect();
    release_refs_at(txn, &refs, now)?;
    txn.open_table(HOLDS)?
        .retain_in(lo.as_slice()..=hi.as_slice(), |_, _| false)?;
    txn.open_table(HOLD_TOUCHED)?.remove(hold.as_slice())?;
    Ok(())
}

/// Hold rows per chunk id: references a recount must add to the manifests'.
pub(super) fn held_refs(
    holds: &impl ReadableTable<&'static [u8], ()>,
    counted: &mut std::collections::HashMap<ChunkId, u64>,
) -> MetaResult<()> {
    for row in holds.iter()? {
        let (k, _) = row?;
        if let Ok(id) = ChunkId::try_from(&k.value()[16..]) {
            *counted.entry(id).or_default() += 1;
        }
    }
    Ok(())
}

/// When the replica holds this version already, gives it the received tags and
/// says so.
fn retag_held(
    txn: &redb::WriteTransaction,
    bucket: &str,
    key: &str,
    rec: &ObjectRecord,
) -> MetaResult<bool> {
    let stamp = VersionStamp::of(rec);
    let mut objects = txn.open_table(OBJECTS)?;
    let mut versions = txn.open_table(VERSIONS)?;
    let held = key_versions(&objects, &versions, bucket, key)?
        .into_iter()
        .find(|(r, _)| stamp.same_version(r));
    let Some((mut old, current)) = held else {
        return Ok(false);
    };
    if old.tags != rec.tags {
        old.tags = rec.tags.clone();
        let value = encode_record(&old)?;
        match current {
            true => objects.insert(object_key(bucket, key).as_slice(), value.as_slice())?,
            false => versions.insert(
                version_key(bucket, key, old.seq).as_slice(),
                value.as_slice(),
            )?,
        };
    }
    Ok(true)
}

/// Puts a version where its `seq` ranks it: current when it is the newest.
fn insert_by_seq(
    txn: &redb::WriteTransaction,
    bucket: &str,
    key: &str,
    rec: &ObjectRecord,
) -> MetaResult<()> {
    let mut objects = txn.open_table(OBJECTS)?;
    let mut versions = txn.open_table(VERSIONS)?;
    let okey = object_key(bucket, key);
    let current: Option<ObjectRecord> = objects
        .get(okey.as_slice())?
        .map(|v| decode_record(v.value()))
        .transpose()?;
    match current {
        Some(cur) if cur.seq > rec.seq => {
            versions.insert(
                version_key(bucket, key, rec.seq).as_slice(),
                encode_record(rec)?.as_slice(),
            )?;
        }
        cur => {
            if let Some(cur) = cur {
                versions.insert(
                    version_key(bucket, key, cur.seq).as_slice(),
                    encode_record(&cur)?.as_slice(),
                )?;
            }
            objects.insert(okey.as_slice(), encode_record(rec)?.as_slice())?;
        }
    }
    Ok(())
}

/// The body of a received version, its manifests stored here: one for a chunked
/// object, one per part for a multipart object (the parts' chunk counts split the
/// received manifest).
fn place_body(
    txn: &redb::WriteTransaction,
    counters: &mut CounterTable<'_>,
    rec: &ObjectRecord,
    manifest: &[ChunkRef],
) -> MetaResult<ObjectData> {
    if rec.chunk_count() != manifest.len() {
        return Err(MetaError::Corrupt(format!(
            "a received version names {} chunks but its manifest holds {}",
            rec.chunk_count(),
            manifest.len()
        )));
    }
    Ok(match &rec.data {
        ObjectData::Inline(d) => ObjectData::Inline(d.clone()),
        ObjectData::Chunked { chunks, .. } => ObjectData::Chunked {
            manifest: insert_manifest(txn, counters, manifest)?,
            chunks: *chunks,
        },
        ObjectData::Parts(parts) => {
            let mut rest = manifest;
            let mut placed = Vec::with_capacity(parts.len());
            for p in parts {
                let (mine, after) = rest.split_at(p.chunks as usize);
                rest = after;
                placed.push(PartPiece {
                    manifest: insert_manifest(txn, counters, mine)?,
                    ..*p
                });
            }
            ObjectData::Parts(placed)
        }
    })
}
