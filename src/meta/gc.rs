//! The metadata side of reclaiming space: finding dead and sparse segments from their
//! rows alone, removing dead ones, committing compactions, and the list of segment
//! files waiting out their grace period before deletion.
//!
//! Every operation here validates before it mutates, inside the committer's single
//! writer, so it is ordered against every reference take: a chunk revived (refs 0 -> 1)
//! before the check keeps its row and aborts the removal; one revived after finds no
//! row and is stored anew by its writer.

use std::collections::HashMap;

use super::kv::{ReadableTable, WriteTransaction};

use super::{
    BUCKET_STATS, BucketStats, C_CHUNK_RAW, C_CHUNK_STORED, C_CHUNKS, C_SEGMENT_BYTES, C_SEGMENTS,
    CHUNKS, COUNTERS, ChunkId, ChunkLocation, ChunkRow, MetaResult, MetaStore, PENDING_DELETES,
    SEGMENT_BUCKETS, SEGMENT_CHUNKS, SEGMENTS, SegmentRow, bump, decode_record, encode_record,
    segment_chunk_key,
};

/// A segment whose rows say it is dead or sparse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentCandidate {
    pub id: u64,
    pub row: SegmentRow,
}

/// A chunk compaction keeps: its id and where it is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeptChunk {
    pub id: ChunkId,
    pub loc: ChunkLocation,
}

/// What removing or compacting a segment freed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Freed {
    pub chunks: u64,
    pub bytes: u64,
}

/// Whether a chunk row must be kept: referenced, unreferenced for less than the
/// grace period (a writer may still revive it), or named by a version Object Lock
/// protects, whatever its reference count says.
fn keep(row: &ChunkRow, cutoff: u64) -> bool {
    if row.locked > 0 && row.refs == 0 {
        tracing::error!(
            segment = row.loc.segment,
            locked = row.locked,
            "a chunk of a locked version has no references; the cleaner keeps it (run hoard verify)"
        );
    }
    row.refs > 0 || row.zero_since > cutoff || row.locked > 0
}

/// The ids on a segment's chunk list.
pub(super) fn chunks_of(
    t: &impl ReadableTable<&'static [u8], ()>,
    segment: u64,
) -> MetaResult<Vec<ChunkId>> {
    let lo = segment_chunk_key(segment, &[0u8; 32]);
    let hi = segment_chunk_key(segment, &[0xffu8; 32]);
    let mut out = Vec::new();
    for row in t.range(lo.as_slice()..=hi.as_slice())? {
        let (k, _) = row?;
        let mut id = [0u8; 32];
        id.copy_from_slice(&k.value()[8..40]);
        out.push(id);
    }
    Ok(out)
}

/// The rows of a segment's indexed chunks that still point into it.
pub(super) fn rows_in(
    txn: &WriteTransaction,
    segment: u64,
) -> MetaResult<Vec<(ChunkId, ChunkRow)>> {
    rows_in_tables(
        &txn.open_table(SEGMENT_CHUNKS)?,
        &txn.open_table(CHUNKS)?,
        segment,
    )
}

/// `rows_in` over tables of any transaction.
pub(super) fn rows_in_tables(
    seg_chunks: &impl ReadableTable<&'static [u8], ()>,
    chunks: &impl ReadableTable<&'static [u8], &'static [u8]>,
    segment: u64,
) -> MetaResult<Vec<(ChunkId, ChunkRow)>> {
    let ids = chunks_of(seg_chunks, segment)?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(v) = chunks.get(id.as_slice())? {
            let row = ChunkRow::decode(v.value())?;
            if row.loc.segment == segment {
                out.push((id, row));
            }
        }
    }
    Ok(out)
}

