//! Seeding: a bucket's versions and unique chunks written to a directory on the
//! source host (`export_step`), carried to the replica's site, and loaded there into
//! the replica bucket (`import_step`), so that a rule added afterwards sends only
//! what changed since the export.
//!
//! A seed directory holds:
//! - `seed.json`: `SeedManifest`: format, source bucket, encryption (salt and a
//!   sealed check value), how many steps, totals, finished.
//! - `SSSSSSSS-PPPP.chunks`: chunk frames as stored (`wire::push_frame`), about
//!   `PACK_BYTES` each; each chunk of the bucket is in the seed once.
//! - `SSSSSSSS.objects`: per version, oldest version of a key first: key length
//!   (u32 LE) | key | object length (u32 LE) | `wire::encode_object`.
//! - `export.redb`: the export's own state (the chunk ids written so far, the last
//!   key done, the next step). The import does not read it.
//!
//! Invariants:
//! - Step S writes its chunk files, then its objects file (each temp name, fsync,
//!   rename), and only then commits its state: an interrupted export resumes at the
//!   first step not committed and rewrites that step's files.
//! - A chunk first written in step S is named by a version of step S, so after a
//!   step's import every chunk it stored holds a reference.
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
use redb::{ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use super::receiver::Store;
use super::sender::{SendError, read_frame, version_manifest};
use super::wire;
use crate::meta::{ChunkId, ListEntry, ListQuery, MetaError, MetaStore};
use crate::secrets::SecretBox;
use crate::segments::SegmentStore;

pub const FORMAT: u32 = 1;
/// A chunk file is closed once it holds this many bytes.
const PACK_BYTES: usize = 64 << 20;
/// Keys exported per step.
const STEP_KEYS: usize = 100;
const MANIFEST: &str = "seed.json";
const STATE_DB: &str = "export.redb";
/// A value sealed into `seed.json`, to tell a wrong passphrase at once.
const CHECK: &str = "hoard seed";

const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("state");
const IDS: TableDefinition<&[u8], ()> = TableDefinition::new("ids");

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
pub async fn export_step(
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
    let mut w = StepWriter {
        dir: &dir,
        sealer: sealer.as_ref(),
        step,
        part: 0,
        pack: Vec::new(),
        objects: Vec::new(),
        new_ids: std::collections::HashSet::new(),
        progress: state.progress.clone(),
    };
    let read = db.begin_read()?;
    let written = read.open_table(IDS)?;
    let mut last = state.after.clone();
    for entry in &page.entries {
        let ListEntry::Object(key, _) = entry else {
            continue;
        };
        for rec in meta.key_versions(&req.bucket, key).await?.into_iter().rev() {
            let refs = version_manifest(meta, &rec).await?;
            let mut fresh: Vec<ChunkId> = Vec::new();
            for r in &refs {
                if written.get(r.id.as_slice())?.is_none() && w.new_ids.insert(r.id) {
                    fresh.push(r.id);
                }
            }
            let locs = meta.chunk_locations(fresh.clone()).await?;
            for (id, loc) in fresh.into_iter().zip(locs) {
                w.push_chunk(read_frame(segments, id, loc).await?)?;
            }
            let object = wire::encode_object(&rec, &refs).map_err(SeedError::Invalid)?;
            w.push_object(key, &object, rec.size);
        }
        w.progress.keys += 1;
        last = Some(key.clone());
    }
    drop((written, read));
    let new_ids = w.finish()?;
    let mut progress = w.progress;
    progress.steps += 1;
    progress.finished = !page.truncated;
    let next = ExportState {
        after: last,
        progress: progress.clone(),
    };
    commit_state(&db, &next, new_ids)?;
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
pub async fn import_step(
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
    let name = objects_name(req.step);
    let body = read_sealed(&dir, &name, sealer.as_ref())?
        .ok_or_else(|| SeedError::Import(format!("{name} is missing")))?;
    for (key, object) in
        decode_objects(&body).map_err(|why| SeedError::Import(format!("{name}: {why}")))?
    {
        let (rec, refs) = wire::decode_object(object)
            .map_err(|why| SeedError::Import(format!("{name}: {why}")))?;
        store
            .commit_version(&req.bucket, &key, rec, refs, None)
            .await
            .map_err(|e| SeedError::Import(format!("{key:?}: {}", e_message(&e))))?;
        out.versions += 1;
    }
    Ok(out)
}

fn e_message(e: &s3s::S3Error) -> String {
    e.message().unwrap_or("failed").to_owned()
}

/// The files of one export step, as they are written.
struct StepWriter<'a> {
    dir: &'a Path,
    sealer: Option<&'a SecretBox>,
    step: u64,
    part: u32,
    pack: Vec<u8>,
    objects: Vec<u8>,
    new_ids: std::collections::HashSet<ChunkId>,
    progress: SeedProgress,
}

impl StepWriter<'_> {
    fn push_chunk(&mut self, frame: wire::ChunkFrame) -> Result<(), SeedError> {
        self.progress.chunks += 1;
        self.progress.chunk_bytes += frame.stored.len() as u64;
        wire::push_frame(&mut self.pack, &frame);
        if self.pack.len() >= PACK_BYTES {
            self.flush_pack()?;
        }
        Ok(())
    }

    fn push_object(&mut self, key: &str, object: &[u8], size: u64) {
        for part in [key.as_bytes(), object] {
            self.objects
                .extend_from_slice(&(part.len() as u32).to_le_bytes());
            self.objects.extend_from_slice(part);
        }
        self.progress.versions += 1;
        self.progress.logical_bytes += size;
    }

    fn flush_pack(&mut self) -> Result<(), SeedError> {
        let name = pack_name(self.step, self.part);
        write_sealed(self.dir, &name, std::mem::take(&mut self.pack), self.sealer)?;
        self.part += 1;
        Ok(())
    }

    /// Writes the last chunk file and the objects file; returns the chunk ids the
    /// step wrote.
    fn finish(&mut self) -> Result<Vec<ChunkId>, SeedError> {
        if !self.pack.is_empty() {
            self.flush_pack()?;
        }
        // A rerun of a step that wrote more files before must not leave them behind.
        let _ = std::fs::remove_file(self.dir.join(pack_name(self.step, self.part)));
        let objects = std::mem::take(&mut self.objects);
        write_sealed(self.dir, &objects_name(self.step), objects, self.sealer)?;
        Ok(self.new_ids.drain().collect())
    }
}

fn pack_name(step: u64, part: u32) -> String {
    format!("{step:08}-{part:04}.chunks")
}

fn objects_name(step: u64) -> String {
    format!("{step:08}.objects")
}

fn decode_objects(mut b: &[u8]) -> Result<Vec<(String, &[u8])>, String> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let key =
            String::from_utf8(take_item(&mut b)?.to_vec()).map_err(|_| "a key is not UTF-8")?;
        let object = take_item(&mut b)?;
        out.push((key, object));
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
    crate::segments::write_durably(&dir.join(format!(".{name}.tmp")), &path, data)
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

fn commit_state(
    db: &redb::Database,
    state: &ExportState,
    new_ids: Vec<ChunkId>,
) -> Result<(), SeedError> {
    let txn = db.begin_write()?;
    {
        let mut ids = txn.open_table(IDS)?;
        for id in &new_ids {
            ids.insert(id.as_slice(), ())?;
        }
        txn.open_table(STATE)?
            .insert("export", serde_json::to_vec(state)?.as_slice())?;
    }
    txn.commit()?;
    Ok(())
}
