//! Multipart uploads in progress: their records, their parts and the operations that
//! complete or abort them.
//!
//! Layout: `uploads` maps `bucket \0 key \0 upload id` to an [`UploadRecord`];
//! `parts` maps `upload id | part number (u32 BE)` to a [`PartRecord`]. Upload ids are
//! 32 hex digits (a counter and 64 random bits), so every part key of one upload has
//! the same 32-byte prefix and no id is a prefix of another.
//!
//! Invariants:
//! - A part's manifest holds one reference on each chunk it names. Replacing a part,
//!   aborting the upload, or leaving the part out of the completion releases them in
//!   the transaction that does so; completing moves the chosen parts' manifests into
//!   the object record unchanged, so no reference is taken or released for them.
//! - Completion checks, in its own transaction, that every chosen part still has the
//!   manifest the caller validated, so a part re-uploaded meanwhile cannot slip in.
//! - Completion leaves a [`CompletedUpload`] row (`completed_uploads`, same key as
//!   the upload) naming the parts it chose and what it answered, so that a client
//!   whose response was lost and who repeats the request with the same parts gets the
//!   same answer; the rows go with the stale-upload sweep (`multipart_max_age_secs`).

use std::collections::HashMap;

use super::kv::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{
    C_NEXT_UPLOAD, COUNTERS, ChunkRef, MetaError, MetaResult, MetaStore, ObjectRecord, PARTS,
    PartRecord, UPLOADS, UploadRecord, decode_record, drop_manifest, encode_record, get_bucket,
    get_bucket_w, insert_manifest, list, next_ids, object_key, put_object_record, unix_secs,
};

/// bucket \0 key \0 upload id -> CompletedUpload
pub(super) const COMPLETED_UPLOADS: TableDefinition<&[u8], &[u8]> =
    TableDefinition::new("completed_uploads");

/// What a completed upload chose and answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletedUpload {
    /// (part number, part ETag) as chosen, in order.
    pub parts: Vec<(u32, String)>,
    pub etag: String,
    pub version_id: String,
    pub checksums: Vec<(String, String)>,
    pub completed_ms: i64,
}

/// Which uploads a ListMultipartUploads page asks for.
#[derive(Debug, Clone, Default)]
pub struct UploadQuery {
    pub prefix: String,
    pub delimiter: Option<String>,
    pub key_marker: Option<String>,
    pub upload_id_marker: Option<String>,
    pub max: usize,
}

#[derive(Debug, Clone)]
pub enum UploadEntry {
    Upload {
        key: String,
        upload_id: String,
        rec: UploadRecord,
    },
    Prefix(String),
}

#[derive(Debug, Clone, Default)]
pub struct UploadPage {
    pub entries: Vec<UploadEntry>,
    pub truncated: bool,
}

fn upload_key(bucket: &str, key: &str, upload_id: &str) -> Vec<u8> {
    let mut k = object_key(bucket, key);
    k.push(0);
    k.extend_from_slice(upload_id.as_bytes());
    k
}

fn part_key(upload_id: &str, number: u32) -> Vec<u8> {
    let mut k = upload_id.as_bytes().to_vec();
    k.extend_from_slice(&number.to_be_bytes());
    k
}

fn upload_in(
    t: &impl ReadableTable<&'static [u8], &'static [u8]>,
    ukey: &[u8],
) -> MetaResult<Option<UploadRecord>> {
    t.get(ukey)?.map(|v| decode_record(v.value())).transpose()
}

/// The parts of an upload numbered above `after`, in order, at most `max` of them.
fn parts_in(
    t: &impl ReadableTable<&'static [u8], &'static [u8]>,
    upload_id: &str,
    after: u32,
    max: usize,
) -> MetaResult<Vec<(u32, PartRecord)>> {
    let lo = part_key(upload_id, after.saturating_add(1));
    let hi = part_key(upload_id, u32::MAX);
    let mut out = Vec::new();
    if after == u32::MAX {
        return Ok(out);
    }
    for row in t.range(lo.as_slice()..=hi.as_slice())? {
        if out.len() == max {
            break;
        }
        let (k, v) = row?;
        let k = k.value();
        let mut n = [0u8; 4];
        n.copy_from_slice(&k[k.len() - 4..]);
        out.push((u32::from_be_bytes(n), decode_record(v.value())?));
    }
    Ok(out)
}

