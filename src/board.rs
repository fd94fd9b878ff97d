//! `board` owns a board of work in progress: each entry a label, its start, how much
//! is done and of what total (0: unknown). The ingest streams are one board (label:
//! the bucket; done: body bytes so far; total: the declared length), the long jobs
//! the CLI shows progress of are another (label: the job, `gc` or `verify`; done and
//! total in the job's unit). The dashboard and the admin API read them.
//!
//! Invariants: an entry is on the board exactly while its `OnBoard` guard lives (the
//! guard removes it on every path, a dropped request future included); updating an
//! entry is an atomic store, so the write path touches the board once per body batch
//! at no measurable cost.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// One entry as readers see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub label: String,
    /// What `done` and `total` count ("bytes", "segments").
    pub unit: String,
    /// Unix ms at which it started.
    pub started_ms: i64,
    pub done: u64,
    /// 0 while unknown.
    pub total: u64,
}

struct Live {
    label: String,
    unit: &'static str,
    started_ms: i64,
    done: AtomicU64,
    total: AtomicU64,
}

/// Entries in progress, in the order they started.
#[derive(Default)]
pub struct Board {
    next: AtomicU64,
    live: Mutex<BTreeMap<u64, Arc<Live>>>,
}

/// Keeps one entry on the board; dropping it takes the entry off.
pub struct OnBoard {
    board: Arc<Board>,
    id: u64,
    live: Arc<Live>,
}

impl OnBoard {
    pub fn set_done(&self, done: u64) {
        self.live.done.store(done, Ordering::Relaxed);
    }

    pub fn set_total(&self, total: u64) {
        self.live.total.store(total, Ordering::Relaxed);
    }
}

impl Drop for OnBoard {
    fn drop(&mut self) {
        if let Ok(mut live) = self.board.live.lock() {
            live.remove(&self.id);
        }
    }
}

impl Board {
    /// Puts an entry on the board until the guard is dropped.
    pub fn enter(
        self: &Arc<Self>,
        label: &str,
        unit: &'static str,
        total: u64,
        now_ms: i64,
    ) -> OnBoard {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let live = Arc::new(Live {
            label: label.to_owned(),
            unit,
            started_ms: now_ms,
            done: AtomicU64::new(0),
            total: AtomicU64::new(total),
        });
        if let Ok(mut board) = self.live.lock() {
            board.insert(id, live.clone());
        }
        OnBoard {
            board: self.clone(),
            id,
            live,
        }
    }

    /// The entries in progress, oldest first.
    pub fn list(&self) -> Vec<Entry> {
        let Ok(board) = self.live.lock() else {
            return Vec::new();
        };
        board
            .values()
            .map(|l| Entry {
                label: l.label.clone(),
                unit: l.unit.to_owned(),
                started_ms: l.started_ms,
                done: l.done.load(Ordering::Relaxed),
                total: l.total.load(Ordering::Relaxed),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_listed_while_its_guard_lives() {
        let board = Arc::new(Board::default());
        let a = board.enter("a", "bytes", 10, 1);
        let b = board.enter("b", "bytes", 0, 2);
        a.set_done(7);
        b.set_total(5);
        let seen: Vec<_> = board
            .list()
            .into_iter()
            .map(|s| (s.label, s.done, s.total))
            .collect();
        assert_eq!(seen, [("a".to_owned(), 7, 10), ("b".to_owned(), 0, 5)]);
        drop(a);
        assert_eq!(board.list().len(), 1);
        drop(b);
        assert!(board.list().is_empty());
    }
}
