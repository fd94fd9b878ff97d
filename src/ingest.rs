//! `ingest` owns the write path: stream permits, MD5 and requested checksums,
//! FastCDC chunking, BLAKE3 ids, the dedup lookup, compression, segment assembly and
//! the references an upload holds until it commits.
//!
//! ```text
//! body --> (async reader) --+--> hasher thread: MD5 + requested checksums
//!                           \--> chunker thread: FastCDC -> BLAKE3 -> known? -> compress -> segment
//!                                    sealed segment --> task: durable write --> index rows
//! ```
//!
//! Invariants:
//! - Memory per stream is bounded by the channels (a few body frames), one open
//!   segment, two sealed segments in flight and a batch of chunks awaiting their
//!   reference; never by the object's size (the manifest itself grows by 36 bytes per
//!   chunk).
//! - A chunk found in the index is not relied on before a reference on it is taken
//!   (`take_refs_blocking`); if its row vanished meanwhile the chunk is stored anew.
//!   Its bytes are kept until then.
//! - A segment's index rows are added only after the segment is durable.
//! - Every reference taken is recorded under the upload's hold (`meta::held`) in the
//!   transaction that takes it, and is either taken over by the commit (the
//!   manifest names each chunk exactly as often as references are held) or released
//!   when the upload does not commit: [`HeldRefs`] releases the hold when the last of
//!   its owners lets go, the request's future or the chunker thread, which outlives
//!   a dropped future until its segments in flight are indexed.
//! - A body that ends without its end mark (the request's future was dropped) is
//!   not sealed: the chunker stops and writes nothing more.
//! - Hashing and compression run on blocking threads, never on the async executor.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use s3s::crypto::Checksum as _;
use tokio::runtime::Handle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;

use crate::board::{Board, OnBoard};
use crate::chunk_codec::ChunkEncoder;
use crate::index::ChunkIndex;
use crate::meta::{
    ChunkId, ChunkParams, ChunkRef, HeldRefs, Holder, MetaError, MetaStore, NewChunk, now_ms,
};
use crate::metrics::Metrics;
use crate::segments::{SegmentBuilder, SegmentError, SegmentStore};

/// Body bytes are handed to the worker threads in batches of this size, at most
/// `BATCH_QUEUE` batches ahead, so a burst of work on one side does not stall the
/// other.
const BATCH_BYTES: usize = 1024 * 1024;
const BATCH_QUEUE: usize = 4;
/// Sealed segments a stream may have in flight before it waits.
const SEGMENTS_IN_FLIGHT: usize = 2;
/// Known chunks awaiting one batched reference take.
const KNOWN_BATCH: usize = 256;
const KNOWN_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Segment ids reserved per metadata round trip.
const SEGMENT_ID_BLOCK: u64 = 256;

/// The largest body one PUT or part may carry (as S3): it bounds one manifest.
pub const MAX_BODY_BYTES: u64 = 5 << 30;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("too many concurrent uploads; retry later")]
    SlowDown,
    #[error("reading the request body failed: {0}")]
    Body(s3s::StdError),
    #[error("the body had {got} bytes but {expected} were declared")]
    Incomplete { got: u64, expected: u64 },
    #[error("the body is larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error("ingest worker failed: {0}")]
    Worker(String),
    #[error("the upload was cancelled before its body ended")]
    Cancelled,
}

/// Which checksums to compute besides MD5.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChecksumSet {
    pub crc32: bool,
    pub crc32c: bool,
    pub crc64nvme: bool,
    pub sha1: bool,
    pub sha256: bool,
}

impl ChecksumSet {
    /// The set holding one algorithm, named as S3 spells it.
    pub fn of(alg: &str) -> ChecksumSet {
        ChecksumSet {
            crc32: alg == "CRC32",
            crc32c: alg == "CRC32C",
            crc64nvme: alg == "CRC64NVME",
            sha1: alg == "SHA1",
            sha256: alg == "SHA256",
        }
    }

