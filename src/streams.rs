//! `streams` owns the board of ingest streams in progress (what the dashboard's
//! Streams page lists): each stream's bucket, start, declared length and bytes so
//! far, and how many writers had to wait for a stream slot or were refused one.
//!
//! Invariants: a stream is on the board exactly while its `OnBoard` guard lives (the
//! guard removes it on every path, a dropped request future included); the write
//! path touches the board once per body batch (an atomic store), never per frame.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

/// One stream as the dashboard shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamView {
    pub bucket: String,
    /// Unix ms at which its body started.
    pub started_ms: i64,
    /// Body bytes received so far.
    pub bytes: u64,
    /// The length the request declared, if it did.
    pub expected: Option<u64>,
}

struct Live {
    bucket: String,
    started_ms: i64,
    expected: Option<u64>,
    bytes: AtomicU64,
}

/// The streams in progress, and the waits for a slot.
#[derive(Default)]
pub struct StreamBoard {
    next: AtomicU64,
    live: Mutex<BTreeMap<u64, Arc<Live>>>,
    waited: AtomicU64,
    refused: AtomicU64,
}

/// Keeps one stream on the board; dropping it takes the stream off.
pub struct OnBoard {
    board: Arc<StreamBoard>,
    id: u64,
    live: Arc<Live>,
}

impl OnBoard {
    /// The body's bytes so far.
    pub fn set_bytes(&self, bytes: u64) {
        self.live.bytes.store(bytes, Ordering::Relaxed);
    }
}

impl Drop for OnBoard {
    fn drop(&mut self) {
        if let Ok(mut live) = self.board.live.lock() {
            live.remove(&self.id);
        }
    }
}

impl StreamBoard {
    /// Puts a stream into `bucket` on the board until the guard is dropped.
    pub fn enter(self: &Arc<Self>, bucket: &str, expected: Option<u64>, now_ms: i64) -> OnBoard {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let live = Arc::new(Live {
            bucket: bucket.to_owned(),
            started_ms: now_ms,
            expected,
            bytes: AtomicU64::new(0),
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

    /// A writer found every slot taken and waits.
    pub fn note_wait(&self) {
        self.waited.fetch_add(1, Ordering::Relaxed);
    }

    /// A writer waited too long and was refused (503 SlowDown).
    pub fn note_refusal(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// The streams in progress, oldest first.
    pub fn list(&self) -> Vec<StreamView> {
        let Ok(board) = self.live.lock() else {
            return Vec::new();
        };
        board
            .values()
            .map(|l| StreamView {
                bucket: l.bucket.clone(),
                started_ms: l.started_ms,
                bytes: l.bytes.load(Ordering::Relaxed),
                expected: l.expected,
            })
            .collect()
    }

    /// (writers that waited for a slot, writers refused one) since start.
    pub fn waits(&self) -> (u64, u64) {
        (
            self.waited.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_is_listed_while_its_guard_lives() {
        let board = Arc::new(StreamBoard::default());
        let a = board.enter("a", Some(10), 1);
        let b = board.enter("b", None, 2);
        a.set_bytes(7);
        let names: Vec<_> = board
            .list()
            .into_iter()
            .map(|s| (s.bucket, s.bytes))
            .collect();
        assert_eq!(names, [("a".to_owned(), 7), ("b".to_owned(), 0)]);
        drop(a);
        assert_eq!(board.list().len(), 1);
        drop(b);
        assert!(board.list().is_empty());
    }
}
