//! References that uploads hold before their commit, kept durably beside the counts
//! they raised (`UPLOAD_HOLDS`), so that no path can lose or leak them.
//!
//! Every reference an upload takes (a known chunk's take, a new segment's index
//! rows, repeated occurrences, a replica's references ahead of `apply_version`) is
//! recorded under the upload's hold in the transaction that raises the count. Then:
//! - the commit that hands the references to a manifest (`commit_object`,
//!   `put_part`, `apply_version`) removes the hold's rows in its own transaction:
//!   ownership moves inside the commit, whatever becomes of the request's future;
//! - an upload that does not commit releases its hold (`release`): every recorded
//!   reference, and nothing else, so a release after a commit is a no-op;
//! - at start-up every hold left by the previous run is released (`release_all`),
//!   since no upload of that run can commit any more.
//!
//! Recounts (verify, repair) add the recorded references to the manifests' counts,
//! so they are exact while uploads are in flight.
//!
//! Row: hold id (16 bytes) ++ batch number (u32 BE) -> entries of chunk id (32 bytes)
//! ++ count (u32 LE). A batch is one transaction's worth; batch numbers come from the
//! hold, so concurrent writers of one upload never share a row.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use super::kv::{ReadableTable, TableDefinition, WriteTransaction};

use super::{
    ChunkId, HoldId, MetaError, MetaResult, MetaStore, gateways, new_hold_id, release_refs_at,
};

pub(super) const UPLOAD_HOLDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("upload_holds");

const ENTRY: usize = 36;

/// The key of one batch of references recorded under a hold.
pub type HeldBatch = [u8; 20];

/// One upload's hold: its id and the batches handed out so far.
pub struct UploadHold {
    id: HoldId,
    batches: AtomicU32,
}

impl UploadHold {
    pub fn new() -> MetaResult<UploadHold> {
        Self::with_prefix(None)
    }

    /// A hold whose id begins with `prefix` (its gateway's id on PostgreSQL).
    fn with_prefix(prefix: Option<[u8; 8]>) -> MetaResult<UploadHold> {
        let mut id = new_hold_id()?;
        if let Some(p) = prefix {
            id[..8].copy_from_slice(&p);
        }
        Ok(UploadHold {
            id,
            batches: AtomicU32::new(0),
        })
    }

    pub fn id(&self) -> HoldId {
        self.id
    }

    /// A fresh batch key under this hold.
    pub fn next_batch(&self) -> HeldBatch {
        let n = self.batches.fetch_add(1, Ordering::Relaxed);
        let mut k = [0u8; 20];
        k[..16].copy_from_slice(&self.id);
        k[16..].copy_from_slice(&n.to_be_bytes());
        k
    }
}

/// An upload's hold that releases itself when dropped, unless disarmed after the
/// commit that took its references over. The release is queued behind any commit
/// already queued, so a commit whose future was dropped is seen first and the
/// release finds nothing left to release.
pub struct HeldRefs {
    meta: MetaStore,
    hold: UploadHold,
    armed: AtomicBool,
}

impl HeldRefs {
    pub fn new(meta: &MetaStore) -> MetaResult<HeldRefs> {
        Ok(HeldRefs {
            meta: meta.clone(),
            hold: UploadHold::with_prefix(meta.gateway.as_ref().map(|g| g.hold_prefix()))?,
            armed: AtomicBool::new(true),
        })
    }

    pub fn hold(&self) -> &UploadHold {
        &self.hold
    }

    /// The commit took the references over: nothing to release.
    pub fn disarm(&self) {
        self.armed.store(false, Ordering::Relaxed);
    }
}

impl Drop for HeldRefs {
    fn drop(&mut self) {
        if !self.armed.load(Ordering::Relaxed) || self.hold.batches.load(Ordering::Relaxed) == 0 {
            return;
        }
        let (meta, hold) = (self.meta.clone(), self.hold.id);
        let released = move |r: MetaResult<u64>| match r {
            Ok(n) => tracing::debug!(
                references = n,
                "an upload that did not commit released its references"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "could not release an abandoned upload's references; the next start releases them")
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(async move { released(meta.release_upload_hold(hold).await) });
            }
            Err(_) => released(meta.release_upload_hold_blocking(hold)),
        }
    }
}

fn bounds(hold: &HoldId) -> (HeldBatch, HeldBatch) {
    let (mut lo, mut hi) = ([0u8; 20], [0xffu8; 20]);
    lo[..16].copy_from_slice(hold);
    hi[..16].copy_from_slice(hold);
    (lo, hi)
}