    /// This set and `alg` too.
    pub fn and(self, alg: &str) -> ChecksumSet {
        let one = ChecksumSet::of(alg);
        ChecksumSet {
            crc32: self.crc32 || one.crc32,
            crc32c: self.crc32c || one.crc32c,
            crc64nvme: self.crc64nvme || one.crc64nvme,
            sha1: self.sha1 || one.sha1,
            sha256: self.sha256 || one.sha256,
        }
    }

    pub fn hasher(&self) -> s3s::checksum::ChecksumHasher {
        use s3s::crypto::{Crc32, Crc32c, Crc64Nvme, Sha1, Sha256};
        s3s::checksum::ChecksumHasher {
            crc32: self.crc32.then(Crc32::new),
            crc32c: self.crc32c.then(Crc32c::new),
            crc64nvme: self.crc64nvme.then(Crc64Nvme::new),
            sha1: self.sha1.then(Sha1::new),
            sha256: self.sha256.then(Sha256::new),
        }
    }
}

/// What one upload asks of the pipeline.
#[derive(Debug, Clone)]
pub struct IngestParams {
    pub bucket: String,
    pub chunking: ChunkParams,
    pub compression_level: i32,
    pub checksums: ChecksumSet,
    /// The declared decoded length, checked against what arrives.
    pub expected_len: Option<u64>,
    /// Whether a small body may stay inline (objects) or must be chunked (parts,
    /// whose manifests are joined on completion).
    pub inline: bool,
}

/// A slot among the `max_streams` concurrent ingest streams.
pub struct StreamPermit {
    _permit: OwnedSemaphorePermit,
    metrics: Arc<Metrics>,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        self.metrics.active_streams.dec();
    }
}

pub enum IngestedBody {
    Inline(Vec<u8>),
    Chunked(Vec<ChunkRef>),
}

/// A fully received body, not yet committed.
pub struct Ingested {
    pub size: u64,
    pub md5: [u8; 16],
    pub checksums: s3s::dto::Checksum,
    pub body: IngestedBody,
    /// The upload's hold: its id goes to the commit, which takes the references
    /// over; then `disarm` it. Dropped armed, it releases them.
    pub held: Arc<HeldRefs>,
}

pub struct IngestSettings {
    pub max_streams: usize,
    pub stream_wait: Duration,
    pub segment_size: usize,
    pub inline_max: usize,
}

pub struct Ingest {
    meta: MetaStore,
    index: Arc<ChunkIndex>,
    segments: SegmentStore,
    metrics: Arc<Metrics>,
    permits: Arc<Semaphore>,
    settings: IngestSettings,
    segment_ids: Mutex<Range<u64>>,
    /// The streams in progress (label: the bucket, in bytes), for the dashboard.
    pub streams: Arc<Board>,
}

impl Ingest {
    pub fn new(
        meta: MetaStore,
        index: Arc<ChunkIndex>,
        segments: SegmentStore,
        metrics: Arc<Metrics>,
        settings: IngestSettings,
    ) -> Ingest {
        Ingest {
            permits: Arc::new(Semaphore::new(settings.max_streams)),
            meta,
            index,
            segments,
            metrics,
            settings,
            segment_ids: Mutex::new(0..0),
            streams: Arc::new(Board::default()),
        }
    }

