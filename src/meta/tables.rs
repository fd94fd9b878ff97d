//! The tables of the metadata store and their keys: every `TableDefinition` the
//! core operations share, the names of the counters, how keys are built, and the
//! small row helpers (bucket records, bucket counters, id counters) that every
//! operation uses inside its transaction. The other files' own tables sit beside
//! their operations (`quota`, `users`, `replication`, `held`, ...).

use std::ops::Range;

use super::kv::{ReadTransaction, ReadableTable, Table, TableDefinition, WriteTransaction};

use super::{BucketRecord, BucketStats, ChunkId, ChunkRow, MetaError, MetaResult};
use super::{decode_record, encode_record};

pub(super) const BUCKETS: TableDefinition<&str, &[u8]> = TableDefinition::new("buckets");
pub(super) const BUCKET_STATS: TableDefinition<&str, &[u8]> = TableDefinition::new("bucket_stats");
/// key: bucket \0 object key
pub(super) const OBJECTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("objects");
pub(super) const MANIFESTS: TableDefinition<u64, &[u8]> = TableDefinition::new("manifests");
pub(super) const CHUNKS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("chunks");
pub(super) const SEGMENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("segments");
/// key: segment id (big endian) ++ chunk id; lets the index find a segment's chunks.
pub(super) const SEGMENT_CHUNKS: TableDefinition<&[u8], ()> =
    TableDefinition::new("segment_chunks");
pub(super) const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");
/// bucket \0 key \0 upload id -> UploadRecord
pub(super) const UPLOADS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("uploads");
/// segment id -> the bucket whose write stored it (for per-bucket stored bytes)
pub(super) const SEGMENT_BUCKETS: TableDefinition<u64, &str> =
    TableDefinition::new("segment_buckets");
/// segment id -> unix time after which its file may be deleted (compacted away)
pub(super) const PENDING_DELETES: TableDefinition<u64, u64> =
    TableDefinition::new("pending_deletes");
/// bucket \0 key \0 !seq (u64 BE) -> ObjectRecord of a noncurrent version
pub(super) const VERSIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("versions");
/// upload id | part number (u32 BE) -> PartRecord
pub(super) const PARTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("parts");
pub(super) const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");

pub(super) const C_NEXT_SEGMENT: &str = "next_segment_id";
pub(super) const C_NEXT_MANIFEST: &str = "next_manifest_id";
pub(super) const C_OUTBOX_SEQ: &str = "outbox_seq";
pub(super) const C_NEXT_UPLOAD: &str = "next_upload_id";
pub(super) const C_NEXT_VERSION: &str = "next_version_seq";
/// The record format the store was written with.
pub(super) const C_SCHEMA: &str = "schema";
/// This store's id, random, made at its first open: what replication's hello names
/// it by in the chain of stores a bucket's data passed through.
pub(super) const C_STORE_ID: &str = "store_id";
pub(super) const C_SEGMENTS: &str = "segments";
pub(super) const C_SEGMENT_BYTES: &str = "segment_bytes";
pub(super) const C_CHUNKS: &str = "chunks";
pub(super) const C_CHUNK_RAW: &str = "chunk_raw_bytes";
pub(super) const C_CHUNK_STORED: &str = "chunk_stored_bytes";
pub(super) const C_INLINE_BYTES: &str = "inline_bytes";

pub(super) fn object_key(bucket: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(bucket.len() + 1 + key.len());
    k.extend_from_slice(bucket.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

pub(super) fn segment_chunk_key(segment: u64, id: &ChunkId) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..8].copy_from_slice(&segment.to_be_bytes());
    k[8..].copy_from_slice(id);
    k
}

/// Every row of a name-keyed table of records.
pub(super) fn all_rows<T: serde::de::DeserializeOwned>(
    txn: &ReadTransaction,
    table: TableDefinition<&str, &[u8]>,
) -> MetaResult<Vec<(String, T)>> {
    let mut out = Vec::new();
    for row in txn.open_table(table)?.iter()? {
        let (k, v) = row?;
        out.push((k.value().to_owned(), decode_record(v.value())?));
    }
    Ok(out)
}

pub(super) fn get_bucket(txn: &ReadTransaction, name: &str) -> MetaResult<Option<BucketRecord>> {
    bucket_in(&txn.open_table(BUCKETS)?, name)
}

pub(super) fn get_bucket_w(txn: &WriteTransaction, name: &str) -> MetaResult<Option<BucketRecord>> {
    bucket_in(&txn.open_table(BUCKETS)?, name)
}

pub(super) fn bucket_in(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    name: &str,
) -> MetaResult<Option<BucketRecord>> {
    t.get(name)?.map(|v| decode_record(v.value())).transpose()
}

pub(super) fn chunk_row(txn: &ReadTransaction, id: &ChunkId) -> MetaResult<Option<ChunkRow>> {
    let t = txn.open_table(CHUNKS)?;
    t.get(id.as_slice())?
        .map(|v| ChunkRow::decode(v.value()))
        .transpose()
}

pub(super) fn bucket_stats_w(txn: &WriteTransaction, bucket: &str) -> MetaResult<BucketStats> {
    let t = txn.open_table(BUCKET_STATS)?;
    Ok(t.get(bucket)?
        .map(|v| decode_record(v.value()))
        .transpose()?
        .unwrap_or_default())
}

pub(super) fn put_bucket_stats(
    txn: &WriteTransaction,
    bucket: &str,
    stats: &BucketStats,
) -> MetaResult<()> {
    txn.open_table(BUCKET_STATS)?
        .insert(bucket, encode_record(stats)?.as_slice())?;
    Ok(())
}

pub(super) type CounterTable<'t> = Table<'t, &'static str, u64>;

pub(super) fn counter(
    counters: &impl ReadableTable<&'static str, u64>,
    name: &str,
) -> MetaResult<u64> {
    Ok(counters.get(name)?.map(|v| v.value()).unwrap_or(0))
}

pub(super) fn bump(counters: &mut CounterTable<'_>, name: &str, delta: i64) -> MetaResult<()> {
    let v = counter(counters, name)?.saturating_add_signed(delta);
    counters.insert(name, v)?;
    Ok(())
}

/// Hands out `n` ids from the named counter; ids start at 1. A counter that cannot
/// be read or written fails the operation: ids that restarted would overwrite rows.
pub(super) fn next_ids(
    counters: &mut CounterTable<'_>,
    name: &str,
    n: u64,
) -> MetaResult<Range<u64>> {
    let start = counter(counters, name)?.max(1);
    let end = start
        .checked_add(n)
        .ok_or_else(|| MetaError::Corrupt(format!("counter {name} is exhausted")))?;
    counters.insert(name, end)?;
    Ok(start..end)
}
