//! Records kept in the metadata store and their on-disk encodings.
//!
//! Fixed-size rows (chunk index, segments) use hand-written little-endian layouts so
//! that the hot paths (dedup lookup, reference counting) never run a general decoder.
//! Variable records (buckets, objects, outbox events) are postcard behind a one-byte
//! format version, so that a later format can be told apart from this one.

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::MetaError;

/// BLAKE3 of a chunk's raw bytes.
pub type ChunkId = [u8; 32];

/// How a chunk's bytes are stored inside its segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum Codec {
    /// Stored as is (compression did not make it smaller).
    Raw = 0,
    /// One zstd frame.
    Zstd = 1,
}

impl Codec {
    fn from_u8(v: u8) -> Result<Self, MetaError> {
        match v {
            0 => Ok(Codec::Raw),
            1 => Ok(Codec::Zstd),
            other => Err(MetaError::Corrupt(format!("unknown codec {other}"))),
        }
    }
}

/// Where a chunk lives: a byte range of one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLocation {
    pub segment: u64,
    pub offset: u32,
    pub stored_len: u32,
    pub raw_len: u32,
    pub codec: Codec,
}

/// A chunk index row.
///
/// Reference-count states, as encoded in `refs` and `zero_since`:
///
/// | refs | zero_since | state |
/// |------|------------|-------|
/// | > 0  | 0          | live: named by committed manifests and/or in-flight uploads |
/// | 0    | t (unix s) | unreferenced since t; a writer may still revive it (refs 0 -> 1) |
/// | row absent | -    | not stored, or removed by the cleaner: a writer must store it anew |
///
/// Encoding (37 bytes, little endian): segment u64 | offset u32 | stored_len u32 |
/// raw_len u32 | codec u8 | refs u32 | zero_since u64 | locked u32. A 33-byte row
/// (written before `locked` existed) reads with `locked` 0.
///
/// `locked` counts the occurrences of the chunk in manifests of versions Object Lock
/// protects (a legal hold, or a retention, expired or not): a second count, kept
/// apart from `refs`, that the cleaner honours whatever `refs` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRow {
    pub loc: ChunkLocation,
    pub refs: u32,
    pub zero_since: u64,
    pub locked: u32,
}

pub const CHUNK_ROW_LEN: usize = 37;
const CHUNK_ROW_LEN_UNLOCKED: usize = 33;

