//! Buckets and object commits: creating and deleting buckets, committing, deleting
//! and copying object versions with their manifests, each with its bucket counters
//! and its one outbox event in the same transaction; the store's totals.

use super::*;

/// Totals over the whole store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreTotals {
    pub segments: u64,
    pub segment_bytes: u64,
    pub unique_chunks: u64,
    pub chunk_raw_bytes: u64,
    pub chunk_stored_bytes: u64,
    pub inline_bytes: u64,
    /// Segments (and their bytes) that live in the cloud tier.
    pub tier_segments: u64,
    pub tier_bytes: u64,
}

impl MetaStore {
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
            super::tier::forget_bucket_tier(txn, &name)?;
            replication::forget_bucket(txn, &name)?;
            super::bucket_config::forget_bucket_configs(txn, &name)?;
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
        self.list_keys(bucket, q, false).await
    }

    /// Like `list_objects`, also listing keys whose current version is a delete
    /// marker.
    pub async fn list_keys_with_markers(&self, bucket: &str, q: ListQuery) -> MetaResult<ListPage> {
        self.list_keys(bucket, q, true).await
    }

    async fn list_keys(
        &self,
        bucket: &str,
        q: ListQuery,
        with_markers: bool,
    ) -> MetaResult<ListPage> {
        let bucket = bucket.to_owned();
        self.read(move |txn| {
            if get_bucket(txn, &bucket)?.is_none() {
                return Err(MetaError::NoSuchBucket);
            }
            let objects = txn.open_table(OBJECTS)?;
            match with_markers {
                true => list::list_all(&objects, &bucket, &q),
                false => list::list(&objects, &bucket, &q),
            }
        })
        .await
    }

    /// Commits an object version: inserts the record (and its manifest), releases the
    /// references of the version it replaces, updates the bucket's counters and
    /// appends one outbox event — all in one durable transaction. The references for
    /// `manifest` must be held under `hold` (taken while ingesting); the commit takes
    /// them over from the hold in the same transaction. A write `condition` that does
    /// not hold fails the commit with `PreconditionFailed` and changes nothing.
    pub async fn commit_object(
        &self,
        bucket: &str,
        key: &str,
        mut rec: ObjectRecord,
        manifest: Option<Vec<ChunkRef>>,
        hold: Option<HoldId>,
        condition: Option<WriteCondition>,
    ) -> MetaResult<String> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        self.write(true, move |txn| {
            if get_bucket_w(txn, &bucket)?.is_none() {
                return Err(MetaError::NoSuchBucket);
            }
            if let Some(c) = &condition {
                c.check(txn, &bucket, &key)?;
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
                held::take_over(txn, h)?;
            }
            Ok(version)
        })
        .await
    }

    /// Deletes a key or one version of it (see `versions::delete_key`); `None` when
    /// there was nothing to delete, which changes nothing. A version Object Lock
    /// protects is refused with `ObjectLocked`, a precondition that fails with
    /// `PreconditionFailed` or `NoSuchKey`.
    pub async fn delete_object(
        &self,
        bucket: &str,
        target: DeleteTarget,
        lock: LockCheck,
    ) -> MetaResult<Option<DeleteOutcome>> {
        let mut out = self.delete_objects(bucket, vec![target], lock).await?;
        out.pop().unwrap_or(Ok(None))
    }

    /// Deletes several keys (or versions) in one durable transaction. Each key's
    /// outcome is its own: a version Object Lock protects, or one whose precondition
    /// fails, is refused and changes nothing, while the other keys are deleted.
    pub async fn delete_objects(
        &self,
        bucket: &str,
        targets: Vec<DeleteTarget>,
        lock: LockCheck,
    ) -> MetaResult<Vec<MetaResult<Option<DeleteOutcome>>>> {
        let bucket = bucket.to_owned();
        self.write(true, move |txn| {
            if get_bucket_w(txn, &bucket)?.is_none() {
                return Err(MetaError::NoSuchBucket);
            }
            let mut counters = txn.open_table(COUNTERS)?;
            let now = unix_secs();
            targets
                .iter()
                .map(|t| {
                    let deleted = versions::delete_key(txn, &mut counters, &bucket, t, lock, now);
                    match deleted {
                        // Refused before anything changed: the others go on.
                        Err(
                            e @ (MetaError::ObjectLocked(_)
                            | MetaError::PreconditionFailed
                            | MetaError::NoSuchKey),
                        ) => Ok(Err(e)),
                        other => other.map(Ok),
                    }
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
                tier_segments: get(super::tier::C_TIER_SEGMENTS)?,
                tier_bytes: get(super::tier::C_TIER_BYTES)?,
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

pub(super) fn append_outbox(
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
pub(super) fn forget_object(
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
    if VersionLock::protects(old.lock) {
        count_locked(txn, old, -1)?;
    }
    for (manifest, _) in old.manifests() {
        drop_manifest(txn, manifest, now)?;
    }
    Ok(())
}

/// A copy of an object body that shares its chunks: inline bytes are copied, each
/// manifest is stored again under a new id and its chunks gain one reference per
/// occurrence.
pub(super) fn share_data(
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
