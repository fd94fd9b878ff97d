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

mod export;
mod format;
mod import;

use bytes::Bytes;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::meta::{ChunkId, HoldId, ListEntry, ListQuery, MetaError, MetaStore};
use crate::replication::chunk_runs::{ChunkReadError, Located, read_run, runs};
use crate::replication::receiver::Store;
use crate::replication::wire;
use crate::secrets::SecretBox;
use crate::segments::SegmentStore;

use export::export;
use format::*;
use import::import;

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
    Read(#[from] ChunkReadError),
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
    replicas: Arc<crate::replication::ReplicaBuckets>,
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
