//! Chunk references and segment rows: taking references on known chunks (under an
//! upload's hold), indexing a new segment's chunks, releasing references, keeping
//! each segment's live bytes in step with its chunks' counts, and auditing every
//! count against a recount of the manifests and holds.

use super::kv::Table;
use std::ops::Range;

use super::*;

/// Chunks whose reference count would have fallen below zero
/// (`hoard_refcount_underflow_total`); shared with `metrics` by cloning.
pub static REFCOUNT_UNDERFLOWS: std::sync::LazyLock<prometheus_client::metrics::counter::Counter> =
    std::sync::LazyLock::new(Default::default);

/// Who holds the references a new segment's chunks carry until their commit.
#[derive(Debug, Clone, Copy)]
pub enum Holder {
    /// An upload, under this batch of its hold (`held`).
    Upload(HeldBatch),
    /// A replication source's transfer (`replicated::HOLDS`).
    Replica(HoldId),
}

/// A new chunk stored in a sealed segment, to be indexed.
#[derive(Debug, Clone, Copy)]
pub struct NewChunk {
    pub id: ChunkId,
    pub offset: u32,
    pub stored_len: u32,
    pub raw_len: u32,
    pub codec: Codec,
    /// References the writing stream holds on it.
    pub refs: u32,
}

impl MetaStore {
    /// Takes `n` references on each chunk `(id, n)` that has an index row, recorded
    /// under the upload's hold as `batch`. `result[i]` tells whether chunk `i` was
    /// found (and is now referenced); a chunk without a row must be stored anew by
    /// the caller.
    pub fn take_refs_blocking(
        &self,
        refs: Vec<(ChunkId, u32)>,
        batch: HeldBatch,
    ) -> MetaResult<Vec<bool>> {
        self.write_blocking(false, move |txn| {
            let now = unix_secs();
            let found = {
                let mut chunks = txn.open_table(CHUNKS)?;
                let mut segments = txn.open_table(SEGMENTS)?;
                refs.iter()
                    .map(|(id, n)| adjust_refs(&mut chunks, &mut segments, id, i64::from(*n), now))
                    .collect::<MetaResult<Vec<bool>>>()?
            };
            let taken = refs.iter().zip(&found).filter(|(_, f)| **f);
            held::record(txn, &batch, taken.map(|(r, _)| *r))?;
            Ok(found)
        })
    }

    /// Releases every reference an upload that will not commit holds; after its
    /// commit, a no-op.
    pub async fn release_upload_hold(&self, hold: HoldId) -> MetaResult<u64> {
        self.write(false, move |txn| held::release(txn, &hold, unix_secs()))
            .await
    }

    /// `release_upload_hold`, for callers outside the async runtime.
    pub fn release_upload_hold_blocking(&self, hold: HoldId) -> MetaResult<u64> {
        self.write_blocking(false, move |txn| held::release(txn, &hold, unix_secs()))
    }

