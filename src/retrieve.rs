//! `retrieve` owns the read path: manifest range -> chunk locations -> merged ranged
//! segment reads with prefetch -> decompress -> verify -> stream out.
//!
//! Invariants:
//! - Every chunk is checked against its BLAKE3 id after decompression; a mismatch is
//!   an error (logged with segment and chunk, counted in
//!   `hoard_integrity_errors_total`), never served.
//! - The first read group is fetched and verified before the response starts, so a
//!   damaged chunk there turns into a 500; a damage found later can only abort the
//!   body, which the client sees as a truncated transfer, never as wrong bytes.
//! - Memory per GET is bounded by `get_prefetch` reads of at most `get_read_max`
//!   bytes, plus one channel slot. From an object store, each window of chunk
//!   lookups also asks the segment store to read its segments ahead into the restore
//!   cache, whose memory is bounded by its own size.

use std::collections::VecDeque;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;

use crate::chunk_codec::decode_stored;
use crate::meta::{
    ChunkId, ChunkLocation, ChunkRef, MetaError, MetaStore, ObjectData, ObjectRecord,
};
use crate::metrics::Metrics;
use crate::segments::{SegmentError, SegmentStore};

/// Chunk locations looked up per metadata read.
const LOOKUP_WINDOW: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum RetrieveError {
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error("chunk {chunk} is missing from the index")]
    Missing { chunk: String },
    #[error("chunk {chunk} in segment {segment:016x} failed verification: {reason}")]
    Corrupt {
        segment: u64,
        chunk: String,
        reason: String,
    },
    #[error("read worker failed: {0}")]
    Worker(String),
}

/// One ranged read of a segment covering consecutive chunks of the object.
struct ReadPlan {
    segment: u64,
    start: u64,
    end: u64,
    chunks: Vec<PlannedChunk>,
}

struct PlannedChunk {
    id: ChunkId,
    loc: ChunkLocation,
    /// Bytes of the raw chunk to skip and then to keep (range trimming).
    skip: usize,
    take: usize,
}

pub struct Retrieve {
    meta: MetaStore,
    segments: SegmentStore,
    metrics: Arc<Metrics>,
    prefetch: usize,
    read_max: u64,
}

/// The body of a GET: verified bytes in order.
pub struct ObjectBody {
    first: VecDeque<Bytes>,
    rx: Option<mpsc::Receiver<Result<Vec<Bytes>, RetrieveError>>>,
    metrics: Arc<Metrics>,
}

