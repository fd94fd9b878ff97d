//! `stats` owns the storage report shown by `hoard stats`, the admin endpoint and
//! `/metrics`: per bucket and in total, objects, logical and stored bytes, unique
//! chunks, segments, and the dedup and compression ratios derived from them.
//!
//! Definitions: *logical* bytes are what clients stored (sum of object sizes).
//! *Unique* bytes are the raw bytes of distinct chunks plus inline bodies.
//! *Stored* bytes are what the store holds: segment files plus inline bodies.
//! dedup ratio = logical / unique; compression ratio = unique / stored.
//! A bucket's unique and stored bytes count what its writes added to the store.

use serde::{Deserialize, Serialize};

use crate::meta::{BucketStats, MetaError, MetaStore, StoreTotals};

/// Bytes in binary units, as the CLI and the dashboard print them.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

/// A ratio (dedup, compression) as the CLI and the dashboard print it: "3.25x".
pub fn ratio_text(r: f64) -> String {
    format!("{r:.2}x")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageReport {
    pub name: String,
    pub objects: u64,
    pub logical_bytes: u64,
    pub unique_bytes: u64,
    pub stored_bytes: u64,
    pub unique_chunks: u64,
    pub segments: u64,
    pub dedup_ratio: f64,
    pub compression_ratio: f64,
    /// The quota on `logical_bytes` (the store's on the total row), if any.
    #[serde(default)]
    pub quota_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsReport {
    pub buckets: Vec<UsageReport>,
    pub total: UsageReport,
    /// The file system holding the data dir (local store only).
    #[serde(default)]
    pub disk: Option<DiskUsage>,
    /// Segments per tier, for a tiered store.
    #[serde(default)]
    pub tiers: Option<TierUsage>,
    /// The retention clock Object Lock judges expiry by.
    #[serde(default)]
    pub retention_clock: Option<RetentionClockReport>,
    /// The live gateways of a cluster (metadata on PostgreSQL), with their ingest
    /// streams as of their last lease renewal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<GatewayReport>,
}

/// One live gateway of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayReport {
    /// Its id, as its log and other gateways' messages print it.
    pub id: String,
    pub streams: u64,
    pub stream_limit: u64,
}

/// The retention clock's reading beside the wall clock's, ms since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionClockReport {
    pub clock_ms: i64,
    pub wall_ms: i64,
}

/// Where a tiered store's segments are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierUsage {
    pub local_segments: u64,
    pub local_bytes: u64,
    pub cloud_segments: u64,
    pub cloud_bytes: u64,
}

/// Space on the file system that holds the data dir.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskUsage {
    pub total_bytes: u64,
    pub used_bytes: u64,
    /// Available to hoard (the file system's free space for unprivileged writers).
    pub free_bytes: u64,
}

/// `statvfs` of the file system holding `path`.
pub fn disk_usage(path: &std::path::Path) -> Option<DiskUsage> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills the struct we pass; the path is a valid C string.
    let st = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut st) != 0 {
            return None;
        }
        st
    };
    let frsize = st.f_frsize as u64;
    let total = st.f_blocks as u64 * frsize;
    let free_all = st.f_bfree as u64 * frsize;
    Some(DiskUsage {
        total_bytes: total,
        used_bytes: total.saturating_sub(free_all),
        free_bytes: st.f_bavail as u64 * frsize,
    })
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

fn usage(
    name: &str,
    objects: u64,
    logical: u64,
    unique: u64,
    stored: u64,
    chunks: u64,
    segments: u64,
) -> UsageReport {
    UsageReport {
        name: name.to_owned(),
        objects,
        logical_bytes: logical,
        unique_bytes: unique,
        stored_bytes: stored,
        unique_chunks: chunks,
        segments,
        dedup_ratio: ratio(logical, unique),
        compression_ratio: ratio(unique, stored),
        quota_bytes: None,
    }
}

pub fn report(buckets: &[(String, BucketStats)], totals: &StoreTotals) -> StatsReport {
    let per_bucket = buckets
        .iter()
        .map(|(name, s)| {
            usage(
                name,
                s.objects,
                s.logical_bytes,
                s.new_raw_bytes + s.inline_bytes,
                s.stored_bytes,
                s.new_chunks,
                s.segments,
            )
        })
        .collect();
    let objects = buckets.iter().map(|(_, s)| s.objects).sum();
    let logical = buckets.iter().map(|(_, s)| s.logical_bytes).sum();
    let total = usage(
        "total",
        objects,
        logical,
        totals.chunk_raw_bytes + totals.inline_bytes,
        totals.segment_bytes + totals.inline_bytes,
        totals.unique_chunks,
        totals.segments,
    );
    StatsReport {
        buckets: per_bucket,
        total,
        disk: None,
        tiers: None,
        retention_clock: None,
        gateways: Vec::new(),
    }
}

/// The split of the store's segments between the local disk and the cloud tier.
pub fn tier_usage(totals: &StoreTotals) -> TierUsage {
    TierUsage {
        local_segments: totals.segments.saturating_sub(totals.tier_segments),
        local_bytes: totals.segment_bytes.saturating_sub(totals.tier_bytes),
        cloud_segments: totals.tier_segments,
        cloud_bytes: totals.tier_bytes,
    }
}

/// The report with each bucket's and the store's quota filled in.
pub async fn collect(meta: &MetaStore, tiered: bool) -> Result<StatsReport, MetaError> {
    let (buckets, totals) = meta.stats().await?;
    let quotas = meta.quotas().await?;
    let mut r = report(&buckets, &totals);
    r.tiers = tiered.then(|| tier_usage(&totals));
    for b in &mut r.buckets {
        b.quota_bytes = quotas
            .buckets
            .iter()
            .find(|(name, _)| *name == b.name)
            .map(|(_, q)| *q);
    }
    r.total.quota_bytes = quotas.store;
    r.gateways = meta
        .gateways()
        .await?
        .into_iter()
        .map(|g| GatewayReport {
            id: format!("{:016x}", g.gateway),
            streams: g.streams,
            stream_limit: g.stream_limit,
        })
        .collect();
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_follow_the_definitions() {
        let b = BucketStats {
            objects: 2,
            logical_bytes: 1000,
            new_raw_bytes: 400,
            inline_bytes: 100,
            stored_bytes: 250,
            new_chunks: 4,
            segments: 1,
        };
        let t = StoreTotals {
            segments: 1,
            segment_bytes: 150,
            unique_chunks: 4,
            chunk_raw_bytes: 400,
            chunk_stored_bytes: 140,
            inline_bytes: 100,
            tier_segments: 0,
            tier_bytes: 0,
        };
        let r = report(&[("b".into(), b)], &t);
        assert_eq!(r.total.unique_bytes, 500);
        assert_eq!(r.total.stored_bytes, 250);
        assert!((r.total.dedup_ratio - 2.0).abs() < 1e-9);
        assert!((r.total.compression_ratio - 2.0).abs() < 1e-9);
        assert_eq!(r.buckets[0].unique_bytes, 500);
    }
}