    /// Indexes the chunks of a segment that is already durable in the segment store,
    /// recording each entry's references under `holder`. A chunk that meanwhile got
    /// a row from another stream keeps that row (the copy in this segment is dead
    /// bytes) and receives this stream's references.
    pub async fn add_segment(
        &self,
        bucket: &str,
        segment: u64,
        size: u64,
        entries: Vec<NewChunk>,
        holder: Option<Holder>,
    ) -> MetaResult<()> {
        let bucket = bucket.to_owned();
        self.write(false, move |txn| {
            gateways::name_segment(txn, segment)?;
            let now = unix_secs();
            match holder {
                Some(Holder::Upload(batch)) => {
                    held::record(txn, &batch, entries.iter().map(|e| (e.id, e.refs)))?;
                }
                Some(Holder::Replica(h)) => {
                    let mut holds = txn.open_table(replicated::HOLDS)?;
                    for e in &entries {
                        let mut k = h.to_vec();
                        k.extend_from_slice(&e.id);
                        holds.insert(k.as_slice(), ())?;
                    }
                    txn.open_table(replicated::HOLD_TOUCHED)?
                        .insert(h.as_slice(), now)?;
                }
                None => {}
            }
            let mut chunks = txn.open_table(CHUNKS)?;
            let mut segments = txn.open_table(SEGMENTS)?;
            let mut seg_chunks = txn.open_table(SEGMENT_CHUNKS)?;
            // Lost chunks are rare: one look at the table, not one per chunk.
            let mut lost = txn.open_table(repair::LOST_CHUNKS)?;
            let any_lost = !ReadableTable::is_empty(&lost)?;
            let mut row = SegmentRow {
                size,
                created: now,
                ..SegmentRow::default()
            };
            segments.insert(segment, row.encode().as_slice())?;
            let mut added = BucketStats::default();
            for e in &entries {
                if adjust_refs(&mut chunks, &mut segments, &e.id, i64::from(e.refs), now)? {
                    continue;
                }
                // Content that was lost comes back: its damaged objects' references
                // move onto the new row.
                let was_lost = match any_lost {
                    true => lost.remove(e.id.as_slice())?.map_or(0, |v| v.value()),
                    false => 0,
                };
                let refs = u32::try_from(u64::from(e.refs) + was_lost).unwrap_or(u32::MAX);
                let chunk = ChunkRow {
                    loc: ChunkLocation {
                        segment,
                        offset: e.offset,
                        stored_len: e.stored_len,
                        raw_len: e.raw_len,
                        codec: e.codec,
                    },
                    refs,
                    zero_since: if refs == 0 { now } else { 0 },
                    locked: 0,
                };
                chunks.insert(e.id.as_slice(), chunk.encode().as_slice())?;
                seg_chunks.insert(segment_chunk_key(segment, &e.id).as_slice(), ())?;
                row.chunks += 1;
                if refs > 0 {
                    row.live_chunks += 1;
                    row.live_bytes += u64::from(e.stored_len);
                }
                added.new_chunks += 1;
                added.new_raw_bytes += u64::from(e.raw_len);
            }
            segments.insert(segment, row.encode().as_slice())?;
            let stored: u64 = entries.iter().map(|e| u64::from(e.stored_len)).sum();
            let mut counters = txn.open_table(COUNTERS)?;
            bump(&mut counters, C_SEGMENTS, 1)?;
            bump(&mut counters, C_SEGMENT_BYTES, size as i64)?;
            bump(&mut counters, C_CHUNKS, added.new_chunks as i64)?;
            bump(&mut counters, C_CHUNK_RAW, added.new_raw_bytes as i64)?;
            bump(&mut counters, C_CHUNK_STORED, stored as i64)?;
            // The bucket may have been deleted meanwhile; the chunks stay indexed.
            if get_bucket_w(txn, &bucket)?.is_some() {
                txn.open_table(SEGMENT_BUCKETS)?
                    .insert(segment, bucket.as_str())?;
                let mut stats = bucket_stats_w(txn, &bucket)?;
                stats.new_chunks += added.new_chunks;
                stats.new_raw_bytes += added.new_raw_bytes;
                stats.stored_bytes += size;
                stats.segments += 1;
                put_bucket_stats(txn, &bucket, &stats)?;
            }
            Ok(())
        })
        .await
    }

    /// Reserves `n` segment ids; durable, so that no id is handed out twice even
    /// across crashes.
    /// On PostgreSQL each id is recorded as this gateway's until its segment is
    /// named (`gateways::hand_out`).
    pub fn allocate_segment_ids_blocking(&self, n: u64) -> MetaResult<Range<u64>> {
        let gateway = self.gateway.clone();
        self.write_blocking(true, move |txn| {
            let mut counters = txn.open_table(COUNTERS)?;
            let ids = next_ids(&mut counters, C_NEXT_SEGMENT, n)?;
            drop(counters);
            if let Some(g) = &gateway {
                gateways::hand_out(txn, g, ids.clone())?;
            }
            Ok(ids)
        })
    }

    pub fn chunk_row_blocking(&self, id: &ChunkId) -> MetaResult<Option<ChunkRow>> {
        self.read_blocking(|txn| chunk_row(txn, id))
    }

    /// Locations of `ids` in one snapshot; `None` for a chunk without a row.
    pub async fn chunk_locations(
        &self,
        ids: Vec<ChunkId>,
    ) -> MetaResult<Vec<Option<ChunkLocation>>> {
        self.read(move |txn| {
            let t = txn.open_table(CHUNKS)?;
            ids.iter()
                .map(|id| {
                    Ok(t.get(id.as_slice())?
                        .map(|v| ChunkRow::decode(v.value()))
                        .transpose()?
                        .map(|r| r.loc))
                })
                .collect()
        })
        .await
    }

