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
//!
//! Segment ids handed to a gateway (`UNNAMED_SEGMENTS`, on PostgreSQL): every id
//! is recorded with its gateway when it is handed out, and the record goes when the
//! segment's row is made. So a file without a row whose id was handed to a gateway
//! whose lease is gone is debris the cleaner removes at once: that gateway will never
//! name it, since naming it checks, in the naming transaction, that the record is
//! still there and its gateway alive (a gateway reaped while it still ran fails
//! its seal instead of naming a file the cleaner took). A record goes with its
//! file, or, for a gateway already dead before the pass listed the files, when no
//! file of it was listed; a gateway that dies during a pass keeps its records for
//! the next one (its last files may have been written after the listing).
//!
//! Cluster-wide single workers (`WORKERS`: worker name -> the gateway running it):
//! the cleaner, each replication rule's sender (`replication:<bucket>`), the
//! lifecycle pass, the tier mover, the scrub and the expiry of abandoned uploads run
//! on one gateway at a time. A gateway claims a worker in a write transaction when
//! the row is absent, names itself, or names a gateway whose lease row is gone, and
//! only while its own lease row exists; so a gateway that dies loses its workers
//! with its lease (`meta_lease_secs` plus one renewal) and another takes them over.
//! A worker is an efficiency and a promise to the admin ("one cleaner at a time"),
//! never what keeps data safe: two cleaners, or two senders of one rule, are safe
//! together (the cleaner's locking table, the idempotent `sync_key`), which is what
//! happens for a moment when a gateway that lost its lease has not noticed yet.
//! On redb there is one process and every claim succeeds without a transaction.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use std::ops::Range;

use super::kv::{Engine, ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};
use super::{HoldId, MetaError, MetaResult, MetaStore, held, unix_secs};

pub(super) const GATEWAYS: TableDefinition<u64, u64> = TableDefinition::new("gateways");
/// Gateway id -> (ingest streams active, the gateway's stream limit), written with
/// each renewal: every gateway's load, visible cluster-wide.
pub(super) const GATEWAY_STREAMS: TableDefinition<u64, (u64, u64)> =
    TableDefinition::new("gateway_streams");
/// Segment id -> (the gateway it was handed to, when, unix seconds): ids handed out
/// whose segment has no row yet. The row goes in the transaction that names the
/// segment (`name_segment`).
pub(super) const UNNAMED_SEGMENTS: TableDefinition<u64, (u64, u64)> =
    TableDefinition::new("unnamed_segments");
/// Worker name -> the id of the gateway running it.
pub(super) const WORKERS: TableDefinition<&str, u64> = TableDefinition::new("workers");

/// This process's gateway id (the first 8 bytes of its holds' ids).
pub(super) struct Gateway {
    id: AtomicU64,
    registered: AtomicBool,
    /// A lease not renewed for this long is expired.
    lease_secs: u64,
    /// This gateway's ingest streams active and its limit, as last reported.
    streams: AtomicU64,
    stream_limit: AtomicU64,
}

