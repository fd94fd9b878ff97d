//! `scrub` owns the background scrub: it walks every segment, in id order, reading
//! each and checking every indexed chunk against its BLAKE3 id and the trailer
//! against the index (the checks of `verify`), at `scrub.rate_mib` MiB/s, so that
//! damage on disk is found before a restore needs the data. It changes nothing: what
//! it finds is logged with the object versions it damages and counted in
//! `hoard_scrub_problems_total`; `hoard verify --repair` fixes it.
//!
//! Its position is kept in the metadata, so a restart resumes where it stopped. A new
//! cycle starts at most every `scrub.cycle_secs`; the first one a minute after start
//! (or after `cycle_secs`, if shorter). A segment removed by the cleaner
//! while the scrub reads it is skipped, not reported. In a cluster one gateway
//! scrubs: it claims the worker `scrub` (`meta::gateways`) and keeps it while its
//! lease lives; the others take it over within a minute of its lease's expiry.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::meta::{ChunkId, MetaStore};
use crate::metrics::Metrics;
use crate::pace::Pacer;
use crate::segments::SegmentStore;
use crate::verify::{VerifyReport, check_segment};

pub struct Scrub {
    pub meta: MetaStore,
    pub segments: SegmentStore,
    pub metrics: Arc<Metrics>,
    /// Holds reads to `scrub.rate_mib`, in bytes.
    pub rate: Pacer,
    pub cycle: Duration,
}

impl Scrub {
    /// Runs cycles until the task is dropped, the first a little after start-up.
    pub async fn run(self) {
        tokio::time::sleep(self.cycle.min(Duration::from_secs(60))).await;
        loop {
            // One gateway of a cluster scrubs (it keeps the worker while it lives);
            // the others look again every minute, to take over when it is gone.
            if !self.meta.runs_worker("scrub").await {
                tokio::time::sleep(self.cycle.min(Duration::from_secs(60))).await;
                continue;
            }
            let started = Instant::now();
            match self.cycle().await {
                Ok(()) => {
                    self.metrics.scrub_cycles.inc();
                    tracing::info!(
                        seconds = started.elapsed().as_secs_f64(),
                        "scrub cycle finished"
                    );
                }
                Err(e) => tracing::error!(error = %e, "scrub cycle stopped"),
            }
            let rest = self.cycle.saturating_sub(started.elapsed());
            tokio::time::sleep(rest.max(Duration::from_secs(1))).await;
        }
    }

    /// Checks the segments after the stored position, then starts over at 0.
    async fn cycle(&self) -> Result<(), crate::verify::VerifyError> {
        let from = self.meta.scrub_position().await?;
        let ids: Vec<u64> = self
            .meta
            .segment_ids()
            .await?
            .into_iter()
            .filter(|id| *id > from)
            .collect();
        for id in ids {
            let read = self.check(id).await?;
            self.meta.set_scrub_position(id).await?;
            self.rate.pass(read).await;
        }
        self.meta.set_scrub_position(0).await?;
        Ok(())
    }

    /// Checks one segment; returns the bytes read.
    async fn check(&self, id: u64) -> Result<u64, crate::verify::VerifyError> {
        let mut report = VerifyReport::default();
        let mut bad: HashSet<ChunkId> = HashSet::new();
        check_segment(&self.meta, &self.segments, id, &mut report, &mut bad).await?;
        self.metrics.scrub_segments.inc();
        self.metrics.scrub_bytes.inc_by(report.bytes_read);
        let mut problems = report.corrupt_chunks.len() + report.trailer_problems.len();
        if !report.missing_segments.is_empty() {
            // Gone with its row (the cleaner removed it meanwhile) is not damage.
            let (known, _) = self.meta.segment_known(vec![id]).await?;
            if known.first().copied().unwrap_or(false) {
                problems += 1;
            } else {
                bad.clear();
            }
        }
        if problems == 0 {
            return Ok(report.bytes_read);
        }
        self.metrics.scrub_problems.inc_by(problems as u64);
        tracing::error!(
            segment = id,
            corrupt = report.corrupt_chunks.len(),
            trailer = report.trailer_problems.len(),
            missing = !report.missing_segments.is_empty(),
            "scrub found damage; run `hoard verify --repair`"
        );
        let (damaged, _) = self.meta.objects_naming(bad, None).await?;
        for d in damaged {
            tracing::error!(bucket = %d.bucket, key = %d.key, version = %d.version, chunks = d.damaged_chunks, "scrub: object is damaged");
        }
        Ok(report.bytes_read)
    }
}
