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

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::versions::{count_in, delete_key, key_versions, version_key};
use super::{
    BUCKETS, C_NEXT_VERSION, COUNTERS, ChunkRef, CounterTable, EventKind, MetaError, MetaResult,
    MetaStore, NULL_VERSION, OBJECTS, ObjectData, ObjectRecord, OutboxEvent, PartPiece, VERSIONS,
    Versioning, append_outbox, bucket_stats_w, counter, decode_record, encode_record, get_bucket,
    get_bucket_w, insert_manifest, object_key, put_bucket_stats, unix_secs,
};

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