/// One live gateway's load, as the cluster sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayLoad {
    pub gateway: u64,
    pub streams: u64,
    pub stream_limit: u64,
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
            streams: AtomicU64::new(0),
            stream_limit: AtomicU64::new(0),
        }))
    }

    /// How often the lease is renewed (and others' expired leases reaped).
    fn renew_every(&self) -> Duration {
        Duration::from_secs(self.lease_secs / 3)
    }

    /// This gateway's id now (a fresh one after its lease was reaped).
    pub(super) fn id(&self) -> u64 {
        self.id.load(Ordering::Relaxed)
    }

    /// The prefix of the holds this gateway creates now.
    pub(super) fn hold_prefix(&self) -> [u8; 8] {
        self.id().to_be_bytes()
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
        let load = (
            self.streams.load(Ordering::Relaxed),
            self.stream_limit.load(Ordering::Relaxed),
        );
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
        let mut streams = txn.open_table(GATEWAY_STREAMS)?;
        streams.insert(id, load)?;
        if !expired.is_empty() {
            streams.retain(|g, _| !expired.contains(&g))?;
            txn.open_table(WORKERS)?
                .retain(|_, owner| !expired.contains(&owner))?;
        }
        drop(streams);
        let mut released = 0;
        for gone in expired {
            released += held::release_prefix(txn, &gone.to_be_bytes(), now)?;
        }
        Ok(released)
    }

    /// Claims worker `name` for this gateway, or confirms it holds it: `None`, or
    /// the live gateway that holds it.
    fn claim(&self, txn: &WriteTransaction, name: &str) -> MetaResult<Option<u64>> {
        let me = self.id();
        let leases = txn.open_table(GATEWAYS)?;
        if leases.get(me)?.is_none() {
            return Err(MetaError::Unavailable(
                "this gateway's lease expired: it claims no worker before it renewed it".into(),
            ));
        }
        let mut workers = txn.open_table(WORKERS)?;
        match workers.get(name)?.map(|v| v.value()) {
            Some(owner) if owner == me => return Ok(None),
            Some(owner) if leases.get(owner)?.is_some() => return Ok(Some(owner)),
            _ => {}
        }
        workers.insert(name, me)?;
        Ok(None)
    }

    /// Gives worker `name` up, if this gateway holds it.
    fn release(&self, txn: &WriteTransaction, name: &str) -> MetaResult<()> {
        let me = self.id();
        let mut workers = txn.open_table(WORKERS)?;
        if workers.get(name)?.is_some_and(|v| v.value() == me) {
            workers.remove(name)?;
        }
        Ok(())
    }
}

/// A worker another live gateway runs now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("gateway {0:016x} is running it")]
pub struct WorkerBusy(pub u64);

/// A worker this gateway claimed for one turn; given up when dropped (also when the
/// future that held it was dropped).
pub struct WorkerTurn {
    meta: MetaStore,
    name: String,
}

impl Drop for WorkerTurn {
    fn drop(&mut self) {
        self.meta.release_worker(std::mem::take(&mut self.name));
    }
}

impl MetaStore {
    /// This gateway's id (`None` on redb, where there is only one process).
    pub fn gateway_id(&self) -> Option<u64> {
        self.gateway.as_ref().map(|g| g.id())
    }

    /// Records this gateway's ingest streams and limit; the next lease renewal (every
    /// third of the lease) makes them visible to the cluster.
    pub fn report_streams(&self, active: u64, limit: u64) {
        if let Some(g) = &self.gateway {
            g.streams.store(active, Ordering::Relaxed);
            g.stream_limit.store(limit, Ordering::Relaxed);
        }
    }

    /// Every live gateway with its load, as last renewed (empty on redb).
    pub async fn gateways(&self) -> MetaResult<Vec<GatewayLoad>> {
        if self.gateway.is_none() {
            return Ok(Vec::new());
        }
        self.read(|txn| {
            let leases = txn.open_table(GATEWAYS)?;
            let streams = txn.open_table(GATEWAY_STREAMS)?;
            let mut out = Vec::new();
            for row in leases.iter()? {
                let id = row?.0.value();
                let (active, limit) = streams.get(id)?.map_or((0, 0), |v| v.value());
                out.push(GatewayLoad {
                    gateway: id,
                    streams: active,
                    stream_limit: limit,
                });
            }
            Ok(out)
        })
        .await
    }

    /// Claims the cluster-wide worker `name`, or confirms this gateway still holds it
    /// (it keeps it until it gives it up or its lease expires).
    pub async fn claim_worker(&self, name: &str) -> MetaResult<Result<(), WorkerBusy>> {
        let Some(gateway) = self.gateway.clone() else {
            return Ok(Ok(()));
        };
        let name = name.to_owned();
        let holder = self
            .write(false, move |txn| gateway.claim(txn, &name))
            .await?;
        Ok(holder.map_or(Ok(()), |g| Err(WorkerBusy(g))))
    }

    /// Gives worker `name` up (queued: callable from `Drop`).
    pub fn release_worker(&self, name: String) {
        if let Some(gateway) = self.gateway.clone() {
            drop(self.submit(false, move |txn| gateway.release(txn, &name)));
        }
    }

