//! `segments::cache` owns the restore cache in front of an object store (mode
//! "cloud", and the tier of mode "tiered"): a foyer `HybridCache` of whole segments
//! as stored, in memory and then in files on the local disk, written on insertion
//! so that it outlives a restart.
//!
//! Invariants:
//! - An entry is `BLAKE3(segment) | segment`. One that comes from the disk files is
//!   checked against its hash before a byte of it is used; a bad one (or one foyer
//!   cannot load) is dropped and the segment fetched again from the store. Every
//!   chunk read from it is checked again by BLAKE3 of its id, like any read.
//! - The cache never decides what exists: a miss always goes to the store, and the
//!   cleaner's deletes drop the segment's entry.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use foyer::{
    BlockEngineConfig, DeviceBuilder, FsDeviceBuilder, HybridCache, HybridCacheBuilder,
    HybridCachePolicy, PsyncIoEngineConfig, RecoverMode, Source,
};
use serde::Deserialize;

use super::SegmentError;

const HASH_LEN: usize = 32;
/// The disk files are written in blocks of this size; an entry (one segment) must fit.
const BLOCK: usize = 16 << 20;

/// `[segments.cache]`: sizes of the restore cache.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSettings {
    /// Segments kept in memory, MiB.
    pub memory_mib: usize,
    /// Segments kept in files under `<data-dir>/cache`, MiB (at least 64).
    pub disk_mib: usize,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            memory_mib: 256,
            disk_mib: 4096,
        }
    }
}

/// What the cache did since start.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheCounters {
    pub hits: u64,
    pub misses: u64,
    /// Entries that failed their check and were fetched again.
    pub refetched: u64,
    /// Bytes fetched from the object store into the cache.
    pub fetched_bytes: u64,
}

pub(super) struct SegmentCache {
    cache: HybridCache<u64, Bytes>,
    hits: AtomicU64,
    misses: AtomicU64,
    refetched: AtomicU64,
    fetched_bytes: AtomicU64,
}

fn cache_error(e: impl std::fmt::Display) -> SegmentError {
    SegmentError::Settings(format!("segment cache: {e}"))
}

impl SegmentCache {
    pub(super) async fn open(dir: &Path, s: &CacheSettings) -> Result<SegmentCache, SegmentError> {
        let disk = s.disk_mib.max(64) << 20;
        let device = FsDeviceBuilder::new(dir)
            .with_capacity(disk)
            .build()
            .map_err(cache_error)?;
        let cache = HybridCacheBuilder::new()
            .with_name("hoard-segments")
            .with_policy(HybridCachePolicy::WriteOnInsertion)
            .memory(s.memory_mib << 20)
            .with_weighter(|_id: &u64, v: &Bytes| v.len())
            .storage()
            .with_io_engine_config(PsyncIoEngineConfig::new())
            .with_engine_config(BlockEngineConfig::new(device).with_block_size(BLOCK))
            .with_recover_mode(RecoverMode::Quiet)
            .build()
            .await
            .map_err(cache_error)?;
        Ok(SegmentCache {
            cache,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            refetched: AtomicU64::new(0),
            fetched_bytes: AtomicU64::new(0),
        })
    }

    /// Segment `id` from the cache, else from `fetch` (then cached).
    pub(super) async fn get(
        &self,
        id: u64,
        fetch: impl Future<Output = Result<Bytes, SegmentError>>,
    ) -> Result<Bytes, SegmentError> {
        match self.cache.get(&id).await {
            Ok(Some(e)) if e.source() != Source::Disk || intact(e.value()) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(e.value().slice(HASH_LEN..));
            }
            Ok(None) => {
                self.misses.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Some(_)) | Err(_) => {
                tracing::warn!(
                    segment = id,
                    "segment cache: an entry failed its check; fetched again"
                );
                self.cache.remove(&id);
                self.refetched.fetch_add(1, Ordering::Relaxed);
            }
        }
        let data = fetch.await?;
        self.fetched_bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        let mut entry = BytesMut::with_capacity(HASH_LEN + data.len());
        entry.extend_from_slice(blake3::hash(&data).as_bytes());
        entry.extend_from_slice(&data);
        self.cache.insert(id, entry.freeze());
        Ok(data)
    }

    pub(super) fn forget(&self, id: u64) {
        self.cache.remove(&id);
    }

    pub(super) fn counters(&self) -> CacheCounters {
        CacheCounters {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            refetched: self.refetched.load(Ordering::Relaxed),
            fetched_bytes: self.fetched_bytes.load(Ordering::Relaxed),
        }
    }
}

fn intact(entry: &Bytes) -> bool {
    entry.len() >= HASH_LEN && blake3::hash(&entry[HASH_LEN..]).as_bytes() == &entry[..HASH_LEN]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hits_are_served_and_a_damaged_disk_entry_is_fetched_again() {
        let dir = tempfile::tempdir().unwrap();
        let s = CacheSettings {
            memory_mib: 1,
            disk_mib: 64,
        };
        let good = Bytes::from(vec![7u8; 3 << 20]);
        {
            let cache = SegmentCache::open(dir.path(), &s).await.unwrap();
            let got = cache.get(1, async { Ok(good.clone()) }).await.unwrap();
            assert_eq!(got, good);
            let again = cache
                .get(1, async { panic!("a hit fetched") })
                .await
                .unwrap();
            assert_eq!(again, good);
            assert_eq!((cache.counters().hits, cache.counters().misses), (1, 1));
            cache.cache.close().await.unwrap();
        }
        // Damage every byte of the cache files that holds the segment.
        let mut damaged = 0;
        for f in std::fs::read_dir(dir.path()).unwrap() {
            let p = f.unwrap().path();
            let mut bytes = std::fs::read(&p).unwrap();
            for b in bytes.iter_mut().filter(|b| **b == 7) {
                *b = 8;
                damaged += 1;
            }
            std::fs::write(&p, bytes).unwrap();
        }
        assert!(damaged > 0, "the segment never reached the disk files");
        let cache = SegmentCache::open(dir.path(), &s).await.unwrap();
        let fetched = std::sync::atomic::AtomicBool::new(false);
        let got = cache
            .get(1, async {
                fetched.store(true, Ordering::Relaxed);
                Ok(good.clone())
            })
            .await
            .unwrap();
        assert_eq!(got, good, "damaged bytes were served");
        assert!(
            fetched.load(Ordering::Relaxed),
            "the damaged entry was not fetched again"
        );
    }
}
