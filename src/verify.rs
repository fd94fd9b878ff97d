//! `verify` owns checking the store against itself: every indexed chunk is read from
//! its segment and checked against its BLAKE3 id, each segment's trailer against the
//! index, every reference count against a recount from all manifests (objects,
//! versions, upload parts), and the segment files against the segment rows. It reports
//! what is wrong and which object versions it damages; it changes nothing (`repair`
//! fixes what it finds).
//!
//! Reference counts above the recount are expected while uploads are in flight (they
//! hold references their manifests do not name yet); run it on a quiet store for an
//! exact count.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::board::Board;
use crate::chunk_codec::decode_stored;
use crate::meta::{ChunkId, DamagedObject, MetaError, MetaStore};
use crate::segments::{SegmentError, SegmentStore};

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error("verify worker failed: {0}")]
    Worker(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkProblem {
    pub segment: u64,
    pub chunk: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountProblem {
    pub chunk: String,
    /// `None`: manifests name the chunk but it has no index row.
    pub stored: Option<u32>,
    pub counted: u64,
    /// The problem is in the count of references from versions Object Lock protects.
    #[serde(default)]
    pub locked: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    pub bucket: Option<String>,
    pub segments_checked: u64,
    pub chunks_checked: u64,
    pub bytes_read: u64,
    /// Segments with a row but no file.
    pub missing_segments: Vec<u64>,
    /// Segments whose file exists but cannot be read (EIO, EACCES, ...): nothing is
    /// known of their data, and repair leaves them alone.
    #[serde(default)]
    pub unreadable_segments: Vec<UnreadableSegment>,
    /// Chunks whose bytes fail their BLAKE3 id (or do not decompress).
    pub corrupt_chunks: Vec<ChunkProblem>,
    /// Index rows the segment's trailer disagrees with, and unreadable trailers.
    pub trailer_problems: Vec<ChunkProblem>,
    /// Reference counts that differ from the recount (whole-store runs only).
    pub count_problems: Vec<CountProblem>,
    /// Segment files no row names: debris of interrupted writes, which the cleaner
    /// removes; not damage.
    pub orphan_segments: Vec<u64>,
    /// Chunks with no intact copy that repair recorded as lost (hex ids).
    #[serde(default)]
    pub lost_chunks: Vec<String>,
    /// Object versions and upload parts that name a corrupt, missing, lost or
    /// unindexed chunk.
    pub damaged_objects: Vec<DamagedObject>,
}

/// A segment file that exists but could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnreadableSegment {
    pub segment: u64,
    pub error: String,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.missing_segments.is_empty()
            && self.unreadable_segments.is_empty()
            && self.corrupt_chunks.is_empty()
            && self.trailer_problems.is_empty()
            && self.count_problems.is_empty()
            && self.lost_chunks.is_empty()
            && self.damaged_objects.is_empty()
    }
}

/// Checks the whole store, or the chunks of one bucket's objects.
pub async fn verify(
    meta: &MetaStore,
    segments: &SegmentStore,
    bucket: Option<String>,
    jobs: &Arc<Board>,
) -> Result<VerifyReport, VerifyError> {
    let mut report = VerifyReport {
        bucket: bucket.clone(),
        ..VerifyReport::default()
    };
    let ids = match &bucket {
        Some(b) => meta.segments_of_bucket(b).await?,
        None => meta.segment_ids().await?,
    };
    tracing::info!(segments = ids.len(), bucket = ?bucket, "verify started");
    let job = jobs.enter(
        "verify",
        "segments",
        ids.len() as u64,
        crate::meta::now_ms(),
    );
    let mut bad: HashSet<ChunkId> = HashSet::new();
    for (n, id) in ids.into_iter().enumerate() {
        check_segment(meta, segments, id, &mut report, &mut bad).await?;
        job.set_done(n as u64 + 1);
    }
    if bucket.is_none() {
        let m = meta.clone();
        let mismatches = tokio::task::spawn_blocking(move || m.audit_refs_blocking())
            .await
            .map_err(|e| VerifyError::Worker(e.to_string()))??;
        report.count_problems = mismatches
            .into_iter()
            .map(|m| CountProblem {
                chunk: hex::encode(m.id),
                stored: m.stored,
                counted: m.counted,
                locked: m.locked,
            })
            .collect();
        let files: Vec<u64> = segments
            .list()
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let (known, next) = meta.segment_known(files.clone()).await?;
        report.orphan_segments = files
            .into_iter()
            .zip(known)
            .filter(|(id, known)| !known && *id < next)
            .map(|(id, _)| id)
            .collect();
    }
    report.lost_chunks = meta
        .lost_chunks()
        .await?
        .into_iter()
        .map(|(id, _)| hex::encode(id))
        .collect();
    let (damaged, _unindexed) = meta.objects_naming(bad, bucket).await?;
    report.damaged_objects = damaged;
    for d in &report.damaged_objects {
        tracing::error!(bucket = %d.bucket, key = %d.key, version = %d.version, chunks = d.damaged_chunks, "verify: object is damaged");
    }
    tracing::info!(
        clean = report.is_clean(),
        segments = report.segments_checked,
        chunks = report.chunks_checked,
        "verify finished"
    );
    Ok(report)
}