/// Removes a segment's rows (its chunks' rows listed in `dead`, its chunk list, its
/// row and owner) and counts what that frees in the store and bucket counters.
pub(super) fn drop_segment_rows(
    txn: &WriteTransaction,
    segment: u64,
    dead: &[(ChunkId, ChunkRow)],
) -> MetaResult<Freed> {
    let size = txn
        .open_table(SEGMENTS)?
        .remove(segment)?
        .map(|v| SegmentRow::decode(v.value()))
        .transpose()?
        .map(|r| r.size)
        .unwrap_or(0);
    super::tier::forget_tiered(txn, segment, size)?;
    {
        let mut chunks = txn.open_table(CHUNKS)?;
        for (id, _) in dead {
            chunks.remove(id.as_slice())?;
        }
        let mut seg_chunks = txn.open_table(SEGMENT_CHUNKS)?;
        for id in chunks_of(&seg_chunks, segment)? {
            seg_chunks.remove(segment_chunk_key(segment, &id).as_slice())?;
        }
    }
    let raw: u64 = dead.iter().map(|(_, r)| u64::from(r.loc.raw_len)).sum();
    let stored: u64 = dead.iter().map(|(_, r)| u64::from(r.loc.stored_len)).sum();
    let mut counters = txn.open_table(COUNTERS)?;
    bump(&mut counters, C_SEGMENTS, -1)?;
    bump(&mut counters, C_SEGMENT_BYTES, -(size as i64))?;
    bump(&mut counters, C_CHUNKS, -(dead.len() as i64))?;
    bump(&mut counters, C_CHUNK_RAW, -(raw as i64))?;
    bump(&mut counters, C_CHUNK_STORED, -(stored as i64))?;
    let owner = txn
        .open_table(SEGMENT_BUCKETS)?
        .remove(segment)?
        .map(|v| v.value().to_owned());
    if let Some(bucket) = owner {
        adjust_bucket(txn, &bucket, |s| {
            s.stored_bytes = s.stored_bytes.saturating_sub(size);
            s.segments = s.segments.saturating_sub(1);
            s.new_chunks = s.new_chunks.saturating_sub(dead.len() as u64);
            s.new_raw_bytes = s.new_raw_bytes.saturating_sub(raw);
        })?;
    }
    Ok(Freed {
        chunks: dead.len() as u64,
        bytes: size,
    })
}

/// Points `kept` chunks at their copies in the new segment `new` (offsets in
/// `moved_at`), and adds that segment's row, owner and counters.
pub(super) fn repoint(
    txn: &WriteTransaction,
    new: u64,
    new_size: u64,
    kept: &[(ChunkId, ChunkRow)],
    moved_at: &HashMap<ChunkId, u32>,
    owner: Option<&str>,
) -> MetaResult<()> {
    super::gateways::name_segment(txn, new)?;
    let mut new_row = SegmentRow {
        size: new_size,
        created: super::unix_secs(),
        ..SegmentRow::default()
    };
    {
        let mut chunks = txn.open_table(CHUNKS)?;
        let mut seg_chunks = txn.open_table(SEGMENT_CHUNKS)?;
        for (id, mut row) in kept.iter().copied() {
            let Some(offset) = moved_at.get(&id) else {
                continue;
            };
            row.loc.segment = new;
            row.loc.offset = *offset;
            chunks.insert(id.as_slice(), row.encode().as_slice())?;
            seg_chunks.insert(segment_chunk_key(new, &id).as_slice(), ())?;
            new_row.chunks += 1;
            if row.refs > 0 {
                new_row.live_chunks += 1;
                new_row.live_bytes += u64::from(row.loc.stored_len);
            }
        }
    }
    txn.open_table(SEGMENTS)?
        .insert(new, new_row.encode().as_slice())?;
    let mut counters = txn.open_table(COUNTERS)?;
    bump(&mut counters, C_SEGMENTS, 1)?;
    bump(&mut counters, C_SEGMENT_BYTES, new_size as i64)?;
    drop(counters);
    if let Some(bucket) = owner {
        txn.open_table(SEGMENT_BUCKETS)?.insert(new, bucket)?;
        adjust_bucket(txn, bucket, |s| {
            s.stored_bytes += new_size;
            s.segments += 1;
        })?;
    }
    Ok(())
}

/// Applies `f` to a bucket's stats if the bucket still has them.
fn adjust_bucket(
    txn: &WriteTransaction,
    bucket: &str,
    f: impl FnOnce(&mut BucketStats),
) -> MetaResult<()> {
    let mut t = txn.open_table(BUCKET_STATS)?;
    let stats = t
        .get(bucket)?
        .map(|v| decode_record::<BucketStats>(v.value()))
        .transpose()?;
    if let Some(mut s) = stats {
        f(&mut s);
        t.insert(bucket, encode_record(&s)?.as_slice())?;
    }
    Ok(())
}

