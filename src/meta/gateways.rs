//! Gateways sharing one PostgreSQL database, and who owns the references uploads in
//! flight hold (`held`). Each gateway process has a lease row (`GATEWAYS`: 8-byte
//! gateway id -> expiry, unix seconds) that it renews every third of its length
//! (`meta_lease_secs`, 30 s by default); the ids of
//! its uploads' holds begin with its gateway id. On redb there is one process, which
//! releases every hold of the previous run at start-up instead.
//!
//! Invariants kept here:
//! - A hold's references are released by another gateway only after the owner's
//!   lease expired (a lease's length without a renewal): the reaper deletes the expired
//!   lease row and releases the holds under its id in one transaction.
//! - A commit that takes a hold's references over first checks, in its own
//!   transaction, that the lease row of the hold's gateway still exists
//!   (`check_owner`). Write transactions are serialised, so either the commit comes
//!   first (the rows move to the manifest and the reaper finds nothing) or the reaper
//!   does (the commit fails with `Unavailable` and its whole group rolls back): a
//!   commit never names references that were released.
//! - A gateway whose lease row was reaped never renews it: it takes a fresh id, so
//!   the holds under the old one stay dead and their uploads fail at commit.
//!   Gateways' clocks only decide when a lease counts as expired, never whether a
//!   commit is safe.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::kv::{Engine, ReadableTable, TableDefinition, WriteTransaction};
use super::{HoldId, MetaError, MetaResult, held, unix_secs};

pub(super) const GATEWAYS: TableDefinition<u64, u64> = TableDefinition::new("gateways");

/// This process's gateway id (the first 8 bytes of its holds' ids).
pub(super) struct Gateway {
    id: AtomicU64,
    registered: AtomicBool,
    /// A lease not renewed for this long is expired.
    lease_secs: u64,
}

fn random_id() -> MetaResult<u64> {
    let mut b = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .map_err(|_| MetaError::Corrupt("no randomness for a gateway id".into()))?;
    Ok(u64::from_be_bytes(b).max(1))
}

impl Gateway {
    pub(super) fn new(lease_secs: u64) -> MetaResult<Arc<Gateway>> {
        Ok(Arc::new(Gateway {
            id: AtomicU64::new(random_id()?),
            registered: AtomicBool::new(false),
            lease_secs: lease_secs.max(3),
        }))
    }

    /// How often the lease is renewed (and others' expired leases reaped).
    fn renew_every(&self) -> Duration {
        Duration::from_secs(self.lease_secs / 3)
    }

    /// The prefix of the holds this gateway creates now.
    pub(super) fn hold_prefix(&self) -> [u8; 8] {
        self.id.load(Ordering::Relaxed).to_be_bytes()
    }

    /// Renews this gateway's lease (taking a fresh id if it was reaped), then reaps
    /// the expired leases of others with their holds; answers the references
    /// released.
    pub(super) fn renew_and_reap(&self, txn: &WriteTransaction, now: u64) -> MetaResult<u64> {
        let mut leases = txn.open_table(GATEWAYS)?;
        let mut id = self.id.load(Ordering::Relaxed);
        if self.registered.load(Ordering::Relaxed) && leases.get(id)?.is_none() {
            id = random_id()?;
            self.id.store(id, Ordering::Relaxed);
            tracing::warn!(
                "this gateway's lease expired and was reaped: uploads in flight fail at their commit"
            );
        }
        leases.insert(id, now + self.lease_secs)?;
        self.registered.store(true, Ordering::Relaxed);
        let mut expired = Vec::new();
        for row in leases.iter()? {
            let (k, v) = row?;
            if v.value() < now {
                expired.push(k.value());
            }
        }
        for gone in &expired {
            leases.remove(*gone)?;
        }
        drop(leases);
        let mut released = 0;
        for gone in expired {
            released += held::release_prefix(txn, &gone.to_be_bytes(), now)?;
        }
        Ok(released)
    }
}

/// Fails unless the gateway that created `hold` still holds its lease.
pub(super) fn check_owner(txn: &WriteTransaction, hold: &HoldId) -> MetaResult<()> {
    if !matches!(txn, WriteTransaction::Pg(_)) {
        return Ok(());
    }
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&hold[..8]);
    let owner = u64::from_be_bytes(prefix);
    if txn.open_table(GATEWAYS)?.get(owner)?.is_none() {
        return Err(MetaError::Unavailable(
            "this gateway lost its lease while the upload ran; its references were released".into(),
        ));
    }
    Ok(())
}

/// Keeps `gateway`'s lease renewed, and others' expired leases reaped, on a thread
/// of its own until the engine is dropped.
pub(super) fn keep_lease(engine: Weak<Engine>, gateway: Arc<Gateway>) -> MetaResult<()> {
    std::thread::Builder::new()
        .name("hoard-meta-lease".into())
        .spawn(move || {
            loop {
                std::thread::sleep(gateway.renew_every());
                let Some(engine) = engine.upgrade() else {
                    return;
                };
                let renewed = engine.begin_write(false).and_then(|txn| {
                    let released = gateway.renew_and_reap(&txn, unix_secs())?;
                    txn.commit()?;
                    Ok(released)
                });
                match renewed {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(
                        references = n,
                        "released the references of uploads of a gateway whose lease expired"
                    ),
                    Err(e) => tracing::warn!(error = %e, "cannot renew this gateway's lease"),
                }
            }
        })
        .map_err(|e| MetaError::Corrupt(format!("cannot start the lease thread: {e}")))?;
    Ok(())
}
