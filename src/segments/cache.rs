//! `segments::cache` owns the restore cache in front of an object store (mode
//! "cloud", and the tier of mode "tiered"): a foyer `HybridCache` of whole segments
//! as stored, in memory and then in files on the local disk, each written to the
//! files once when fetched, so that it outlives a restart.
//!
//! Invariants:
//! - Concurrent misses of one segment are one fetch: foyer's `get_or_fetch` lets the
//!   first reader fetch and the others wait for its bytes (a restore keeps several
//!   reads of one segment in flight).
//! - An entry goes to the disk files with foyer's checksum (xxHash64 of key and
//!   value), written by foyer's flusher off the read path. One loaded from the disk
//!   files is checked against it before a byte of it is used; a bad one (or one
//!   foyer cannot load) is dropped and the segment fetched again from the store.
//!   Every chunk read from it is checked again by BLAKE3 of its id, like any read,
//!   so damage the checksum missed is still never served.
//! - The cache never decides what exists: a miss always goes to the store, and the
//!   cleaner's deletes drop the segment's entry.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use foyer::{
    BlockEngineConfig, DeviceBuilder, Event, EventListener, FsDeviceBuilder, HybridCache,
    HybridCacheBuilder, HybridCachePolicy, HybridCacheProperties, Location, PsyncIoEngineConfig,
    RecoverMode,
};
use serde::Deserialize;

use super::SegmentError;

/// The disk files are written in blocks of this size; an entry (one segment) must fit.
const BLOCK: usize = 16 << 20;
/// Memory for blocks being written to the disk files (beyond `memory_mib`).
const WRITE_BUFFERS: usize = 4 * BLOCK;
/// Entries waiting for the flusher at most, in bytes (they are shared with the
/// memory cache while they wait).
const WRITE_QUEUE: usize = 8 * BLOCK;

/// `[segments.cache]`: sizes of the restore cache.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSettings {
    /// Segments kept in memory, MiB.
    pub memory_mib: usize,
    /// Segments kept in files under `<data-dir>/cache`, MiB (at least 64).
    pub disk_mib: usize,
    /// Segments a GET fetches ahead of the one it is reading, from the segments its
    /// next chunks are in (0: none).
    pub read_ahead: usize,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            memory_mib: 256,
            disk_mib: 4096,
            read_ahead: 4,
        }
    }
}

/// What the cache did since start.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheCounters {
    /// Reads answered without a fetch of their own (from memory, from the disk
    /// files, or by waiting for another reader's fetch of the same segment).
    pub hits: u64,
    /// Fetches from the object store.
    pub misses: u64,
    /// Segments evicted from memory to make room (they may stay in the disk files).
    pub evicted: u64,
    /// Bytes fetched from the object store into the cache.
    pub fetched_bytes: u64,
}

pub(super) struct SegmentCache {
    cache: HybridCache<u64, Bytes>,
    pub(super) read_ahead: usize,
    reads: AtomicU64,
    fetches: Arc<Fetches>,
    evicted: Arc<Evictions>,
}

#[derive(Default)]
struct Fetches {
    count: AtomicU64,
    bytes: AtomicU64,
}

/// Counts the segments foyer evicts from memory.
#[derive(Default)]
struct Evictions(AtomicU64);

impl EventListener for Evictions {
    type Key = u64;
    type Value = Bytes;

