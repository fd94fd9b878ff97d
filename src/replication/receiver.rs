//! The replica side of the protocol: the endpoints under `replication::PREFIX`.
//! Callers must hold the `replication` grant (or admin) on the bucket they name;
//! every endpoint but the hello needs the bucket to be a replica.

use std::sync::Arc;

use http::{Method, StatusCode, Uri};
use s3s::{Body, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

use super::{Hello, ReplicaBuckets, wire};
use crate::http_json::{json, json_body_required, query_param};
use crate::index::ChunkIndex;
use crate::meta::{
    ChunkId, ChunkLocation, ChunkRef, HeldRefs, HoldId, Holder, MetaError, MetaStore, NewChunk,
    ObjectRecord, Permission, VersionStamp,
};
use crate::metrics::{Metrics, SideLabels};
use crate::s3_error::{internal, meta_error, no_such_bucket};
use crate::segments::SegmentStore;
use crate::users::Users;

/// Where received chunks and objects go.
pub struct Store {
    pub meta: MetaStore,
    pub segments: SegmentStore,
    pub index: Arc<ChunkIndex>,
    pub segment_size: usize,
    /// The replica's own retention clock: it judges the locks of what it holds.
    pub clock: Arc<crate::retention::RetentionClock>,
}

/// Requests a replica handles at once: each may hold a body of up to
/// `wire::MAX_BODY`, so this bounds the memory a source (or a hostile peer) can make
/// it hold.
const CONCURRENT_REQUESTS: usize = 8;
/// How long a request waits for its turn before `503 SlowDown` (the source retries).
const REQUEST_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

pub struct Receiver {
    replicas: Arc<ReplicaBuckets>,
    users: Arc<Users>,
    metrics: Arc<Metrics>,
    store: Arc<Store>,
    turns: Arc<tokio::sync::Semaphore>,
}

impl Receiver {
    pub fn new(
        replicas: Arc<ReplicaBuckets>,
        users: Arc<Users>,
        metrics: Arc<Metrics>,
        store: Arc<Store>,
    ) -> Self {
        Receiver {
            replicas,
            users,
            metrics,
            store,
            turns: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_REQUESTS)),
        }
    }

    /// The signer must hold `replication` (or `admin`) on the bucket the request names.
    pub fn check_access(&self, req: &S3Request<Body>) -> S3Result<()> {
        let who = req
            .credentials
            .as_ref()
            .and_then(|c| self.users.principal(&c.access_key))
            .ok_or_else(|| s3_error!(AccessDenied, "Access Denied"))?;
        let bucket = bucket_of(&req.uri)?;
        match who.permission(&bucket) {
            Some(Permission::Replication | Permission::Admin) => Ok(()),
            _ => {
                tracing::info!(user = who.name(), bucket, "replication endpoint refused");
                Err(s3_error!(
                    AccessDenied,
                    "Replication needs a key with the replication grant on the replica bucket."
                ))
            }
        }
    }

    pub async fn call(&self, req: S3Request<Body>) -> S3Result<S3Response<Body>> {
        let path = req.uri.path().strip_prefix(super::PREFIX).unwrap_or("");
        let bucket = bucket_of(&req.uri)?;
        if path == "hello" && req.method == Method::POST {
            return self.hello(&bucket, req.input).await;
        }
        // Data goes only into a bucket that is a replica now (not promoted).
        if !self.replicas.contains(&bucket) {
            return Err(s3_error!(
                AccessDenied,
                "The bucket is not a replica (never said hello, or promoted)."
            ));
        }
        let _turn = tokio::time::timeout(REQUEST_WAIT, self.turns.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or_else(|| {
                s3_error!(
                    SlowDown,
                    "The replica is busy with other replication requests; retry later."
                )
            })?;
        match (&req.method, path) {
            (&Method::POST, "missing") => self.missing(req.input).await,
            (&Method::PUT, "chunks") => self.chunks(&bucket, &req.uri, req.input).await,
            (&Method::PUT, "object") => self.commit(&bucket, &req.uri, req.input).await,
            (&Method::PUT, "part") => self.stage(&req.uri, req.input).await,
            (&Method::POST, "versions") => {
                let key = key_of(&req.uri)?;
                let stamps: Vec<VersionStamp> = json_body_required(req.input).await?;
                let diff = self
                    .store
                    .meta
                    .version_diff(&bucket, &key, stamps)
                    .await
                    .map_err(meta_error)?;
                json(StatusCode::OK, &diff)
            }
            (&Method::DELETE, "object") => {
                let key = key_of(&req.uri)?;
                let keep: Vec<VersionStamp> = json_body_required(req.input).await?;
                // The source's removals may have bypassed governance retention (its
                // users' rights decide that); compliance and legal holds the
                // replica enforces itself.
                let lock = crate::meta::LockCheck {
                    now_ms: self.store.clock.now_ms(),
                    bypass_governance: true,
                };
                let removed = self
                    .store
                    .meta
                    .prune_versions(&bucket, &key, keep, lock)
                    .await
                    .map_err(meta_error)?;
                json(StatusCode::OK, &serde_json::json!({ "removed": removed }))
            }
            _ => Err(s3_error!(NotImplemented, "Unknown replication operation")),
        }
    }

    /// Which of the given chunk ids this store lacks.
    async fn missing(&self, body: Body) -> S3Result<S3Response<Body>> {
        let ids = wire::decode_ids(&read_body(body).await?).map_err(bad_request)?;
        let locs = self
            .store
            .meta
            .chunk_locations(ids.clone())
            .await
            .map_err(meta_error)?;
        let lacking: Vec<ChunkId> = ids
            .into_iter()
            .zip(locs)
            .filter_map(|(id, loc)| loc.is_none().then_some(id))
            .collect();
        Ok(S3Response::new(Body::from(wire::encode_ids(&lacking))))
    }

    async fn chunks(&self, bucket: &str, uri: &Uri, body: Body) -> S3Result<S3Response<Body>> {
        let hold = hold_of(uri)?;
        let frames = wire::decode_frames(read_body(body).await?).map_err(bad_request)?;
        let stored = self.store.store_frames(bucket, frames, hold).await?;
        json(StatusCode::OK, &serde_json::json!({ "stored": stored }))
    }

    /// Stages one part's manifest under the hold (`MetaStore::stage_part`), or
    /// answers `409 MissingChunks` changing nothing.
    async fn stage(&self, uri: &Uri, body: Body) -> S3Result<S3Response<Body>> {
        let hold = hold_of(uri)?
            .ok_or_else(|| s3_error!(InvalidArgument, "a staged part needs ?hold="))?;
        let part = query_param(uri, "part")
            .and_then(|p| p.parse::<u32>().ok())
            .ok_or_else(|| s3_error!(InvalidArgument, "name the part's index: ?part=N"))?;
        let refs = crate::meta::decode_manifest(&read_body(body).await?)
            .map_err(|e| bad_request(e.to_string()))?;
        let lacking = self
            .store
            .meta
            .stage_part(hold, part, refs)
            .await
            .map_err(meta_error)?;
        if lacking > 0 {
            return Err(missing_chunks(lacking));
        }
        json(StatusCode::OK, &serde_json::json!({ "staged": part }))
    }

    async fn commit(&self, bucket: &str, uri: &Uri, body: Body) -> S3Result<S3Response<Body>> {
        let key = key_of(uri)?;
        let hold = hold_of(uri)?;
        let (rec, manifest) = wire::decode_object(&read_body(body).await?).map_err(bad_request)?;
        self.store
            .commit_version(bucket, &key, rec, manifest, hold)
            .await?;
        json(StatusCode::OK, &serde_json::json!({ "committed": key }))
    }

    async fn hello(&self, bucket: &str, body: Body) -> S3Result<S3Response<Body>> {
        let theirs: Hello = json_body_required(body).await?;
        let mut ours = Hello::ours();
        if let Err(why) = ours.negotiate(&theirs) {
            tracing::warn!(bucket, %why, "replication hello refused");
            self.metrics
                .replication_hello_refused
                .get_or_create(&SideLabels {
                    side: "replica".into(),
                })
                .inc();
            let mut e = S3Error::with_message(
                S3ErrorCode::Custom("IncompatibleReplicationProtocol".into()),
                why,
            );
            e.set_status_code(StatusCode::BAD_REQUEST);
            return Err(e);
        }
        let me = format!(
            "{:016x}",
            self.store.meta.store_id().await.map_err(meta_error)?
        );
        if theirs.chain.contains(&me) {
            let why = format!(
                "replication into bucket {bucket} would close a loop: this hoard (store {me}) is already upstream of the source's data (stores {})",
                theirs.chain.join(" <- ")
            );
            tracing::warn!(bucket, %why, "replication hello refused");
            let mut e = S3Error::with_message(S3ErrorCode::Custom("ReplicationLoop".into()), why);
            e.set_status_code(StatusCode::BAD_REQUEST);
            return Err(e);
        }
        let locked = self
            .store
            .meta
            .get_bucket(bucket)
            .await
            .map_err(meta_error)?
            .is_some_and(|b| b.object_lock.is_some());
        if theirs.object_lock && !locked {
            tracing::warn!(
                bucket,
                "replication hello refused: the source has Object Lock, this bucket has not"
            );
            return Err(s3_error!(
                InvalidRequest,
                "The source bucket has Object Lock and bucket {} has not: create the replica bucket with Object Lock enabled, so that it keeps the locks.",
                bucket
            ));
        }
        self.replicas
            .mark(bucket, &theirs)
            .await
            .map_err(|e| match e {
                MetaError::NoSuchBucket => no_such_bucket(),
                MetaError::BucketNotEmpty => s3_error!(
                    BucketNotEmpty,
                    "The bucket holds objects of its own; replicate into an empty bucket."
                ),
                other => meta_error(other),
            })?;
        ours.object_lock = locked;
        tracing::info!(bucket, source = %theirs.software, "replication hello accepted");
        json(StatusCode::OK, &ours)
    }
}

