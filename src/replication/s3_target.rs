//! A plain S3 bucket as a replica (`TargetKind::S3`): AWS S3, another vendor, or
//! an ordinary bucket of another hoard. `S3Target` is the source's client of it:
//! path-style S3 requests signed with the rule's key (SigV4 in the rule's region),
//! over https trusting only the rule's CA or pinned certificate, or over plain
//! http when the rule's URL says so.
//!
//! There is no dedup on this wire: each version is rehydrated (read back and
//! verified through `retrieve`) and written whole, with PUT up to `part_size`, else
//! as a multipart upload of parts of that size. Every request body carries its
//! Content-MD5, so a version counts as written only when the target checked it.
//! Each version carries its user metadata, standard headers, tags, its Object Lock
//! headers when the target bucket has Object Lock, and two metadata entries that
//! say which source version it is (`x-amz-meta-hoard-version-id`,
//! `x-amz-meta-hoard-seq`). The sender records the newest version of each key the
//! target acknowledged (`MetaStore::target_seq`), so a version is written once.
//!
//! A multipart upload that fails half-way keeps its id and finished parts in
//! memory: the retry sends only the parts missing. (After a restart of the source
//! the version starts over; the target's own lifecycle rule for incomplete uploads
//! reclaims the abandoned one.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use super::rules::{RulesError, target_tls};
use crate::auth::Credentials;
use crate::meta::{LockMode, ObjectRecord, RuleRecord};
use crate::metrics::Metrics;
use crate::pace::Pacer;
use crate::signed_client::{ClientError, SignedClient};

/// S3's smallest part (but the last).
const MIN_PART: u64 = 5 << 20;
/// S3's most parts of one upload.
const MAX_PARTS: u64 = 10_000;
/// The part size unless an object needs bigger ones.
pub const PART_SIZE: u64 = 16 << 20;

/// The part size for an object of `size` bytes: `PART_SIZE`, or bigger so that it
/// takes at most `MAX_PARTS` parts.
pub fn part_size(size: u64) -> u64 {
    PART_SIZE.max(size.div_ceil(MAX_PARTS)).max(MIN_PART)
}

/// A multipart upload of one source version in progress.
#[derive(Debug, Clone)]
struct Upload {
    id: String,
    /// (part number, ETag) of the parts the target took.
    parts: Vec<(u32, String)>,
}

pub struct S3Target {
    client: SignedClient,
    target: String,
    bucket: String,
    bandwidth: Pacer,
    metrics: Arc<Metrics>,
    /// The bucket has Object Lock: versions are written with their lock headers.
    object_lock: bool,
    /// (key, source version id) -> its unfinished multipart upload.
    uploads: Mutex<HashMap<(String, String), Upload>>,
}

/// Every byte but the unreserved ones and '/', percent-encoded: an S3 key in a path.
const KEY_SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

fn base64_md5(data: &[u8]) -> String {
    use base64::Engine as _;
    let md5 = <s3s::crypto::Md5 as s3s::crypto::Checksum>::checksum(data);
    base64::engine::general_purpose::STANDARD.encode(md5)
}

impl S3Target {
    pub fn new(
        rule: &RuleRecord,
        secret_key: String,
        region: &str,
        metrics: Arc<Metrics>,
    ) -> Result<S3Target, RulesError> {
        let target_err = |reason: String| RulesError::Target {
            target: rule.target.clone(),
            reason,
        };
        let tls = target_tls(rule)?;
        let creds = Credentials {
            access_key: rule.access_key.clone(),
            secret_key,
        };
        // Bodies are signed: a plain S3 endpoint may be reached over plain http.
        let client = SignedClient::new(&rule.target, "/", region, creds, tls, true)
            .map_err(|e| target_err(e.to_string()))?;
        Ok(S3Target {
            client,
            target: rule.target.clone(),
            bucket: rule.target_bucket.clone(),
            bandwidth: Pacer::new(rule.bandwidth),
            metrics,
            object_lock: false,
            uploads: Mutex::default(),
        })
    }

    fn error(&self, e: ClientError) -> RulesError {
        RulesError::of_target(&self.target, e)
    }

    /// `BUCKET/KEY?QUERY`, the key percent-encoded.
    fn path(&self, key: &str, query: &str) -> String {
        let key = percent_encoding::utf8_percent_encode(key, KEY_SET);
        match query {
            "" => format!("{}/{key}", self.bucket),
            q => format!("{}/{key}?{q}", self.bucket),
        }
    }