impl ChunkRow {
    pub fn encode(&self) -> [u8; CHUNK_ROW_LEN] {
        let mut b = [0u8; CHUNK_ROW_LEN];
        b[0..8].copy_from_slice(&self.loc.segment.to_le_bytes());
        b[8..12].copy_from_slice(&self.loc.offset.to_le_bytes());
        b[12..16].copy_from_slice(&self.loc.stored_len.to_le_bytes());
        b[16..20].copy_from_slice(&self.loc.raw_len.to_le_bytes());
        b[20] = self.loc.codec as u8;
        b[21..25].copy_from_slice(&self.refs.to_le_bytes());
        b[25..33].copy_from_slice(&self.zero_since.to_le_bytes());
        b[33..37].copy_from_slice(&self.locked.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<Self, MetaError> {
        if b.len() != CHUNK_ROW_LEN && b.len() != CHUNK_ROW_LEN_UNLOCKED {
            return Err(MetaError::Corrupt(format!(
                "chunk row of {} bytes",
                b.len()
            )));
        }
        Ok(ChunkRow {
            loc: ChunkLocation {
                segment: le_u64(&b[0..8]),
                offset: le_u32(&b[8..12]),
                stored_len: le_u32(&b[12..16]),
                raw_len: le_u32(&b[16..20]),
                codec: Codec::from_u8(b[20])?,
            },
            refs: le_u32(&b[21..25]),
            zero_since: le_u64(&b[25..33]),
            locked: b.get(33..37).map_or(0, le_u32),
        })
    }
}

/// A segment row: the segment's size and how much of it is still referenced.
///
/// Encoding (32 bytes, little endian): size u64 | live_bytes u64 | chunks u32 |
/// live_chunks u32 | created u64 (unix s). `live_*` count chunks whose index row points
/// into this segment and has `refs > 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SegmentRow {
    pub size: u64,
    pub live_bytes: u64,
    pub chunks: u32,
    pub live_chunks: u32,
    pub created: u64,
}

pub const SEGMENT_ROW_LEN: usize = 32;

impl SegmentRow {
    pub fn encode(&self) -> [u8; SEGMENT_ROW_LEN] {
        let mut b = [0u8; SEGMENT_ROW_LEN];
        b[0..8].copy_from_slice(&self.size.to_le_bytes());
        b[8..16].copy_from_slice(&self.live_bytes.to_le_bytes());
        b[16..20].copy_from_slice(&self.chunks.to_le_bytes());
        b[20..24].copy_from_slice(&self.live_chunks.to_le_bytes());
        b[24..32].copy_from_slice(&self.created.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<Self, MetaError> {
        if b.len() != SEGMENT_ROW_LEN {
            return Err(MetaError::Corrupt(format!(
                "segment row of {} bytes",
                b.len()
            )));
        }
        Ok(SegmentRow {
            size: le_u64(&b[0..8]),
            live_bytes: le_u64(&b[8..16]),
            chunks: le_u32(&b[16..20]),
            live_chunks: le_u32(&b[20..24]),
            created: le_u64(&b[24..32]),
        })
    }
}

/// One entry of an object's manifest: a chunk id and its raw length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRef {
    pub id: ChunkId,
    pub len: u32,
}

pub const CHUNK_REF_LEN: usize = 36;

/// How many times `refs` names each chunk: the references a manifest holds.
pub fn ref_counts(refs: &[ChunkRef]) -> Vec<(ChunkId, u32)> {
    let mut counts: std::collections::HashMap<ChunkId, u32> = Default::default();
    for r in refs {
        *counts.entry(r.id).or_default() += 1;
    }
    counts.into_iter().collect()
}

/// Packs a manifest as 36-byte entries (id | raw length u32 LE).
pub fn encode_manifest(refs: &[ChunkRef]) -> Vec<u8> {
    let mut out = Vec::with_capacity(refs.len() * CHUNK_REF_LEN);
    for r in refs {
        out.extend_from_slice(&r.id);
        out.extend_from_slice(&r.len.to_le_bytes());
    }
    out
}

pub fn decode_manifest(b: &[u8]) -> Result<Vec<ChunkRef>, MetaError> {
    if b.len() % CHUNK_REF_LEN != 0 {
        return Err(MetaError::Corrupt(format!("manifest of {} bytes", b.len())));
    }
    Ok(b.chunks_exact(CHUNK_REF_LEN)
        .map(|e| {
            let mut id = [0u8; 32];
            id.copy_from_slice(&e[..32]);
            ChunkRef {
                id,
                len: le_u32(&e[32..36]),
            }
        })
        .collect())
}

/// Chunking parameters of a bucket, fixed at its creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkParams {
    pub min: u32,
    pub avg: u32,
    pub max: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketRecord {
    pub created_ms: i64,
    pub chunking: ChunkParams,
    pub compression_level: i32,
    pub versioning: Versioning,
    pub tags: Vec<(String, String)>,
    /// Object Lock: `Some` once enabled (it cannot be disabled again), with the
    /// default retention given to new versions. Added in format 3.
    #[serde(default)]
    pub object_lock: Option<BucketLock>,
}

impl BucketRecord {
    /// The record with Object Lock enabled (no default retention yet), which needs
    /// versioning Enabled for good.
    pub fn with_object_lock(self) -> BucketRecord {
        BucketRecord {
            versioning: Versioning::Enabled,
            object_lock: Some(BucketLock::default()),
            ..self
        }
    }
}

/// A bucket's Object Lock configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BucketLock {
    pub default_retention: Option<DefaultRetention>,
}

/// The retention a lock-enabled bucket gives a new version that names none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefaultRetention {
    pub mode: LockMode,
    pub period: RetentionPeriod,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RetentionPeriod {
    Days(u32),
    Years(u32),
}

impl RetentionPeriod {
    /// The period in milliseconds (a year is 365 days, as S3 counts it).
    pub fn millis(self) -> i64 {
        let days = match self {
            RetentionPeriod::Days(d) => i64::from(d),
            RetentionPeriod::Years(y) => i64::from(y) * 365,
        };
        days * 86_400_000
    }
}

/// S3's two retention modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockMode {
    /// Removable or shortened only with a governance bypass by a user holding it.
    Governance,
    /// Extendable only, by nobody shortened or removed.
    Compliance,
}

