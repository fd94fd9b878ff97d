//! Seeding: a bucket's versions and unique chunks written to a directory on the
//! source host (`export_step`), carried to the replica's site, and loaded there into
//! the replica bucket (`import_step`), so that a rule added afterwards sends only
//! what changed since the export.
//!
//! A seed directory holds:
//! - `seed.json`: `SeedManifest`: format, source bucket, encryption (salt and a
//!   sealed check value), how many steps, totals, finished.
//! - `SSSSSSSS-FFFF.chunks`: chunk frames as stored (`wire::push_frame`), about
//!   `PACK_BYTES` each; each chunk of the bucket is in the seed once.
//! - `SSSSSSSS-FFFF.objects`, about `PACK_BYTES` each: entries of key length (u32
//!   LE) | key | entry length (u32 LE) | entry, per version (oldest version of a
//!   key first) each part but the last (`P` | part index (u32 LE) | its manifest),
//!   then the version (`V` | `wire::encode_object` with the last part's manifest).
//! - `export.redb`: the export's own state (the chunk ids written so far and the
//!   step that wrote each, the last key done, the next step). The import does not
//!   read it.
//!
//! A step takes up to `STEP_KEYS` keys, and no further key once it wrote
//! `STEP_BYTES` of chunks. Memory is bounded by configuration, not by the bucket
//! or an object: one part's manifest, one file being written, and at most
//! `IDS_HELD` chunk ids (a step flushes its ids to `export.redb` past that).
//!
//! Invariants:
//! - Step S writes its chunk files, then its objects files (each temp name, fsync,
//!   rename), and only then commits its state: an interrupted export resumes at the
//!   first step not committed, forgets the ids that step recorded, and rewrites its
//!   files.
//! - A chunk first written in step S is named by a part or version of step S, so
//!   after a step's import every chunk it stored holds a reference. A version's
//!   parts and record are in one step; the import stages the parts under a hold and
//!   the record's commit takes them (`meta::replicated`).
//! - With a passphrase, every file but `seed.json` and `export.redb` is sealed with
//!   AES-256-GCM under a key derived from it (PBKDF2, salt in `seed.json`), the
//!   file name as associated data: a wrong passphrase, a swapped or altered file is
//!   refused. A seed without one is checked chunk by chunk (BLAKE3) on import.
//! - Import is idempotent (chunks stored only when missing, versions applied by id),
//!   so an interrupted import is run again from the start.
//!
//! Paths are on the server's filesystem: the admin API runs the steps; the CLI
//! drives them one call per step and prints the progress.

use bytes::Bytes;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::receiver::Store;
use super::sender::{Located, SendError, read_run, runs};
use super::wire;
use crate::meta::{ChunkId, HoldId, ListEntry, ListQuery, MetaError, MetaStore};
use crate::secrets::SecretBox;
use crate::segments::SegmentStore;

pub const FORMAT: u32 = 2;
/// A chunk file is closed once it holds this many bytes.
const PACK_BYTES: usize = 64 << 20;
/// Most keys exported per step.
const STEP_KEYS: usize = 100;
/// A step takes no further key once it has written this many chunk bytes.
const STEP_BYTES: u64 = 1 << 30;
/// Chunk ids a step keeps in memory before flushing them to `IDS`.
const IDS_HELD: usize = 1 << 18;
const MANIFEST: &str = "seed.json";
const STATE_DB: &str = "export.redb";
/// A value sealed into `seed.json`, to tell a wrong passphrase at once.
const CHECK: &str = "hoard seed";

const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("state");
/// chunk id -> the step that wrote it.
const IDS: TableDefinition<&[u8], u64> = TableDefinition::new("ids");
/// step (u64 BE) ++ chunk id -> (): the ids of each step, to forget a step's ids
/// when it is run again.
const STEP_IDS: TableDefinition<&[u8], ()> = TableDefinition::new("step_ids");

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("seed directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("export state: {0}")]
    State(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the passphrase does not open this seed")]
    WrongPassphrase,
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error(transparent)]
    Read(#[from] SendError),
    #[error("importing: {0}")]
    Import(String),
    #[error("seed step did not finish: {0}")]
    Worker(String),
}

/// Runs a seed step on a blocking thread of its own: its file reads and writes,
/// fsyncs, redb commits, PBKDF2 and AES-GCM never occupy an executor thread, where
/// they would stall every request served beside them.
async fn off_executor<T: Send + 'static>(
    step: impl Future<Output = Result<T, SeedError>> + Send + 'static,
) -> Result<T, SeedError> {
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || handle.block_on(step))
        .await
        .map_err(|e| SeedError::Worker(e.to_string()))?
}

