//! Read-only queries for `hoard verify`: which segments and chunks to check, and
//! which objects, versions and upload parts name a set of damaged chunks.

use std::collections::{HashMap, HashSet};

use super::kv::{ReadTransaction, ReadableTable};

use super::{
    CHUNKS, ChunkId, ChunkRow, MANIFESTS, MetaResult, MetaStore, OBJECTS, ObjectRecord, PARTS,
    PartRecord, SEGMENT_CHUNKS, SEGMENTS, UPLOADS, VERSIONS, decode_manifest, decode_record,
    gc::rows_in_tables, list,
};

/// An object version (or upload part) that names damaged chunks.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DamagedObject {
    pub bucket: String,
    pub key: String,
    /// The version id, or "upload <id> part <n>" for a part of an unfinished upload.
    pub version: String,
    pub damaged_chunks: u64,
}

/// Manifest id -> (bucket, key, version) for every object version in `bucket` (or
/// all), and the parts of unfinished uploads.
fn manifest_owners(
    txn: &ReadTransaction,
    bucket: Option<&str>,
) -> MetaResult<HashMap<u64, (String, String, String)>> {
    let mut owners = HashMap::new();
    let (lo, hi) = match bucket {
        Some(b) => list::bucket_bounds(b, ""),
        None => (Vec::new(), vec![0xff; 8]),
    };
    // `versions` keys end in \0 and the 8-byte sequence number.
    for (table, suffix) in [(OBJECTS, 0), (VERSIONS, 9)] {
        for row in txn.open_table(table)?.range(lo.as_slice()..hi.as_slice())? {
            let (k, v) = row?;
            let rec: ObjectRecord = decode_record(v.value())?;
            let k = k.value();
            let (b, key) = split_object_key(&k[..k.len().saturating_sub(suffix)]);
            for (m, _) in rec.manifests() {
                owners.insert(m, (b.clone(), key.clone(), rec.version_id.clone()));
            }
        }
    }
    let parts = txn.open_table(PARTS)?;
    for row in txn
        .open_table(UPLOADS)?
        .range(lo.as_slice()..hi.as_slice())?
    {
        let (k, _) = row?;
        let (b, rest) = split_object_key(k.value());
        let Some((key, id)) = rest.rsplit_once('\0') else {
            continue;
        };
        let mut first = id.as_bytes().to_vec();
        first.extend_from_slice(&0u32.to_be_bytes());
        let mut last = id.as_bytes().to_vec();
        last.extend_from_slice(&u32::MAX.to_be_bytes());
        for p in parts.range(first.as_slice()..=last.as_slice())? {
            let (pk, pv) = p?;
            let pk = pk.value();
            let mut n = [0u8; 4];
            n.copy_from_slice(&pk[pk.len() - 4..]);
            let part: PartRecord = decode_record(pv.value())?;
            owners.insert(
                part.manifest,
                (
                    b.clone(),
                    key.to_owned(),
                    format!("upload {id} part {}", u32::from_be_bytes(n)),
                ),
            );
        }
    }
    Ok(owners)
}

/// (bucket, rest) of a `bucket \0 rest` key.
fn split_object_key(k: &[u8]) -> (String, String) {
    let pos = k.iter().position(|&b| b == 0).unwrap_or(k.len());
    let rest = k.get(pos + 1..).unwrap_or(&[]);
    (
        String::from_utf8_lossy(&k[..pos]).into_owned(),
        String::from_utf8_lossy(rest).into_owned(),
    )
}

/// The counter holding the last segment id the background scrub checked.
const C_SCRUB_POSITION: &str = "scrub_position";

impl MetaStore {
    /// The last segment id the background scrub checked (0: start of a cycle).
    pub async fn scrub_position(&self) -> MetaResult<u64> {
        self.read(|txn| super::counter(&txn.open_table(super::COUNTERS)?, C_SCRUB_POSITION))
            .await
    }