impl LockMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::Governance => "GOVERNANCE",
            LockMode::Compliance => "COMPLIANCE",
        }
    }

    pub fn parse(s: &str) -> Option<LockMode> {
        match s {
            "GOVERNANCE" => Some(LockMode::Governance),
            "COMPLIANCE" => Some(LockMode::Compliance),
            _ => None,
        }
    }
}

/// A version's Object Lock state: its retention (mode, retain-until in ms on the
/// retention clock's scale, which is the wall clock's) and its legal hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VersionLock {
    pub retention: Option<(LockMode, i64)>,
    pub legal_hold: bool,
}

impl VersionLock {
    /// Whether the version counts in its chunks' `locked` counts: it has a legal
    /// hold or a retention (expired or not).
    pub fn protects(lock: Option<VersionLock>) -> bool {
        lock.is_some_and(|l| l.legal_hold || l.retention.is_some())
    }

    /// The retention still in force at `now_ms` on the retention clock.
    pub fn retained(&self, now_ms: i64) -> Option<(LockMode, i64)> {
        self.retention.filter(|&(_, until)| until > now_ms)
    }

    /// Whether the retention may become `wanted` at `now_ms`: anything goes once
    /// the held retention expired; COMPLIANCE may only be extended; GOVERNANCE may
    /// be extended, and changed otherwise only with a bypass.
    pub fn retention_change(
        &self,
        wanted: Option<(LockMode, i64)>,
        now_ms: i64,
        bypass_governance: bool,
    ) -> Result<(), &'static str> {
        let extends =
            |mode: LockMode, until: i64| matches!(wanted, Some((m, u)) if m == mode && u >= until);
        match self.retained(now_ms) {
            None => Ok(()),
            Some((mode, until)) if extends(mode, until) => Ok(()),
            Some((LockMode::Compliance, _)) => Err("compliance retention can only be extended"),
            Some((LockMode::Governance, _)) if bypass_governance => Ok(()),
            Some((LockMode::Governance, _)) => Err(
                "governance retention can be shortened or removed only with x-amz-bypass-governance-retention by a user holding bypass-governance",
            ),
        }
    }

    /// The lock a replica keeps when a version it holds arrives again with
    /// `incoming`: the source's state, except that a compliance retention is never
    /// shortened, changed to governance or removed.
    pub fn as_replicated(
        held: Option<VersionLock>,
        incoming: Option<VersionLock>,
    ) -> Option<VersionLock> {
        let Some((LockMode::Compliance, held_until)) = held.and_then(|h| h.retention) else {
            return incoming;
        };
        let mut lock = incoming.unwrap_or_default();
        let keeps = match lock.retention {
            Some((LockMode::Compliance, until)) => until >= held_until,
            _ => false,
        };
        if !keeps {
            lock.retention = Some((LockMode::Compliance, held_until));
        }
        Some(lock)
    }

    /// Why the version cannot be removed at `now_ms`, if it cannot: a legal hold,
    /// compliance retention, or governance retention without a bypass.
    pub fn forbids_removal(&self, now_ms: i64, bypass_governance: bool) -> Option<&'static str> {
        if self.legal_hold {
            return Some("the version is under a legal hold");
        }
        match self.retained(now_ms) {
            Some((LockMode::Compliance, _)) => Some("the version is under compliance retention"),
            Some((LockMode::Governance, _)) if !bypass_governance => {
                Some("the version is under governance retention")
            }
            _ => None,
        }
    }
}