/// Removes an upload and its parts; releases the references of every part for which
/// `keep` is false.
fn remove_upload(
    txn: &WriteTransaction,
    ukey: &[u8],
    upload_id: &str,
    keep: impl Fn(u32, &PartRecord) -> bool,
) -> MetaResult<()> {
    let now = unix_secs();
    let parts = {
        let mut t = txn.open_table(PARTS)?;
        let parts = parts_in(&t, upload_id, 0, usize::MAX)?;
        for (n, _) in &parts {
            t.remove(part_key(upload_id, *n).as_slice())?;
        }
        parts
    };
    for (n, p) in &parts {
        if !keep(*n, p) {
            drop_manifest(txn, p.manifest, now)?;
        }
    }
    txn.open_table(UPLOADS)?.remove(ukey)?;
    Ok(())
}

/// Aborts every upload in `bucket` (used when the bucket is deleted).
pub(super) fn abort_uploads_in(txn: &WriteTransaction, bucket: &str) -> MetaResult<()> {
    let (lo, hi) = list::bucket_bounds(bucket, "");
    let doomed: Vec<(Vec<u8>, String)> = {
        let t = txn.open_table(UPLOADS)?;
        let mut out = Vec::new();
        for row in t.range(lo.as_slice()..hi.as_slice())? {
            let (k, _) = row?;
            let k = k.value().to_vec();
            let id = split_upload_key(&k[bucket.len() + 1..]).map(|(_, id)| id.to_owned());
            if let Some(id) = id {
                out.push((k, id));
            }
        }
        out
    };
    for (k, id) in doomed {
        remove_upload(txn, &k, &id, |_, _| false)?;
    }
    txn.open_table(COMPLETED_UPLOADS)?
        .retain_in(lo.as_slice()..hi.as_slice(), |_, _| false)?;
    Ok(())
}

/// Splits `key \0 upload id`.
fn split_upload_key(rest: &[u8]) -> Option<(&str, &str)> {
    let pos = rest.iter().rposition(|&b| b == 0)?;
    let key = std::str::from_utf8(&rest[..pos]).ok()?;
    let id = std::str::from_utf8(&rest[pos + 1..]).ok()?;
    Some((key, id))
}

fn require_upload(
    txn: &ReadTransaction,
    bucket: &str,
    key: &str,
    upload_id: &str,
) -> MetaResult<UploadRecord> {
    if get_bucket(txn, bucket)?.is_none() {
        return Err(MetaError::NoSuchBucket);
    }
    upload_in(
        &txn.open_table(UPLOADS)?,
        &upload_key(bucket, key, upload_id),
    )?
    .ok_or(MetaError::NoSuchUpload)
}

fn require_upload_w(
    txn: &WriteTransaction,
    bucket: &str,
    key: &str,
    upload_id: &str,
) -> MetaResult<UploadRecord> {
    if get_bucket_w(txn, bucket)?.is_none() {
        return Err(MetaError::NoSuchBucket);
    }
    upload_in(
        &txn.open_table(UPLOADS)?,
        &upload_key(bucket, key, upload_id),
    )?
    .ok_or(MetaError::NoSuchUpload)
}