    /// Waits up to the configured time for a stream slot.
    pub async fn acquire(&self) -> Result<StreamPermit, IngestError> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                self.metrics.stream_waits.inc();
                let waited = tokio::time::timeout(
                    self.settings.stream_wait,
                    self.permits.clone().acquire_owned(),
                )
                .await;
                let Ok(Ok(p)) = waited else {
                    self.metrics.stream_refusals.inc();
                    return Err(IngestError::SlowDown);
                };
                p
            }
        };
        self.metrics.active_streams.inc();
        Ok(StreamPermit {
            _permit: permit,
            metrics: self.metrics.clone(),
        })
    }

    /// Receives a whole body through the pipeline. Nothing is visible until the
    /// caller commits the result.
    pub async fn ingest<S, E>(
        self: &Arc<Self>,
        _permit: &StreamPermit,
        params: IngestParams,
        mut body: S,
    ) -> Result<Ingested, IngestError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Into<s3s::StdError>,
    {
        let held = Arc::new(HeldRefs::new(&self.meta)?);
        let board = self.streams.enter(
            &params.bucket,
            "bytes",
            params.expected_len.unwrap_or(0),
            now_ms(),
        );
        // Small bodies stay inline: read up to inline_max + 1 bytes first.
        let inline_max = if params.inline {
            self.settings.inline_max
        } else {
            0
        };
        let (head, first_big) = self.read_head(&mut body, inline_max).await?;
        let Some(first_big) = first_big else {
            return inline_body(head, &params, held);
        };

        let (hash_tx, hash_rx) = mpsc::channel::<Bytes>(BATCH_QUEUE);
        let (chunk_tx, chunk_rx) = mpsc::channel::<Bytes>(BATCH_QUEUE);
        let wanted = params.checksums;
        let hasher = tokio::task::spawn_blocking(move || run_hasher(hash_rx, wanted));
        let this = self.clone();
        let handle = Handle::current();
        let chunker_params = params.clone();
        let chunker_held = held.clone();
        let chunker = tokio::task::spawn_blocking(move || {
            // Gateways sharing the index: the chunks other gateways stored up to
            // now count as known (the body queues meanwhile).
            this.index.catch_up_blocking();
            Chunker::new(&this, handle, &chunker_params, chunker_held).run(chunk_rx)
        });

        let mut batch = BytesMut::with_capacity(BATCH_BYTES + first_big.len());
        batch.extend_from_slice(&head);
        batch.extend_from_slice(&first_big);
        let (total, read_result) = self
            .feed(&mut body, batch, &hash_tx, &chunk_tx, &board)
            .await;
        drop(hash_tx);
        drop(chunk_tx);
        let (md5, checksums) = hasher
            .await
            .map_err(|e| IngestError::Worker(e.to_string()))?;
        let chunked = chunker
            .await
            .map_err(|e| IngestError::Worker(e.to_string()))?;
        read_result?;
        let manifest = chunked?;
        check_len(total, params.expected_len)?;
        Ok(Ingested {
            size: total,
            md5,
            checksums,
            body: IngestedBody::Chunked(manifest),
            held,
        })
    }

    /// Reads the body until it passes `inline_max`: the bytes read before, and the
    /// frame that passed it (`None`: the whole body is in the head).
    async fn read_head<S, E>(
        &self,
        body: &mut S,
        inline_max: usize,
    ) -> Result<(Vec<u8>, Option<Bytes>), IngestError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Into<s3s::StdError>,
    {
        let mut head: Vec<u8> = Vec::new();
        while let Some(frame) = body.next().await {
            let frame = frame.map_err(|e| IngestError::Body(e.into()))?;
            self.metrics.bytes_in.inc_by(frame.len() as u64);
            if head.len() + frame.len() > inline_max {
                return Ok((head, Some(frame)));
            }
            head.extend_from_slice(&frame);
        }
        Ok((head, None))
    }

    /// Reads the rest of the body into batches of `BATCH_BYTES` for the hasher and
    /// the chunker, starting with `batch`; sends the end mark when the body ended.
    /// Returns the body's size so far and how reading ended.
    async fn feed<S, E>(
        &self,
        body: &mut S,
        mut batch: BytesMut,
        hash_tx: &mpsc::Sender<Bytes>,
        chunk_tx: &mpsc::Sender<Bytes>,
        board: &OnBoard,
    ) -> (u64, Result<(), IngestError>)
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Into<s3s::StdError>,
    {
        let mut total = batch.len() as u64;
        loop {
            let last = match body.next().await {
                Some(Ok(f)) => {
                    self.metrics.bytes_in.inc_by(f.len() as u64);
                    total += f.len() as u64;
                    if total > MAX_BODY_BYTES {
                        // A body without a declared length is cut off here.
                        return (total, Err(IngestError::TooLarge));
                    }
                    batch.extend_from_slice(&f);
                    false
                }
                Some(Err(e)) => return (total, Err(IngestError::Body(e.into()))),
                None => true,
            };
            if batch.len() >= BATCH_BYTES || (last && !batch.is_empty()) {
                let frame = batch.split().freeze();
                batch.reserve(BATCH_BYTES);
                board.set_done(total);
                if hash_tx.send(frame.clone()).await.is_err() || chunk_tx.send(frame).await.is_err()
                {
                    // A worker stopped early; its own result says why.
                    return (total, Ok(()));
                }
            }
            if last {
                // The end mark: the chunker seals only a body that ended.
                let _ = chunk_tx.send(Bytes::new()).await;
                return (total, Ok(()));
            }
        }
    }

    fn next_segment_id(&self) -> Result<u64, IngestError> {
        let mut ids = self
            .segment_ids
            .lock()
            .map_err(|_| IngestError::Worker("segment id lock poisoned".into()))?;
        if ids.is_empty() {
            // Gateways sharing the metadata take one id per segment, so that ids
            // follow the order segments are sealed in across the cluster: each
            // gateway's chunk filter catches up with the others' new segments by
            // reading the ids above the last it saw (`ChunkIndex::refresh_blocking`).
            let block = if self.meta.is_shared() {
                1
            } else {
                SEGMENT_ID_BLOCK
            };
            *ids = self.meta.allocate_segment_ids_blocking(block)?;
        }
        let id = ids.start;
        ids.start += 1;
        Ok(id)
    }
}