/// A bucket's versioning state, as PutBucketVersioning sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Versioning {
    /// Never enabled: every write replaces the key's only ("null") version.
    #[default]
    Unversioned,
    /// Every write adds a version with a new id; deletes add delete markers.
    Enabled,
    /// Writes replace the "null" version; earlier versions stay.
    Suspended,
}

/// The version id of versions written while versioning was off or suspended.
pub const NULL_VERSION: &str = "null";

/// Per-bucket counters, updated in the transactions that change them.
///
/// `new_*` and `stored_bytes` count what this bucket's writes added to the store
/// (chunks first stored through it and inline bodies); they fall only when the
/// cleaner reclaims space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BucketStats {
    pub objects: u64,
    pub logical_bytes: u64,
    pub new_chunks: u64,
    pub new_raw_bytes: u64,
    pub stored_bytes: u64,
    pub inline_bytes: u64,
    pub segments: u64,
}

/// Standard HTTP headers stored with an object and returned on GET/HEAD.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredHeaders {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub content_disposition: Option<String>,
    pub content_language: Option<String>,
    pub cache_control: Option<String>,
    /// RFC 1123 date, as the client sent it.
    pub expires: Option<String>,
}

/// An object's body: inline bytes, one manifest kept in the manifests table, or (for
/// a completed multipart upload) one manifest per part, in part order. Each manifest
/// holds one reference on every chunk it names, for as long as the record exists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ObjectData {
    Inline(Vec<u8>),
    Chunked { manifest: u64, chunks: u32 },
    Parts(Vec<PartPiece>),
}

/// One part of a completed multipart object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartPiece {
    pub manifest: u64,
    pub chunks: u32,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectRecord {
    pub size: u64,
    /// Hex MD5 (no quotes).
    pub etag: String,
    pub modified_ms: i64,
    pub headers: StoredHeaders,
    pub user_meta: Vec<(String, String)>,
    /// (algorithm name as S3 spells it, base64 value), e.g. ("CRC64NVME", "...").
    pub checksums: Vec<(String, String)>,
    pub data: ObjectData,
    /// "null", or the hex of `seq` for versions written with versioning enabled.
    pub version_id: String,
    /// Commit order of versions across the store; orders a key's versions.
    pub seq: u64,
    /// A delete marker: no body, hides the key from GET and listings.
    pub delete_marker: bool,
    pub tags: Vec<(String, String)>,
    /// Object Lock state (lock-enabled buckets only). Added in format 3.
    #[serde(default)]
    pub lock: Option<VersionLock>,
    /// The version's access control list beyond the owner's full control
    /// (`None`: private). Added in format 4.
    #[serde(default)]
    pub acl: Option<Acl>,
    /// A multipart object's part checksums (base64, in part order) in the
    /// algorithm of `checksums`, for GetObjectAttributes. Added in format 5.
    #[serde(default)]
    pub part_checksums: Option<Vec<String>>,
}

/// An S3 access control list: the grants beside the owner's own full control
/// (hoard's buckets and objects all belong to the store's owner).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acl {
    pub grants: Vec<AclGrant>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclGrant {
    pub grantee: Grantee,
    pub permission: AclPermission,
}

/// Who a grant is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Grantee {
    /// A hoard principal by its canonical id (the owner's, or a user's).
    Id(String),
    /// S3's AllUsers group: anyone, signed or not.
    AllUsers,
    /// S3's AuthenticatedUsers group: any signed request of a known key.
    AuthenticatedUsers,
    /// S3's LogDelivery group (kept and answered; hoard writes no access logs).
    LogDelivery,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AclPermission {
    FullControl,
    Read,
    Write,
    ReadAcp,
    WriteAcp,
}

impl ObjectRecord {
    /// A delete marker written at `modified_ms`.
    pub fn delete_marker(modified_ms: i64) -> ObjectRecord {
        ObjectRecord {
            size: 0,
            etag: String::new(),
            modified_ms,
            headers: StoredHeaders::default(),
            user_meta: Vec::new(),
            checksums: Vec::new(),
            data: ObjectData::Inline(Vec::new()),
            version_id: NULL_VERSION.into(),
            seq: 0,
            delete_marker: true,
            tags: Vec::new(),
            lock: None,
            acl: None,
            part_checksums: None,
        }
    }