impl Stream for ObjectBody {
    type Item = Result<Bytes, RetrieveError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(b) = self.first.pop_front() {
                self.metrics.bytes_out.inc_by(b.len() as u64);
                return Poll::Ready(Some(Ok(b)));
            }
            let Some(rx) = self.rx.as_mut() else {
                return Poll::Ready(None);
            };
            match rx.poll_recv(cx) {
                Poll::Ready(Some(Ok(group))) => self.first.extend(group),
                Poll::Ready(Some(Err(e))) => {
                    self.rx = None;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    self.rx = None;
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Retrieve {
    pub fn new(
        meta: MetaStore,
        segments: SegmentStore,
        metrics: Arc<Metrics>,
        prefetch: usize,
        read_max: usize,
    ) -> Self {
        Retrieve {
            meta,
            segments,
            metrics,
            prefetch: prefetch.max(1),
            read_max: read_max.max(64 * 1024) as u64,
        }
    }

    /// Opens `range` of the object for reading. Fails (before any byte is sent)
    /// when the first read group cannot be read or verified.
    pub async fn open(
        self: &Arc<Self>,
        rec: &ObjectRecord,
        range: Range<u64>,
    ) -> Result<ObjectBody, RetrieveError> {
        if let ObjectData::Inline(d) = &rec.data {
            let s = range.start as usize;
            let e = (range.end as usize).min(d.len());
            let first = if s < e {
                VecDeque::from([Bytes::copy_from_slice(&d[s..e])])
            } else {
                VecDeque::new()
            };
            return Ok(ObjectBody {
                first,
                rx: None,
                metrics: self.metrics.clone(),
            });
        }
        // The manifests that overlap the range, with the object offset each starts at.
        let mut pieces = Vec::new();
        let mut pos = 0u64;
        for (manifest, size) in rec.manifests() {
            if pos < range.end && pos + size > range.start {
                pieces.push((manifest, pos));
            }
            pos += size;
        }
        let (tx, mut rx) = mpsc::channel(1);
        let this = self.clone();
        tokio::spawn(async move { this.produce(pieces, range, tx).await });
        let first = match rx.recv().await {
            Some(Ok(group)) => VecDeque::from(group),
            Some(Err(e)) => return Err(e),
            None => VecDeque::new(),
        };
        Ok(ObjectBody {
            first,
            rx: Some(rx),
            metrics: self.metrics.clone(),
        })
    }

    /// Streams the verified bytes of `range`, reading one manifest at a time from
    /// `pieces` (manifest id, object offset where it starts).
    async fn produce(
        self: Arc<Self>,
        pieces: Vec<(u64, u64)>,
        range: Range<u64>,
        tx: mpsc::Sender<Result<Vec<Bytes>, RetrieveError>>,
    ) {
        let meta = self.meta.clone();
        let (r1, r2) = (range.clone(), range.clone());
        let windows = futures::stream::iter(pieces)
            .then(move |(manifest, start)| {
                let meta = meta.clone();
                let range = r1.clone();
                async move {
                    let chunks = meta.get_manifest(manifest).await?;
                    Ok(select_windows(chunks, start, &range))
                }
            })
            .flat_map(
                |r: Result<Vec<Vec<(ChunkRef, u64)>>, RetrieveError>| match r {
                    Ok(ws) => futures::stream::iter(ws.into_iter().map(Ok).collect::<Vec<_>>()),
                    Err(e) => futures::stream::iter(vec![Err(e)]),
                },
            );
        let this = self.clone();
        let plans = windows
            .then(move |w| {
                let this = this.clone();
                let range = r2.clone();
                async move { this.plan(w?, range).await }
            })
            .flat_map(|r: Result<Vec<ReadPlan>, RetrieveError>| match r {
                Ok(plans) => futures::stream::iter(plans.into_iter().map(Ok).collect::<Vec<_>>()),
                Err(e) => futures::stream::iter(vec![Err(e)]),
            });
        let this = self.clone();
        let groups = plans
            .map(move |p| {
                let this = this.clone();
                async move { this.execute(p?).await }
            })
            .buffered(self.prefetch);
        let mut groups = std::pin::pin!(groups);
        while let Some(group) = groups.next().await {
            let failed = group.is_err();
            if tx.send(group).await.is_err() || failed {
                return;
            }
        }
    }

    async fn plan(
        &self,
        window: Vec<(ChunkRef, u64)>,
        range: Range<u64>,
    ) -> Result<Vec<ReadPlan>, RetrieveError> {
        let locations = self
            .meta
            .chunk_locations(window.iter().map(|(c, _)| c.id).collect())
            .await?;
        let mut plans: Vec<ReadPlan> = Vec::new();
        for ((c, pos), loc) in window.into_iter().zip(locations) {
            let loc = loc.ok_or_else(|| {
                let chunk = hex::encode(c.id);
                tracing::error!(%chunk, "chunk named by a manifest has no index row");
                RetrieveError::Missing { chunk }
            })?;
            let from = range.start.max(pos);
            let to = range.end.min(pos + u64::from(c.len));
            let planned = PlannedChunk {
                id: c.id,
                loc,
                skip: (from - pos) as usize,
                take: (to - from) as usize,
            };
            let (s, e) = (
                u64::from(loc.offset),
                u64::from(loc.offset) + u64::from(loc.stored_len),
            );
            match plans.last_mut() {
                Some(p)
                    if p.segment == loc.segment && p.end == s && e - p.start <= self.read_max =>
                {
                    p.end = e;
                    p.chunks.push(planned);
                }
                _ => plans.push(ReadPlan {
                    segment: loc.segment,
                    start: s,
                    end: e,
                    chunks: vec![planned],
                }),
            }
        }
        let mut segments: Vec<u64> = plans.iter().map(|p| p.segment).collect();
        segments.dedup();
        self.segments.read_ahead(segments);
        Ok(plans)
    }

    async fn execute(&self, plan: ReadPlan) -> Result<Vec<Bytes>, RetrieveError> {
        let data = match self
            .segments
            .read_range(plan.segment, plan.start..plan.end)
            .await
        {
            Ok(d) => d,
            Err(e) if e.is_not_found() => return Box::pin(self.relocate(plan)).await,
            Err(e) => return Err(e.into()),
        };
        self.decode_verified(plan, data).await
    }

    /// The cleaner compacted the segment away after this read was planned: looks the
    /// chunks up again and reads each from where it is now (once; a chunk whose
    /// location did not change is missing for real).
    async fn relocate(&self, plan: ReadPlan) -> Result<Vec<Bytes>, RetrieveError> {
        let ids: Vec<ChunkId> = plan.chunks.iter().map(|c| c.id).collect();
        let locations = self.meta.chunk_locations(ids).await?;
        let mut out = Vec::with_capacity(plan.chunks.len());
        for (c, loc) in plan.chunks.into_iter().zip(locations) {
            let loc = match loc {
                Some(l) if l.segment != plan.segment => l,
                _ => {
                    return Err(RetrieveError::Missing {
                        chunk: hex::encode(c.id),
                    });
                }
            };
            let (start, end) = (
                u64::from(loc.offset),
                u64::from(loc.offset) + u64::from(loc.stored_len),
            );
            let data = self.segments.read_range(loc.segment, start..end).await?;
            let single = ReadPlan {
                segment: loc.segment,
                start,
                end,
                chunks: vec![PlannedChunk { loc, ..c }],
            };
            out.extend(self.decode_verified(single, data).await?);
        }
        Ok(out)
    }

    async fn decode_verified(
        &self,
        plan: ReadPlan,
        data: Bytes,
    ) -> Result<Vec<Bytes>, RetrieveError> {
        let segments = self.segments.clone();
        let decoded = tokio::task::spawn_blocking(move || decode(&segments, &plan, &data))
            .await
            .map_err(|e| RetrieveError::Worker(e.to_string()))?;
        if let Err(e) = &decoded {
            self.metrics.integrity_errors.inc();
            tracing::error!(error = %e, "integrity check failed on read; the object is not served");
        }
        decoded
    }
}

/// The chunks of one manifest (starting at object offset `pos`) that overlap
/// `range`, with their object offsets, cut into lookup windows.
fn select_windows(
    manifest: Vec<ChunkRef>,
    mut pos: u64,
    range: &Range<u64>,
) -> Vec<Vec<(ChunkRef, u64)>> {
    let mut selected: Vec<(ChunkRef, u64)> = Vec::new();
    for c in manifest {
        if pos >= range.end {
            break;
        }
        let end = pos + u64::from(c.len);
        if end > range.start {
            selected.push((c, pos));
        }
        pos = end;
    }
    selected.chunks(LOOKUP_WINDOW).map(<[_]>::to_vec).collect()
}

/// Decompresses and verifies each chunk of a read group, then trims to the range.
fn decode(
    segments: &SegmentStore,
    plan: &ReadPlan,
    data: &Bytes,
) -> Result<Vec<Bytes>, RetrieveError> {
    let mut out = Vec::with_capacity(plan.chunks.len());
    for c in &plan.chunks {
        let at = (u64::from(c.loc.offset) - plan.start) as usize;
        let stored = data.slice(at..at + c.loc.stored_len as usize);
        let raw = decode_stored(segments, &c.id, &c.loc, stored).map_err(|reason| {
            RetrieveError::Corrupt {
                segment: plan.segment,
                chunk: hex::encode(c.id),
                reason,
            }
        })?;
        if c.skip + c.take > raw.len() {
            return Err(RetrieveError::Corrupt {
                segment: plan.segment,
                chunk: hex::encode(c.id),
                reason: "manifest length disagrees with the index".into(),
            });
        }
        out.push(raw.slice(c.skip..c.skip + c.take));
    }
    Ok(out)
}