    /// Claims worker `name` for one turn: given up when the answer is dropped.
    pub async fn worker_turn(&self, name: &str) -> MetaResult<Result<WorkerTurn, WorkerBusy>> {
        Ok(self.claim_worker(name).await?.map(|()| WorkerTurn {
            meta: self.clone(),
            name: name.to_owned(),
        }))
    }

    /// Whether this gateway runs the periodic worker `name` now (claiming it when it
    /// is free): false, logged, when another gateway runs it or the claim failed.
    pub async fn runs_worker(&self, name: &str) -> bool {
        match self.claim_worker(name).await {
            Ok(Ok(())) => true,
            Ok(Err(busy)) => {
                tracing::debug!(worker = name, %busy, "another gateway runs this worker");
                false
            }
            Err(e) => {
                tracing::warn!(worker = name, error = %e, "cannot claim a cluster-wide worker");
                false
            }
        }
    }
}

/// Records segment ids `ids`, just handed out, as this gateway's until named.
pub(super) fn hand_out(
    txn: &WriteTransaction,
    gateway: &Gateway,
    ids: Range<u64>,
) -> MetaResult<()> {
    let mut unnamed = txn.open_table(UNNAMED_SEGMENTS)?;
    let now = unix_secs();
    for id in ids {
        unnamed.insert(id, (gateway.id(), now))?;
    }
    Ok(())
}

/// On PostgreSQL: fails unless segment id `id` was handed to a gateway that is still
/// alive, and drops its record (the segment's row is made in this transaction).
pub(super) fn name_segment(txn: &WriteTransaction, id: u64) -> MetaResult<()> {
    if !matches!(txn, WriteTransaction::Pg(_)) {
        return Ok(());
    }
    let owner = txn
        .open_table(UNNAMED_SEGMENTS)?
        .remove(id)?
        .map(|v| v.value().0);
    let alive = match owner {
        Some(g) => txn.open_table(GATEWAYS)?.get(g)?.is_some(),
        None => false,
    };
    if !alive {
        return Err(MetaError::Unavailable(format!(
            "segment {id:016x} belongs to no live gateway (this gateway's lease expired): the write fails"
        )));
    }
    Ok(())
}

/// Whether segment id `id` was handed to a gateway whose lease is gone and never
/// named (PostgreSQL; false on redb, or for an id without a record).
pub(super) fn unnamed_and_dead(txn: &ReadTransaction, id: u64) -> MetaResult<bool> {
    if !matches!(txn, ReadTransaction::Pg(_)) {
        return Ok(false);
    }
    match txn.open_table(UNNAMED_SEGMENTS)?.get(id)? {
        Some(v) => Ok(txn.open_table(GATEWAYS)?.get(v.value().0)?.is_none()),
        None => Ok(false),
    }
}

/// The ids handed to gateways whose lease is gone and not named (PostgreSQL).
pub(super) fn dead_unnamed(txn: &ReadTransaction) -> MetaResult<Vec<u64>> {
    if !matches!(txn, ReadTransaction::Pg(_)) {
        return Ok(Vec::new());
    }
    let leases = txn.open_table(GATEWAYS)?;
    let mut dead = Vec::new();
    for row in txn.open_table(UNNAMED_SEGMENTS)?.iter()? {
        let (id, v) = row?;
        if leases.get(v.value().0)?.is_none() {
            dead.push(id.value());
        }
    }
    Ok(dead)
}

/// Drops the records of `settled` ids (dead gateways' ids an orphan pass has dealt
/// with: their files removed, or none listed) and of ids handed out before `before`
/// (unix seconds: any file of theirs is past the grace period). Answers how many.
pub(super) fn forget_unnamed(
    txn: &WriteTransaction,
    settled: &[u64],
    before: u64,
) -> MetaResult<u64> {
    if !matches!(txn, WriteTransaction::Pg(_)) {
        return Ok(0);
    }
    let mut unnamed = txn.open_table(UNNAMED_SEGMENTS)?;
    let mut doomed: Vec<u64> = settled.to_vec();
    for row in unnamed.iter()? {
        let (id, v) = row?;
        if v.value().1 < before {
            doomed.push(id.value());
        }
    }
    let mut gone = 0;
    for id in &doomed {
        gone += u64::from(unnamed.remove(*id)?.is_some());
    }
    Ok(gone)
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