    /// The manifests holding the body, in order, each with the bytes it covers;
    /// empty for an inline body.
    pub fn manifests(&self) -> Vec<(u64, u64)> {
        match &self.data {
            ObjectData::Inline(_) => Vec::new(),
            ObjectData::Chunked { manifest, .. } => vec![(*manifest, self.size)],
            ObjectData::Parts(parts) => parts.iter().map(|p| (p.manifest, p.size)).collect(),
        }
    }

    /// How many chunk references the body's manifests hold together.
    pub fn chunk_count(&self) -> usize {
        match &self.data {
            ObjectData::Inline(_) => 0,
            ObjectData::Chunked { chunks, .. } => *chunks as usize,
            ObjectData::Parts(parts) => parts.iter().map(|p| p.chunks as usize).sum(),
        }
    }

    /// How many parts a multipart object has; `None` for any other object.
    pub fn parts_count(&self) -> Option<usize> {
        match &self.data {
            ObjectData::Parts(parts) => Some(parts.len()),
            _ => None,
        }
    }
}

/// A multipart upload in progress, keyed by bucket, key and upload id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadRecord {
    pub initiated_ms: i64,
    pub headers: StoredHeaders,
    pub user_meta: Vec<(String, String)>,
    /// The checksum algorithm the upload was created with, as S3 spells it.
    pub checksum_algorithm: Option<String>,
    /// Tags from `x-amz-tagging`, given to the completed object.
    pub tags: Vec<(String, String)>,
    /// The completed object's Object Lock state (added in format 3).
    #[serde(default)]
    pub lock: Option<VersionLock>,
    /// The completed object's access control list (added in format 4).
    #[serde(default)]
    pub acl: Option<Acl>,
    /// `FULL_OBJECT` or `COMPOSITE`, with `checksum_algorithm` (added in format 5).
    #[serde(default)]
    pub checksum_type: Option<String>,
}

/// One uploaded part. Its manifest holds one reference on each chunk it names until
/// the part is replaced, aborted, left out of the completion, or moves into the
/// completed object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartRecord {
    pub size: u64,
    /// Hex MD5 of the part (no quotes).
    pub etag: String,
    pub modified_ms: i64,
    pub manifest: u64,
    pub chunks: u32,
    pub checksums: Vec<(String, String)>,
}

/// A change event appended to the outbox in the transaction that commits the change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEvent {
    pub bucket: String,
    pub key: String,
    /// The version written or removed ("null" when unversioned).
    pub version_id: String,
    pub kind: EventKind,
    pub time_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EventKind {
    Put {
        etag: String,
        size: u64,
    },
    /// A delete marker was added (versioned) or the only version removed.
    Delete,
    /// One version (or delete marker) was removed by version id.
    DeleteVersion,
    /// A version's tags were replaced (added after format 2's other kinds, so older
    /// events still decode).
    Tags,
    /// A key whose replication failed was put back into the queue.
    Requeued,
    /// A version's retention or legal hold changed (added in format 3).
    Lock,
    /// A version's access control list was replaced (added in format 4).
    Acl,
}

/// Format 2 added versions and tags to object and bucket records; a store written
/// with format 1 is refused at open (see `MetaStore::open`). Format 3 appended one
/// optional field to object records (`lock`) and to bucket records (`object_lock`);
/// format 4 one more to object and upload records (`acl`); format 5 one more to
/// object records (`part_checksums`) and upload records (`checksum_type`); format
/// 6 one more to replication rule records (`scope`) and replica records (`chain`);
/// format 7 one more to replication rule records (`kind`).
pub const RECORD_FORMAT: u8 = 7;
/// The oldest format this hoard still reads.
pub const OLDEST_RECORD_FORMAT: u8 = 2;

