//! `cleaner` owns reclaiming space: deleting segments whose chunks are all dead,
//! compacting sparse segments, deleting compacted segments after their grace period,
//! and removing segment files nothing knows about (left by crashes).
//!
//! A chunk is *dead* when its reference count has been zero for at least the grace
//! period and no version Object Lock protects names it (its `locked` count, kept
//! apart from the references, is zero); any other chunk is *kept* (a writer may
//! still revive it, or a locked version needs it whatever its count says). Finding work reads segment rows only; compaction
//! reads only the kept chunks of the segments it compacts, verifies each against its
//! BLAKE3 id, and copies the stored payload unchanged. One pass runs at a time.
//!
//! ## Concurrent operations, and why each pair is safe
//!
//! Every metadata step below is one transaction in the committer's single writer, and
//! each validates before it mutates, so any two are ordered.
//!
//! On PostgreSQL (`meta/pg.rs`) the write transactions of every gateway take one
//! advisory lock first, so the same holds across gateways: the last column says what
//! differs when the other operation runs on another gateway.
//!
//! | cleaner step | vs PUT / UploadPart / copy (reference take) | vs segment seal (`add_segment`) | vs delete, overwrite, abort (release) | vs GET | vs the same on another gateway |
//! |---|---|---|---|---|---|
//! | remove dead segment (rows re-checked: no chunk kept) | a take before the removal makes the chunk kept and the removal changes nothing; a take after finds no row and the writer stores the chunk anew | a new segment's chunk that already has a row in the dying segment adds references to that row first, so the removal sees it kept | a release only makes chunks dead sooner; their grace period still runs | a reader that looked up a chunk of this segment did so before its object's references fell to zero, at least one grace period ago | as here: the re-check runs in the serialised transaction; another gateway's Bloom filter may miss the chunk and store it again (a second copy, dead bytes until compaction) |
//! | compaction: read kept chunks, write a new durable segment | no change to metadata yet | - | - | - | - |
//! | compaction commit (repoint kept chunks, drop dead rows, queue old file) | a chunk left behind as dead but revived meanwhile is kept after all: the commit fails and changes nothing, the new file is deleted | as for removal | a chunk moved while being released keeps its new row with the count the release left | a reader with an old location reads the old file, which stays until the grace period after the commit; every chunk read is verified, so a reader can never get wrong bytes | as here; two gateways compacting the same segment (only while one that lost its lease has not noticed: otherwise one cleaner runs in the cluster): the second commit finds no row left in the old segment, so its new segment names no live chunk and a later pass removes it as dead |
//! | delete a queued file (grace period over) | - | - | - | readers looked up locations before the commit, more than a grace period ago | readers on every gateway looked up locations through the shared rows, more than a grace period ago |
//! | remove an orphan file (no row, not queued, id already handed out; handed out by an earlier run, or older than the orphan grace period) | a segment being written has a temp name until its durable rename and gets its row right after; the orphan grace period (24 h) covers that gap for ids of this run, and an id of an earlier run has no writer left | as for PUT | - | no reader can know an id without a row | on PostgreSQL every id is recorded with the gateway it was handed to until its row is made (`meta::gateways`): a file of an id whose gateway's lease is gone is debris at once (naming it re-checks the record and the lease in the naming transaction, so a reaped gateway's seal fails instead); a live gateway's file waits out the orphan grace period, as it may be between its upload and its row |
//!
//! | repair: copy a damaged segment's intact chunks, then one transaction repoints them, turns the referenced rest into lost rows and drops the segment's rows; the file moves to `quarantine/` | a take on a chunk that became lost finds no row and the writer stores the chunk; `add_segment` hands the lost references to the new row | as for PUT | a release of a lost chunk lowers its lost count | a reader with the old location finds the file gone and looks the chunk up again: the new copy, or no row (an error, never wrong bytes) |
//! | repair: fix counts (one transaction recounts all manifests and holds) | an upload's takes are recorded under its hold in their own transactions (`meta::held`), so the recount counts them and never undoes one | as for PUT | ordered by the committer | - |
//! | repair: index a lost chunk found in a segment file | the row is added only if the chunk is still lost and unindexed, re-checked in the transaction | as for PUT | - | - |
//!
//! | release a replication hold untouched for `HOLD_TTL_SECS` (start of each pass) | as a release | as a release | as a release: the chunks' grace period starts now | - |
//!
//! Object Lock against the cleaner: a commit of a protected version, a retention or
//! legal hold set on one, and its removal change `locked` in the same transaction
//! as the change itself, so each cleaner step sees a chunk either locked or not.
//!
//! | cleaner step | vs a commit of a locked version, or a lock set | vs a lock lifted, or a locked version removed (its retention over) |
//! |---|---|---|
//! | remove dead segment, compaction commit | before: the chunk had references (the commit's upload held them), so it was kept; after: `locked` keeps it | before: still locked, kept; after: an ordinary chunk, dead once its references are zero for the grace period |
//!
//! The tier mover (`tier`, mode "tiered") against the cleaner's steps: it changes no
//! chunk row, so it meets them only at segment files.
//!
//! | cleaner step | vs the mover copying a segment | vs the mover removing a local file after its mark |
//! |---|---|---|
//! | remove dead segment, delete a queued file | the mark finds no row, so the mover deletes the copy it made; a copy finished after the cleaner's delete is an orphan object the next pass removes | `delete` removes the local file and the tier object alike; the mover's removal of an absent file succeeds |
//! | compaction: read kept chunks | reads the local file | a read that finds the local file gone reads the tier copy, which exists since the mark |
//! | remove an orphan file | a copy in flight has a row, so it is never an orphan | - |
//!
//! One pass runs at a time in a cluster: a pass or a repair claims the cluster-wide
//! worker `cleaner` (`meta::gateways`) and gives it up when it ends; another gateway
//! asked for a pass meanwhile answers 409 (`Busy`), and a scheduled one skips. The
//! last column above is what holds for the moment a gateway that lost its lease has
//! not noticed yet. A repair holds the cleaner off (`hold_off`), so no pass runs during one. Verify
//! only reads. Replication receive takes and releases references through the same
//! operations (its chunks arrive held, `meta::replicated`), so the same rows apply.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::board::Board;
use crate::chunk_codec::decode_chunk;
use crate::meta::{
    ChunkId, KeptChunk, MetaError, MetaStore, SegmentCandidate, WorkerBusy, WorkerTurn, now_ms,
    unix_secs,
};
use crate::metrics::Metrics;
use crate::pace::Pacer;
use crate::segments::{SegmentError, SegmentStore};

