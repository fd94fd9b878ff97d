//! Veeam's Smart Object Storage API (SOSAPI 1.0): two virtual objects in every
//! bucket, `.system-d26a9498-cb7c-4a87-a44a-8ae204f5ba6c/system.xml` (what hoard is
//! and what it recommends) and `.../capacity.xml` (capacity, available and used
//! bytes). Veeam Backup & Replication reads them with GET and HEAD and polls
//! capacity.xml every few minutes.
//!
//! - They are made when read, as an inline object record, so GET and HEAD answer
//!   them like any object: Range, conditions, ETag (MD5 of the document),
//!   Last-Modified, `application/xml`.
//! - They are listed only by a listing whose prefix starts with the folder, as the
//!   documents of a storage system that wrote them there would be, never in a
//!   listing of the whole bucket.
//! - A PUT of either key (Veeam writes them on some versions) is answered like a
//!   stored PUT (200, the ETag of what was sent) and stores nothing: the documents
//!   are the storage system's own word, which a client cannot replace. A DELETE of
//!   them deletes nothing, as for any absent key.
//! - KbBlockSize recommends 1024 KiB, Veeam's "Local target" block: Veeam compresses
//!   each block into one object, so an unchanged block of a new full backup is the
//!   same object again and dedups whole at any block size, while a changed one is
//!   new whatever hoard's chunker does inside it. Smaller blocks only add objects
//!   (and metadata) per byte; larger ones make each changed block, and so each
//!   incremental, larger. 1 MiB blocks compress to about eight of hoard's 64 KiB
//!   chunks, so an object's last, short chunk is a small share of it.
//! - capacity.xml: the bucket's quota when it has one, else the store's quota (both
//!   in logical bytes, with the logical bytes stored as used), else the file system
//!   of the data dir for a local store (its size, free space and the difference).
//!   Available is never negative. A store in an object store with no quota has no
//!   capacity to report: system.xml says CapacityInfo false and capacity.xml does
//!   not exist.

use futures::StreamExt as _;
use s3s::dto::{ETag, PutObjectInput, PutObjectOutput};
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::{HoardS3, meta_error};
use crate::meta::{BucketRecord, NULL_VERSION, ObjectData, ObjectRecord, StoredHeaders};

pub(super) const FOLDER: &str = ".system-d26a9498-cb7c-4a87-a44a-8ae204f5ba6c/";
const SYSTEM: &str = ".system-d26a9498-cb7c-4a87-a44a-8ae204f5ba6c/system.xml";
const CAPACITY: &str = ".system-d26a9498-cb7c-4a87-a44a-8ae204f5ba6c/capacity.xml";
/// The most a PUT of a SOSAPI key may send (it is read and dropped).
pub(super) const MAX_PUT: usize = 1 << 20;
/// Veeam's block size hoard recommends, KiB (see the module docs).
const KB_BLOCK_SIZE: u32 = 1024;
/// DeleteObjects takes at most this many keys.
const DELETE_LIMIT: u32 = 1000;

pub(super) fn is_sosapi_key(key: &str) -> bool {
    key == SYSTEM || key == CAPACITY
}

/// Capacity, available and used bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Capacity {
    capacity: u64,
    available: u64,
    used: u64,
}

impl Capacity {
    fn of(limit: u64, used: u64) -> Capacity {
        Capacity {
            capacity: limit,
            available: limit.saturating_sub(used),
            used,
        }
    }
}

fn system_xml(capacity_info: bool, concurrent_tasks: usize) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<SystemInfo>
  <ProtocolVersion>"1.0"</ProtocolVersion>
  <ModelName>"hoard {version}"</ModelName>
  <ProtocolCapabilities>
    <CapacityInfo>{capacity_info}</CapacityInfo>
    <UploadSessions>false</UploadSessions>
    <IAMSTS>false</IAMSTS>
  </ProtocolCapabilities>
  <SystemRecommendations>
    <S3ConcurrentTaskLimit>{concurrent_tasks}</S3ConcurrentTaskLimit>
    <S3MultiObjectDeleteLimit>{DELETE_LIMIT}</S3MultiObjectDeleteLimit>
    <KbBlockSize>{KB_BLOCK_SIZE}</KbBlockSize>
  </SystemRecommendations>
</SystemInfo>
"#,
        version = env!("CARGO_PKG_VERSION"),
    )
}

fn capacity_xml(c: Capacity) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<CapacityInfo>
  <Capacity>{}</Capacity>
  <Available>{}</Available>
  <Used>{}</Used>
</CapacityInfo>
"#,
        c.capacity, c.available, c.used
    )
}

pub(super) fn md5_hex(b: &[u8]) -> String {
    use s3s::crypto::Checksum as _;
    let mut m = s3s::crypto::Md5::new();
    m.update(b);
    hex::encode(m.finalize())
}