    async fn send(
        &self,
        method: http::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<(http::HeaderMap, bytes::Bytes), RulesError> {
        self.bandwidth.pass(body.len() as u64).await;
        let sent = body.len() as u64;
        let answer = self.client.send(method, path, headers, body).await;
        self.metrics.replication_sent_bytes.inc_by(sent);
        answer.map_err(|e| self.error(e))
    }

    /// Checks that the bucket answers to the rule's key (HEAD of the bucket) and
    /// learns whether it is versioned and has Object Lock (a server that does not
    /// answer those has neither); says what it found.
    pub async fn check(&mut self) -> Result<String, RulesError> {
        let bucket = self.bucket.clone();
        self.send(http::Method::HEAD, &bucket, &[], Vec::new())
            .await?;
        let versioned = self.probe("versioning", "<Status>Enabled</Status>").await?;
        self.object_lock = self.probe("object-lock", "Enabled").await?;
        Ok(format!(
            "S3 bucket {} ({}{})",
            self.bucket,
            if versioned {
                "versioned"
            } else {
                "unversioned"
            },
            if self.object_lock {
                ", Object Lock"
            } else {
                ""
            }
        ))
    }

    /// Whether the bucket's `?query` document says `enabled`; an error status
    /// (not configured, not implemented) says no, an unreachable target fails.
    async fn probe(&self, query: &str, enabled: &str) -> Result<bool, RulesError> {
        let path = format!("{}?{query}", self.bucket);
        match self
            .client
            .send(http::Method::GET, &path, &[], Vec::new())
            .await
        {
            Ok((_, body)) => Ok(String::from_utf8_lossy(&body).contains(enabled)),
            Err(ClientError::Status { .. }) => Ok(false),
            Err(e) => Err(self.error(e)),
        }
    }

    /// Whether `key` has a current version on the target.
    pub async fn holds(&self, key: &str) -> Result<bool, RulesError> {
        let path = self.path(key, "");
        match self.send(http::Method::HEAD, &path, &[], Vec::new()).await {
            Ok(_) => Ok(true),
            Err(RulesError::Refused { status: 404, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Removes `key` (a delete marker where the bucket is versioned).
    pub async fn delete(&self, key: &str) -> Result<(), RulesError> {
        let path = self.path(key, "");
        self.send(http::Method::DELETE, &path, &[], Vec::new())
            .await
            .map(drop)
    }

    /// Replaces the tags of the target's current version of `key`.
    pub async fn put_tags(&self, key: &str, tags: &[(String, String)]) -> Result<(), RulesError> {
        let body = tagging_xml(tags).into_bytes();
        let md5 = base64_md5(&body);
        let path = self.path(key, "tagging");
        self.send(http::Method::PUT, &path, &[("content-md5", &md5)], body)
            .await
            .map(drop)
    }

    /// The headers a version is written with: standard headers, user metadata,
    /// tags, lock (where the bucket has Object Lock) and its source version.
    fn version_headers(&self, rec: &ObjectRecord) -> Vec<(String, String)> {
        let h = &rec.headers;
        let mut out: Vec<(String, String)> = [
            ("content-type", &h.content_type),
            ("content-encoding", &h.content_encoding),
            ("content-disposition", &h.content_disposition),
            ("content-language", &h.content_language),
            ("cache-control", &h.cache_control),
            ("expires", &h.expires),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_owned(), v.clone()?)))
        .collect();
        for (k, v) in &rec.user_meta {
            out.push((format!("x-amz-meta-{}", k.to_ascii_lowercase()), v.clone()));
        }
        out.push(("x-amz-meta-hoard-version-id".into(), rec.version_id.clone()));
        out.push(("x-amz-meta-hoard-seq".into(), rec.seq.to_string()));
        if !rec.tags.is_empty() {
            let tags = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(rec.tags.iter())
                .finish();
            out.push(("x-amz-tagging".into(), tags));
        }
        if let Some(lock) = rec.lock.filter(|_| self.object_lock) {
            if let Some((mode, until_ms)) = lock.retention {
                let mode = match mode {
                    LockMode::Governance => "GOVERNANCE",
                    LockMode::Compliance => "COMPLIANCE",
                };
                out.push(("x-amz-object-lock-mode".into(), mode.into()));
                let until = time::OffsetDateTime::from_unix_timestamp_nanos(
                    i128::from(until_ms) * 1_000_000,
                )
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                });
                if let Some(until) = until {
                    out.push(("x-amz-object-lock-retain-until-date".into(), until));
                }
            }
            if lock.legal_hold {
                out.push(("x-amz-object-lock-legal-hold".into(), "ON".into()));
            }
        }
        out
    }

    /// Writes a whole version with one PUT; returns the bytes sent.
    pub async fn put(
        &self,
        key: &str,
        rec: &ObjectRecord,
        body: Vec<u8>,
    ) -> Result<u64, RulesError> {
        let mut headers = self.version_headers(rec);
        headers.push(("content-md5".into(), base64_md5(&body)));
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let sent = body.len() as u64;
        self.send(http::Method::PUT, &self.path(key, ""), &pairs, body)
            .await?;
        Ok(sent)
    }

    /// The multipart upload of `rec` in progress (from an earlier try), or a new one.
    async fn upload_of(&self, key: &str, rec: &ObjectRecord) -> Result<Upload, RulesError> {
        let slot = (key.to_owned(), rec.version_id.clone());
        if let Some(u) = self.lock_uploads().get(&slot) {
            return Ok(u.clone());
        }
        let headers = self.version_headers(rec);
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let (_, body) = self
            .send(
                http::Method::POST,
                &self.path(key, "uploads"),
                &pairs,
                Vec::new(),
            )
            .await?;
        #[derive(Deserialize)]
        struct Initiated {
            #[serde(rename = "UploadId")]
            upload_id: String,
        }
        let started: Initiated =
            quick_xml::de::from_str(&String::from_utf8_lossy(&body)).map_err(|e| {
                RulesError::Target {
                    target: self.target.clone(),
                    reason: format!("CreateMultipartUpload answered no upload id: {e}"),
                }
            })?;
        let upload = Upload {
            id: started.upload_id,
            parts: Vec::new(),
        };
        self.lock_uploads().insert(slot, upload.clone());
        Ok(upload)
    }

    fn lock_uploads(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Upload>> {
        self.uploads.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The parts of `rec`'s upload the target has from an earlier try, and its id.
    pub async fn parts_done(
        &self,
        key: &str,
        rec: &ObjectRecord,
    ) -> Result<(String, u32), RulesError> {
        let upload = self.upload_of(key, rec).await?;
        let done = upload.parts.len() as u32;
        Ok((upload.id, done))
    }

    /// Sends part `n` (from 1) of `rec`'s upload `id`; returns the bytes sent.
    pub async fn put_part(
        &self,
        key: &str,
        rec: &ObjectRecord,
        id: &str,
        n: u32,
        body: Vec<u8>,
    ) -> Result<u64, RulesError> {
        let md5 = base64_md5(&body);
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("partNumber", &n.to_string())
            .append_pair("uploadId", id)
            .finish();
        let sent = body.len() as u64;
        let (headers, _) = self
            .send(
                http::Method::PUT,
                &self.path(key, &query),
                &[("content-md5", &md5)],
                body,
            )
            .await?;
        let etag = headers
            .get(http::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let slot = (key.to_owned(), rec.version_id.clone());
        if let Some(u) = self.lock_uploads().get_mut(&slot) {
            u.parts.push((n, etag));
        }
        Ok(sent)
    }

    /// Completes `rec`'s upload with the parts sent; returns the bytes sent.
    pub async fn complete(&self, key: &str, rec: &ObjectRecord) -> Result<u64, RulesError> {
        let slot = (key.to_owned(), rec.version_id.clone());
        let Some(upload) = self.lock_uploads().get(&slot).cloned() else {
            return Err(RulesError::Target {
                target: self.target.clone(),
                reason: format!("no multipart upload of {key} in progress"),
            });
        };
        let mut xml = String::from("<CompleteMultipartUpload>");
        for (n, etag) in &upload.parts {
            xml.push_str(&format!(
                "<Part><PartNumber>{n}</PartNumber><ETag>{}</ETag></Part>",
                quick_xml::escape::escape(etag.as_str())
            ));
        }
        xml.push_str("</CompleteMultipartUpload>");
        let body = xml.into_bytes();
        let sent = body.len() as u64;
        let query = format!(
            "uploadId={}",
            form_urlencoded::byte_serialize(upload.id.as_bytes()).collect::<String>()
        );
        let (_, answer) = self
            .send(http::Method::POST, &self.path(key, &query), &[], body)
            .await?;
        // S3 may answer 200 with an error in the body.
        if String::from_utf8_lossy(&answer).contains("<Error>") {
            return Err(RulesError::Target {
                target: self.target.clone(),
                reason: format!(
                    "CompleteMultipartUpload of {key} failed: {}",
                    String::from_utf8_lossy(&answer)
                ),
            });
        }
        self.lock_uploads().remove(&slot);
        Ok(sent)
    }
}

/// A `<Tagging>` document.
fn tagging_xml(tags: &[(String, String)]) -> String {
    let mut xml = String::from("<Tagging><TagSet>");
    for (k, v) in tags {
        xml.push_str(&format!(
            "<Tag><Key>{}</Key><Value>{}</Value></Tag>",
            quick_xml::escape::escape(k.as_str()),
            quick_xml::escape::escape(v.as_str())
        ));
    }
    xml.push_str("</TagSet></Tagging>");
    xml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_big_enough_for_s3_and_never_too_many() {
        assert_eq!(part_size(1), PART_SIZE);
        assert_eq!(part_size(100 << 30), PART_SIZE);
        let huge = 5u64 << 40; // 5 TiB, S3's largest object
        assert!(part_size(huge) * MAX_PARTS >= huge);
        assert!(part_size(huge) >= MIN_PART);
    }

    #[test]
    fn tags_are_escaped_in_their_document() {
        let xml = tagging_xml(&[("a<b".into(), "c&d".into())]);
        assert_eq!(
            xml,
            "<Tagging><TagSet><Tag><Key>a&lt;b</Key><Value>c&amp;d</Value></Tag></TagSet></Tagging>"
        );
    }
}