/// Dead segments removed per metadata transaction (one fsync for the batch).
const DEAD_BATCH: usize = 128;
/// The same while uploads stream in: a smaller transaction holds the committer, which
/// their segment and object commits wait for, for less time at once.
const DEAD_BATCH_BUSY: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum CleanerError {
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error("cleaner worker failed: {0}")]
    Worker(String),
    /// Another gateway of the cluster runs a pass (or a repair) now.
    #[error("another gateway runs the cleaner now ({0}); try again when its pass ended")]
    Busy(WorkerBusy),
}

#[derive(Debug, Clone)]
pub struct CleanerSettings {
    /// How long a chunk's count must have been zero before it is dead.
    pub grace: Duration,
    /// Segments whose live bytes are below this share of their size are compacted.
    pub sparse_percent: u64,
    /// How old an unknown segment file must be before it is removed.
    pub orphan_grace: Duration,
    /// Target size of the segments compaction writes.
    pub segment_size: usize,
    /// Share of wall time the cleaner may work while uploads are streaming in.
    pub busy_percent: u64,
}

/// What one pass did (or, dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GcReport {
    pub dry_run: bool,
    pub segments_examined: u64,
    pub segments_deleted: u64,
    pub segments_compacted: u64,
    pub chunks_removed: u64,
    /// Stored bytes given back (segment files removed, minus what compaction wrote).
    pub bytes_freed: u64,
    /// Bytes of kept chunks compaction copied into new segments.
    pub bytes_rewritten: u64,
    pub orphans_removed: u64,
    pub compactions_abandoned: u64,
    pub seconds: f64,
}

