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
//! - A version that would take the bucket or the store over its quota is refused
//!   (`QuotaExceeded`) before anything changes, as a client's write would be.
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
//!
//! Staged parts: so that no request carries more than one part's manifest, a source
//! stages the parts of a multipart version one by one under the version's hold
//! (`stage_part`: the part's references are taken and its manifest stored, in one
//! transaction; `STAGED` row hold ++ part number), and the commit carries only the
//! record and the manifests of the parts after the staged ones. `apply_version`
//! moves the staged manifests into the version, or drops them when the version is
//! held already, in the transaction that stores it, and releases the hold there too.
//! A staged manifest is a manifest row like any other, so recounts count it; a hold
//! that expires drops its staged manifests with its chunk references.

use super::kv::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::versions::{DeleteTarget, count_in, delete_key, key_versions, version_key};
use super::{
    BUCKETS, C_NEXT_VERSION, CHUNKS, COUNTERS, ChunkId, ChunkRef, CounterTable, EventKind,
    LockCheck, MetaError, MetaResult, MetaStore, NULL_VERSION, OBJECTS, ObjectData, ObjectRecord,
    OutboxEvent, PartPiece, SEGMENTS, VERSIONS, VersionLock, Versioning, adjust_refs,
    append_outbox, bucket_stats_w, counter, decode_record, encode_record, get_bucket, get_bucket_w,
    insert_manifest, object_key, put_bucket_stats, release_refs_at, unix_secs,
};

/// hold id (16 bytes) ++ chunk id -> (): one reference held on the chunk.
pub(super) const HOLDS: TableDefinition<&[u8], ()> = TableDefinition::new("replica_holds");
/// hold id -> unix seconds it was last added to.
pub(super) const HOLD_TOUCHED: TableDefinition<&[u8], u64> =
    TableDefinition::new("replica_hold_touched");
/// hold id (16 bytes) ++ part index (u32 BE) -> manifest id (u64 LE) ++ chunks (u32
/// LE): a part's manifest staged ahead of its version's commit.
pub(super) const STAGED: TableDefinition<&[u8], &[u8]> = TableDefinition::new("replica_staged");
/// A hold untouched this long is released.
pub const HOLD_TTL_SECS: u64 = 24 * 3600;

pub type HoldId = [u8; 16];

/// A fresh random hold id.
pub fn new_hold_id() -> MetaResult<HoldId> {
    let mut hold: HoldId = [0; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut hold)
        .map_err(|_| MetaError::Corrupt("no randomness for a hold id".into()))?;
    Ok(hold)
}

fn hold_key(hold: &HoldId, id: &ChunkId) -> Vec<u8> {
    let mut k = hold.to_vec();
    k.extend_from_slice(id);
    k
}

fn staged_key(hold: &HoldId, part: u32) -> Vec<u8> {
    let mut k = hold.to_vec();
    k.extend_from_slice(&part.to_be_bytes());
    k
}

/// The parts staged under a hold, in part order: (part index, manifest id, chunks).
fn staged_parts(
    staged: &impl ReadableTable<&'static [u8], &'static [u8]>,
    hold: &HoldId,
) -> MetaResult<Vec<(u32, u64, u32)>> {
    let (lo, hi) = (staged_key(hold, 0), staged_key(hold, u32::MAX));
    let mut out = Vec::new();
    for row in staged.range(lo.as_slice()..=hi.as_slice())? {
        let (k, v) = row?;
        let (k, v) = (k.value(), v.value());
        let bad = || MetaError::Corrupt("a staged part row is malformed".into());
        let part = u32::from_be_bytes(k[16..].try_into().map_err(|_| bad())?);
        let manifest =
            u64::from_le_bytes(v.get(..8).ok_or_else(bad)?.try_into().map_err(|_| bad())?);
        let chunks = u32::from_le_bytes(
            v.get(8..12)
                .ok_or_else(bad)?
                .try_into()
                .map_err(|_| bad())?,
        );
        out.push((part, manifest, chunks));
    }
    Ok(out)
}