fn check_len(got: u64, expected: Option<u64>) -> Result<(), IngestError> {
    match expected {
        Some(expected) if expected != got => Err(IngestError::Incomplete { got, expected }),
        _ => Ok(()),
    }
}

fn run_hasher(
    mut rx: mpsc::Receiver<Bytes>,
    wanted: ChecksumSet,
) -> ([u8; 16], s3s::dto::Checksum) {
    let mut md5 = s3s::crypto::Md5::new();
    let mut sums = wanted.hasher();
    while let Some(frame) = rx.blocking_recv() {
        md5.update(&frame);
        sums.update(&frame);
    }
    (md5.finalize(), sums.finalize())
}

/// A body small enough to be kept inline: checked, hashed, no chunk stored.
fn inline_body(
    head: Vec<u8>,
    params: &IngestParams,
    held: Arc<HeldRefs>,
) -> Result<Ingested, IngestError> {
    check_len(head.len() as u64, params.expected_len)?;
    let mut md5 = s3s::crypto::Md5::new();
    md5.update(&head);
    let mut hasher = params.checksums.hasher();
    hasher.update(&head);
    Ok(Ingested {
        size: head.len() as u64,
        md5: md5.finalize(),
        checksums: hasher.finalize(),
        body: IngestedBody::Inline(head),
        held,
    })
}

type SegmentTask = JoinHandle<Result<(), IngestError>>;

/// The per-stream chunking state, run on one blocking thread.
struct Chunker<'a> {
    ingest: &'a Arc<Ingest>,
    handle: Handle,
    bucket: String,
    params: ChunkParams,
    masks: (u64, u64),
    encoder: ChunkEncoder,
    buf: Vec<u8>,
    pos: usize,
    manifest: Vec<ChunkRef>,
    /// Chunks this stream holds, or will hold, a reference on.
    seen: HashSet<ChunkId>,
    /// The hold every reference this stream takes is recorded under.
    held: Arc<HeldRefs>,
    /// Further occurrences of seen chunks, taken once all segments are indexed.
    extra: HashMap<ChunkId, u32>,
    known: Vec<(ChunkId, Vec<u8>)>,
    known_bytes: usize,
    open: SegmentBuilder,
    open_chunks: Vec<NewChunk>,
    in_flight: VecDeque<SegmentTask>,
}

