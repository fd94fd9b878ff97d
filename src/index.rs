//! `index` owns the fast "have I seen this chunk?" path in front of the chunk index
//! rows kept by `meta`.
//!
//! - A Bloom filter in memory answers "certainly new" without touching the index.
//!   It is filled from the index at start-up and told about every chunk the moment
//!   its row is added, so it never says "new" for an indexed chunk (it may say
//!   "maybe" for a new one, at a rate set by its size).
//! - A locality cache: when a chunk is found in segment S, the ids of all chunks in S
//!   are loaded, because the chunks after it in a backup stream are most likely the
//!   ones that followed it last time.
//! - Gateways sharing the metadata (PostgreSQL): another gateway's new chunks reach
//!   this filter by `refresh_blocking`, which reads the chunk ids of the segments
//!   sealed since it last looked (segment ids follow sealing order there: one id per
//!   segment), every 2 s and as a PUT begins (`catch_up_blocking`). Until then the
//!   filter may say "new" for a chunk another gateway just
//!   stored, and the writer stores a second copy: dead bytes until compaction, never
//!   a wrong answer (the index insert keeps the first row).
//! - The index rows are the truth. Neither structure is ever trusted to take a
//!   reference: that happens in `MetaStore::take_refs_blocking`, which fails for a
//!   chunk whose row is gone, and the writer then stores the chunk anew.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::meta::{ChunkId, MetaError, MetaStore};

const BITS_PER_CHUNK: u64 = 10;
const HASHES: u64 = 7;

/// A Bloom filter over chunk ids. Ids are BLAKE3 digests, so their bytes are the
/// hash functions (double hashing over two 64-bit words).
pub struct BloomFilter {
    words: Vec<AtomicU64>,
    bits: u64,
}

impl BloomFilter {
    pub fn with_capacity(chunks: u64) -> BloomFilter {
        let bits = (chunks.max(1024) * BITS_PER_CHUNK).next_power_of_two();
        let words = (0..bits / 64).map(|_| AtomicU64::new(0)).collect();
        BloomFilter { words, bits }
    }

    fn positions(&self, id: &ChunkId) -> impl Iterator<Item = u64> + use<> {
        let h1 = u64::from_le_bytes(id[0..8].try_into().unwrap_or([0; 8]));
        let h2 = u64::from_le_bytes(id[8..16].try_into().unwrap_or([0; 8])) | 1;
        let mask = self.bits - 1;
        (0..HASHES).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) & mask)
    }

    pub fn insert(&self, id: &ChunkId) {
        for p in self.positions(id) {
            self.words[(p / 64) as usize].fetch_or(1 << (p % 64), Ordering::Relaxed);
        }
    }

    pub fn maybe_contains(&self, id: &ChunkId) -> bool {
        self.positions(id)
            .all(|p| self.words[(p / 64) as usize].load(Ordering::Relaxed) & (1 << (p % 64)) != 0)
    }

    pub fn memory_bytes(&self) -> u64 {
        self.bits / 8
    }
}

/// Chunk ids of the most recently hit segments, evicted oldest first.
struct LocalityCache {
    ids: HashMap<ChunkId, u64>,
    order: VecDeque<(u64, Vec<ChunkId>)>,
    capacity: usize,
}

impl LocalityCache {
    fn contains(&self, id: &ChunkId) -> bool {
        self.ids.contains_key(id)
    }

    fn has_segment(&self, seg: u64) -> bool {
        self.order.iter().any(|(s, _)| *s == seg)
    }

    fn add_segment(&mut self, seg: u64, ids: Vec<ChunkId>) {
        while self.order.len() >= self.capacity.max(1) {
            let Some((old, old_ids)) = self.order.pop_front() else {
                break;
            };
            for id in old_ids {
                if self.ids.get(&id) == Some(&old) {
                    self.ids.remove(&id);
                }
            }
        }
        for id in &ids {
            self.ids.insert(*id, seg);
        }
        self.order.push_back((seg, ids));
    }
}

/// Segment ids below the highest seen that a refresh reads again: a segment sealed
/// late (its id taken before others') is still found within this many.
const REFRESH_WINDOW: u64 = 1024;

/// A PUT that starts finds the filter at most this old (`catch_up_blocking`).
const CATCH_UP_AGE: Duration = Duration::from_millis(250);

/// What the filter has read of the shared index since start-up.
struct Refreshed {
    /// When the last refresh began.
    at: Instant,
    /// The highest segment id whose chunks are in the filter.
    highest: u64,
    /// Segments of the window below `highest` already read.
    read: BTreeSet<u64>,
}

/// The dedup lookup in front of the chunk index.
pub struct ChunkIndex {
    meta: MetaStore,
    filter: BloomFilter,
    locality: Mutex<LocalityCache>,
    refreshed: Mutex<Refreshed>,
}