/// The chunk count of each manifest a record's body needs, in order: none for an
/// inline body, one for a chunked object, one per part.
fn piece_chunks(rec: &ObjectRecord) -> Vec<u32> {
    match &rec.data {
        ObjectData::Inline(_) => Vec::new(),
        ObjectData::Chunked { chunks, .. } => vec![*chunks],
        ObjectData::Parts(parts) => parts.iter().map(|p| p.chunks).collect(),
    }
}

/// Checks that the staged parts are the record's first pieces, with their chunk
/// counts, and that `rest` (the commit's manifest) holds exactly the others.
fn check_staged(rec: &ObjectRecord, staged: &[(u32, u64, u32)], rest: usize) -> MetaResult<()> {
    let pieces = piece_chunks(rec);
    let fits = staged.len() <= pieces.len()
        && staged
            .iter()
            .enumerate()
            .all(|(i, (part, _, chunks))| *part as usize == i && *chunks == pieces[i]);
    let others: usize = pieces[staged.len().min(pieces.len())..]
        .iter()
        .map(|c| *c as usize)
        .sum();
    if fits && others == rest {
        return Ok(());
    }
    Err(MetaError::Unfit(format!(
        "the version has {} pieces; {} are staged and the commit names {rest} chunks for the rest",
        pieces.len(),
        staged.len()
    )))
}

/// What identifies a version across the two hoards, and its tags and Object Lock
/// state (which change without a new version).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionStamp {
    pub version_id: String,
    pub seq: u64,
    pub tags: Vec<(String, String)>,
    #[serde(default)]
    pub lock: Option<VersionLock>,
}