impl Store {
    /// Verifies each chunk by BLAKE3 and packs the ones not stored yet into new
    /// segments; returns how many were stored. One bad chunk refuses the whole
    /// batch (`400 BadDigest`) and stores nothing.
    pub async fn store_frames(
        &self,
        bucket: &str,
        frames: Vec<wire::ChunkFrame>,
        hold: Option<HoldId>,
    ) -> S3Result<usize> {
        let mut frames = frames;
        if let Some(h) = hold {
            // Chunks this hold has already (a batch sent again) need nothing more.
            let ids: Vec<ChunkId> = frames.iter().map(|f| f.id).collect();
            let mut held = self
                .meta
                .held(h, ids)
                .await
                .map_err(meta_error)?
                .into_iter();
            frames.retain(|_| !held.next().unwrap_or(false));
        }
        let ids: Vec<ChunkId> = frames.iter().map(|f| f.id).collect();
        let locs = self.meta.chunk_locations(ids).await.map_err(meta_error)?;
        let (mut new, mut present) = (Vec::new(), Vec::new());
        for (f, loc) in frames.into_iter().zip(locs) {
            match loc {
                None => new.push(f),
                Some(_) => present.push(f),
            }
        }
        if let Some(h) = hold {
            // Chunks stored already get a reference under the hold; one collected
            // in between is stored again below.
            let ids = present.iter().map(|f| f.id).collect();
            let gone = self.meta.hold_chunks(h, ids).await.map_err(meta_error)?;
            new.extend(present.into_iter().filter(|f| gone.contains(&f.id)));
        }
        let stored = new.len();
        let (segments, segment_size) = (self.segments.clone(), self.segment_size);
        let packed = tokio::task::spawn_blocking(move || pack(&segments, new, segment_size))
            .await
            .map_err(|e| internal("chunk verification", &e))?
            .map_err(|why| {
                tracing::warn!(bucket, %why, "replicated chunk refused");
                S3Error::with_message(S3ErrorCode::BadDigest, why)
            })?;
        self.store_packed(bucket, packed, hold).await?;
        Ok(stored)
    }