/// A document as an inline object record.
fn record(xml: String, modified_ms: i64) -> ObjectRecord {
    let etag = md5_hex(xml.as_bytes());
    ObjectRecord {
        size: xml.len() as u64,
        etag,
        modified_ms,
        headers: StoredHeaders {
            content_type: Some("application/xml".into()),
            ..Default::default()
        },
        user_meta: Vec::new(),
        checksums: Vec::new(),
        data: ObjectData::Inline(xml.into_bytes()),
        version_id: NULL_VERSION.into(),
        seq: 0,
        delete_marker: false,
        tags: Vec::new(),
        lock: None,
        acl: None,
        part_checksums: None,
    }
}

impl HoardS3 {
    /// The bucket's capacity as capacity.xml reports it; `None` when there is none
    /// to report (an object store without quotas).
    async fn capacity(&self, bucket: &str) -> S3Result<Option<Capacity>> {
        let quotas = self.meta.quotas().await.map_err(meta_error)?;
        let (stats, _) = self.meta.stats().await.map_err(meta_error)?;
        let logical = |b: &str| {
            stats
                .iter()
                .find(|(name, _)| name == b)
                .map_or(0, |(_, s)| s.logical_bytes)
        };
        if let Some((_, limit)) = quotas.buckets.iter().find(|(b, _)| b == bucket) {
            return Ok(Some(Capacity::of(*limit, logical(bucket))));
        }
        if let Some(limit) = quotas.store {
            let used = stats.iter().map(|(_, s)| s.logical_bytes).sum();
            return Ok(Some(Capacity::of(limit, used)));
        }
        if self.cfg.segments.backend != crate::config::Backend::Fs {
            return Ok(None);
        }
        Ok(
            crate::stats::disk_usage(&self.cfg.data_dir).map(|d| Capacity {
                capacity: d.total_bytes,
                available: d.free_bytes,
                used: d.total_bytes.saturating_sub(d.free_bytes),
            }),
        )
    }

    /// The SOSAPI document `key` names in `bucket`, if it is one and exists.
    pub(super) async fn sosapi_document(
        &self,
        bucket: &BucketRecord,
        name: &str,
        key: &str,
    ) -> S3Result<Option<ObjectRecord>> {
        let capacity = self.capacity(name).await?;
        Ok(match key {
            SYSTEM => Some(record(
                system_xml(capacity.is_some(), self.cfg.max_streams),
                bucket.created_ms,
            )),
            CAPACITY => capacity.map(|c| record(capacity_xml(c), crate::meta::now_ms())),
            _ => None,
        })
    }

    /// A PUT of a SOSAPI key: the body is read (at most `MAX_PUT` bytes) and
    /// dropped; the answer is what a stored PUT would get.
    pub(super) async fn put_sosapi_document(
        &self,
        mut req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let mut sent = Vec::new();
        if let Some(mut body) = req.input.body.take() {
            while let Some(piece) = body.next().await {
                let piece = piece.map_err(|e| {
                    tracing::info!(error = %e, "SOSAPI document body failed");
                    s3_error!(IncompleteBody, "The request body could not be read.")
                })?;
                if sent.len() + piece.len() > MAX_PUT {
                    return Err(s3_error!(
                        EntityTooLarge,
                        "Your proposed upload exceeds the maximum allowed object size."
                    ));
                }
                sent.extend_from_slice(&piece);
            }
        }
        tracing::info!(
            bucket = %req.input.bucket,
            key = %req.input.key,
            bytes = sent.len(),
            "a client wrote a SOSAPI document; hoard answers its own and keeps none"
        );
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(ETag::Strong(md5_hex(&sent))),
            ..Default::default()
        }))
    }

    /// The documents a listing with `prefix`, after `after`, includes.
    pub(super) async fn sosapi_listed(
        &self,
        name: &str,
        prefix: &str,
        after: Option<&str>,
    ) -> S3Result<Vec<(String, ObjectRecord)>> {
        if !prefix.starts_with(FOLDER) {
            return Ok(Vec::new());
        }
        let bucket = self.bucket(name).await?;
        let mut out = Vec::new();
        for key in [CAPACITY, SYSTEM] {
            if !key.starts_with(prefix) || after.is_some_and(|a| key <= a) {
                continue;
            }
            if let Some(rec) = self.sosapi_document(&bucket, name, key).await? {
                out.push((key.to_owned(), rec));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn available_is_never_negative() {
        assert_eq!(
            Capacity::of(100, 130),
            Capacity {
                capacity: 100,
                available: 0,
                used: 130
            }
        );
        let xml = capacity_xml(Capacity::of(1000, 250));
        assert!(xml.contains("<Available>750</Available>"), "{xml}");
    }
}
