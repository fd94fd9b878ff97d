//! `tier` owns the mover of mode "tiered": it copies local segments to the cloud
//! tier by policy (age, per-bucket age, local free space) and gives up their local
//! files once the copies are safe.
//!
//! One move: copy the local file to the tier and read it back (`copy_to_tier`:
//! same length, same BLAKE3), record it (`mark_tiered`, a durable commit), then
//! remove the local file. Invariants:
//! - A local file is removed only after its tier copy was read back whole and
//!   recorded, so at every instant a segment is readable from at least one place;
//!   a reader that looked the segment up before the move and opens the file after
//!   it falls back to the tier (`SegmentStore::read_range`).
//! - A crash at any step loses nothing: before the mark, the next pass copies the
//!   segment again (the same bytes under the same key); after it, `finish_moves` at
//!   start removes the local file that was left.
//! - A segment the cleaner removed while it was being copied is not marked
//!   (`mark_tiered` finds no row) and its copy is deleted again; one the cleaner
//!   removes later is deleted from both places by the cleaner.
//! - While the tier cannot be reached the mover stops its pass, keeps every local
//!   file, and retries with a doubling wait (up to ten minutes); writes go on locally.
//! - One mover at a time in a cluster: a pass claims the worker `tier-mover`
//!   (`meta::gateways`) for its turn, and another gateway's pass is skipped meanwhile.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::meta::{MetaError, MetaStore, TierCandidate, TierPolicy};
use crate::metrics::Metrics;
use crate::segments::{SegmentError, SegmentStore};

/// The cluster-wide worker name of the mover.
const MOVER_WORKER: &str = "tier-mover";
/// Segments one query of the mover asks for.
const BATCH: usize = 64;
/// Longest wait between passes after errors.
const MAX_BACKOFF: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum TierError {
    #[error("metadata: {0}")]
    Meta(#[from] MetaError),
    #[error("segment {segment:016x}: {source}")]
    Segment { segment: u64, source: SegmentError },
}

/// How the mover decides.
#[derive(Debug, Clone)]
pub struct TierSettings {
    /// Segments older than this move (besides bucket policies).
    pub after: Option<Duration>,
    /// Below this percentage of free space on the data dir's file system, the
    /// oldest segments move whatever their age.
    pub min_free_percent: Option<u8>,
    pub interval: Duration,
    pub data_dir: PathBuf,
}

/// What one pass moved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MoveReport {
    pub segments: u64,
    pub bytes: u64,
}

pub struct Mover {
    pub meta: MetaStore,
    pub segments: SegmentStore,
    pub metrics: Arc<Metrics>,
    pub settings: TierSettings,
}

impl Mover {
    /// Runs passes forever: one every `interval`, sooner again after an error only
    /// once its doubling wait is over.
    pub async fn run(self) {
        if let Err(e) = self.finish_moves().await {
            tracing::warn!(error = %e, "tier: finishing earlier moves failed; retried next start");
        }
        let mut wait = self.settings.interval;
        loop {
            match self.pass_unless_busy().await {
                Ok(r) => {
                    if r.segments > 0 {
                        tracing::info!(
                            segments = r.segments,
                            bytes = r.bytes,
                            "tier: segments moved"
                        );
                    }
                    wait = self.settings.interval;
                }
                Err(e) => {
                    self.metrics.tier_move_errors.inc();
                    tracing::warn!(error = %e, retry_in = ?wait, "tier: pass stopped; local files kept");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(MAX_BACKOFF);
                    continue;
                }
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Removes the local files of segments already recorded in the tier (a crash
    /// between the mark and the removal leaves them).
    pub async fn finish_moves(&self) -> Result<(), TierError> {
        for segment in self.meta.tiered_segments().await? {
            if self.segments.is_local(segment) {
                self.segments
                    .drop_local(segment)
                    .await
                    .map_err(|source| TierError::Segment { segment, source })?;
            }
        }
        Ok(())
    }

    /// A pass, unless another gateway runs the mover now (then nothing moved).
    async fn pass_unless_busy(&self) -> Result<MoveReport, TierError> {
        let Ok(_turn) = self.meta.worker_turn(MOVER_WORKER).await? else {
            return Ok(MoveReport::default());
        };
        self.pass().await
    }

    /// Moves every segment the policy names now.
    pub async fn pass(&self) -> Result<MoveReport, TierError> {
        let mut report = MoveReport::default();
        let mut from = 0;
        loop {
            let pressure = self.short_of_space();
            let policy = TierPolicy {
                default_after: self.settings.after.map(|d| d.as_secs()),
                pressure,
                from,
                limit: BATCH,
            };
            let due = self.meta.tier_candidates(policy).await?;
            self.metrics.tier_queue.set(due.len() as i64);
            let Some(last) = due.last() else {
                return Ok(report);
            };
            from = last.segment + 1;
            for c in due {
                if pressure && !self.short_of_space() {
                    // Enough space again: the rest waits for its age, next pass.
                    self.metrics.tier_queue.set(0);
                    return Ok(report);
                }
                if self.move_one(c).await? {
                    report.segments += 1;
                    report.bytes += c.size;
                }
            }
            self.metrics.tier_queue.set(0);
        }
    }

    /// Moves one segment; `false` when the cleaner removed it meanwhile.
    async fn move_one(&self, c: TierCandidate) -> Result<bool, TierError> {
        let segment = c.segment;
        let err = |source| TierError::Segment { segment, source };
        let bytes = match self.segments.copy_to_tier(segment).await {
            Ok(b) => b,
            // Indexed but without a local file: verify reports it; nothing to move.
            Err(e) if e.is_not_found() => {
                tracing::error!(
                    segment,
                    "tier: the segment's local file is missing; not moved"
                );
                return Ok(false);
            }
            Err(e) => return Err(err(e)),
        };
        if !self.meta.mark_tiered(segment).await? {
            self.segments.delete_from_tier(segment).await.map_err(err)?;
            return Ok(false);
        }
        self.segments.drop_local(segment).await.map_err(err)?;
        self.metrics.tier_moved_segments.inc();
        self.metrics.tier_moved_bytes.inc_by(bytes);
        Ok(true)
    }

    fn short_of_space(&self) -> bool {
        let Some(min) = self.settings.min_free_percent else {
            return false;
        };
        crate::stats::disk_usage(&self.settings.data_dir)
            .is_some_and(|d| d.free_bytes * 100 < d.total_bytes * u64::from(min))
    }
}