/// Options of one pass.
#[derive(Debug, Clone, Default)]
pub struct GcOptions {
    pub dry_run: bool,
    /// Overrides the configured grace period (tests and `hoard gc --grace-period`).
    pub grace: Option<Duration>,
}

/// The cluster-wide worker name of the cleaner (a pass or a repair).
const CLEANER_WORKER: &str = "cleaner";

/// The cleaner held off on this gateway and the cluster's.
pub struct CleanerTurn<'a> {
    _here: tokio::sync::MutexGuard<'a, ()>,
    _cluster: WorkerTurn,
}

pub struct Cleaner {
    meta: MetaStore,
    segments: SegmentStore,
    metrics: Arc<Metrics>,
    settings: CleanerSettings,
    running: tokio::sync::Mutex<()>,
    /// The cleaner's share of time while uploads stream in, in microseconds of work.
    share: Pacer,
    /// The long jobs in progress (a pass shows there as `gc`).
    jobs: Arc<Board>,
    /// The last `RECENT_RUNS` passes this gateway ran, newest last.
    recent: std::sync::Mutex<std::collections::VecDeque<GcRun>>,
}

/// How many finished passes `Cleaner::recent_runs` remembers.
const RECENT_RUNS: usize = 10;

/// A finished pass, as the dashboard lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GcRun {
    /// Unix ms at which it finished.
    pub finished_ms: i64,
    pub report: GcReport,
}

impl Cleaner {
    pub fn new(
        meta: MetaStore,
        segments: SegmentStore,
        metrics: Arc<Metrics>,
        settings: CleanerSettings,
        jobs: Arc<Board>,
    ) -> Self {
        let busy = settings.busy_percent.clamp(1, 100);
        let share = Pacer::new(if busy < 100 { busy * 10_000 } else { 0 });
        Cleaner {
            meta,
            segments,
            metrics,
            settings,
            running: tokio::sync::Mutex::new(()),
            share,
            jobs,
            recent: Default::default(),
        }
    }

