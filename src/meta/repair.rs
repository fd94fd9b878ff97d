//! The metadata side of `hoard verify --repair`: lost chunks, count fixes, moving a
//! damaged segment's good chunks out, and re-indexing chunks found in segment files.
//!
//! A *lost* chunk is one that committed manifests name but that has no good stored
//! copy (its bytes failed verification, or its segment file is gone). Its index row is
//! replaced by a row in `lost_chunks` that keeps its reference count:
//!
//! | state | `chunks` row | `lost_chunks` row |
//! |---|---|---|
//! | stored | location, refs | - |
//! | lost | - | refs (occurrences in committed manifests) |
//!
//! Since a lost chunk has no index row, a writer that meets the same content stores it
//! anew; `add_segment` then gives the new row the lost references as well, so the
//! damaged objects read again ("healed by re-upload") and deleting the re-upload
//! cannot take their count to zero. A release of a lost chunk's reference (deleting a
//! damaged object) lowers the lost count. Objects naming lost chunks stay listed and
//! are reported by verify; nothing is dropped silently.

use std::collections::HashMap;

use super::kv::{ReadableTable, Table, TableDefinition, WriteTransaction};

use super::{
    C_CHUNK_RAW, C_CHUNK_STORED, C_CHUNKS, C_SEGMENT_BYTES, C_SEGMENTS, CHUNKS, COUNTERS, ChunkId,
    ChunkLocation, ChunkRow, MANIFESTS, MetaResult, MetaStore, NewChunk, OBJECTS, ObjectRecord,
    SEGMENT_CHUNKS, SEGMENTS, SegmentRow, VERSIONS, VersionLock, adjust_refs, bump,
    decode_manifest, decode_record,
    gc::{drop_segment_rows, repoint},
    segment_chunk_key, unix_secs,
};

/// Lost chunk id -> references committed manifests hold on it.
pub(super) const LOST_CHUNKS: TableDefinition<&[u8], u64> = TableDefinition::new("lost_chunks");

/// What fixing the counts did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CountFix {
    /// Counts set to the recount.
    pub fixed: u64,
    /// Chunks named by manifests with neither an index row nor a lost row, now lost.
    pub newly_lost: u64,
    /// Segment rows whose chunk, live chunk or live byte totals were set to the sum
    /// of the chunk rows pointing into them.
    pub segments_fixed: u64,
}

/// Takes a lost chunk's references for a new row of the same content.
fn take_lost(txn: &WriteTransaction, id: &ChunkId) -> MetaResult<u64> {
    let mut lost = txn.open_table(LOST_CHUNKS)?;
    let n = lost.remove(id.as_slice())?.map(|v| v.value()).unwrap_or(0);
    Ok(n)
}

/// Releases `n` references of a chunk without an index row; false if it is not lost.
pub(super) fn release_lost(txn: &WriteTransaction, id: &ChunkId, n: u32) -> MetaResult<bool> {
    let mut lost = txn.open_table(LOST_CHUNKS)?;
    let Some(have) = lost.get(id.as_slice())?.map(|v| v.value()) else {
        return Ok(false);
    };
    let left = have.saturating_sub(u64::from(n));
    if left == 0 {
        lost.remove(id.as_slice())?;
    } else {
        lost.insert(id.as_slice(), left)?;
    }
    Ok(true)
}

/// Occurrences of every chunk id in committed manifests, plus the references
/// replication holds and uploads in flight keep on chunks ahead of their commit.
pub(super) fn recount(
    manifests: &impl ReadableTable<u64, &'static [u8]>,
    holds: &impl ReadableTable<&'static [u8], ()>,
    upload_holds: &impl ReadableTable<&'static [u8], &'static [u8]>,
) -> MetaResult<HashMap<ChunkId, u64>> {
    let mut counted: HashMap<ChunkId, u64> = HashMap::new();
    for row in manifests.iter()? {
        for r in decode_manifest(row?.1.value())? {
            *counted.entry(r.id).or_default() += 1;
        }
    }
    super::replicated::held_refs(holds, &mut counted)?;
    super::held::count_into(upload_holds, &mut counted)?;
    Ok(counted)
}

/// Counts, per chunk, its occurrences in the manifests of versions Object Lock
/// protects: what every chunk row's `locked` must say.
pub(super) fn recount_locked(
    objects: &impl ReadableTable<&'static [u8], &'static [u8]>,
    versions: &impl ReadableTable<&'static [u8], &'static [u8]>,
    manifests: &impl ReadableTable<u64, &'static [u8]>,
) -> MetaResult<HashMap<ChunkId, u64>> {
    let mut counted: HashMap<ChunkId, u64> = HashMap::new();
    for table in [objects.iter()?, versions.iter()?] {
        for row in table {
            let rec: ObjectRecord = decode_record(row?.1.value())?;
            if !VersionLock::protects(rec.lock) {
                continue;
            }
            for (m, _) in rec.manifests() {
                let Some(v) = manifests.get(m)? else { continue };
                for r in decode_manifest(v.value())? {
                    *counted.entry(r.id).or_default() += 1;
                }
            }
        }
    }
    Ok(counted)
}