impl<'a> Chunker<'a> {
    fn new(ingest: &'a Arc<Ingest>, handle: Handle, p: &IngestParams, held: Arc<HeldRefs>) -> Self {
        let masks = fastcdc::v2020::select_masks(
            p.chunking.avg as usize,
            fastcdc::v2020::Normalization::Level1,
        );
        Chunker {
            ingest,
            handle,
            bucket: p.bucket.clone(),
            params: p.chunking,
            masks,
            encoder: ChunkEncoder::new(p.compression_level),
            buf: Vec::new(),
            pos: 0,
            manifest: Vec::new(),
            seen: HashSet::new(),
            held,
            extra: HashMap::new(),
            known: Vec::new(),
            known_bytes: 0,
            open: ingest
                .segments
                .builder(ingest.settings.segment_size + 64 * 1024),
            open_chunks: Vec::new(),
            in_flight: VecDeque::new(),
        }
    }

    /// Consumes the frames up to the end mark (an empty frame); returns the manifest
    /// or the error. The stream's hold is let go only after its segments in flight
    /// are indexed (recorded under it), whatever happened.
    fn run(mut self, mut rx: mpsc::Receiver<Bytes>) -> Result<Vec<ChunkRef>, IngestError> {
        let result = self.consume(&mut rx);
        drop(rx);
        let joined = self.join_all();
        result.and(joined).and_then(|()| self.take_extra_refs())?;
        Ok(std::mem::take(&mut self.manifest))
    }

    fn consume(&mut self, rx: &mut mpsc::Receiver<Bytes>) -> Result<(), IngestError> {
        loop {
            match rx.blocking_recv() {
                Some(frame) if frame.is_empty() => break,
                Some(frame) => {
                    self.buf.extend_from_slice(&frame);
                    self.cut(false)?;
                }
                None => return Err(IngestError::Cancelled),
            }
        }
        self.cut(true)?;
        self.flush_known()?;
        self.seal()
    }

    /// Cuts every chunk whose end is certain (all of them at end of stream).
    fn cut(&mut self, eof: bool) -> Result<(), IngestError> {
        let ChunkParams { min, avg, max } = self.params;
        let (ms, ml) = self.masks;
        let buf = std::mem::take(&mut self.buf);
        let mut result = Ok(());
        loop {
            let avail = buf.len() - self.pos;
            if avail == 0 || (!eof && avail < max as usize) {
                break;
            }
            let src = &buf[self.pos..];
            let (_, n) = fastcdc::v2020::cut(
                src,
                min as usize,
                avg as usize,
                max as usize,
                ms,
                ml,
                ms << 1,
                ml << 1,
            );
            let n = if n == 0 { avail } else { n };
            if let Err(e) = self.chunk(&buf[self.pos..self.pos + n]) {
                result = Err(e);
                break;
            }
            self.pos += n;
        }
        self.buf = buf;
        if self.pos > 0 && (self.pos >= self.buf.len() / 2 || eof) {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        result
    }

    fn chunk(&mut self, data: &[u8]) -> Result<(), IngestError> {
        let id = *blake3::hash(data).as_bytes();
        self.manifest.push(ChunkRef {
            id,
            len: data.len() as u32,
        });
        if !self.seen.insert(id) {
            *self.extra.entry(id).or_default() += 1;
            return Ok(());
        }
        if self.ingest.index.probably_known_blocking(&id)? {
            self.known.push((id, data.to_vec()));
            self.known_bytes += data.len();
            if self.known.len() >= KNOWN_BATCH || self.known_bytes >= KNOWN_BATCH_BYTES {
                self.flush_known()?;
            }
            return Ok(());
        }
        self.store_new(id, data)
    }

    /// Takes references on the chunks found in the index; stores anew those whose
    /// row is gone.
    fn flush_known(&mut self) -> Result<(), IngestError> {
        if self.known.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.known);
        self.known_bytes = 0;
        let found = self.ingest.meta.take_refs_blocking(
            batch.iter().map(|(id, _)| (*id, 1)).collect(),
            self.held.hold().next_batch(),
        )?;
        for ((id, bytes), found) in batch.into_iter().zip(found) {
            if !found {
                self.store_new(id, &bytes)?;
            }
        }
        Ok(())
    }