impl MetaStore {
    /// Starts an upload; returns its id.
    pub async fn create_upload(
        &self,
        bucket: &str,
        key: &str,
        rec: UploadRecord,
    ) -> MetaResult<String> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        self.write(true, move |txn| {
            if get_bucket_w(txn, &bucket)?.is_none() {
                return Err(MetaError::NoSuchBucket);
            }
            let n = next_ids(&mut txn.open_table(COUNTERS)?, C_NEXT_UPLOAD, 1)?.start;
            let id = format!("{n:016x}{:016x}", rand::random::<u64>());
            txn.open_table(UPLOADS)?.insert(
                upload_key(&bucket, &key, &id).as_slice(),
                encode_record(&rec)?.as_slice(),
            )?;
            Ok(id)
        })
        .await
    }

    pub async fn get_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> MetaResult<UploadRecord> {
        let (bucket, key, id) = (bucket.to_owned(), key.to_owned(), upload_id.to_owned());
        self.read(move |txn| require_upload(txn, &bucket, &key, &id))
            .await
    }

    /// Stores (or replaces) one part. The references of `manifest` must be held under
    /// `hold`, which the part takes them over from; a replaced part's references are
    /// released.
    pub async fn put_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        number: u32,
        mut rec: PartRecord,
        manifest: Vec<ChunkRef>,
        hold: Option<super::HoldId>,
    ) -> MetaResult<()> {
        let (bucket, key, id) = (bucket.to_owned(), key.to_owned(), upload_id.to_owned());
        self.write(true, move |txn| {
            require_upload_w(txn, &bucket, &key, &id)?;
            rec.manifest = insert_manifest(txn, &mut txn.open_table(COUNTERS)?, &manifest)?;
            rec.chunks = manifest.len() as u32;
            let old = {
                let mut t = txn.open_table(PARTS)?;
                let old = t
                    .insert(
                        part_key(&id, number).as_slice(),
                        encode_record(&rec)?.as_slice(),
                    )?
                    .map(|v| decode_record::<PartRecord>(v.value()))
                    .transpose()?;
                old
            };
            if let Some(old) = old {
                drop_manifest(txn, old.manifest, unix_secs())?;
            }
            if let Some(h) = &hold {
                super::held::take_over(txn, h)?;
            }
            Ok(())
        })
        .await
    }

    /// The upload's record and its parts numbered above `after` (at most `max`),
    /// plus whether more follow.
    pub async fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        after: u32,
        max: usize,
    ) -> MetaResult<(UploadRecord, Vec<(u32, PartRecord)>, bool)> {
        let (bucket, key, id) = (bucket.to_owned(), key.to_owned(), upload_id.to_owned());
        self.read(move |txn| {
            let rec = require_upload(txn, &bucket, &key, &id)?;
            let mut parts = parts_in(&txn.open_table(PARTS)?, &id, after, max.saturating_add(1))?;
            let truncated = parts.len() > max;
            parts.truncate(max);
            Ok((rec, parts, truncated))
        })
        .await
    }

    /// Completes an upload: `rec` (whose data lists the chosen parts' manifests)
    /// becomes the object's current version, replacing the previous one; parts not
    /// chosen are released; the upload disappears. `chosen` lists (part number,
    /// manifest) as the caller validated them; a part replaced since fails the
    /// completion with `InvalidPart`, and a write `condition` that does not hold with
    /// `PreconditionFailed`, each changing nothing (the upload stays completable). `answer` (its version id
    /// filled in here) is kept for a repeat of the request.
    pub async fn complete_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        rec: ObjectRecord,
        chosen: Vec<(u32, u64)>,
        mut answer: CompletedUpload,
        condition: Option<super::WriteCondition>,
    ) -> MetaResult<String> {
        let (bucket, key, id) = (bucket.to_owned(), key.to_owned(), upload_id.to_owned());
        self.write(true, move |txn| {
            require_upload_w(txn, &bucket, &key, &id)?;
            if let Some(c) = &condition {
                c.check(txn, &bucket, &key)?;
            }
            let current: HashMap<u32, u64> = parts_in(&txn.open_table(PARTS)?, &id, 0, usize::MAX)?
                .into_iter()
                .map(|(n, p)| (n, p.manifest))
                .collect();
            for (n, manifest) in &chosen {
                if current.get(n) != Some(manifest) {
                    return Err(MetaError::InvalidPart(*n));
                }
            }
            super::ensure_quota(
                txn,
                &super::QuotaCheck {
                    bucket: &bucket,
                    key: Some(&key),
                    size: rec.size,
                },
            )?;
            let chosen: HashMap<u32, u64> = chosen.into_iter().collect();
            remove_upload(txn, &upload_key(&bucket, &key, &id), &id, |n, p| {
                chosen.get(&n) == Some(&p.manifest)
            })?;
            let mut counters = txn.open_table(COUNTERS)?;
            let version = put_object_record(txn, &mut counters, &bucket, &key, &rec, unix_secs())?;
            answer.version_id = version.clone();
            txn.open_table(COMPLETED_UPLOADS)?.insert(
                upload_key(&bucket, &key, &id).as_slice(),
                encode_record(&answer)?.as_slice(),
            )?;
            Ok(version)
        })
        .await
    }

    /// What the completion of this upload answered, while it is remembered.
    pub async fn completed_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> MetaResult<Option<CompletedUpload>> {
        let k = upload_key(bucket, key, upload_id);
        self.read(move |txn| {
            txn.open_table(COMPLETED_UPLOADS)?
                .get(k.as_slice())?
                .map(|v| decode_record(v.value()))
                .transpose()
        })
        .await
    }

    /// Aborts an upload, releasing every part's references.
    pub async fn abort_upload(&self, bucket: &str, key: &str, upload_id: &str) -> MetaResult<()> {
        let (bucket, key, id) = (bucket.to_owned(), key.to_owned(), upload_id.to_owned());
        self.write(true, move |txn| {
            require_upload_w(txn, &bucket, &key, &id)?;
            remove_upload(txn, &upload_key(&bucket, &key, &id), &id, |_, _| false)
        })
        .await
    }

    /// Uploads in progress, in key then upload-id order (upload ids grow with time).
    pub async fn list_uploads(&self, bucket: &str, q: UploadQuery) -> MetaResult<UploadPage> {
        let bucket = bucket.to_owned();
        self.read(move |txn| {
            if get_bucket(txn, &bucket)?.is_none() {
                return Err(MetaError::NoSuchBucket);
            }
            list_uploads_in(&txn.open_table(UPLOADS)?, &bucket, &q)
        })
        .await
    }

    /// Aborts every upload started before `cutoff_ms` and forgets the completions
    /// older than that; returns how many uploads it aborted.
    pub async fn abort_uploads_before(&self, cutoff_ms: i64) -> MetaResult<usize> {
        self.write(false, move |txn| {
            txn.open_table(COMPLETED_UPLOADS)?.retain(|_, v| {
                decode_record::<CompletedUpload>(v).is_ok_and(|c| c.completed_ms >= cutoff_ms)
            })?;
            Ok(())
        })
        .await?;
        let stale = self.uploads_initiated_before(cutoff_ms).await?;
        let mut aborted = 0;
        for (bucket, key, upload_id) in stale {
            match self.abort_upload(&bucket, &key, &upload_id).await {
                Ok(()) => {
                    aborted += 1;
                    tracing::info!(%bucket, %key, %upload_id, "stale multipart upload aborted");
                }
                // Completed or aborted meanwhile.
                Err(MetaError::NoSuchUpload | MetaError::NoSuchBucket) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(aborted)
    }

    /// `(bucket, key, upload id)` of every upload started before `cutoff_ms`.
    async fn uploads_initiated_before(
        &self,
        cutoff_ms: i64,
    ) -> MetaResult<Vec<(String, String, String)>> {
        self.read(move |txn| {
            let mut out = Vec::new();
            for row in txn.open_table(UPLOADS)?.iter()? {
                let (k, v) = row?;
                let rec: UploadRecord = decode_record(v.value())?;
                if rec.initiated_ms >= cutoff_ms {
                    continue;
                }
                let k = k.value();
                let Some(sep) = k.iter().position(|&b| b == 0) else {
                    continue;
                };
                let (Ok(bucket), Some((key, id))) = (
                    std::str::from_utf8(&k[..sep]),
                    split_upload_key(&k[sep + 1..]),
                ) else {
                    continue;
                };
                out.push((bucket.to_owned(), key.to_owned(), id.to_owned()));
            }
            Ok(out)
        })
        .await
    }
}

fn list_uploads_in(
    t: &impl ReadableTable<&'static [u8], &'static [u8]>,
    bucket: &str,
    q: &UploadQuery,
) -> MetaResult<UploadPage> {
    let mut page = UploadPage::default();
    let delimiter = q.delimiter.as_deref().filter(|d| !d.is_empty());
    let (lo, hi) = list::bucket_bounds(bucket, &q.prefix);
    let key_marker = q.key_marker.as_deref().filter(|m| !m.is_empty());
    // Start after the marker: after one upload of the marker key, or after all of them.
    let start = match (key_marker, q.upload_id_marker.as_deref()) {
        (Some(km), Some(idm)) if !idm.is_empty() => {
            let mut s = upload_key(bucket, km, idm);
            s.push(0);
            s
        }
        (Some(km), _) => {
            let mut s = object_key(bucket, km);
            s.push(1);
            s
        }
        (None, _) => lo.clone(),
    };
    let start = start.max(lo);
    let mut last_prefix: Option<String> = None;
    for row in t.range(start.as_slice()..hi.as_slice())? {
        let (k, v) = row?;
        let Some((key, id)) = split_upload_key(&k.value()[bucket.len() + 1..]) else {
            continue;
        };
        let entry = match delimiter.and_then(|d| {
            key[q.prefix.len()..]
                .find(d)
                .map(|p| key[..q.prefix.len() + p + d.len()].to_owned())
        }) {
            Some(cp) => {
                if last_prefix.as_deref() == Some(cp.as_str())
                    || key_marker.is_some_and(|m| cp.as_str() <= m)
                {
                    continue;
                }
                last_prefix = Some(cp.clone());
                UploadEntry::Prefix(cp)
            }
            None => UploadEntry::Upload {
                key: key.to_owned(),
                upload_id: id.to_owned(),
                rec: decode_record(v.value())?,
            },
        };
        if page.entries.len() == q.max {
            page.truncated = true;
            break;
        }
        page.entries.push(entry);
    }
    Ok(page)
}