/// Sets every chunk row's `locked` to `counted`; returns how many changed.
fn fix_locked_counts(
    chunks: &mut Table<'_, &'static [u8], &'static [u8]>,
    counted: &HashMap<ChunkId, u64>,
) -> MetaResult<u64> {
    let mut wrong = Vec::new();
    for row in chunks.iter()? {
        let (k, v) = row?;
        let Ok(id) = ChunkId::try_from(k.value()) else {
            continue;
        };
        let mut r = ChunkRow::decode(v.value())?;
        let want = u32::try_from(counted.get(&id).copied().unwrap_or(0)).unwrap_or(u32::MAX);
        if r.locked != want {
            r.locked = want;
            wrong.push((id, r));
        }
    }
    for (id, r) in &wrong {
        chunks.insert(id.as_slice(), r.encode().as_slice())?;
    }
    Ok(wrong.len() as u64)
}

/// Sets each segment row's chunk, live chunk and live byte totals to the sum of the
/// chunk rows that point into it; returns how many rows changed.
fn fix_segment_rows(
    chunks: &impl ReadableTable<&'static [u8], &'static [u8]>,
    segments: &mut Table<'_, u64, &'static [u8]>,
) -> MetaResult<u64> {
    let mut sums: HashMap<u64, (u32, u32, u64)> = HashMap::new();
    for row in chunks.iter()? {
        let r = ChunkRow::decode(row?.1.value())?;
        let s = sums.entry(r.loc.segment).or_default();
        s.0 += 1;
        if r.refs > 0 {
            s.1 += 1;
            s.2 += u64::from(r.loc.stored_len);
        }
    }
    let mut wrong = Vec::new();
    for row in segments.iter()? {
        let (k, v) = row?;
        let mut seg = SegmentRow::decode(v.value())?;
        let (n, live, bytes) = sums.get(&k.value()).copied().unwrap_or_default();
        if (seg.chunks, seg.live_chunks, seg.live_bytes) != (n, live, bytes) {
            (seg.chunks, seg.live_chunks, seg.live_bytes) = (n, live, bytes);
            wrong.push((k.value(), seg));
        }
    }
    for (id, seg) in &wrong {
        segments.insert(*id, seg.encode().as_slice())?;
    }
    Ok(wrong.len() as u64)
}

impl MetaStore {
    /// Lost chunks and their counts.
    pub async fn lost_chunks(&self) -> MetaResult<Vec<(ChunkId, u64)>> {
        self.read(|txn| {
            let mut out = Vec::new();
            for row in txn.open_table(LOST_CHUNKS)?.iter()? {
                let (k, v) = row?;
                if let Ok(id) = ChunkId::try_from(k.value()) {
                    out.push((id, v.value()));
                }
            }
            Ok(out)
        })
        .await
    }

    /// Sets every reference count to the number of times committed manifests name the
    /// chunk plus the references holds keep (replication transfers, uploads in
    /// flight), and every `locked` count to its recount, in one transaction. A chunk named by manifests with no row at all
    /// becomes lost.
    pub async fn fix_counts(&self) -> MetaResult<CountFix> {
        self.write(true, move |txn| {
            let counted = recount(
                &txn.open_table(MANIFESTS)?,
                &txn.open_table(super::replicated::HOLDS)?,
                &txn.open_table(super::held::UPLOAD_HOLDS)?,
            )?;
            let mut fix = CountFix::default();
            let now = unix_secs();
            let mut chunks = txn.open_table(CHUNKS)?;
            let mut segments = txn.open_table(SEGMENTS)?;
            let mut lost = txn.open_table(LOST_CHUNKS)?;
            let mut changes: Vec<(ChunkId, i64)> = Vec::new();
            for row in chunks.iter()? {
                let (k, v) = row?;
                let Ok(id) = ChunkId::try_from(k.value()) else {
                    continue;
                };
                let stored = i64::from(ChunkRow::decode(v.value())?.refs);
                let want = counted.get(&id).copied().unwrap_or(0) as i64;
                if want != stored {
                    changes.push((id, want - stored));
                }
            }
            for (id, delta) in changes {
                adjust_refs(&mut chunks, &mut segments, &id, delta, now)?;
                fix.fixed += 1;
            }
            for (id, n) in &counted {
                if chunks.get(id.as_slice())?.is_some() {
                    continue;
                }
                let had = lost.insert(id.as_slice(), *n)?.map(|v| v.value());
                match had {
                    None => fix.newly_lost += 1,
                    Some(h) if h != *n => fix.fixed += 1,
                    Some(_) => {}
                }
            }
            // Lost chunks no manifest names any more are forgotten.
            let stale: Vec<Vec<u8>> = lost
                .iter()?
                .filter_map(|r| r.ok())
                .filter(|(k, _)| {
                    ChunkId::try_from(k.value()).is_ok_and(|id| !counted.contains_key(&id))
                })
                .map(|(k, _)| k.value().to_vec())
                .collect();
            for k in stale {
                lost.remove(k.as_slice())?;
                fix.fixed += 1;
            }
            let locked = recount_locked(
                &txn.open_table(OBJECTS)?,
                &txn.open_table(VERSIONS)?,
                &txn.open_table(MANIFESTS)?,
            )?;
            fix.fixed += fix_locked_counts(&mut chunks, &locked)?;
            fix.segments_fixed = fix_segment_rows(&chunks, &mut segments)?;
            Ok(fix)
        })
        .await
    }