    /// The ids of the chunks indexed in `segment`.
    pub fn segment_chunk_ids_blocking(&self, segment: u64) -> MetaResult<Vec<ChunkId>> {
        self.read_blocking(|txn| gc::chunks_of(&txn.open_table(SEGMENT_CHUNKS)?, segment))
    }

    /// Calls `f` with every indexed chunk id (start-up filter fill).
    pub fn for_each_chunk_id(&self, mut f: impl FnMut(&ChunkId) + Send) -> MetaResult<u64> {
        self.read_blocking(|txn| {
            let t = txn.open_table(CHUNKS)?;
            let mut n = 0;
            for row in t.iter()? {
                let (k, _) = row?;
                if let Ok(id) = <&ChunkId>::try_from(k.value()) {
                    f(id);
                    n += 1;
                }
            }
            Ok(n)
        })
    }
}

/// Removes a manifest and releases the references it held.
pub(super) fn drop_manifest(txn: &WriteTransaction, manifest: u64, now: u64) -> MetaResult<()> {
    let refs = {
        let mut manifests = txn.open_table(MANIFESTS)?;
        let removed = manifests.remove(manifest)?;
        match removed {
            Some(v) => decode_manifest(v.value())?,
            None => return Err(MetaError::Corrupt(format!("manifest {manifest} missing"))),
        }
    };
    release_refs_at(txn, &ref_counts(&refs), now)
}

/// Adds `delta` (1 or -1) per occurrence of each chunk in `rec`'s manifests to the
/// chunks' `locked` counts: +1 when a version becomes one Object Lock protects, -1
/// when it stops being one or is removed. A chunk without a row (lost) is skipped.
pub(super) fn count_locked(
    txn: &WriteTransaction,
    rec: &ObjectRecord,
    delta: i64,
) -> MetaResult<()> {
    let mut chunks = txn.open_table(CHUNKS)?;
    let manifests = txn.open_table(MANIFESTS)?;
    for (manifest, _) in rec.manifests() {
        let refs = manifests
            .get(manifest)?
            .map(|v| decode_manifest(v.value()))
            .transpose()?
            .ok_or_else(|| MetaError::Corrupt(format!("manifest {manifest} missing")))?;
        for (id, n) in ref_counts(&refs) {
            let row = chunks
                .get(id.as_slice())?
                .map(|v| ChunkRow::decode(v.value()))
                .transpose()?;
            let Some(mut row) = row else { continue };
            let after = i64::from(row.locked) + delta * i64::from(n);
            if after < 0 {
                tracing::error!(chunk = %hex::encode(id), locked = row.locked, "a locked count would fall below zero; kept at zero");
            }
            row.locked = u32::try_from(after.max(0)).unwrap_or(u32::MAX);
            chunks.insert(id.as_slice(), row.encode().as_slice())?;
        }
    }
    Ok(())
}

/// Stores a manifest under a new id.
pub(super) fn insert_manifest(
    txn: &WriteTransaction,
    counters: &mut CounterTable<'_>,
    refs: &[ChunkRef],
) -> MetaResult<u64> {
    let id = next_ids(counters, C_NEXT_MANIFEST, 1)?.start;
    txn.open_table(MANIFESTS)?
        .insert(id, encode_manifest(refs).as_slice())?;
    Ok(id)
}

pub(super) fn release_refs_at(
    txn: &WriteTransaction,
    refs: &[(ChunkId, u32)],
    now: u64,
) -> MetaResult<()> {
    let mut chunks = txn.open_table(CHUNKS)?;
    let mut segments = txn.open_table(SEGMENTS)?;
    for (id, n) in refs {
        if !adjust_refs(&mut chunks, &mut segments, id, -i64::from(*n), now)?
            && !repair::release_lost(txn, id, *n)?
        {
            tracing::warn!(chunk = %hex::encode(id), "releasing references of a chunk with no index row");
        }
    }
    Ok(())
}

