//! The cloud tier's metadata: which segments have moved to the tier, each bucket's
//! tier policy, and the tier's counters.
//!
//! A segment's row stays as it is when it moves (a chunk's location is its segment
//! and offset, wherever the segment lives); `TIERED` only says that its cloud copy
//! was written and read back, so its local file may go. Invariants:
//! - A segment is in `TIERED` only while its row exists: `mark_tiered` refuses a
//!   segment whose row is gone (the cleaner removed it while it was being copied),
//!   and `drop_segment_rows` removes the mark with the row.
//! - `C_TIER_SEGMENTS` and `C_TIER_BYTES` count exactly the segments in `TIERED` and
//!   their sizes.

use super::kv::{ReadableTable, TableDefinition, WriteTransaction};

use super::records::SegmentRow;
use super::{
    BUCKETS, COUNTERS, MetaError, MetaResult, MetaStore, SEGMENT_BUCKETS, SEGMENTS, bucket_in,
    bump, unix_secs,
};

/// segment id -> unix time its local copy was given up for the cloud copy
pub(super) const TIERED: TableDefinition<u64, u64> = TableDefinition::new("tiered_segments");
/// bucket -> seconds after which the segments its writes stored move to the tier
pub(super) const BUCKET_TIER: TableDefinition<&str, u64> = TableDefinition::new("bucket_tier");

pub(super) const C_TIER_SEGMENTS: &str = "tier_segments";
pub(super) const C_TIER_BYTES: &str = "tier_bytes";

/// A local segment that a policy says should move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierCandidate {
    pub segment: u64,
    pub size: u64,
}

/// What the mover asks for: segments older than their bucket's `after` (else
/// `default_after`), or, under `pressure` (the local disk is short of space), every
/// local segment, oldest first.
#[derive(Debug, Clone, Copy)]
pub struct TierPolicy {
    pub default_after: Option<u64>,
    pub pressure: bool,
    /// Only segments with this id or a higher one (a pass's cursor).
    pub from: u64,
    pub limit: usize,
}

impl MetaStore {
    /// Local segments that `policy` moves, oldest (lowest id) first, from its
    /// cursor on.
    pub async fn tier_candidates(&self, policy: TierPolicy) -> MetaResult<Vec<TierCandidate>> {
        self.read(move |txn| {
            let now = unix_secs();
            let tiered = txn.open_table(TIERED)?;
            let owners = txn.open_table(SEGMENT_BUCKETS)?;
            let policies = txn.open_table(BUCKET_TIER)?;
            let mut out = Vec::new();
            for row in txn.open_table(SEGMENTS)?.range(policy.from..)? {
                if out.len() >= policy.limit {
                    break;
                }
                let (k, v) = row?;
                let segment = k.value();
                if tiered.get(segment)?.is_some() {
                    continue;
                }
                let r = SegmentRow::decode(v.value())?;
                let after = match owners.get(segment)? {
                    Some(b) => policies.get(b.value())?.map(|a| a.value()),
                    None => None,
                }
                .or(policy.default_after);
                let due = after.is_some_and(|a| r.created.saturating_add(a) <= now);
                if policy.pressure || due {
                    out.push(TierCandidate {
                        segment,
                        size: r.size,
                    });
                }
            }
            Ok(out)
        })
        .await
    }

    /// Records that `segment`'s cloud copy is written and checked; `false` when the
    /// segment's row is gone (the caller removes the copy it made).
    pub async fn mark_tiered(&self, segment: u64) -> MetaResult<bool> {
        self.write(true, move |txn| {
            let Some(size) = txn
                .open_table(SEGMENTS)?
                .get(segment)?
                .map(|v| SegmentRow::decode(v.value()))
                .transpose()?
                .map(|r| r.size)
            else {
                return Ok(false);
            };
            if txn
                .open_table(TIERED)?
                .insert(segment, unix_secs())?
                .is_none()
            {
                let mut counters = txn.open_table(COUNTERS)?;
                bump(&mut counters, C_TIER_SEGMENTS, 1)?;
                bump(&mut counters, C_TIER_BYTES, size as i64)?;
            }
            Ok(true)
        })
        .await
    }

    /// Every segment that lives in the tier.
    pub async fn tiered_segments(&self) -> MetaResult<Vec<u64>> {
        self.read(|txn| {
            let mut out = Vec::new();
            for row in txn.open_table(TIERED)?.iter()? {
                out.push(row?.0.value());
            }
            Ok(out)
        })
        .await
    }

    /// Sets (or with `None` removes) the age after which `bucket`'s segments move.
    pub async fn set_bucket_tier(&self, bucket: String, after: Option<u64>) -> MetaResult<()> {
        self.write(true, move |txn| {
            if bucket_in(&txn.open_table(BUCKETS)?, &bucket)?.is_none() {
                return Err(MetaError::NoSuchBucket);
            }
            let mut t = txn.open_table(BUCKET_TIER)?;
            match after {
                Some(a) => t.insert(bucket.as_str(), a)?,
                None => t.remove(bucket.as_str())?,
            };
            Ok(())
        })
        .await
    }

    /// Each bucket's tier policy (seconds).
    pub async fn bucket_tiers(&self) -> MetaResult<Vec<(String, u64)>> {
        self.read(|txn| {
            let mut out = Vec::new();
            for row in txn.open_table(BUCKET_TIER)?.iter()? {
                let (k, v) = row?;
                out.push((k.value().to_owned(), v.value()));
            }
            Ok(out)
        })
        .await
    }
}

/// Forgets the tier mark of a segment whose row is being removed (`size` bytes).
pub(super) fn forget_tiered(txn: &WriteTransaction, segment: u64, size: u64) -> MetaResult<()> {
    if txn.open_table(TIERED)?.remove(segment)?.is_some() {
        let mut counters = txn.open_table(COUNTERS)?;
        bump(&mut counters, C_TIER_SEGMENTS, -1)?;
        bump(&mut counters, C_TIER_BYTES, -(size as i64))?;
    }
    Ok(())
}

/// Forgets a deleted bucket's tier policy.
pub(super) fn forget_bucket_tier(txn: &WriteTransaction, bucket: &str) -> MetaResult<()> {
    txn.open_table(BUCKET_TIER)?.remove(bucket)?;
    Ok(())
}