/// Exports the next step of `req.bucket` into `req.dir` (see `export`), off the
/// executor.
pub async fn export_step(
    meta: MetaStore,
    segments: SegmentStore,
    req: ExportRequest,
) -> Result<SeedProgress, SeedError> {
    off_executor(async move { export(&meta, &segments, req).await }).await
}

/// Loads one step of a seed (see `import`), off the executor.
pub async fn import_step(
    store: Arc<Store>,
    replicas: Arc<super::ReplicaBuckets>,
    req: ImportRequest,
) -> Result<ImportProgress, SeedError> {
    off_executor(async move { import(&store, &replicas, req).await }).await
}

macro_rules! state_err {
    ($($t:ty),*) => {$(
        impl From<$t> for SeedError {
            fn from(e: $t) -> Self {
                SeedError::State(e.to_string())
            }
        }
    )*};
}
state_err!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    serde_json::Error
);

/// What an export has written so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedProgress {
    pub steps: u64,
    pub keys: u64,
    pub versions: u64,
    pub logical_bytes: u64,
    pub chunks: u64,
    /// Bytes of chunk data (as stored, compressed) in the seed.
    pub chunk_bytes: u64,
    pub finished: bool,
}

/// `seed.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeedManifest {
    pub format: u32,
    pub bucket: String,
    pub created_ms: i64,
    /// Hex PBKDF2 salt when the seed is sealed with a passphrase.
    pub salt: Option<String>,
    /// Hex of `CHECK` sealed under the passphrase key.
    pub check: Option<String>,
    pub progress: SeedProgress,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportRequest {
    pub bucket: String,
    pub dir: String,
    pub passphrase: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportRequest {
    pub bucket: String,
    pub dir: String,
    pub passphrase: Option<String>,
    /// The step to load (0 first).
    pub step: u64,
}

/// What one import step did, and how many steps the seed has.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImportProgress {
    pub step: u64,
    pub steps: u64,
    pub chunks_stored: u64,
    pub versions: u64,
}

/// The export's state in `export.redb`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ExportState {
    /// The last key exported.
    after: Option<String>,
    progress: SeedProgress,
}

/// Exports the next step of `req.bucket` into `req.dir`; returns the progress.
async fn export(
    meta: &MetaStore,
    segments: &SegmentStore,
    req: ExportRequest,
) -> Result<SeedProgress, SeedError> {
    let dir = PathBuf::from(&req.dir);
    if meta.get_bucket(&req.bucket).await?.is_none() {
        return Err(SeedError::Invalid(format!(
            "no bucket named {}",
            req.bucket
        )));
    }
    let (manifest, sealer) = open_or_create(&dir, &req)?;
    let db = open_state(&dir)?;
    let state = read_state(&db)?;
    if state.progress.finished {
        return Ok(state.progress);
    }
    let page = meta
        .list_keys_with_markers(
            &req.bucket,
            ListQuery {
                prefix: String::new(),
                delimiter: None,
                after: state.after.clone(),
                max: STEP_KEYS,
            },
        )
        .await?;
    let step = state.progress.steps;
    forget_ids_from(&db, step)?;
    let mut w = StepWriter {
        dir: &dir,
        sealer: sealer.as_ref(),
        db: &db,
        written: db.begin_read()?.open_table(IDS)?,
        step,
        pack: (0, Vec::new()),
        objects: (0, Vec::new()),
        new_ids: std::collections::HashSet::new(),
        ids_held: IDS_HELD,
        progress: state.progress.clone(),
    };
    let (mut last, mut keys, mut stopped_early) = (state.after.clone(), 0, false);
    for entry in &page.entries {
        let ListEntry::Object(key, _) = entry else {
            continue;
        };
        if keys > 0 && w.progress.chunk_bytes >= state.progress.chunk_bytes + STEP_BYTES {
            stopped_early = true;
            break;
        }
        for rec in meta.key_versions(&req.bucket, key).await?.into_iter().rev() {
            w.push_version(meta, segments, key, &rec).await?;
        }
        w.progress.keys += 1;
        keys += 1;
        last = Some(key.clone());
    }
    let new_ids = w.finish()?;
    let mut progress = w.progress;
    progress.steps += 1;
    progress.finished = !page.truncated && !stopped_early;
    let next = ExportState {
        after: last,
        progress: progress.clone(),
    };
    commit_state(&db, step, &next, new_ids)?;
    if progress.finished {
        let done = SeedManifest {
            progress: progress.clone(),
            ..manifest
        };
        write_file(&dir, MANIFEST, &serde_json::to_vec_pretty(&done)?)?;
        tracing::info!(bucket = req.bucket, dir = req.dir, "seed export finished");
    }
    Ok(progress)
}

