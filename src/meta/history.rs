//! The storage history the dashboard charts: the store's logical, unique and stored
//! bytes at points in time, one row per sample (unix seconds -> the totals).
//!
//! Invariant: the history stays bounded whatever the uptime. Each new point thins
//! what lies behind it in the same transaction: points older than `FINE_SECS` (30
//! days) keep only the first of each hour, points older than `KEPT_SECS` (400 days)
//! go. With one sample per 5 minutes that is at most about 8,640 fine points and
//! 9,600 hourly ones. Tested by `history_is_thinned_and_bounded`.

use serde::{Deserialize, Serialize};

use super::kv::{ReadableTable, TableDefinition};
use super::{MetaResult, MetaStore, decode_record, encode_record};

/// unix seconds -> `HistoryPoint`
pub(super) const STATS_HISTORY: TableDefinition<u64, &[u8]> = TableDefinition::new("stats_history");

/// Points younger than this are all kept.
pub const FINE_SECS: u64 = 30 * 24 * 3600;
/// Points older than this are dropped.
pub const KEPT_SECS: u64 = 400 * 24 * 3600;

/// The store's totals at one time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryPoint {
    pub logical_bytes: u64,
    pub unique_bytes: u64,
    pub stored_bytes: u64,
}

impl MetaStore {
    /// Records the totals at `at` (unix seconds) and thins the history behind it.
    pub async fn record_history(&self, at: u64, point: HistoryPoint) -> MetaResult<()> {
        let value = encode_record(&point)?;
        // Durable: one commit per sample, and a kill -9 keeps the chart's past.
        self.write(true, move |txn| {
            let mut t = txn.open_table(STATS_HISTORY)?;
            t.insert(at, value.as_slice())?;
            let fine_from = at.saturating_sub(FINE_SECS);
            let kept_from = at.saturating_sub(KEPT_SECS);
            let mut hour_seen = None;
            t.retain_in(..fine_from, |ts, _| {
                if ts < kept_from {
                    return false;
                }
                let hour = ts / 3600;
                let first = hour_seen != Some(hour);
                hour_seen = Some(hour);
                first
            })?;
            Ok(())
        })
        .await
    }

    /// The points at or after `since` (unix seconds), oldest first.
    pub async fn history(&self, since: u64) -> MetaResult<Vec<(u64, HistoryPoint)>> {
        self.read(move |txn| {
            let mut out = Vec::new();
            for row in txn.open_table(STATS_HISTORY)?.range(since..)? {
                let (k, v) = row?;
                out.push((k.value(), decode_record(v.value())?));
            }
            Ok(out)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn history_is_thinned_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let meta = MetaStore::open(&dir.path().join("meta.redb"), 1 << 20).unwrap();
        let point = |n: u64| HistoryPoint {
            logical_bytes: n,
            unique_bytes: n / 2,
            stored_bytes: n / 3,
        };
        // 450 days of one point per 20 minutes, written as a sampler would.
        let step = 1200;
        let end = KEPT_SECS + 50 * 24 * 3600;
        let mut at = 0;
        while at <= end {
            meta.record_history(at, point(at)).await.unwrap();
            at += step;
        }
        let all = meta.history(0).await.unwrap();
        let fine_from = end - FINE_SECS;
        let (old, fine): (Vec<_>, Vec<_>) = all.iter().partition(|(t, _)| *t < fine_from);
        // The last 30 days keep every point, with what was recorded.
        assert_eq!(fine.len() as u64, FINE_SECS / step + 1);
        assert!(fine.iter().all(|(t, p)| *p == point(*t)));
        // Before that one per hour, and nothing older than 400 days.
        assert!(old.iter().all(|(t, _)| *t >= end - KEPT_SECS));
        let hours: std::collections::BTreeSet<u64> = old.iter().map(|(t, _)| t / 3600).collect();
        assert_eq!(hours.len(), old.len(), "one point per hour");
        assert!(old.len() as u64 >= (KEPT_SECS - FINE_SECS) / 3600 - 1);
        // A later read starts where it is asked to.
        let recent = meta.history(end - 3600).await.unwrap();
        assert_eq!(recent.len(), 4);
    }
}