fn decode(v: &[u8]) -> MetaResult<Vec<(ChunkId, u32)>> {
    if v.len() % ENTRY != 0 {
        return Err(MetaError::Corrupt("an upload hold row is torn".into()));
    }
    Ok(v.chunks_exact(ENTRY)
        .map(|e| {
            let mut id = [0u8; 32];
            id.copy_from_slice(&e[..32]);
            let mut n = [0u8; 4];
            n.copy_from_slice(&e[32..]);
            (id, u32::from_le_bytes(n))
        })
        .collect())
}

/// Records references the caller's transaction has just taken.
pub(super) fn record(
    txn: &WriteTransaction,
    batch: &HeldBatch,
    refs: impl IntoIterator<Item = (ChunkId, u32)>,
) -> MetaResult<()> {
    let mut v = Vec::new();
    for (id, n) in refs {
        if n > 0 {
            v.extend_from_slice(&id);
            v.extend_from_slice(&n.to_le_bytes());
        }
    }
    if v.is_empty() {
        return Ok(());
    }
    txn.open_table(UPLOAD_HOLDS)?
        .insert(batch.as_slice(), v.as_slice())?;
    Ok(())
}

/// The commit's hand-over: checks that the hold's gateway still owns it, then
/// transfers its references to what the caller's transaction commits.
pub(super) fn take_over(txn: &WriteTransaction, hold: &HoldId) -> MetaResult<()> {
    gateways::check_owner(txn, hold)?;
    transfer(txn, hold)
}

/// Releases every hold whose id begins with `prefix` (a gateway whose lease
/// expired); returns the references released.
pub(super) fn release_prefix(
    txn: &WriteTransaction,
    prefix: &[u8; 8],
    now: u64,
) -> MetaResult<u64> {
    let (mut lo, mut hi) = ([0u8; 20], [0xffu8; 20]);
    lo[..8].copy_from_slice(prefix);
    hi[..8].copy_from_slice(prefix);
    Ok(release_between(txn, &lo, &hi, now)?.1)
}

/// Releases every hold with rows between `lo` and `hi`; returns (holds, references).
fn release_between(
    txn: &WriteTransaction,
    lo: &HeldBatch,
    hi: &HeldBatch,
    now: u64,
) -> MetaResult<(u64, u64)> {
    let mut holds: Vec<HoldId> = Vec::new();
    for row in txn
        .open_table(UPLOAD_HOLDS)?
        .range(lo.as_slice()..=hi.as_slice())?
    {
        let (k, _) = row?;
        if let Some(h) = k.value().get(..16).and_then(|h| HoldId::try_from(h).ok())
            && holds.last() != Some(&h)
        {
            holds.push(h);
        }
    }
    let mut refs = 0;
    for h in &holds {
        refs += release(txn, h, now)?;
    }
    Ok((holds.len() as u64, refs))
}

/// Hands the hold's references to what the caller's transaction commits: the rows
/// go, the counts stay.
fn transfer(txn: &WriteTransaction, hold: &HoldId) -> MetaResult<()> {
    let (lo, hi) = bounds(hold);
    txn.open_table(UPLOAD_HOLDS)?
        .retain_in(lo.as_slice()..=hi.as_slice(), |_, _| false)?;
    Ok(())
}

/// Releases every reference recorded under the hold; returns how many.
pub(super) fn release(txn: &WriteTransaction, hold: &HoldId, now: u64) -> MetaResult<u64> {
    let (lo, hi) = bounds(hold);
    let refs = {
        let t = txn.open_table(UPLOAD_HOLDS)?;
        let mut refs = Vec::new();
        for row in t.range(lo.as_slice()..=hi.as_slice())? {
            refs.extend(decode(row?.1.value())?);
        }
        refs
    };
    release_refs_at(txn, &refs, now)?;
    transfer(txn, hold)?;
    Ok(refs.iter().map(|(_, n)| u64::from(*n)).sum())
}

/// Releases every hold in the store (at start-up: the uploads of the previous run);
/// returns (holds, references).
pub(super) fn release_all(txn: &WriteTransaction, now: u64) -> MetaResult<(u64, u64)> {
    release_between(txn, &[0u8; 20], &[0xffu8; 20], now)
}

/// Adds the recorded references to a recount.
pub(super) fn count_into(
    t: &impl ReadableTable<&'static [u8], &'static [u8]>,
    counted: &mut HashMap<ChunkId, u64>,
) -> MetaResult<()> {
    for row in t.iter()? {
        for (id, n) in decode(row?.1.value())? {
            *counted.entry(id).or_default() += u64::from(n);
        }
    }
    Ok(())
}