    /// Takes a damaged segment out of the index: the chunks in `moved` (copied intact
    /// into segment `new`, already durable) are repointed there; its other referenced
    /// chunks become lost; its unreferenced ones and its rows go. The caller then moves
    /// the file aside. Returns the number of chunks that became lost.
    pub async fn quarantine_segment(
        &self,
        old: u64,
        new: Option<(u64, u64)>,
        moved: Vec<(ChunkId, u32)>,
    ) -> MetaResult<u64> {
        self.write(true, move |txn| {
            let rows = super::gc::rows_in(txn, old)?;
            let moved_at: HashMap<ChunkId, u32> = moved.into_iter().collect();
            let (kept, left): (Vec<_>, Vec<_>) = rows
                .into_iter()
                .partition(|(id, _)| moved_at.contains_key(id));
            let mut lost_n = 0;
            {
                let mut lost = txn.open_table(LOST_CHUNKS)?;
                for (id, row) in left.iter().filter(|(_, r)| r.refs > 0) {
                    lost.insert(id.as_slice(), u64::from(row.refs))?;
                    lost_n += 1;
                }
            }
            let owner = txn
                .open_table(super::SEGMENT_BUCKETS)?
                .get(old)?
                .map(|v| v.value().to_owned());
            drop_segment_rows(txn, old, &left)?;
            if let Some((new, size)) = new {
                repoint(txn, new, size, &kept, &moved_at, owner.as_deref())?;
            }
            Ok(lost_n)
        })
        .await
    }

    /// Indexes a lost chunk found intact in segment file `segment` (of `file_size`
    /// bytes) with the lost references; adds the segment's row if it has none.
    /// False, changing nothing, if the chunk is no longer lost.
    pub async fn reindex_chunk(
        &self,
        segment: u64,
        file_size: u64,
        chunk: NewChunk,
    ) -> MetaResult<bool> {
        self.write(true, move |txn| {
            if txn
                .open_table(LOST_CHUNKS)?
                .get(chunk.id.as_slice())?
                .is_none()
                || txn.open_table(CHUNKS)?.get(chunk.id.as_slice())?.is_some()
            {
                return Ok(false);
            }
            let refs = take_lost(txn, &chunk.id)?;
            let refs = u32::try_from(refs).unwrap_or(u32::MAX);
            let mut segments = txn.open_table(SEGMENTS)?;
            let mut counters = txn.open_table(COUNTERS)?;
            let mut seg = match segments
                .get(segment)?
                .map(|v| SegmentRow::decode(v.value()))
            {
                Some(r) => r?,
                None => {
                    bump(&mut counters, C_SEGMENTS, 1)?;
                    bump(&mut counters, C_SEGMENT_BYTES, file_size as i64)?;
                    SegmentRow {
                        size: file_size,
                        created: unix_secs(),
                        ..SegmentRow::default()
                    }
                }
            };
            seg.chunks += 1;
            if refs > 0 {
                seg.live_chunks += 1;
                seg.live_bytes += u64::from(chunk.stored_len);
            }
            segments.insert(segment, seg.encode().as_slice())?;
            let row = ChunkRow {
                loc: ChunkLocation {
                    segment,
                    offset: chunk.offset,
                    stored_len: chunk.stored_len,
                    raw_len: chunk.raw_len,
                    codec: chunk.codec,
                },
                refs,
                zero_since: if refs == 0 { unix_secs() } else { 0 },
                // Recounted by `fix_counts`, like `refs` of a chunk indexed again.
                locked: 0,
            };
            txn.open_table(CHUNKS)?
                .insert(chunk.id.as_slice(), row.encode().as_slice())?;
            txn.open_table(SEGMENT_CHUNKS)?
                .insert(segment_chunk_key(segment, &chunk.id).as_slice(), ())?;
            bump(&mut counters, C_CHUNKS, 1)?;
            bump(&mut counters, C_CHUNK_RAW, i64::from(chunk.raw_len))?;
            bump(&mut counters, C_CHUNK_STORED, i64::from(chunk.stored_len))?;
            Ok(true)
        })
        .await
    }
}