    /// Records the scrub's position; not durable on its own (a crash may make the
    /// scrub check a few segments again).
    pub async fn set_scrub_position(&self, id: u64) -> MetaResult<()> {
        self.write(false, move |txn| {
            txn.open_table(super::COUNTERS)?
                .insert(C_SCRUB_POSITION, id)?;
            Ok(())
        })
        .await
    }

    /// Every segment id with a row.
    pub async fn segment_ids(&self) -> MetaResult<Vec<u64>> {
        self.read(|txn| {
            let mut out = Vec::new();
            for row in txn.open_table(SEGMENTS)?.iter()? {
                out.push(row?.0.value());
            }
            Ok(out)
        })
        .await
    }

    /// The ids of the segments with a row from `from` on, in id order (a gateway's
    /// chunk filter catches up with other gateways' segments from them).
    pub fn segment_ids_from_blocking(&self, from: u64) -> MetaResult<Vec<u64>> {
        self.read_blocking(|txn| {
            let mut out = Vec::new();
            for row in txn.open_table(SEGMENTS)?.range(from..)? {
                out.push(row?.0.value());
            }
            Ok(out)
        })
    }

    /// The chunks indexed in a segment (rows that point into it).
    pub async fn indexed_chunks(&self, segment: u64) -> MetaResult<Vec<(ChunkId, ChunkRow)>> {
        self.read(move |txn| {
            rows_in_tables(
                &txn.open_table(SEGMENT_CHUNKS)?,
                &txn.open_table(CHUNKS)?,
                segment,
            )
        })
        .await
    }

    /// The segments holding the chunks that `bucket`'s manifests name.
    pub async fn segments_of_bucket(&self, bucket: &str) -> MetaResult<Vec<u64>> {
        let bucket = bucket.to_owned();
        self.read(move |txn| {
            let owners = manifest_owners(txn, Some(&bucket))?;
            let manifests = txn.open_table(MANIFESTS)?;
            let chunks = txn.open_table(CHUNKS)?;
            let mut segments = HashSet::new();
            for m in owners.keys() {
                let Some(v) = manifests.get(*m)? else {
                    continue;
                };
                for r in decode_manifest(v.value())? {
                    if let Some(row) = chunks.get(r.id.as_slice())? {
                        segments.insert(ChunkRow::decode(row.value())?.loc.segment);
                    }
                }
            }
            let mut out: Vec<u64> = segments.into_iter().collect();
            out.sort_unstable();
            Ok(out)
        })
        .await
    }

    /// Object versions and upload parts (in `bucket`, or all) whose manifests name a
    /// chunk in `bad` or a chunk without an index row; the ids without a row are
    /// returned too.
    pub async fn objects_naming(
        &self,
        bad: HashSet<ChunkId>,
        bucket: Option<String>,
    ) -> MetaResult<(Vec<DamagedObject>, Vec<ChunkId>)> {
        self.read(move |txn| {
            let owners = manifest_owners(txn, bucket.as_deref())?;
            let manifests = txn.open_table(MANIFESTS)?;
            let chunks = txn.open_table(CHUNKS)?;
            let mut damaged = Vec::new();
            let mut unindexed = HashSet::new();
            for (m, (b, key, version)) in owners {
                let Some(v) = manifests.get(m)? else { continue };
                let mut n = 0;
                for r in decode_manifest(v.value())? {
                    if bad.contains(&r.id) {
                        n += 1;
                    } else if chunks.get(r.id.as_slice())?.is_none() {
                        unindexed.insert(r.id);
                        n += 1;
                    }
                }
                if n > 0 {
                    damaged.push(DamagedObject {
                        bucket: b,
                        key,
                        version,
                        damaged_chunks: n,
                    });
                }
            }
            damaged.sort_by(|a, b| {
                (&a.bucket, &a.key, &a.version).cmp(&(&b.bucket, &b.key, &b.version))
            });
            Ok((damaged, unindexed.into_iter().collect()))
        })
        .await
    }
}