    /// Keeps passes from running, on every gateway of the cluster, until the answer is
    /// dropped: waits for a pass running here, fails with `Busy` while another
    /// gateway runs one.
    pub async fn hold_off(&self) -> Result<CleanerTurn<'_>, CleanerError> {
        let here = self.running.lock().await;
        let cluster = self
            .meta
            .worker_turn(CLEANER_WORKER)
            .await?
            .map_err(CleanerError::Busy)?;
        Ok(CleanerTurn {
            _here: here,
            _cluster: cluster,
        })
    }

    /// One pass over the store; waits for a pass already running here to finish
    /// first, and fails with `Busy` while another gateway runs one.
    pub async fn run(&self, opts: GcOptions) -> Result<GcReport, CleanerError> {
        let _one = self.hold_off().await?;
        let started = std::time::Instant::now();
        self.metrics.gc_running.set(1);
        let result = self.pass(&opts).await;
        self.metrics.gc_running.set(0);
        let mut report = result?;
        report.seconds = started.elapsed().as_secs_f64();
        if !report.dry_run {
            self.metrics.gc_runs.inc();
            self.metrics.gc_freed_bytes.inc_by(report.bytes_freed);
            self.metrics
                .gc_rewritten_bytes
                .inc_by(report.bytes_rewritten);
            self.metrics.gc_chunks_removed.inc_by(report.chunks_removed);
        }
        tracing::info!(?report, "gc pass finished");
        if let Ok(mut recent) = self.recent.lock() {
            if recent.len() == RECENT_RUNS {
                recent.pop_front();
            }
            recent.push_back(GcRun {
                finished_ms: now_ms(),
                report: report.clone(),
            });
        }
        Ok(report)
    }

    /// The last passes this gateway ran (dry runs too), newest first.
    pub fn recent_runs(&self) -> Vec<GcRun> {
        self.recent
            .lock()
            .map(|r| r.iter().rev().cloned().collect())
            .unwrap_or_default()
    }

    async fn pass(&self, opts: &GcOptions) -> Result<GcReport, CleanerError> {
        let grace = opts.grace.unwrap_or(self.settings.grace);
        let now = unix_secs();
        let cutoff = now.saturating_sub(grace.as_secs());
        let mut report = GcReport {
            dry_run: opts.dry_run,
            ..GcReport::default()
        };
        if !opts.dry_run {
            let stale = now.saturating_sub(crate::meta::HOLD_TTL_SECS);
            let expired = self.meta.expire_holds(stale).await?;
            if expired > 0 {
                tracing::warn!(expired, "replication holds released after a day unused");
            }
        }
        let candidates = self
            .meta
            .gc_candidates(self.settings.sparse_percent)
            .await?;
        tracing::info!(
            candidates = candidates.len(),
            grace_secs = grace.as_secs(),
            dry_run = opts.dry_run,
            "gc pass started"
        );
        let label = if opts.dry_run { "gc (dry run)" } else { "gc" };
        let job = self
            .jobs
            .enter(label, "segments", candidates.len() as u64, now_ms());
        let mut dead = Vec::new();
        for (n, c) in candidates.iter().enumerate() {
            report.segments_examined += 1;
            job.set_done(n as u64 + 1);
            if opts.dry_run {
                report.bytes_freed += c.row.size - c.row.live_bytes.min(c.row.size);
                if c.row.live_chunks == 0 {
                    report.segments_deleted += 1;
                    report.chunks_removed += u64::from(c.row.chunks);
                } else {
                    report.segments_compacted += 1;
                    report.chunks_removed += u64::from(c.row.chunks - c.row.live_chunks);
                    report.bytes_rewritten += c.row.live_bytes;
                }
                continue;
            }
            let step = std::time::Instant::now();
            if c.row.live_chunks == 0 {
                dead.push(c.id);
                if dead.len() >= self.dead_batch() {
                    self.remove_dead(std::mem::take(&mut dead), cutoff, &mut report)
                        .await?;
                    self.yield_to_uploads(step.elapsed()).await;
                }
            } else {
                self.compact(c, cutoff, now + grace.as_secs(), &mut report)
                    .await?;
                self.yield_to_uploads(step.elapsed()).await;
            }
            if (n + 1) % 256 == 0 {
                tracing::info!(
                    done = n + 1,
                    of = candidates.len(),
                    freed = report.bytes_freed,
                    "gc progress"
                );
            }
        }
        if !opts.dry_run {
            self.remove_dead(dead, cutoff, &mut report).await?;
            self.delete_due(now).await?;
        }
        report.orphans_removed = self.remove_orphans(opts.dry_run).await?;
        Ok(report)
    }

    fn dead_batch(&self) -> usize {
        if self.metrics.active_streams.get() > 0 {
            DEAD_BATCH_BUSY
        } else {
            DEAD_BATCH
        }
    }

    /// While uploads stream in, the cleaner works at most `busy_percent` of the time:
    /// a step that took `worked` passes the pacer of its share.
    async fn yield_to_uploads(&self, worked: Duration) {
        if self.metrics.active_streams.get() > 0 {
            let micros = u64::try_from(worked.as_micros()).unwrap_or(u64::MAX);
            self.share.pass(micros).await;
        }
    }

    /// Removes the dead ones among `ids` (one transaction), then their files.
    async fn remove_dead(
        &self,
        ids: Vec<u64>,
        cutoff: u64,
        report: &mut GcReport,
    ) -> Result<(), CleanerError> {
        if ids.is_empty() {
            return Ok(());
        }
        for (id, freed) in self.meta.remove_dead_segments(ids, cutoff).await? {
            let Some(freed) = freed else { continue };
            // Every reader of this segment looked up its chunks a grace period ago.
            self.segments.delete(id).await?;
            report.segments_deleted += 1;
            report.chunks_removed += freed.chunks;
            report.bytes_freed += freed.bytes;
            tracing::debug!(segment = id, bytes = freed.bytes, "dead segment deleted");
        }
        Ok(())
    }

    /// Copies a sparse segment's kept chunks into a new segment and queues the old one
    /// for deletion after the grace period.
    async fn compact(
        &self,
        c: &SegmentCandidate,
        cutoff: u64,
        delete_at: u64,
        report: &mut GcReport,
    ) -> Result<(), CleanerError> {
        let kept = self.meta.chunks_to_keep(c.id, cutoff).await?;
        if kept.is_empty() {
            return self.remove_dead(vec![c.id], cutoff, report).await;
        }
        let Copied {
            data,
            moved,
            bad,
            rewritten,
        } = copy_chunks(&self.segments, c.id, &kept, self.settings.segment_size).await?;
        if !bad.is_empty() {
            // Never copy damage forward; verify reports it and repair moves it aside.
            self.metrics.integrity_errors.inc_by(bad.len() as u64);
            tracing::error!(
                segment = c.id,
                chunks = bad.len(),
                "compaction found chunks that failed verification; segment left as it is"
            );
            report.compactions_abandoned += 1;
            return Ok(());
        }
        let size = data.len() as u64;
        let new = store_segment(&self.meta, &self.segments, data).await?;
        self.metrics.segments_written.inc();
        match self
            .meta
            .commit_compaction(c.id, new, size, moved, cutoff, delete_at)
            .await?
        {
            Some(freed) => {
                report.segments_compacted += 1;
                report.chunks_removed += freed.chunks;
                report.bytes_freed += freed.bytes;
                report.bytes_rewritten += rewritten;
                tracing::debug!(old = c.id, new, rewritten, "segment compacted");
            }
            None => {
                // A chunk left behind was revived meanwhile; nothing changed.
                self.segments.delete(new).await?;
                report.compactions_abandoned += 1;
            }
        }
        Ok(())
    }

    /// Deletes compacted segment files whose grace period is over.
    async fn delete_due(&self, now: u64) -> Result<(), CleanerError> {
        for id in self.meta.pending_deletes(Some(now)).await? {
            self.segments.delete(id).await?;
            self.meta.pending_delete_done(id).await?;
            tracing::debug!(segment = id, "compacted segment file deleted");
        }
        Ok(())
    }

    /// Removes segment files that no row names: at once those an earlier run wrote
    /// (its writes can never be named now), others once older than the orphan grace
    /// period.
    async fn remove_orphans(&self, dry_run: bool) -> Result<u64, CleanerError> {
        // Before the listing: a gateway dead by now has written every file it will.
        let dead_before = self.meta.dead_unnamed_segments().await?;
        let files = self.segments.list().await?;
        let grace_start = SystemTime::now()
            .checked_sub(self.settings.orphan_grace)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let files = files
            .into_iter()
            .map(|(id, mtime)| (id, mtime <= grace_start))
            .collect();
        let scan = self.meta.orphan_segments(files, dead_before).await?;
        let removed = scan.debris.len() as u64;
        if dry_run {
            return Ok(removed);
        }
        for id in &scan.debris {
            self.segments.delete(*id).await?;
            tracing::info!(segment = id, "orphan segment file removed");
        }
        let before = unix_secs().saturating_sub(self.settings.orphan_grace.as_secs());
        self.meta
            .forget_unnamed_segments(scan.settled, before)
            .await?;
        Ok(removed)
    }
}

