//! The group committer: one thread applies every write operation, grouping the
//! operations queued at the same moment into one redb transaction (durable when any
//! of them asked to be). A domain error fails its operation alone; a storage error,
//! or a panic, fails the whole group and nothing of it commits. Reads run on
//! blocking threads against their own snapshot.

use std::sync::mpsc;

use super::kv::{Engine, ReadTransaction, WriteTransaction};
use tokio::runtime::RuntimeFlavor;
use tokio::sync::oneshot;

use super::{MetaError, MetaResult, MetaStore};

/// Most operations grouped into one transaction.
pub(super) const MAX_GROUP: usize = 1024;

pub(super) type Completion = Box<dyn FnOnce(Option<&MetaError>) + Send>;
/// An operation, run in its group's transaction, or handed the error that kept the
/// group from beginning.
pub(super) type Op =
    Box<dyn FnOnce(Result<&WriteTransaction, MetaError>) -> (Completion, Option<MetaError>) + Send>;

pub(super) struct Job {
    pub(super) op: Op,
    pub(super) durable: bool,
}

impl MetaStore {
    /// Queues `f` for the committer; the receiver yields its result once the group
    /// it ran in has committed.
    pub(super) fn submit<R, F>(&self, durable: bool, f: F) -> oneshot::Receiver<MetaResult<R>>
    where
        R: Send + 'static,
        F: FnOnce(&WriteTransaction) -> MetaResult<R> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let op: Op = Box::new(move |txn| {
            let result = txn.and_then(f);
            let fatal = match &result {
                Err(e) if e.aborts_group() => Some(e.shared()),
                _ => None,
            };
            let completion: Completion = Box::new(move |group_err| {
                let out = match group_err {
                    Some(e) => Err(e.shared()),
                    None => result,
                };
                let _ = tx.send(out);
            });
            (completion, fatal)
        });
        // If the committer is gone the receiver reports Closed.
        let _ = self.jobs.send(Job { op, durable });
        rx
    }

    pub(super) async fn write<R, F>(&self, durable: bool, f: F) -> MetaResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&WriteTransaction) -> MetaResult<R> + Send + 'static,
    {
        self.submit(durable, f)
            .await
            .unwrap_or(Err(MetaError::Closed))
    }

    /// The same as `write`, for callers on blocking threads.
    pub(super) fn write_blocking<R, F>(&self, durable: bool, f: F) -> MetaResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&WriteTransaction) -> MetaResult<R> + Send + 'static,
    {
        self.submit(durable, f)
            .blocking_recv()
            .unwrap_or(Err(MetaError::Closed))
    }

    /// Runs a read-only closure on a blocking thread against a fresh snapshot.
    pub async fn read<R, F>(&self, f: F) -> MetaResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&ReadTransaction) -> MetaResult<R> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read()?;
            f(&txn)
        })
        .await
        .map_err(|e| MetaError::Corrupt(format!("read task failed: {e}")))?
    }

    /// Runs a read-only closure on the calling (blocking) thread.
    pub fn read_blocking<R: Send>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> MetaResult<R> + Send,
    ) -> MetaResult<R> {
        let read = || {
            let txn = self.db.begin_read()?;
            f(&txn)
        };
        // PostgreSQL's synchronous client runs a runtime of its own, which cannot
        // start on a thread already driving async tasks (start-up reads do).
        match (&*self.db, tokio::runtime::Handle::try_current()) {
            (Engine::Pg(_), Ok(h)) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(read)
            }
            (Engine::Pg(_), Ok(_)) => std::thread::scope(|s| {
                s.spawn(read)
                    .join()
                    .unwrap_or_else(|_| Err(MetaError::Panicked("a metadata read".into())))
            }),
            _ => read(),
        }
    }
}

pub(super) fn run_committer(db: &Engine, rx: &mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let durable = jobs.iter().any(|j| j.durable);
        let txn = match db.begin_write(durable) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "metadata: cannot begin write transaction");
                fail_unrun(jobs, &e);
                continue;
            }
        };
        let mut completions = Vec::with_capacity(jobs.len());
        let mut fatal: Option<MetaError> = None;
        for j in jobs {
            if fatal.is_some() {
                // The group is lost; the remaining operations are dropped unrun.
                continue;
            }
            // A panicking operation fails its group, never the committer: later
            // groups commit as before. Its caller's channel is dropped (`Closed`).
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (j.op)(Ok(&txn)))) {
                Ok((done, err)) => {
                    completions.push(done);
                    fatal = err;
                }
                Err(panic) => {
                    let why = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".into());
                    fatal = Some(MetaError::Panicked(why));
                }
            }
        }
        let outcome = match fatal {
            Some(e) => {
                txn.abort();
                Some(e)
            }
            None => txn.commit().err(),
        };
        if let Some(e) = &outcome {
            tracing::error!(error = %e, "metadata: transaction group failed");
        }
        for done in completions {
            done(outcome.as_ref());
        }
    }
}

/// Answers every operation of a group that could not begin with the reason.
fn fail_unrun(jobs: Vec<Job>, e: &MetaError) {
    for j in jobs {
        let (done, _) = (j.op)(Err(e.shared()));
        done(None);
    }
}