/// Loads step `req.step` of a finished seed into `req.bucket`, which becomes a
/// replica bucket (it must be empty, or a replica already).
async fn import(
    store: &Store,
    replicas: &super::ReplicaBuckets,
    req: ImportRequest,
) -> Result<ImportProgress, SeedError> {
    let dir = PathBuf::from(&req.dir);
    let manifest = read_manifest(&dir)?
        .ok_or_else(|| SeedError::Invalid(format!("{} holds no {MANIFEST}", req.dir)))?;
    if !manifest.progress.finished {
        return Err(SeedError::Invalid(
            "the export of this seed has not finished; run it again until it does".into(),
        ));
    }
    let sealer = unsealer(&manifest, req.passphrase.as_deref())?;
    if req.step >= manifest.progress.steps {
        return Err(SeedError::Invalid(format!(
            "the seed has {} steps",
            manifest.progress.steps
        )));
    }
    let source = super::Hello {
        software: format!("seed of bucket {}", manifest.bucket),
        ..super::Hello::ours()
    };
    replicas
        .mark(&req.bucket, &source)
        .await
        .map_err(|e| match e {
            MetaError::BucketNotEmpty => SeedError::Invalid(format!(
                "bucket {} holds objects of its own; import into an empty bucket",
                req.bucket
            )),
            MetaError::NoSuchBucket => {
                SeedError::Invalid(format!("no bucket named {}", req.bucket))
            }
            other => SeedError::Meta(other),
        })?;
    let mut out = ImportProgress {
        step: req.step,
        steps: manifest.progress.steps,
        ..Default::default()
    };
    for part in 0.. {
        let name = pack_name(req.step, part);
        let Some(body) = read_sealed(&dir, &name, sealer.as_ref())? else {
            break;
        };
        let frames = wire::decode_frames(Bytes::from(body))
            .map_err(|why| SeedError::Import(format!("{name}: {why}")))?;
        let stored = store
            .store_frames(&req.bucket, frames, None)
            .await
            .map_err(|e| SeedError::Import(format!("{name}: {}", e_message(&e))))?;
        out.chunks_stored += stored as u64;
    }
    // The parts of a version staged ahead of its record, all in this step.
    let mut hold: Option<HoldId> = None;
    for file in 0.. {
        let name = objects_name(req.step, file);
        let Some(body) = read_sealed(&dir, &name, sealer.as_ref())? else {
            if file == 0 {
                return Err(SeedError::Import(format!("{name} is missing")));
            }
            break;
        };
        let entries =
            decode_objects(&body).map_err(|why| SeedError::Import(format!("{name}: {why}")))?;
        for (key, entry) in entries {
            let failed = |why: String| SeedError::Import(format!("{name}, {key:?}: {why}"));
            match entry {
                Entry::Part(part, manifest) => {
                    let refs = crate::meta::decode_manifest(manifest)
                        .map_err(|e| failed(e.to_string()))?;
                    let h = match (part, hold) {
                        (0, _) | (_, None) => *hold.insert(crate::meta::new_hold_id()?),
                        (_, Some(h)) => h,
                    };
                    let lacking = store.meta.stage_part(h, part, refs).await?;
                    if lacking > 0 {
                        return Err(failed(format!(
                            "{lacking} chunks are in no file of the seed"
                        )));
                    }
                }
                Entry::Version(object) => {
                    let (rec, refs) = wire::decode_object(object).map_err(failed)?;
                    store
                        .commit_version(&req.bucket, &key, rec, refs, hold.take())
                        .await
                        .map_err(|e| failed(e_message(&e)))?;
                    out.versions += 1;
                }
            }
        }
    }
    Ok(out)
}

fn e_message(e: &s3s::S3Error) -> String {
    e.message().unwrap_or("failed").to_owned()
}