impl ChunkIndex {
    /// Builds the filter from every indexed chunk; it is sized for
    /// `max(expected, 2 x indexed)` chunks.
    pub fn load(
        meta: MetaStore,
        expected: u64,
        locality_segments: usize,
    ) -> Result<ChunkIndex, MetaError> {
        let mut count = 0u64;
        // Shared index: segments sealed from here on are read by `refresh_blocking`.
        let segments = match meta.is_shared() {
            true => meta.segment_ids_from_blocking(0)?,
            false => Vec::new(),
        };
        let highest = segments.last().copied().unwrap_or(0);
        let window: BTreeSet<u64> = segments
            .into_iter()
            .filter(|id| *id > highest.saturating_sub(REFRESH_WINDOW))
            .collect();
        meta.for_each_chunk_id(|_| count += 1)?;
        let filter = BloomFilter::with_capacity(expected.max(count * 2));
        meta.for_each_chunk_id(|id| filter.insert(id))?;
        tracing::info!(
            chunks = count,
            filter_bytes = filter.memory_bytes(),
            "chunk filter loaded"
        );
        Ok(ChunkIndex {
            meta,
            filter,
            locality: Mutex::new(LocalityCache {
                ids: HashMap::new(),
                order: VecDeque::new(),
                capacity: locality_segments,
            }),
            refreshed: Mutex::new(Refreshed {
                at: Instant::now(),
                highest,
                read: window,
            }),
        })
    }

    /// On a shared index, refreshes the filter unless that happened within the last
    /// `CATCH_UP_AGE`: a PUT that begins right after another gateway stored the
    /// previous generation finds its chunks. A failure is logged, never the PUT's.
    pub fn catch_up_blocking(&self) {
        if !self.meta.is_shared() {
            return;
        }
        let stale = self
            .refreshed
            .lock()
            .map(|r| r.at.elapsed() >= CATCH_UP_AGE)
            .unwrap_or(false);
        if !stale {
            return;
        }
        if let Err(e) = self.refresh_blocking() {
            tracing::warn!(error = %e, "cannot refresh the chunk filter");
        }
    }

    /// Adds the chunks of segments sealed since the last call (by any gateway) to
    /// the filter; answers how many segments it read.
    pub fn refresh_blocking(&self) -> Result<u64, MetaError> {
        let (floor, read) = match self.refreshed.lock() {
            Ok(mut r) => {
                r.at = Instant::now();
                (r.highest.saturating_sub(REFRESH_WINDOW), r.read.clone())
            }
            Err(_) => return Ok(0),
        };
        let new: Vec<u64> = self
            .meta
            .segment_ids_from_blocking(floor)?
            .into_iter()
            .filter(|id| *id > floor && !read.contains(id))
            .collect();
        for id in &new {
            for chunk in self.meta.segment_chunk_ids_blocking(*id)? {
                self.filter.insert(&chunk);
            }
            if let Ok(mut r) = self.refreshed.lock() {
                r.read.insert(*id);
                r.highest = r.highest.max(*id);
                let floor = r.highest.saturating_sub(REFRESH_WINDOW);
                r.read = r.read.split_off(&floor);
            }
        }
        Ok(new.len() as u64)
    }

    /// Whether the chunk is probably indexed. `false` is certain; `true` must be
    /// confirmed by taking a reference.
    pub fn probably_known_blocking(&self, id: &ChunkId) -> Result<bool, MetaError> {
        if !self.filter.maybe_contains(id) {
            return Ok(false);
        }
        if self
            .locality
            .lock()
            .map(|c| c.contains(id))
            .unwrap_or(false)
        {
            return Ok(true);
        }
        let Some(row) = self.meta.chunk_row_blocking(id)? else {
            return Ok(false);
        };
        let seg = row.loc.segment;
        let cached = self
            .locality
            .lock()
            .map(|c| c.has_segment(seg))
            .unwrap_or(true);
        if !cached {
            let ids = self.meta.segment_chunk_ids_blocking(seg)?;
            if let Ok(mut c) = self.locality.lock() {
                c.add_segment(seg, ids);
            }
        }
        Ok(true)
    }

    /// Records chunks whose index rows were just added.
    pub fn note_indexed<'a>(&self, ids: impl IntoIterator<Item = &'a ChunkId>) {
        for id in ids {
            self.filter.insert(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> ChunkId {
        *blake3::hash(&n.to_le_bytes()).as_bytes()
    }

    #[test]
    fn filter_has_no_false_negatives_and_few_false_positives() {
        let f = BloomFilter::with_capacity(100_000);
        for n in 0..100_000 {
            f.insert(&id(n));
        }
        assert!((0..100_000).all(|n| f.maybe_contains(&id(n))));
        let fp = (100_000..200_000)
            .filter(|n| f.maybe_contains(&id(*n)))
            .count();
        assert!(fp < 3_000, "false positives: {fp}");
    }

    #[test]
    fn locality_cache_evicts_oldest_segment() {
        let mut c = LocalityCache {
            ids: HashMap::new(),
            order: VecDeque::new(),
            capacity: 2,
        };
        c.add_segment(1, vec![id(1)]);
        c.add_segment(2, vec![id(2)]);
        c.add_segment(3, vec![id(3)]);
        assert!(!c.contains(&id(1)));
        assert!(c.contains(&id(2)) && c.contains(&id(3)));
    }
}