/// Checks one segment's chunks and trailer into `report`; the ids of chunks found
/// corrupt or missing are added to `bad`.
pub(crate) async fn check_segment(
    meta: &MetaStore,
    segments: &SegmentStore,
    id: u64,
    report: &mut VerifyReport,
    bad: &mut HashSet<ChunkId>,
) -> Result<(), VerifyError> {
    let rows = meta.indexed_chunks(id).await?;
    report.segments_checked += 1;
    let data = match segments.read_all(id).await {
        Ok(d) => d,
        Err(e) if e.is_not_found() => {
            tracing::error!(segment = id, "verify: segment file is missing");
            report.missing_segments.push(id);
            bad.extend(rows.iter().map(|(c, _)| *c));
            return Ok(());
        }
        Err(e) => {
            tracing::error!(segment = id, error = %e, "verify: segment file cannot be read");
            report.unreadable_segments.push(UnreadableSegment {
                segment: id,
                error: e.to_string(),
            });
            return Ok(());
        }
    };
    report.bytes_read += data.len() as u64;
    let (store, indexed) = (segments.clone(), rows.len() as u64);
    let checked = tokio::task::spawn_blocking(move || {
        let mut corrupt = Vec::new();
        let mut trailer = Vec::new();
        let problem = |chunk: &ChunkId, reason: String| ChunkProblem {
            segment: id,
            chunk: hex::encode(chunk),
            reason,
        };
        match store.parse_trailer(id, &data) {
            // Sealed under another key: nothing can be said about its bytes.
            Err(e @ SegmentError::WrongKey { .. }) => return Err(e.to_string()),
            Ok(entries) => {
                let listed: HashMap<ChunkId, _> = entries.iter().map(|e| (e.id, *e)).collect();
                for (chunk, row) in &rows {
                    let agrees = listed.get(chunk).is_some_and(|e| {
                        e.offset == row.loc.offset
                            && e.stored_len == row.loc.stored_len
                            && e.raw_len == row.loc.raw_len
                            && e.codec == row.loc.codec
                    });
                    if !agrees {
                        trailer.push(problem(
                            chunk,
                            "index row disagrees with the segment trailer".into(),
                        ));
                    }
                }
            }
            Err(e) => trailer.push(problem(&[0; 32], e.to_string())),
        }
        for (chunk, row) in &rows {
            let start = row.loc.offset as usize;
            let end = start + row.loc.stored_len as usize;
            let result = match data.get(start..end) {
                Some(_) => decode_stored(&store, chunk, &row.loc, data.slice(start..end)).map(drop),
                None => Err("chunk lies beyond the end of the segment".into()),
            };
            if let Err(reason) = result {
                corrupt.push(problem(chunk, reason));
            }
        }
        Ok((corrupt, trailer))
    })
    .await
    .map_err(|e| VerifyError::Worker(e.to_string()))?;
    let (corrupt, trailer) = match checked {
        Ok(found) => found,
        Err(error) => {
            tracing::error!(segment = id, %error, "verify: segment sealed under another key");
            report
                .unreadable_segments
                .push(UnreadableSegment { segment: id, error });
            return Ok(());
        }
    };
    report.chunks_checked += indexed;
    for c in &corrupt {
        tracing::error!(segment = id, chunk = %c.chunk, reason = %c.reason, "verify: chunk failed verification");
        if let Ok(b) = hex::decode(&c.chunk)
            && let Ok(chunk) = ChunkId::try_from(b.as_slice())
        {
            bad.insert(chunk);
        }
    }
    report.corrupt_chunks.extend(corrupt);
    report.trailer_problems.extend(trailer);
    Ok(())
}