    /// Writes the segments of one batch durably, side by side, under ids allocated
    /// together (one metadata sync), then indexes their chunks.
    async fn store_packed(
        &self,
        bucket: &str,
        packed: Vec<Packed>,
        hold: Option<HoldId>,
    ) -> S3Result<()> {
        if packed.is_empty() {
            return Ok(());
        }
        let meta = self.meta.clone();
        let n = packed.len() as u64;
        let ids = tokio::task::spawn_blocking(move || meta.allocate_segment_ids_blocking(n))
            .await
            .map_err(|e| internal("allocating segment ids", &e))?
            .map_err(meta_error)?;
        let writes = ids.clone().zip(packed.iter()).map(|(id, (data, _))| {
            let segments = self.segments.clone();
            let data = data.clone();
            async move { segments.write(id, data).await }
        });
        for written in futures::future::join_all(writes).await {
            written.map_err(|e| internal("storing replicated chunks", &e))?;
        }
        for (id, (data, mut entries)) in ids.zip(packed) {
            if hold.is_some() {
                entries.iter_mut().for_each(|e| e.refs = 1);
            }
            self.meta
                .add_segment(
                    bucket,
                    id,
                    data.len() as u64,
                    entries.clone(),
                    hold.map(Holder::Replica),
                )
                .await
                .map_err(meta_error)?;
            self.index.note_indexed(entries.iter().map(|e| &e.id));
        }
        Ok(())
    }

    /// Stores a version whose chunks are all here: takes the references of
    /// `manifest` (the parts not staged under `hold`), then applies the version and
    /// releases the hold in one transaction (`MetaStore::apply_version`). A missing
    /// chunk refuses the commit (`409 MissingChunks`); a refused commit changes
    /// nothing but releasing the hold, which a source never sends under again (its
    /// retry starts over under a new one).
    pub async fn commit_version(
        &self,
        bucket: &str,
        key: &str,
        rec: ObjectRecord,
        manifest: Vec<ChunkRef>,
        hold: Option<HoldId>,
    ) -> S3Result<()> {
        let applied = self.apply_with_refs(bucket, key, rec, manifest, hold).await;
        if let (Err(_), Some(h)) = (&applied, hold)
            && let Err(e) = self.meta.release_hold(h).await
        {
            tracing::warn!(bucket, error = %e, "releasing the hold of a refused commit");
        }
        applied
    }