/// Adds `delta` to a chunk's reference count, keeping its segment's live bytes in
/// step. Returns false (and changes nothing) when the chunk has no row.
pub(super) fn adjust_refs(
    chunks: &mut Table<'_, &'static [u8], &'static [u8]>,
    segments: &mut Table<'_, u64, &'static [u8]>,
    id: &ChunkId,
    delta: i64,
    now: u64,
) -> MetaResult<bool> {
    let row = chunks
        .get(id.as_slice())?
        .map(|v| ChunkRow::decode(v.value()))
        .transpose()?;
    let Some(mut row) = row else { return Ok(false) };
    let before = row.refs;
    let after = i64::from(before) + delta;
    if after < 0 {
        REFCOUNT_UNDERFLOWS.inc();
        tracing::error!(chunk = %hex::encode(id), before, delta, "reference count would fall below zero; the operation is refused");
        return Err(MetaError::RefUnderflow(hex::encode(id)));
    }
    row.refs = u32::try_from(after).unwrap_or(u32::MAX);
    let live_delta: i64 = match (before > 0, row.refs > 0) {
        (false, true) => {
            row.zero_since = 0;
            1
        }
        (true, false) => {
            row.zero_since = now;
            -1
        }
        _ => 0,
    };
    chunks.insert(id.as_slice(), row.encode().as_slice())?;
    if live_delta != 0 {
        let seg = segments
            .get(row.loc.segment)?
            .map(|v| SegmentRow::decode(v.value()))
            .transpose()?;
        if let Some(mut seg) = seg {
            seg.live_chunks = seg.live_chunks.saturating_add_signed(live_delta as i32);
            seg.live_bytes = seg
                .live_bytes
                .saturating_add_signed(live_delta * i64::from(row.loc.stored_len));
            segments.insert(row.loc.segment, seg.encode().as_slice())?;
        }
    }
    Ok(true)
}

/// A chunk whose stored reference count (or, with `locked`, its count of locked
/// versions' references) disagrees with the committed manifests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefMismatch {
    pub id: ChunkId,
    /// `None`: a manifest names the chunk but it has no index row.
    pub stored: Option<u32>,
    pub counted: u64,
    /// The mismatch is in the `locked` count.
    pub locked: bool,
}

impl MetaStore {
    /// Chunks and stored bytes still referenced, summed over all segment rows.
    pub fn live_usage_blocking(&self) -> MetaResult<(u64, u64)> {
        self.read_blocking(|txn| {
            let (mut chunks, mut bytes) = (0u64, 0u64);
            for row in txn.open_table(SEGMENTS)?.iter()? {
                let (_, v) = row?;
                let seg = SegmentRow::decode(v.value())?;
                chunks += u64::from(seg.live_chunks);
                bytes += seg.live_bytes;
            }
            Ok((chunks, bytes))
        })
    }

    /// Recounts references from every committed manifest and every hold (replication
    /// transfers, uploads in flight) and compares them with the stored counts; the
    /// two must always agree.
    pub fn audit_refs_blocking(&self) -> MetaResult<Vec<RefMismatch>> {
        self.read_blocking(|txn| {
            let mut counted = repair::recount(
                &txn.open_table(MANIFESTS)?,
                &txn.open_table(replicated::HOLDS)?,
                &txn.open_table(held::UPLOAD_HOLDS)?,
            )?;
            let locked = repair::recount_locked(
                &txn.open_table(OBJECTS)?,
                &txn.open_table(VERSIONS)?,
                &txn.open_table(MANIFESTS)?,
            )?;
            let mut out = Vec::new();
            for row in txn.open_table(CHUNKS)?.iter()? {
                let (k, v) = row?;
                let Ok(id) = <ChunkId>::try_from(k.value()) else {
                    continue;
                };
                let row = ChunkRow::decode(v.value())?;
                let n = counted.remove(&id).unwrap_or(0);
                if u64::from(row.refs) != n {
                    out.push(RefMismatch {
                        id,
                        stored: Some(row.refs),
                        counted: n,
                        locked: false,
                    });
                }
                let l = locked.get(&id).copied().unwrap_or(0);
                if u64::from(row.locked) != l {
                    out.push(RefMismatch {
                        id,
                        stored: Some(row.locked),
                        counted: l,
                        locked: true,
                    });
                }
            }
            // A lost chunk's count lives in its lost row.
            let lost = txn.open_table(repair::LOST_CHUNKS)?;
            for (id, counted) in counted {
                let stored = lost.get(id.as_slice())?.map(|v| v.value());
                if stored != Some(counted) {
                    out.push(RefMismatch {
                        id,
                        stored: stored.map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
                        counted,
                        locked: false,
                    });
                }
            }
            Ok(out)
        })
    }
}
