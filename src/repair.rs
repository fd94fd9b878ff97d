//! `repair` owns `hoard verify --repair`: fixing what verify found, without ever
//! dropping an object or serving a damaged byte.
//!
//! 1. Damaged segments (a chunk failed verification, or the file is gone) leave the
//!    store: their intact chunks are verified and copied into a new segment and
//!    repointed; chunks with no intact copy become *lost* (see `meta::repair`), keeping
//!    their reference counts; the file is moved to `quarantine/` for inspection.
//! 2. Reference counts are set to a recount of all manifests (objects, versions,
//!    upload parts); counts above it are lowered only while no upload holds
//!    references.
//! 3. Lost chunks are looked for in every segment file's trailer (the local backend;
//!    a copy may survive in another segment, or in a file whose index rows were
//!    lost); each copy found is verified against its BLAKE3 id and indexed again.
//!
//! Objects that still name lost chunks stay listed and are named by verify's report;
//! uploading the same content again stores the chunks and heals them.
//!
//! Repair runs with the cleaner held off (one at a time). Against uploads, GETs and
//! deletes, each step is one metadata transaction ordered by the committer: a GET that
//! looked up a moved chunk finds its file gone and looks the chunk up again; a writer
//! that meets a lost chunk's content stores it anew and the lost references join it.

use std::collections::{BTreeSet, HashSet};

use serde::{Deserialize, Serialize};

use crate::chunk_codec::decode_stored;
use crate::cleaner::{CleanerError, Copied, copy_chunks, store_segment};
use crate::meta::{ChunkId, ChunkLocation, CountFix, MetaError, MetaStore, NewChunk};
use crate::segments::{SegmentError, SegmentStore};
use crate::verify::VerifyReport;

#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error(transparent)]
    Copy(#[from] CleanerError),
    #[error("repair worker failed: {0}")]
    Worker(String),
}

/// What a repair changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairReport {
    /// Damaged segments taken out of the store and moved to `quarantine/`.
    pub segments_quarantined: Vec<u64>,
    /// Intact chunks copied out of them.
    pub chunks_rescued: u64,
    /// Chunks with no intact copy, now lost (their objects are reported damaged).
    pub chunks_lost: u64,
    pub counts: CountFix,
    /// Lost chunks found intact in a segment file and indexed again.
    pub chunks_reindexed: u64,
}

/// Repairs what `found` (a whole-store verify report) names; see the module docs.
pub async fn repair(
    meta: &MetaStore,
    segments: &SegmentStore,
    segment_size: usize,
    found: &VerifyReport,
) -> Result<RepairReport, RepairError> {
    let mut report = RepairReport::default();
    let damaged: BTreeSet<u64> = found
        .missing_segments
        .iter()
        .copied()
        .chain(found.corrupt_chunks.iter().map(|c| c.segment))
        .collect();
    for id in damaged {
        quarantine(meta, segments, segment_size, id, &mut report).await?;
    }
    report.counts = meta.fix_counts().await?;
    report.chunks_reindexed = reindex_lost(meta, segments).await?;
    tracing::warn!(?report, "repair finished");
    Ok(report)
}

async fn quarantine(
    meta: &MetaStore,
    segments: &SegmentStore,
    segment_size: usize,
    id: u64,
    report: &mut RepairReport,
) -> Result<(), RepairError> {
    // Every row, referenced or not, is copied if intact: nothing is decided here.
    let rows = meta.chunks_to_keep(id, 0).await?;
    let Copied { data, moved, .. } = copy_chunks(segments, id, &rows, segment_size).await?;
    let new = if moved.is_empty() {
        None
    } else {
        let size = data.len() as u64;
        Some((store_segment(meta, segments, data).await?, size))
    };
    report.chunks_rescued += moved.len() as u64;
    report.chunks_lost += meta.quarantine_segment(id, new, moved).await?;
    segments.quarantine(id).await?;
    report.segments_quarantined.push(id);
    tracing::warn!(segment = id, new = ?new.map(|n| n.0), "damaged segment moved to quarantine");
    Ok(())
}

/// Looks for lost chunks in every local segment file's trailer; indexes each intact
/// copy found. Files queued for deletion are skipped (they are about to go).
async fn reindex_lost(meta: &MetaStore, segments: &SegmentStore) -> Result<u64, RepairError> {
    let mut lost: HashSet<ChunkId> = meta
        .lost_chunks()
        .await?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    if lost.is_empty() {
        return Ok(0);
    }
    let leaving: HashSet<u64> = meta.pending_deletes(None).await?.into_iter().collect();
    let mut found = 0;
    for (seg, _) in segments.list().await? {
        if lost.is_empty() {
            break;
        }
        if leaving.contains(&seg) {
            continue;
        }
        let data = match segments.read_all(seg).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(segment = seg, error = %e, "repair: segment file cannot be read; left as it is");
                continue;
            }
        };
        let (wanted, store) = (lost.clone(), segments.clone());
        let intact = tokio::task::spawn_blocking(move || {
            let Ok(entries) = store.parse_trailer(seg, &data) else {
                return Vec::new();
            };
            entries
                .into_iter()
                .filter(|e| wanted.contains(&e.id))
                .filter(|e| {
                    let loc = ChunkLocation {
                        segment: seg,
                        offset: e.offset,
                        stored_len: e.stored_len,
                        raw_len: e.raw_len,
                        codec: e.codec,
                    };
                    let start = e.offset as usize;
                    let end = start + e.stored_len as usize;
                    data.get(start..end).is_some_and(|_| {
                        decode_stored(&store, &e.id, &loc, data.slice(start..end)).is_ok()
                    })
                })
                .map(|e| {
                    (
                        NewChunk {
                            id: e.id,
                            offset: e.offset,
                            stored_len: e.stored_len,
                            raw_len: e.raw_len,
                            codec: e.codec,
                            refs: 0,
                        },
                        data.len() as u64,
                    )
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| RepairError::Worker(e.to_string()))?;
        for (chunk, size) in intact {
            if meta.reindex_chunk(seg, size, chunk).await? {
                lost.remove(&chunk.id);
                found += 1;
                tracing::warn!(segment = seg, chunk = %hex::encode(chunk.id), "lost chunk found intact and indexed again");
            }
        }
    }
    Ok(found)
}