impl MetaStore {
    /// Segments with no live chunk, or whose live share is below `sparse_percent`;
    /// read from segment rows only.
    pub async fn gc_candidates(&self, sparse_percent: u64) -> MetaResult<Vec<SegmentCandidate>> {
        self.read(move |txn| {
            let mut out = Vec::new();
            for row in txn.open_table(SEGMENTS)?.iter()? {
                let (k, v) = row?;
                let seg = SegmentRow::decode(v.value())?;
                if seg.live_chunks == 0 || seg.live_bytes * 100 < seg.size * sparse_percent {
                    out.push(SegmentCandidate {
                        id: k.value(),
                        row: seg,
                    });
                }
            }
            Ok(out)
        })
        .await
    }

    /// Removes each segment none of whose chunks is kept (see `keep`), with its
    /// chunks' rows, in one durable transaction; `None` (that segment unchanged) where
    /// one is kept. The caller deletes the files of the removed ones.
    pub async fn remove_dead_segments(
        &self,
        segments: Vec<u64>,
        cutoff: u64,
    ) -> MetaResult<Vec<(u64, Option<Freed>)>> {
        self.write(true, move |txn| {
            segments
                .into_iter()
                .map(|segment| {
                    let rows = rows_in(txn, segment)?;
                    if rows.iter().any(|(_, r)| keep(r, cutoff)) {
                        return Ok((segment, None));
                    }
                    Ok((segment, Some(drop_segment_rows(txn, segment, &rows)?)))
                })
                .collect()
        })
        .await
    }

    /// The chunks of a segment that compaction must keep, in segment order.
    pub async fn chunks_to_keep(&self, segment: u64, cutoff: u64) -> MetaResult<Vec<KeptChunk>> {
        self.read(move |txn| {
            let mut kept: Vec<KeptChunk> = rows_in_tables(
                &txn.open_table(SEGMENT_CHUNKS)?,
                &txn.open_table(CHUNKS)?,
                segment,
            )?
            .into_iter()
            .filter(|(_, r)| keep(r, cutoff))
            .map(|(id, r)| KeptChunk { id, loc: r.loc })
            .collect();
            kept.sort_by_key(|k| k.loc.offset);
            Ok(kept)
        })
        .await
    }

    /// Commits a compaction: `moved` chunks (already durable in segment `new` at the
    /// given offsets) are repointed there, the old segment's other chunk rows are
    /// removed, the old segment's rows go and its file is queued for deletion at
    /// `delete_at`. Fails with `None`, changing nothing, when a chunk left behind is
    /// kept after all (a writer revived it meanwhile); the caller then deletes `new`.
    pub async fn commit_compaction(
        &self,
        old: u64,
        new: u64,
        new_size: u64,
        moved: Vec<(ChunkId, u32)>,
        cutoff: u64,
        delete_at: u64,
    ) -> MetaResult<Option<Freed>> {
        self.write(true, move |txn| {
            let rows = rows_in(txn, old)?;
            let moved_ids: HashMap<ChunkId, u32> = moved.iter().copied().collect();
            let (kept, dead): (Vec<_>, Vec<_>) = rows
                .into_iter()
                .partition(|(id, _)| moved_ids.contains_key(id));
            if dead.iter().any(|(_, r)| keep(r, cutoff)) {
                return Ok(None);
            }
            let owner = txn
                .open_table(SEGMENT_BUCKETS)?
                .get(old)?
                .map(|v| v.value().to_owned());
            let freed = drop_segment_rows(txn, old, &dead)?;
            repoint(txn, new, new_size, &kept, &moved_ids, owner.as_deref())?;
            txn.open_table(PENDING_DELETES)?.insert(old, delete_at)?;
            Ok(Some(Freed {
                chunks: freed.chunks,
                bytes: freed.bytes.saturating_sub(new_size),
            }))
        })
        .await
    }

    /// Segment files queued for deletion whose time has come (`due` None: all).
    pub async fn pending_deletes(&self, now: Option<u64>) -> MetaResult<Vec<u64>> {
        self.read(move |txn| {
            let mut out = Vec::new();
            for row in txn.open_table(PENDING_DELETES)?.iter()? {
                let (k, v) = row?;
                if now.is_none_or(|n| v.value() <= n) {
                    out.push(k.value());
                }
            }
            Ok(out)
        })
        .await
    }