impl VersionStamp {
    pub fn of(rec: &ObjectRecord) -> VersionStamp {
        VersionStamp {
            version_id: rec.version_id.clone(),
            seq: rec.seq,
            tags: rec.tags.clone(),
            lock: rec.lock,
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
    /// Already held; at most its tags and lock changed. The references taken were released.
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
            .filter(|s| {
                !ours
                    .iter()
                    .any(|r| s.same_version(r) && s.tags == r.tags && s.lock == r.lock)
            })
            .map(|s| s.version_id.clone())
            .collect();
        let extra = ours
            .iter()
            .filter(|r| !theirs.iter().any(|s| s.same_version(r)))
            .count();
        Ok(VersionDiff { lacking, extra })
    }

    /// Stores a version received from a source under its own id and `seq`, its body
    /// in the parts staged under `hold` followed by `manifest` (the chunk references
    /// of the other parts in order; the caller holds one reference per occurrence
    /// under the upload hold `taken`, which the version takes over), and releases
    /// the hold. Idempotent: a version already held only takes the tags it came
    /// with, and `taken` is released.
    pub async fn apply_version(
        &self,
        bucket: &str,
        key: &str,
        rec: ObjectRecord,
        manifest: Vec<ChunkRef>,
        hold: Option<HoldId>,
        taken: HoldId,
    ) -> MetaResult<Applied> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        self.write(true, move |txn| {
            let mut bucket_rec = get_bucket_w(txn, &bucket)?.ok_or(MetaError::NoSuchBucket)?;
            let staged = match hold {
                Some(h) => staged_parts(&txn.open_table(STAGED)?, &h)?,
                None => Vec::new(),
            };
            check_staged(&rec, &staged, manifest.len())?;
            let now = unix_secs();
            if retag_held(txn, &bucket, &key, &rec)? {
                if let Some(h) = hold {
                    drop_hold(txn, &h, now)?;
                }
                super::held::release(txn, &taken, now)?;
                return Ok(Applied::Held);
            }
            // The replica's quotas hold for what it receives (a "null" version
            // replaces the one held).
            let replaces = (rec.version_id == NULL_VERSION).then_some(key.as_str());
            super::quota::ensure_quota(
                txn,
                &super::QuotaCheck {
                    bucket: &bucket,
                    key: replaces,
                    size: rec.size,
                },
            )?;
            let mut counters = txn.open_table(COUNTERS)?;
            if rec.version_id == NULL_VERSION {
                // Null versions exist only where versioning is not Enabled for good,
                // so none is locked; any lock it had would be judged strictly.
                delete_key(
                    txn,
                    &mut counters,
                    &bucket,
                    &DeleteTarget::new(&key, Some(NULL_VERSION.to_owned())),
                    LockCheck::STRICT,
                    now,
                )?;
            }
            let mut rec = rec;
            let staged: Vec<u64> = staged.iter().map(|(_, m, _)| *m).collect();
            rec.data = place_body(txn, &mut counters, &rec, &staged, &manifest)?;
            if let Some(h) = hold {
                // The staged manifests now belong to the version.
                let (lo, hi) = (staged_key(&h, 0), staged_key(&h, u32::MAX));
                txn.open_table(STAGED)?
                    .retain_in(lo.as_slice()..=hi.as_slice(), |_, _| false)?;
                drop_hold(txn, &h, now)?;
            }
            insert_by_seq(txn, &bucket, &key, &rec)?;
            if VersionLock::protects(rec.lock) {
                super::count_locked(txn, &rec, 1)?;
            }
            super::held::take_over(txn, &taken)?;
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
    /// stamps); returns how many were removed. The replica judges Object Lock
    /// itself (`lock`): if any of them is still protected, none is removed.
    pub async fn prune_versions(
        &self,
        bucket: &str,
        key: &str,
        keep: Vec<VersionStamp>,
        lock: LockCheck,
    ) -> MetaResult<usize> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        self.write(true, move |txn| {
            if get_bucket_w(txn, &bucket)?.is_none() {
                return Err(MetaError::NoSuchBucket);
            }
            let extra: Vec<ObjectRecord> = {
                let (objects, versions) = (txn.open_table(OBJECTS)?, txn.open_table(VERSIONS)?);
                key_versions(&objects, &versions, &bucket, &key)?
                    .into_iter()
                    .filter(|(r, _)| !keep.iter().any(|s| s.same_version(r)))
                    .map(|(r, _)| r)
                    .collect()
            };
            // Checked before anything changes, so a refusal leaves the key whole.
            for r in &extra {
                lock.allow_removal(r)?;
            }
            let now = unix_secs();
            let mut counters = txn.open_table(COUNTERS)?;
            for r in &extra {
                delete_key(
                    txn,
                    &mut counters,
                    &bucket,
                    &DeleteTarget::new(&key, Some(r.version_id.clone())),
                    lock,
                    now,
                )?;
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

    /// Stages part `part` of the version sent under `hold`: takes one reference per
    /// occurrence in `refs` and stores them as a manifest, in one transaction.
    /// Returns how many distinct chunks are not stored here: when any is lacking
    /// nothing changes. A part staged already is left as it is.
    pub async fn stage_part(
        &self,
        hold: HoldId,
        part: u32,
        refs: Vec<ChunkRef>,
    ) -> MetaResult<usize> {
        self.write(false, move |txn| {
            let k = staged_key(&hold, part);
            if txn.open_table(STAGED)?.get(k.as_slice())?.is_some() {
                return Ok(0);
            }
            let counts = super::ref_counts(&refs);
            let mut chunks = txn.open_table(CHUNKS)?;
            let mut lacking = 0;
            for (id, _) in &counts {
                if chunks.get(id.as_slice())?.is_none() {
                    lacking += 1;
                }
            }
            if lacking > 0 {
                return Ok(lacking);
            }
            let now = unix_secs();
            let mut segments = txn.open_table(SEGMENTS)?;
            for (id, n) in &counts {
                adjust_refs(&mut chunks, &mut segments, id, i64::from(*n), now)?;
            }
            drop((chunks, segments));
            let manifest = insert_manifest(txn, &mut txn.open_table(COUNTERS)?, &refs)?;
            let mut v = manifest.to_le_bytes().to_vec();
            v.extend_from_slice(&(refs.len() as u32).to_le_bytes());
            txn.open_table(STAGED)?.insert(k.as_slice(), v.as_slice())?;
            txn.open_table(HOLD_TOUCHED)?.insert(hold.as_slice(), now)?;
            Ok(0)
        })
        .await
    }

    /// Releases a hold: its references on chunks and its staged parts.
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

/// Releases everything a hold keeps: its references on chunks and its staged parts.
fn drop_hold(txn: &WriteTransaction, hold: &HoldId, now: u64) -> MetaResult<()> {
    let staged = staged_parts(&txn.open_table(STAGED)?, hold)?;
    for (part, manifest, _) in staged {
        super::drop_manifest(txn, manifest, now)?;
        txn.open_table(STAGED)?
            .remove(staged_key(hold, part).as_slice())?;
    }
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
    txn: &WriteTransaction,
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
    let lock = VersionLock::as_replicated(old.lock, rec.lock);
    if old.tags != rec.tags || old.lock != lock {
        old.tags = rec.tags.clone();
        match (VersionLock::protects(old.lock), VersionLock::protects(lock)) {
            (false, true) => super::count_locked(
                txn,
                &ObjectRecord {
                    lock,
                    ..old.clone()
                },
                1,
            )?,
            (true, false) => super::count_locked(txn, &old, -1)?,
            _ => {}
        }
        let kind = match old.lock == lock {
            true => EventKind::Tags,
            false => EventKind::Lock,
        };
        old.lock = lock;
        let value = encode_record(&old)?;
        match current {
            true => objects.insert(object_key(bucket, key).as_slice(), value.as_slice())?,
            false => versions.insert(
                version_key(bucket, key, old.seq).as_slice(),
                value.as_slice(),
            )?,
        };
        // A rule of this replica bucket (a cascade) passes the change on.
        append_outbox(
            txn,
            &mut txn.open_table(COUNTERS)?,
            &OutboxEvent {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                version_id: old.version_id.clone(),
                kind,
                time_ms: super::now_ms(),
            },
        )?;
    }
    Ok(true)
}

/// Puts a version where its `seq` ranks it: current when it is the newest.
fn insert_by_seq(
    txn: &WriteTransaction,
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
/// object, one per part for a multipart object. The first pieces are the manifests
/// `staged` already; the pieces' chunk counts split `rest` among the others
/// (`check_staged` has matched the counts).
fn place_body(
    txn: &WriteTransaction,
    counters: &mut CounterTable<'_>,
    rec: &ObjectRecord,
    staged: &[u64],
    rest: &[ChunkRef],
) -> MetaResult<ObjectData> {
    let mut rest = rest;
    let mut place = |i: usize, chunks: u32| -> MetaResult<u64> {
        if let Some(m) = staged.get(i) {
            return Ok(*m);
        }
        let (mine, after) = rest.split_at(chunks as usize);
        rest = after;
        insert_manifest(txn, counters, mine)
    };
    Ok(match &rec.data {
        ObjectData::Inline(d) => ObjectData::Inline(d.clone()),
        ObjectData::Chunked { chunks, .. } => ObjectData::Chunked {
            manifest: place(0, *chunks)?,
            chunks: *chunks,
        },
        ObjectData::Parts(parts) => ObjectData::Parts(
            parts
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    Ok(PartPiece {
                        manifest: place(i, p.chunks)?,
                        ..*p
                    })
                })
                .collect::<MetaResult<Vec<_>>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::super::{ChunkRow, Codec, NewChunk, test_bucket};
    use super::*;

    async fn refs_of(meta: &MetaStore, id: ChunkId) -> u32 {
        meta.read(move |txn| {
            let t = txn.open_table(CHUNKS)?;
            let row = t.get(id.as_slice())?.expect("chunk row");
            ChunkRow::decode(row.value())
        })
        .await
        .unwrap()
        .refs
    }

    async fn staged_rows(meta: &MetaStore) -> usize {
        meta.read(|txn| Ok(txn.open_table(STAGED)?.iter()?.count()))
            .await
            .unwrap()
    }

    fn two_parts() -> ObjectRecord {
        let mut rec = ObjectRecord::delete_marker(1);
        rec.delete_marker = false;
        rec.version_id = "00000000000000a1".into();
        rec.seq = 0xa1;
        rec.size = 4;
        let part = |chunks| PartPiece {
            manifest: 0,
            chunks,
            size: 2,
        };
        rec.data = ObjectData::Parts(vec![part(3), part(1)]);
        rec
    }

    /// Stages parts, commits, repeats the commit, and lets a hold expire, checking
    /// the reference counts and staged rows each step leaves.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn staged_parts_join_their_version_or_are_released_with_their_hold() {
        let dir = tempfile::tempdir().unwrap();
        let meta = MetaStore::open(&dir.path().join("meta.redb"), 1 << 20).unwrap();
        meta.create_bucket("b", test_bucket()).await.unwrap();
        let (a, b, absent) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        let chunk = |id, offset| NewChunk {
            id,
            offset,
            stored_len: 1,
            raw_len: 1,
            codec: Codec::Raw,
            refs: 0,
        };
        meta.add_segment("b", 1, 2, vec![chunk(a, 0), chunk(b, 1)], None)
            .await
            .unwrap();
        let r = |id| ChunkRef { id, len: 1 };
        let part0 = vec![r(a), r(a), r(b)];

        // Staging takes the part's references, once however often it is sent.
        let hold = [7u8; 16];
        assert_eq!(meta.stage_part(hold, 0, part0.clone()).await.unwrap(), 0);
        assert_eq!(meta.stage_part(hold, 0, part0.clone()).await.unwrap(), 0);
        assert_eq!((refs_of(&meta, a).await, refs_of(&meta, b).await), (2, 1));
        // A part naming a chunk not stored here changes nothing.
        assert_eq!(meta.stage_part(hold, 1, vec![r(absent)]).await.unwrap(), 1);
        assert_eq!(staged_rows(&meta).await, 1);

        // A commit whose manifest does not fit the staged parts is refused.
        let err = meta
            .apply_version("b", "k", two_parts(), vec![r(b), r(b)], Some(hold), [1; 16])
            .await
            .unwrap_err();
        assert!(matches!(err, MetaError::Unfit(_)), "{err}");
        assert_eq!(staged_rows(&meta).await, 1);

        // The commit (the caller holds the last part's reference) moves the staged
        // manifest into the version.
        let taken = super::super::UploadHold::new().unwrap();
        super::super::tests::take(&meta, b, taken.next_batch()).await;
        let applied = meta
            .apply_version("b", "k", two_parts(), vec![r(b)], Some(hold), taken.id())
            .await
            .unwrap();
        assert_eq!(applied, Applied::Stored);
        assert_eq!(staged_rows(&meta).await, 0);
        assert_eq!((refs_of(&meta, a).await, refs_of(&meta, b).await), (2, 2));
        let stored = meta.key_versions("b", "k").await.unwrap();
        let ObjectData::Parts(parts) = &stored[0].data else {
            panic!("not multipart: {:?}", stored[0].data);
        };
        assert_eq!(meta.get_manifest(parts[0].manifest).await.unwrap(), part0);
        assert_eq!(
            meta.get_manifest(parts[1].manifest).await.unwrap(),
            vec![r(b)]
        );

        // The same version sent again: its staged part is dropped.
        let again = [8u8; 16];
        meta.stage_part(again, 0, part0.clone()).await.unwrap();
        assert_eq!(refs_of(&meta, a).await, 4);
        let applied = meta
            .apply_version("b", "k", two_parts(), Vec::new(), Some(again), [2; 16])
            .await;
        // Its last part is missing from the commit: refused before anything.
        assert!(matches!(applied, Err(MetaError::Unfit(_))));
        let taken = super::super::UploadHold::new().unwrap();
        super::super::tests::take(&meta, b, taken.next_batch()).await;
        let applied = meta
            .apply_version("b", "k", two_parts(), vec![r(b)], Some(again), taken.id())
            .await
            .unwrap();
        assert_eq!(applied, Applied::Held);
        // The references taken for the version already held are released with it.
        assert_eq!((refs_of(&meta, a).await, refs_of(&meta, b).await), (2, 2));
        assert_eq!(staged_rows(&meta).await, 0);

        // A transfer that never commits: its hold expires with its staged part.
        let lost = [9u8; 16];
        meta.stage_part(lost, 0, part0.clone()).await.unwrap();
        assert_eq!(refs_of(&meta, a).await, 4);
        assert_eq!(meta.expire_holds(unix_secs() + 1).await.unwrap(), 1);
        assert_eq!((refs_of(&meta, a).await, refs_of(&meta, b).await), (2, 2));
        assert_eq!(staged_rows(&meta).await, 0);
        let fix = meta.fix_counts().await.unwrap();
        assert_eq!(fix.fixed, 0, "counts agree with the manifests");
    }
}