/// The files of one export step, as they are written: chunk files and objects
/// files, each (file number, bytes so far) closed at `PACK_BYTES`.
struct StepWriter<'a> {
    dir: &'a Path,
    sealer: Option<&'a SecretBox>,
    db: &'a redb::Database,
    /// The ids written by earlier steps (and flushed by this one).
    written: redb::ReadOnlyTable<&'static [u8], u64>,
    step: u64,
    pack: (u32, Vec<u8>),
    objects: (u32, Vec<u8>),
    /// Ids this step wrote and has not flushed to `IDS` yet (at most `ids_held`).
    new_ids: std::collections::HashSet<ChunkId>,
    ids_held: usize,
    progress: SeedProgress,
}

/// One entry of an objects file.
enum Entry<'a> {
    /// A part (not the last) of the version that follows: its index and manifest.
    Part(u32, &'a [u8]),
    /// A version: `wire::encode_object` with the manifest of its last part.
    Version(&'a [u8]),
}

impl StepWriter<'_> {
    /// Writes one version a part at a time (only one part's manifest is held): the
    /// chunks of each part not in the seed yet, each part but the last as a `Part`
    /// entry, then the version with its last part.
    async fn push_version(
        &mut self,
        meta: &MetaStore,
        segments: &SegmentStore,
        key: &str,
        rec: &crate::meta::ObjectRecord,
    ) -> Result<(), SeedError> {
        let pieces = rec.manifests();
        let mut last = Vec::new();
        for (i, (manifest, _)) in pieces.iter().enumerate() {
            let refs = meta.get_manifest(*manifest).await?;
            let mut fresh: Vec<ChunkId> = Vec::new();
            for r in &refs {
                if self.is_new(&r.id)? {
                    fresh.push(r.id);
                }
            }
            let locs = meta.chunk_locations(fresh.clone()).await?;
            let located: Vec<Located> = fresh.into_iter().zip(locs).collect();
            for run in runs(&located) {
                for frame in read_run(segments, run).await? {
                    self.push_chunk(frame)?;
                }
            }
            if i + 1 == pieces.len() {
                last = refs;
            } else {
                let mut entry = vec![b'P'];
                entry.extend_from_slice(&(i as u32).to_le_bytes());
                entry.extend_from_slice(&crate::meta::encode_manifest(&refs));
                self.push_entry(key, &entry)?;
            }
        }
        let mut entry = vec![b'V'];
        entry.extend(wire::encode_object(rec, &last).map_err(SeedError::Invalid)?);
        self.push_entry(key, &entry)?;
        self.progress.versions += 1;
        self.progress.logical_bytes += rec.size;
        Ok(())
    }

    /// Not written by an earlier step nor by this one; noted as written now. Past
    /// `ids_held` ids this step's set is flushed to `IDS`, so it stays bounded.
    fn is_new(&mut self, id: &ChunkId) -> Result<bool, SeedError> {
        if self.new_ids.contains(id) || self.written.get(id.as_slice())?.is_some() {
            return Ok(false);
        }
        self.new_ids.insert(*id);
        if self.new_ids.len() >= self.ids_held {
            let ids: Vec<ChunkId> = self.new_ids.drain().collect();
            record_ids(self.db, self.step, &ids, None)?;
            self.written = self.db.begin_read()?.open_table(IDS)?;
        }
        Ok(true)
    }

    fn push_chunk(&mut self, frame: wire::ChunkFrame) -> Result<(), SeedError> {
        self.progress.chunks += 1;
        self.progress.chunk_bytes += frame.stored.len() as u64;
        wire::push_frame(&mut self.pack.1, &frame);
        if self.pack.1.len() >= PACK_BYTES {
            self.flush_pack()?;
        }
        Ok(())
    }

    fn push_entry(&mut self, key: &str, entry: &[u8]) -> Result<(), SeedError> {
        for item in [key.as_bytes(), entry] {
            self.objects
                .1
                .extend_from_slice(&(item.len() as u32).to_le_bytes());
            self.objects.1.extend_from_slice(item);
        }
        if self.objects.1.len() >= PACK_BYTES {
            self.flush_objects()?;
        }
        Ok(())
    }

    fn flush_pack(&mut self) -> Result<(), SeedError> {
        flush_file(self.dir, self.sealer, self.step, &mut self.pack, pack_name)
    }

    fn flush_objects(&mut self) -> Result<(), SeedError> {
        flush_file(
            self.dir,
            self.sealer,
            self.step,
            &mut self.objects,
            objects_name,
        )
    }

    /// Writes the last files; returns the chunk ids the step wrote and has not
    /// flushed yet.
    fn finish(&mut self) -> Result<Vec<ChunkId>, SeedError> {
        if !self.pack.1.is_empty() {
            self.flush_pack()?;
        }
        if !self.objects.1.is_empty() || self.objects.0 == 0 {
            self.flush_objects()?;
        }
        // A rerun of a step that wrote more files before must not leave them behind.
        let _ = std::fs::remove_file(self.dir.join(pack_name(self.step, self.pack.0)));
        let _ = std::fs::remove_file(self.dir.join(objects_name(self.step, self.objects.0)));
        Ok(self.new_ids.drain().collect())
    }
}