    fn store_new(&mut self, id: ChunkId, data: &[u8]) -> Result<(), IngestError> {
        let (codec, payload) = self
            .encoder
            .encode(data)
            .map_err(|e| IngestError::Worker(e.to_string()))?;
        let e = self.open.push(id, data.len() as u32, codec, payload);
        self.open_chunks.push(NewChunk {
            id,
            offset: e.offset,
            stored_len: e.stored_len,
            raw_len: e.raw_len,
            codec,
            refs: 1,
        });
        if self.open.len() >= self.ingest.settings.segment_size {
            self.seal()?;
        }
        Ok(())
    }

    /// Hands the open segment to a task that writes it durably and then indexes it.
    fn seal(&mut self) -> Result<(), IngestError> {
        if self.open.is_empty() {
            return Ok(());
        }
        let builder = std::mem::replace(
            &mut self.open,
            self.ingest
                .segments
                .builder(self.ingest.settings.segment_size + 64 * 1024),
        );
        let chunks = std::mem::take(&mut self.open_chunks);
        let (data, _) = builder.finish();
        let id = self.ingest.next_segment_id()?;
        while self.in_flight.len() >= SEGMENTS_IN_FLIGHT {
            self.join_one()?;
        }
        let ingest = self.ingest.clone();
        let bucket = self.bucket.clone();
        let holder = Holder::Upload(self.held.hold().next_batch());
        let task = self.handle.spawn(async move {
            let size = data.len() as u64;
            ingest.segments.write(id, data).await?;
            ingest.metrics.segments_written.inc();
            ingest
                .meta
                .add_segment(&bucket, id, size, chunks.clone(), Some(holder))
                .await?;
            ingest.index.note_indexed(chunks.iter().map(|c| &c.id));
            Ok(())
        });
        self.in_flight.push_back(task);
        Ok(())
    }

    fn join_one(&mut self) -> Result<(), IngestError> {
        let Some(task) = self.in_flight.pop_front() else {
            return Ok(());
        };
        self.handle
            .block_on(task)
            .map_err(|e| IngestError::Worker(e.to_string()))?
    }

    fn join_all(&mut self) -> Result<(), IngestError> {
        let mut first_err = Ok(());
        while !self.in_flight.is_empty() {
            if let Err(e) = self.join_one()
                && first_err.is_ok()
            {
                first_err = Err(e);
            }
        }
        first_err
    }

    /// Repeated occurrences: this stream already holds a reference on each chunk, so
    /// these takes cannot miss.
    fn take_extra_refs(&mut self) -> Result<(), IngestError> {
        if self.extra.is_empty() {
            return Ok(());
        }
        let extra: Vec<(ChunkId, u32)> = self.extra.drain().collect();
        let found = self
            .ingest
            .meta
            .take_refs_blocking(extra.clone(), self.held.hold().next_batch())?;
        match extra.iter().zip(found).find(|(_, ok)| !ok) {
            Some(((id, _), _)) => Err(IngestError::Worker(format!(
                "chunk {} lost its index row while referenced",
                hex::encode(id)
            ))),
            None => Ok(()),
        }
    }
}