    /// Forgets a queued deletion once the file is gone.
    pub async fn pending_delete_done(&self, segment: u64) -> MetaResult<()> {
        self.write(false, move |txn| {
            txn.open_table(PENDING_DELETES)?.remove(segment)?;
            Ok(())
        })
        .await
    }

    /// The first segment id this run may hand out: a file of a lower id that no row
    /// names was written by an earlier run (a write or a gc pass a stop interrupted)
    /// and is debris at once.
    pub fn run_first_segment(&self) -> u64 {
        self.run_first_segment
    }

    /// Whether a segment id is known to the metadata (indexed, or queued for
    /// deletion), and the next id to be handed out; files of unknown ids below it are
    /// leftovers of interrupted writes (or segments between their upload and row).
    pub async fn segment_known(&self, ids: Vec<u64>) -> MetaResult<(Vec<bool>, u64)> {
        self.read(move |txn| {
            let segments = txn.open_table(SEGMENTS)?;
            let pending = txn.open_table(PENDING_DELETES)?;
            let known = ids
                .iter()
                .map(|id| Ok(segments.get(*id)?.is_some() || pending.get(*id)?.is_some()))
                .collect::<MetaResult<Vec<bool>>>()?;
            Ok((known, next_segment(txn)?))
        })
        .await
    }

    /// Which of the segment files `files` (id, and whether the file is older than
    /// the orphan grace period) are debris: no row names them and none will. That
    /// is a file of an id handed out and not queued for deletion, and either handed
    /// out by an earlier run (redb), or to a gateway whose lease is gone
    /// (PostgreSQL: `gateways::unnamed_and_dead`), or older than the grace period; a younger
    /// one may be a segment between its upload and its row.
    /// `dead_before` is what `dead_unnamed_segments` answered before the files were
    /// listed.
    pub async fn orphan_segments(
        &self,
        files: Vec<(u64, bool)>,
        dead_before: Vec<u64>,
    ) -> MetaResult<OrphanScan> {
        let earlier_run = self.run_first_segment;
        self.read(move |txn| {
            let segments = txn.open_table(SEGMENTS)?;
            let pending = txn.open_table(PENDING_DELETES)?;
            let next = next_segment(txn)?;
            let mut scan = OrphanScan::default();
            for (id, old) in &files {
                let id = *id;
                if id >= next || segments.get(id)?.is_some() || pending.get(id)?.is_some() {
                    continue;
                }
                if *old || id < earlier_run || super::gateways::unnamed_and_dead(txn, id)? {
                    scan.debris.push(id);
                }
            }
            // An id of a gateway already dead before the listing, without a file
            // listed, has nothing left to remove: it never uploaded one. Ids of
            // gateways that died later stay recorded: their files may have been
            // written after the listing.
            let listed: std::collections::HashSet<u64> = files.iter().map(|(id, _)| *id).collect();
            scan.settled = dead_before
                .into_iter()
                .filter(|id| !listed.contains(id))
                .chain(scan.debris.iter().copied())
                .collect();
            Ok(scan)
        })
        .await
    }

    /// The ids handed to gateways whose lease is gone and never named: read before an
    /// orphan pass lists the files.
    pub async fn dead_unnamed_segments(&self) -> MetaResult<Vec<u64>> {
        self.read(super::gateways::dead_unnamed).await
    }

    /// After an orphan pass: forgets the `settled` ids of `orphan_segments` (once
    /// their files are gone) and those handed out before `before` (unix seconds, the
    /// grace period ago: their files, if any, are old enough to be removed anyway).
    pub async fn forget_unnamed_segments(&self, settled: Vec<u64>, before: u64) -> MetaResult<u64> {
        self.write(false, move |txn| {
            super::gateways::forget_unnamed(txn, &settled, before)
        })
        .await
    }
}

/// What an orphan pass found among the segment files it listed.
#[derive(Debug, Default)]
pub struct OrphanScan {
    /// Files to remove.
    pub debris: Vec<u64>,
    /// Ids whose records go once `debris` is removed.
    pub settled: Vec<u64>,
}

/// The next segment id to be handed out.
fn next_segment(txn: &super::kv::ReadTransaction) -> MetaResult<u64> {
    Ok(txn
        .open_table(COUNTERS)?
        .get(super::C_NEXT_SEGMENT)?
        .map(|v| v.value())
        .unwrap_or(0))
}