pub fn encode_record<T: Serialize>(v: &T) -> Result<Vec<u8>, MetaError> {
    let mut out = vec![RECORD_FORMAT];
    let body = postcard::to_allocvec(v).map_err(|e| MetaError::Corrupt(format!("encode: {e}")))?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes a record of the current format or of an older one still read. Each
/// format since 2 appended at most one trailing `Option` to a record type, so an
/// older body reads as the current one with one zero byte appended per format
/// between: postcard writes an absent `Option` as that byte, and a record type that
/// gained no field ignores the bytes left over.
pub fn decode_record<T: DeserializeOwned>(b: &[u8]) -> Result<T, MetaError> {
    let decoded = match b.split_first() {
        Some((&RECORD_FORMAT, body)) => postcard::from_bytes(body),
        Some((&format, body)) if (OLDEST_RECORD_FORMAT..RECORD_FORMAT).contains(&format) => {
            let mut body = body.to_vec();
            body.resize(body.len() + usize::from(RECORD_FORMAT - format), 0);
            postcard::from_bytes(&body)
        }
        Some((v, _)) => return Err(MetaError::Corrupt(format!("unknown record format {v}"))),
        None => return Err(MetaError::Corrupt("empty record".into())),
    };
    decoded.map_err(|e| MetaError::Corrupt(format!("decode: {e}")))
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_le_bytes(a)
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    u32::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_row_round_trips() {
        let row = ChunkRow {
            loc: ChunkLocation {
                segment: 7,
                offset: 16,
                stored_len: 100,
                raw_len: 200,
                codec: Codec::Zstd,
            },
            refs: 3,
            zero_since: 0,
            locked: 2,
        };
        assert_eq!(ChunkRow::decode(&row.encode()).unwrap(), row);
        assert!(ChunkRow::decode(&[0u8; 5]).is_err());
        // A row written before `locked` existed.
        let old = ChunkRow::decode(&row.encode()[..33]).unwrap();
        assert_eq!(old, ChunkRow { locked: 0, ..row });
    }

    #[test]
    fn manifest_round_trips_and_rejects_torn_entries() {
        let refs = vec![
            ChunkRef {
                id: [1; 32],
                len: 5,
            },
            ChunkRef {
                id: [2; 32],
                len: 70000,
            },
        ];
        let enc = encode_manifest(&refs);
        assert_eq!(decode_manifest(&enc).unwrap(), refs);
        assert!(decode_manifest(&enc[..40]).is_err());
    }

    #[test]
    fn older_records_read_with_no_lock_and_no_acl() {
        let rec = ObjectRecord::delete_marker(5);
        let mut enc = encode_record(&rec).unwrap();
        // Format 3 wrote the same fields without the trailing `acl` byte, format 2
        // without `lock` too.
        assert_eq!(enc.pop(), Some(0));
        enc[0] = 3;
        assert_eq!(decode_record::<ObjectRecord>(&enc).unwrap(), rec);
        assert_eq!(enc.pop(), Some(0));
        enc[0] = OLDEST_RECORD_FORMAT;
        assert_eq!(decode_record::<ObjectRecord>(&enc).unwrap(), rec);
        let shared = ObjectRecord {
            acl: Some(Acl {
                grants: vec![AclGrant {
                    grantee: Grantee::AllUsers,
                    permission: AclPermission::Read,
                }],
            }),
            ..rec.clone()
        };
        let enc = encode_record(&shared).unwrap();
        assert_eq!(decode_record::<ObjectRecord>(&enc).unwrap(), shared);
        let locked = ObjectRecord {
            lock: Some(VersionLock {
                retention: Some((LockMode::Compliance, 99)),
                legal_hold: true,
            }),
            ..rec
        };
        let enc = encode_record(&locked).unwrap();
        assert_eq!(decode_record::<ObjectRecord>(&enc).unwrap(), locked);
    }

    #[test]
    fn record_format_byte_is_checked() {
        let ev = OutboxEvent {
            bucket: "b".into(),
            key: "k".into(),
            version_id: NULL_VERSION.into(),
            kind: EventKind::Delete,
            time_ms: 1,
        };
        let mut enc = encode_record(&ev).unwrap();
        assert_eq!(decode_record::<OutboxEvent>(&enc).unwrap(), ev);
        enc[0] = 9;
        assert!(decode_record::<OutboxEvent>(&enc).is_err());
    }
}