/// Writes a step's file `file.0` (named by `name`) and starts the next one.
fn flush_file(
    dir: &Path,
    sealer: Option<&SecretBox>,
    step: u64,
    file: &mut (u32, Vec<u8>),
    name: fn(u64, u32) -> String,
) -> Result<(), SeedError> {
    write_sealed(
        dir,
        &name(step, file.0),
        std::mem::take(&mut file.1),
        sealer,
    )?;
    file.0 += 1;
    Ok(())
}

fn pack_name(step: u64, file: u32) -> String {
    format!("{step:08}-{file:04}.chunks")
}

fn objects_name(step: u64, file: u32) -> String {
    format!("{step:08}-{file:04}.objects")
}

fn decode_objects(mut b: &[u8]) -> Result<Vec<(String, Entry<'_>)>, String> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let key =
            String::from_utf8(take_item(&mut b)?.to_vec()).map_err(|_| "a key is not UTF-8")?;
        let entry = match take_item(&mut b)?.split_first() {
            Some((b'V', object)) => Entry::Version(object),
            Some((b'P', rest)) if rest.len() >= 4 => {
                let (n, manifest) = rest.split_at(4);
                Entry::Part(u32::from_le_bytes([n[0], n[1], n[2], n[3]]), manifest)
            }
            _ => return Err("an entry of unknown kind".into()),
        };
        out.push((key, entry));
    }
    Ok(out)
}

/// A length-prefixed (u32 LE) item from the front of `b`.
fn take_item<'a>(b: &mut &'a [u8]) -> Result<&'a [u8], String> {
    let (len, rest) = b.split_at_checked(4).ok_or("an entry is cut short")?;
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    let (item, rest) = rest.split_at_checked(len).ok_or("an entry is cut short")?;
    *b = rest;
    Ok(item)
}

/// Reads `seed.json`, or writes a new one for a new export; checks that the
/// request matches it, and returns the sealer.
fn open_or_create(
    dir: &Path,
    req: &ExportRequest,
) -> Result<(SeedManifest, Option<SecretBox>), SeedError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    if let Some(m) = read_manifest(dir)? {
        if m.bucket != req.bucket {
            return Err(SeedError::Invalid(format!(
                "{} holds a seed of bucket {}; use another directory",
                dir.display(),
                m.bucket
            )));
        }
        let sealer = unsealer(&m, req.passphrase.as_deref())?;
        return Ok((m, sealer));
    }
    let (salt, sealer) = match req.passphrase.as_deref() {
        Some(p) => {
            use ring::rand::SecureRandom;
            let mut salt = [0u8; 16];
            ring::rand::SystemRandom::new()
                .fill(&mut salt)
                .map_err(|_| SeedError::Invalid("no randomness for the salt".into()))?;
            (
                Some(hex::encode(salt)),
                Some(SecretBox::from_passphrase(p, &salt)),
            )
        }
        None => (None, None),
    };
    let check = match &sealer {
        Some(s) => Some(hex::encode(
            s.seal_bytes(MANIFEST, CHECK.as_bytes().to_vec())
                .map_err(|e| SeedError::Invalid(e.to_string()))?,
        )),
        None => None,
    };
    let m = SeedManifest {
        format: FORMAT,
        bucket: req.bucket.clone(),
        created_ms: crate::meta::now_ms(),
        salt,
        check,
        progress: SeedProgress::default(),
    };
    write_file(dir, MANIFEST, &serde_json::to_vec_pretty(&m)?)?;
    Ok((m, sealer))
}