    async fn apply_with_refs(
        &self,
        bucket: &str,
        key: &str,
        rec: ObjectRecord,
        manifest: Vec<ChunkRef>,
        hold: Option<HoldId>,
    ) -> S3Result<()> {
        // The references are taken under an upload hold, which the version takes
        // over in its commit: a recount meanwhile counts them, and a commit that
        // does not happen (refused, or the request dropped) releases them.
        let taken = HeldRefs::new(&self.meta).map_err(meta_error)?;
        let refs = crate::meta::ref_counts(&manifest);
        let (meta, batch) = (self.meta.clone(), taken.hold().next_batch());
        let found = tokio::task::spawn_blocking(move || meta.take_refs_blocking(refs, batch))
            .await
            .map_err(|e| internal("taking references", &e))?
            .map_err(meta_error)?;
        let lacking = found.iter().filter(|ok| !**ok).count();
        if lacking > 0 {
            return Err(missing_chunks(lacking));
        }
        self.meta
            .apply_version(bucket, key, rec, manifest, hold, taken.hold().id())
            .await
            .map_err(meta_error)?;
        taken.disarm();
        Ok(())
    }
}

/// A segment image and the chunks in it.
type Packed = (bytes::Bytes, Vec<NewChunk>);

/// Verifies every frame against its id, then packs them into segment images of
/// about `segment_size`.
fn pack(
    segments: &SegmentStore,
    frames: Vec<wire::ChunkFrame>,
    segment_size: usize,
) -> Result<Vec<Packed>, String> {
    let mut out = Vec::new();
    let mut builder = segments.builder(segment_size + 64 * 1024);
    let mut entries = Vec::new();
    for f in frames {
        let loc = ChunkLocation {
            segment: 0,
            offset: 0,
            stored_len: f.stored.len() as u32,
            raw_len: f.raw_len,
            codec: f.codec,
        };
        crate::chunk_codec::decode_chunk(&f.id, &loc, f.stored.clone())
            .map_err(|why| format!("chunk {} failed verification: {why}", hex::encode(f.id)))?;
        let e = builder.push(f.id, f.raw_len, f.codec, &f.stored);
        entries.push(NewChunk {
            id: f.id,
            offset: e.offset,
            stored_len: e.stored_len,
            raw_len: e.raw_len,
            codec: e.codec,
            refs: 0,
        });
        if builder.len() >= segment_size {
            let full = std::mem::replace(&mut builder, segments.builder(segment_size + 64 * 1024));
            out.push((full.finish().0, std::mem::take(&mut entries)));
        }
    }
    if !entries.is_empty() {
        out.push((builder.finish().0, entries));
    }
    Ok(out)
}

async fn read_body(mut body: Body) -> S3Result<bytes::Bytes> {
    body.store_all_limited(wire::MAX_BODY)
        .await
        .map_err(|_| s3_error!(EntityTooLarge, "replication request body too large"))
}

/// `409 MissingChunks`: the source sends them and retries.
fn missing_chunks(n: usize) -> S3Error {
    let mut e = S3Error::with_message(
        S3ErrorCode::Custom("MissingChunks".into()),
        format!("{n} chunks of the object are not stored here"),
    );
    e.set_status_code(StatusCode::CONFLICT);
    e
}

fn bad_request(why: String) -> S3Error {
    S3Error::with_message(S3ErrorCode::InvalidRequest, why)
}

/// The object key, hex-encoded in `?key=` (keys may hold any character).
fn key_of(uri: &Uri) -> S3Result<String> {
    query_param(uri, "key")
        .and_then(|k| hex::decode(k).ok())
        .and_then(|k| String::from_utf8(k).ok())
        .filter(|k| !k.is_empty())
        .ok_or_else(|| s3_error!(InvalidArgument, "name the key, hex-encoded: ?key=HEX"))
}

/// The optional `?hold=` (32 hex digits) chunks are held under until their commit.
fn hold_of(uri: &Uri) -> S3Result<Option<HoldId>> {
    let Some(h) = query_param(uri, "hold") else {
        return Ok(None);
    };
    hex::decode(h)
        .ok()
        .and_then(|b| HoldId::try_from(b.as_slice()).ok())
        .map(Some)
        .ok_or_else(|| s3_error!(InvalidArgument, "hold must be 32 hex digits"))
}

fn bucket_of(uri: &Uri) -> S3Result<String> {
    query_param(uri, "bucket")
        .filter(|b| !b.is_empty())
        .ok_or_else(|| s3_error!(InvalidArgument, "name the replica bucket: ?bucket=B"))
}