/// Chunks copied out of a segment: the new segment's bytes, where each moved chunk
/// now starts, the chunks that failed verification (left out), and the bytes copied.
pub(crate) struct Copied {
    pub data: Bytes,
    pub moved: Vec<(ChunkId, u32)>,
    pub bad: Vec<ChunkId>,
    pub rewritten: u64,
}

/// Reads `kept` chunks (in segment order) from segment `src`, verifies each against
/// its BLAKE3 id and packs the intact ones, stored bytes unchanged, into one new
/// segment. A chunk that cannot be read or fails verification is left out, in `bad`.
pub(crate) async fn copy_chunks(
    segments: &SegmentStore,
    src: u64,
    kept: &[KeptChunk],
    segment_size: usize,
) -> Result<Copied, CleanerError> {
    let max_chunk = kept
        .iter()
        .map(|k| k.loc.stored_len as usize)
        .max()
        .unwrap_or(0);
    let mut builder = segments.builder(segment_size + max_chunk + 64 * 1024);
    let mut out = Copied {
        data: Bytes::new(),
        moved: Vec::with_capacity(kept.len()),
        bad: Vec::new(),
        rewritten: 0,
    };
    for k in kept {
        let start = u64::from(k.loc.offset);
        let stored = match segments
            .read_range(src, start..start + u64::from(k.loc.stored_len))
            .await
        {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(segment = src, chunk = %hex::encode(k.id), error = %e, "chunk cannot be read");
                out.bad.push(k.id);
                continue;
            }
        };
        let (id, loc, store) = (k.id, k.loc, segments.clone());
        let verified = tokio::task::spawn_blocking(move || {
            let payload = store
                .open_payload(src, &id, stored)
                .map_err(|e| e.to_string())?;
            decode_chunk(&id, &loc, payload.clone()).map(|_| payload)
        })
        .await
        .map_err(|e| CleanerError::Worker(e.to_string()))?;
        let payload = match verified {
            Ok(p) => p,
            Err(reason) => {
                tracing::error!(segment = src, chunk = %hex::encode(k.id), %reason, "chunk failed verification");
                out.bad.push(k.id);
                continue;
            }
        };
        let e = builder.push(k.id, k.loc.raw_len, k.loc.codec, &payload);
        out.moved.push((k.id, e.offset));
        out.rewritten += u64::from(k.loc.stored_len);
    }
    out.data = builder.finish().0;
    Ok(out)
}