fn read_manifest(dir: &Path) -> Result<Option<SeedManifest>, SeedError> {
    let path = dir.join(MANIFEST);
    match std::fs::read(&path) {
        Ok(b) => {
            let m: SeedManifest = serde_json::from_slice(&b)
                .map_err(|e| SeedError::Invalid(format!("{}: {e}", path.display())))?;
            if m.format != FORMAT {
                return Err(SeedError::Invalid(format!(
                    "seed format {} is not {FORMAT}, the one this hoard reads",
                    m.format
                )));
            }
            Ok(Some(m))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(dir)(e)),
    }
}

/// The sealer of a seed: `None` for a plain seed; refuses a passphrase that does
/// not open it, a missing one, or one given for a plain seed.
fn unsealer(m: &SeedManifest, passphrase: Option<&str>) -> Result<Option<SecretBox>, SeedError> {
    match (&m.salt, &m.check, passphrase) {
        (None, _, None) => Ok(None),
        (None, _, Some(_)) => Err(SeedError::Invalid(
            "this seed is not encrypted; give no passphrase".into(),
        )),
        (Some(_), _, None) => Err(SeedError::Invalid(
            "this seed is encrypted; give its passphrase".into(),
        )),
        (Some(salt), check, Some(p)) => {
            let salt = hex::decode(salt).map_err(|_| SeedError::Invalid("bad salt".into()))?;
            let sealer = SecretBox::from_passphrase(p, &salt);
            let opened = check
                .as_deref()
                .and_then(|c| hex::decode(c).ok())
                .and_then(|c| sealer.open_bytes(MANIFEST, c));
            match opened.as_deref() == Some(CHECK.as_bytes()) {
                true => Ok(Some(sealer)),
                false => Err(SeedError::WrongPassphrase),
            }
        }
    }
}

fn write_sealed(
    dir: &Path,
    name: &str,
    data: Vec<u8>,
    sealer: Option<&SecretBox>,
) -> Result<(), SeedError> {
    let data = match sealer {
        Some(s) => s
            .seal_bytes(name, data)
            .map_err(|e| SeedError::Invalid(e.to_string()))?,
        None => data,
    };
    write_file(dir, name, &data)
}

fn read_sealed(
    dir: &Path,
    name: &str,
    sealer: Option<&SecretBox>,
) -> Result<Option<Vec<u8>>, SeedError> {
    let data = match std::fs::read(dir.join(name)) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&dir.join(name))(e)),
    };
    match sealer {
        None => Ok(Some(data)),
        Some(s) => s.open_bytes(name, data).map(Some).ok_or_else(|| {
            SeedError::Import(format!(
                "{name} does not open: altered, or not of this seed"
            ))
        }),
    }
}