    fn on_leave(&self, reason: Event, _id: &u64, _v: &Bytes) {
        if reason == Event::Evict {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn cache_error(e: impl std::fmt::Display) -> SegmentError {
    SegmentError::Cache(e.to_string())
}

impl SegmentCache {
    pub(super) async fn open(dir: &Path, s: &CacheSettings) -> Result<SegmentCache, SegmentError> {
        let disk = s.disk_mib.max(64) << 20;
        let device = FsDeviceBuilder::new(dir)
            .with_capacity(disk)
            // Past the page cache: copying each fetched segment into it cost a cold
            // restore more CPU than anything else.
            .with_direct(takes_direct_io(dir))
            .build()
            .map_err(cache_error)?;
        let evicted = Arc::new(Evictions::default());
        let cache = HybridCacheBuilder::new()
            .with_name("hoard-segments")
            .with_event_listener(evicted.clone())
            // Fetched segments are written to the disk files by `get`, once; the
            // policy only covers entries loaded from them (rewritten on eviction
            // when foyer deems them old). Reads never write.
            .with_policy(HybridCachePolicy::WriteOnEviction)
            .memory(s.memory_mib << 20)
            .with_weighter(|_id: &u64, v: &Bytes| v.len())
            .storage()
            .with_io_engine_config(PsyncIoEngineConfig::new())
            .with_engine_config(
                BlockEngineConfig::new(device)
                    .with_block_size(BLOCK)
                    // Room for the segments a restore fetches at once: an entry the
                    // flusher has no room for is not written to the disk files, and
                    // is fetched again once memory evicts it.
                    .with_buffer_pool_size(WRITE_BUFFERS)
                    .with_submit_queue_size_threshold(WRITE_QUEUE),
            )
            .with_recover_mode(RecoverMode::Quiet)
            .build()
            .await
            .map_err(cache_error)?;
        Ok(SegmentCache {
            cache,
            read_ahead: s.read_ahead,
            reads: AtomicU64::new(0),
            fetches: Default::default(),
            evicted,
        })
    }

    /// Segment `id` from the cache, else from `fetch` (then cached). Readers that
    /// miss the same segment at once share one fetch.
    pub(super) async fn get<F>(&self, id: u64, fetch: impl Fn() -> F) -> Result<Bytes, SegmentError>
    where
        F: Future<Output = Result<Bytes, opendal::Error>> + Send + 'static,
    {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let fetches = self.fetches.clone();
        let fetch = fetch();
        // Set when this reader's fetch is the one that ran (it leads the others).
        let led = Arc::new(AtomicBool::new(false));
        let leader = led.clone();
        let entry = self
            .cache
            .get_or_fetch(&id, move || async move {
                let data = fetch.await?;
                leader.store(true, Ordering::Relaxed);
                fetches.count.fetch_add(1, Ordering::Relaxed);
                fetches
                    .bytes
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                // Written to the disk files once, below, not again on eviction.
                let props = HybridCacheProperties::default().with_location(Location::InMem);
                Ok::<_, opendal::Error>((data, props))
            })
            .await
            .map_err(fetch_error)?;
        if led.load(Ordering::Relaxed) {
            self.cache.storage().enqueue(entry.piece(), false);
        }
        Ok(entry.value().clone())
    }

    pub(super) fn forget(&self, id: u64) {
        self.cache.remove(&id);
    }

    pub(super) fn counters(&self) -> CacheCounters {
        let misses = self.fetches.count.load(Ordering::Relaxed);
        CacheCounters {
            hits: self.reads.load(Ordering::Relaxed).saturating_sub(misses),
            misses,
            evicted: self.evicted.0.load(Ordering::Relaxed),
            fetched_bytes: self.fetches.bytes.load(Ordering::Relaxed),
        }
    }
}

/// Whether files in `dir` can be opened for direct I/O (not on tmpfs, for one).
fn takes_direct_io(dir: &Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    let probe = dir.join(".direct-io-probe");
    let ok = std::fs::create_dir_all(dir).is_ok()
        && std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(&probe)
            .is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

/// A failed shared fetch comes back wrapped by foyer: the store's own error is
/// rebuilt from it (kind and message), so that callers can tell "not found" and
/// "unavailable" as for an uncached read.
fn fetch_error(e: foyer::Error) -> SegmentError {
    match e.downcast_ref::<opendal::Error>() {
        Some(o) => SegmentError::Store(opendal::Error::new(o.kind(), o.to_string())),
        None => cache_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> CacheSettings {
        CacheSettings {
            memory_mib: 1,
            disk_mib: 64,
            read_ahead: 0,
        }
    }

    #[tokio::test]
    async fn concurrent_misses_of_one_segment_are_one_fetch() {
        let dir = tempfile::tempdir().unwrap();
        let cache = SegmentCache::open(dir.path(), &settings()).await.unwrap();
        let calls = Arc::new(AtomicU64::new(0));
        let segment = Bytes::from(vec![5u8; 1 << 20]);
        let read = || {
            let (calls, segment) = (calls.clone(), segment.clone());
            cache.get(9, move || {
                let (calls, segment) = (calls.clone(), segment.clone());
                async move {
                    calls.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    Ok(segment)
                }
            })
        };
        let got = futures::future::join_all((0..4).map(|_| read())).await;
        for g in got {
            assert_eq!(g.unwrap(), segment);
        }
        assert_eq!(calls.load(Ordering::Relaxed), 1, "each reader fetched");
        let c = cache.counters();
        assert_eq!((c.misses, c.hits, c.fetched_bytes), (1, 3, 1 << 20));
    }

    #[tokio::test]
    async fn a_failed_fetch_keeps_its_kind() {
        let dir = tempfile::tempdir().unwrap();
        let cache = SegmentCache::open(dir.path(), &settings()).await.unwrap();
        let err = cache
            .get(3, || async {
                Err(opendal::Error::new(opendal::ErrorKind::NotFound, "gone"))
            })
            .await
            .unwrap_err();
        assert!(err.is_not_found(), "{err}");
    }

    #[tokio::test]
    async fn hits_are_served_and_a_damaged_disk_entry_is_fetched_again() {
        let dir = tempfile::tempdir().unwrap();
        let good = Bytes::from(vec![7u8; 3 << 20]);
        let serve = |b: Bytes| move || std::future::ready(Ok(b.clone()));
        {
            let cache = SegmentCache::open(dir.path(), &settings()).await.unwrap();
            let got = cache.get(1, serve(good.clone())).await.unwrap();
            assert_eq!(got, good);
            let again = cache
                .get(1, serve(Bytes::from_static(b"a hit fetched")))
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
        let cache = SegmentCache::open(dir.path(), &settings()).await.unwrap();
        let got = cache.get(1, serve(good.clone())).await.unwrap();
        assert_eq!(got, good, "damaged bytes were served");
        assert_eq!(
            cache.counters().misses,
            1,
            "the damaged entry was not fetched again"
        );
    }
}