/// Writes `data` durably as a segment with a newly allocated id; returns the id.
pub(crate) async fn store_segment(
    meta: &MetaStore,
    segments: &SegmentStore,
    data: Bytes,
) -> Result<u64, CleanerError> {
    let m = meta.clone();
    let id = tokio::task::spawn_blocking(move || m.allocate_segment_ids_blocking(1))
        .await
        .map_err(|e| CleanerError::Worker(e.to_string()))??
        .start;
    segments.write(id, data).await?;
    Ok(id)
}

/// When passes run on their own (the `[cleaner]` settings besides the grace periods).
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Minutes after midnight UTC: [start, end); may wrap past midnight.
    pub window: Option<(u32, u32)>,
    pub idle: Option<Duration>,
    pub check: Duration,
}

impl Cleaner {
    /// Runs passes on the schedule until the task is dropped: once per daily window
    /// (the first check inside it), and once the server has been idle long enough
    /// after requests that came since the last pass.
    pub async fn run_on_schedule(self: Arc<Self>, schedule: Schedule) {
        let mut last_pass_ms: i64 = 0;
        let mut window_day: Option<u64> = None;
        loop {
            tokio::time::sleep(schedule.check).await;
            let now = now_ms();
            let secs = u64::try_from(now / 1000).unwrap_or(0);
            let (day, minute) = (secs / 86_400, ((secs % 86_400) / 60) as u32);
            let window_due = schedule
                .window
                .is_some_and(|w| crate::config::in_window(w, minute) && window_day != Some(day));
            let last_request = self
                .metrics
                .last_request_ms
                .load(std::sync::atomic::Ordering::Relaxed);
            let idle_due = schedule.idle.is_some_and(|idle| {
                last_request > last_pass_ms
                    && now - last_request >= i64::try_from(idle.as_millis()).unwrap_or(i64::MAX)
            });
            if !(window_due || idle_due) {
                continue;
            }
            if window_due {
                window_day = Some(day);
            }
            let trigger = if window_due { "window" } else { "idle" };
            tracing::info!(trigger, "scheduled gc pass");
            last_pass_ms = now_ms();
            match self.run(GcOptions::default()).await {
                Ok(_) => {}
                Err(CleanerError::Busy(busy)) => {
                    tracing::info!(%busy, trigger, "scheduled gc pass skipped: another gateway runs the cleaner")
                }
                Err(e) => tracing::error!(error = %e, trigger, "scheduled gc pass failed"),
            }
        }
    }
}