fn write_file(dir: &Path, name: &str, data: &[u8]) -> Result<(), SeedError> {
    let path = dir.join(name);
    crate::durable::write_via(&dir.join(format!(".{name}.tmp")), &path, data, 0o644)
        .map_err(io_err(&path))
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> SeedError + '_ {
    move |source| SeedError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Opens (or creates) `export.redb` with its tables.
fn open_state(dir: &Path) -> Result<redb::Database, SeedError> {
    let path = dir.join(STATE_DB);
    let db = redb::Database::create(&path)
        .map_err(|e| SeedError::State(format!("{}: {e}", path.display())))?;
    let txn = db.begin_write()?;
    txn.open_table(STATE)?;
    txn.open_table(IDS)?;
    txn.open_table(STEP_IDS)?;
    txn.commit()?;
    Ok(db)
}

fn read_state(db: &redb::Database) -> Result<ExportState, SeedError> {
    let txn = db.begin_read()?;
    Ok(match txn.open_table(STATE)?.get("export")? {
        Some(v) => serde_json::from_slice(v.value())?,
        None => ExportState::default(),
    })
}

/// Records ids step `step` wrote, with the export's state when given, in one
/// transaction.
fn record_ids(
    db: &redb::Database,
    step: u64,
    new_ids: &[ChunkId],
    state: Option<&ExportState>,
) -> Result<(), SeedError> {
    let txn = db.begin_write()?;
    {
        let mut ids = txn.open_table(IDS)?;
        let mut by_step = txn.open_table(STEP_IDS)?;
        for id in new_ids {
            ids.insert(id.as_slice(), step)?;
            by_step.insert(step_id_key(step, id).as_slice(), ())?;
        }
        if let Some(state) = state {
            txn.open_table(STATE)?
                .insert("export", serde_json::to_vec(state)?.as_slice())?;
        }
    }
    txn.commit()?;
    Ok(())
}

fn commit_state(
    db: &redb::Database,
    step: u64,
    state: &ExportState,
    new_ids: Vec<ChunkId>,
) -> Result<(), SeedError> {
    record_ids(db, step, &new_ids, Some(state))
}

fn step_id_key(step: u64, id: &ChunkId) -> Vec<u8> {
    let mut k = step.to_be_bytes().to_vec();
    k.extend_from_slice(id);
    k
}

/// Forgets the ids recorded by step `step` and later ones: a step run again
/// (after an interruption) writes its chunks again.
fn forget_ids_from(db: &redb::Database, step: u64) -> Result<(), SeedError> {
    let txn = db.begin_write()?;
    {
        let from = step.to_be_bytes().to_vec();
        let mut by_step = txn.open_table(STEP_IDS)?;
        let mut ids = txn.open_table(IDS)?;
        for row in by_step.range(from.as_slice()..)? {
            ids.remove(&row?.0.value()[8..])?;
        }
        by_step.retain_in(from.as_slice().., |_, _| false)?;
    }
    txn.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids_recorded(db: &redb::Database) -> usize {
        let txn = db.begin_read().unwrap();
        let n = txn.open_table(IDS).unwrap().iter().unwrap().count();
        n
    }

    /// A seed step's blocking work (here PBKDF2 over the passphrase, a file and redb
    /// writes) runs off the executor: on a single-threaded runtime a ticker keeps
    /// ticking throughout, where before it stood still for the whole derivation.
    #[test]
    fn a_seed_step_leaves_the_executor_free() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let started = std::time::Instant::now();
        SecretBox::from_passphrase("pass", b"salt");
        let derivation = started.elapsed();
        assert!(
            derivation > std::time::Duration::from_millis(20),
            "{derivation:?}"
        );
        let dir = tempfile::tempdir().unwrap();
        let gap = rt.block_on(async {
            let meta = MetaStore::open(&dir.path().join("meta.redb"), 1 << 20).unwrap();
            meta.create_bucket("b", crate::meta::test_bucket())
                .await
                .unwrap();
            let segments = SegmentStore::open_local(dir.path()).unwrap();
            let ticks = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let ticker = {
                let ticks = ticks.clone();
                tokio::spawn(async move {
                    loop {
                        ticks.lock().unwrap().push(std::time::Instant::now());
                        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    }
                })
            };
            tokio::task::yield_now().await;
            let req = ExportRequest {
                bucket: "b".into(),
                dir: dir.path().join("seed").display().to_string(),
                passphrase: Some("pass".into()),
            };
            let progress = export_step(meta, segments, req).await.unwrap();
            assert!(progress.finished);
            ticker.abort();
            let ticks = ticks.lock().unwrap();
            ticks
                .windows(2)
                .map(|w| w[1] - w[0])
                .max()
                .unwrap_or_default()
        });
        assert!(
            gap < derivation / 2,
            "the executor stood still for {gap:?} (a derivation takes {derivation:?})"
        );
    }

    /// A step's ids flushed past the bound still count as written, and a step run
    /// again forgets the ids it recorded before, but not those of earlier steps.
    #[test]
    fn a_steps_ids_stay_bounded_and_a_rerun_step_forgets_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_state(dir.path()).unwrap();
        record_ids(&db, 0, &[[1; 32], [2; 32]], None).unwrap();
        let mut w = StepWriter {
            dir: dir.path(),
            sealer: None,
            db: &db,
            written: db.begin_read().unwrap().open_table(IDS).unwrap(),
            step: 1,
            pack: (0, Vec::new()),
            objects: (0, Vec::new()),
            new_ids: std::collections::HashSet::new(),
            ids_held: 2,
            progress: SeedProgress::default(),
        };
        let fresh: Vec<bool> = [
            [1; 32], [3; 32], [4; 32], [5; 32], [3; 32], [4; 32], [5; 32],
        ]
        .iter()
        .map(|id| w.is_new(id).unwrap())
        .collect();
        assert_eq!(fresh, [false, true, true, true, false, false, false]);
        assert!(w.new_ids.len() < 2, "the set was flushed");
        assert_eq!(ids_recorded(&db), 4);
        drop(w);
        forget_ids_from(&db, 1).unwrap();
        assert_eq!(ids_recorded(&db), 2, "step 0's ids stay");
    }
}
