//! CopyObject, UploadPartCopy and DeleteObjects.
//!
//! CopyObject never touches stored bytes: the copy gets its own manifests naming
//! the source's chunks, which gain a reference each (see `MetaStore::copy_object`).
//! UploadPartCopy streams the source range back through the ingest pipeline, so the
//! part's ETag is the MD5 of its bytes as S3 defines it; dedup shares every chunk of
//! the range except those around its two ends, where chunking re-synchronises.

use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

use super::object::{
    MAX_PUT_SIZE, check_conditions, check_new_key, delete_condition, stored_headers, user_meta,
    with_checksums,
};
use super::{HoardS3, meta_error, retrieve_error, timestamp};
use crate::ingest::{ChecksumSet, IngestParams, IngestedBody};
use crate::meta::{DeleteTarget, MetaError, ObjectRecord, PartRecord, now_ms};

/// Keys one DeleteObjects request may name.
const MAX_DELETE_KEYS: usize = 1000;
/// Attempts when the copy source changes between its check and the copy.
const COPY_ATTEMPTS: usize = 3;

fn precondition_failed() -> S3Error {
    s3_error!(
        PreconditionFailed,
        "At least one of the pre-conditions you specified did not hold"
    )
}

/// The bucket, key and version of a copy source.
fn copy_source(src: &CopySource) -> S3Result<(&str, &str, Option<&str>)> {
    match src {
        CopySource::Bucket {
            bucket,
            key,
            version_id,
        } => {
            if let Some(v) = version_id {
                super::object::check_version_id(v)?;
            }
            Ok((bucket, key, version_id.as_deref()))
        }
        _ => Err(s3_error!(
            NotImplemented,
            "Access point and outpost copy sources are not supported"
        )),
    }
}

/// Parses `bytes=first-last` against an object of `size` bytes.
fn copy_range(v: Option<&str>, size: u64) -> S3Result<std::ops::Range<u64>> {
    let Some(v) = v else { return Ok(0..size) };
    let malformed = || {
        s3_error!(
            InvalidArgument,
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy"
        )
    };
    let (first, last) = v
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .ok_or_else(malformed)?;
    let first: u64 = first.trim().parse().map_err(|_| malformed())?;
    let last: u64 = last.trim().parse().map_err(|_| malformed())?;
    if first > last {
        return Err(malformed());
    }
    if last >= size {
        return Err(s3_error!(
            InvalidRange,
            "The requested range is not satisfiable"
        ));
    }
    Ok(first..last + 1)
}

impl HoardS3 {
    /// Looks up a copy source and applies the x-amz-copy-source-if-* conditions;
    /// every failed condition is a 412, as S3 answers copies.
    async fn copy_source_record(
        &self,
        (bucket, key, version): (&str, &str, Option<&str>),
        if_match: Option<&ETagCondition>,
        if_none_match: Option<&ETagCondition>,
        if_modified_since: Option<&Timestamp>,
        if_unmodified_since: Option<&Timestamp>,
    ) -> S3Result<ObjectRecord> {
        let rec = self.find_object(bucket, key, version).await?;
        check_conditions(
            &rec,
            if_match,
            if_none_match,
            if_modified_since,
            if_unmodified_since,
        )
        .map_err(|e| {
            if *e.code() == S3ErrorCode::NotModified {
                precondition_failed()
            } else {
                e
            }
        })?;
        Ok(rec)
    }

    pub(super) async fn copy_object_impl(
        &self,
        mut req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let input = &mut req.input;
        let (src_bucket, src_key, src_version) = copy_source(&input.copy_source)?;
        let (src_bucket, src_key) = (src_bucket.to_owned(), src_key.to_owned());
        let src_version = src_version.map(str::to_owned);
        check_new_key(&input.key)?;
        let dst_bucket = self.bucket(&input.bucket).await?;
        // The copy's lock is its own (headers or the bucket's default), never the
        // source's.
        let lock =
            self.new_version_lock(&dst_bucket, &super::lock::lock_headers!(&*input), None)?;
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        if src_bucket == input.bucket && src_key == input.key && src_version.is_none() && !replace {
            return Err(s3_error!(
                InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
            ));
        }
        let replaced = match replace {
            true => Some((stored_headers!(input), user_meta(input.metadata.take())?)),
            false => None,
        };
        let replace_tags = input
            .tagging_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == TaggingDirective::REPLACE);
        let new_tags = super::object::parse_tagging(input.tagging.as_deref())?;
        // S3 never copies an ACL: the copy has the one its request gives.
        let acl = self
            .new_version_acl(&input.bucket, input.acl.as_ref(), &req.headers)
            .await?;
        for _ in 0..COPY_ATTEMPTS {
            let source = self
                .copy_source_record(
                    (&src_bucket, &src_key, src_version.as_deref()),
                    input.copy_source_if_match.as_ref(),
                    input.copy_source_if_none_match.as_ref(),
                    input.copy_source_if_modified_since.as_ref(),
                    input.copy_source_if_unmodified_since.as_ref(),
                )
                .await?;
            let (headers, meta) = replaced
                .clone()
                .unwrap_or_else(|| (source.headers.clone(), source.user_meta.clone()));
            let rec = ObjectRecord {
                modified_ms: now_ms(),
                headers,
                user_meta: meta,
                tags: if replace_tags {
                    new_tags.clone()
                } else {
                    source.tags.clone()
                },
                lock,
                acl: acl.clone(),
                ..source.clone()
            };
            let done = self
                .meta
                .copy_object(
                    (&src_bucket, &src_key, src_version.clone()),
                    (&source.etag, source.modified_ms),
                    (&input.bucket, &input.key),
                    rec.clone(),
                )
                .await;
            let version_id = match done {
                Err(MetaError::SourceChanged) => continue,
                Err(e) => return Err(meta_error(e)),
                Ok(v) => v,
            };
            tracing::debug!(%src_bucket, %src_key, bucket = %input.bucket, key = %input.key, size = rec.size, "object copied");
            let result = with_checksums!(CopyObjectResult, &rec.checksums, {
                e_tag: Some(ETag::Strong(rec.etag.clone())),
                last_modified: Some(timestamp(rec.modified_ms)),
            });
            return Ok(S3Response::new(CopyObjectOutput {
                copy_object_result: Some(result),
                version_id: super::object::reported_version(&version_id),
                copy_source_version_id: super::object::reported_version(&source.version_id),
                ..Default::default()
            }));
        }
        Err(s3_error!(
            SlowDown,
            "The copy source kept changing; please retry."
        ))
    }

    pub(super) async fn upload_part_copy_impl(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let i = req.input;
        let number = super::multipart::part_number(i.part_number)?;
        let src = copy_source(&i.copy_source)?;
        let bucket_rec = self.bucket(&i.bucket).await?;
        let upload = self
            .meta
            .get_upload(&i.bucket, &i.key, &i.upload_id)
            .await
            .map_err(meta_error)?;
        let source = self
            .copy_source_record(
                src,
                i.copy_source_if_match.as_ref(),
                i.copy_source_if_none_match.as_ref(),
                i.copy_source_if_modified_since.as_ref(),
                i.copy_source_if_unmodified_since.as_ref(),
            )
            .await?;
        let range = copy_range(i.copy_source_range.as_deref(), source.size)?;
        if range.end - range.start > MAX_PUT_SIZE as u64 {
            return Err(s3_error!(
                EntityTooLarge,
                "Your proposed upload exceeds the maximum allowed object size."
            ));
        }
        self.meta
            .check_quota(&i.bucket, None, range.end - range.start)
            .await
            .map_err(meta_error)?;
        let body = self
            .retrieve
            .open(&source, range.clone())
            .await
            .map_err(retrieve_error)?;
        let params = IngestParams {
            bucket: i.bucket.clone(),
            chunking: bucket_rec.chunking,
            compression_level: bucket_rec.compression_level,
            checksums: upload
                .checksum_algorithm
                .as_deref()
                .map(ChecksumSet::of)
                .unwrap_or_default(),
            expected_len: Some(range.end - range.start),
            inline: false,
        };
        let ingested = self.ingest_stream(params, body).await?;
        let manifest = match ingested.body {
            IngestedBody::Chunked(m) => m,
            IngestedBody::Inline(_) => Vec::new(),
        };
        let checksums = super::object::computed_pairs(&ingested.checksums);
        let rec = PartRecord {
            size: ingested.size,
            etag: hex::encode(ingested.md5),
            modified_ms: now_ms(),
            manifest: 0,
            chunks: 0,
            checksums,
        };
        self.meta
            .put_part(
                &i.bucket,
                &i.key,
                &i.upload_id,
                number,
                rec.clone(),
                manifest,
                Some(ingested.held.hold().id()),
            )
            .await
            .map_err(meta_error)?;
        ingested.held.disarm();
        let result = with_checksums!(CopyPartResult, &rec.checksums, {
            e_tag: Some(ETag::Strong(rec.etag.clone())),
            last_modified: Some(timestamp(rec.modified_ms)),
        });
        Ok(S3Response::new(UploadPartCopyOutput {
            copy_part_result: Some(result),
            ..Default::default()
        }))
    }

    pub(super) async fn delete_objects_impl(
        &self,
        mut req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let lock = self.lock_check(
            req.credentials.as_ref(),
            &req.input.bucket,
            req.input.bypass_governance_retention.unwrap_or(false),
        );
        let refused = req
            .extensions
            .remove::<crate::policy::DeniedDeletes>()
            .unwrap_or_default()
            .0;
        let i = req.input;
        let objects = i.delete.objects;
        let count = objects.len() + refused.len();
        if count == 0 || count > MAX_DELETE_KEYS {
            return Err(s3_error!(
                MalformedXML,
                "The XML you provided was not well-formed or did not validate against our published schema"
            ));
        }
        let quiet = i.delete.quiet.unwrap_or(false);
        let denied = s3_error!(AccessDenied, "Access Denied");
        let mut errors: Vec<Error> = refused
            .into_iter()
            .map(|(key, version)| key_error(key, version, &denied))
            .collect();
        let mut targets = Vec::with_capacity(objects.len());
        for o in objects {
            match delete_target(&o) {
                Ok(t) => targets.push(t),
                Err(e) => errors.push(key_error(o.key, o.version_id, &e)),
            }
        }
        let asked: Vec<_> = targets
            .iter()
            .map(|t| (t.key.clone(), t.version.clone()))
            .collect();
        let outcomes = self
            .meta
            .delete_objects(&i.bucket, targets, lock)
            .await
            .map_err(meta_error)?;
        // Deleting an absent key or version succeeds, as in S3.
        let mut deleted = Vec::new();
        for ((key, asked), outcome) in asked.into_iter().zip(outcomes) {
            let outcome = match outcome {
                Ok(o) => o,
                Err(e) => {
                    errors.push(key_error(key, asked, &meta_error(e)));
                    continue;
                }
            };
            if quiet {
                continue;
            }
            let marker = outcome.as_ref().is_some_and(|o| o.delete_marker);
            let removed = outcome.and_then(|o| o.version_id);
            deleted.push(DeletedObject {
                key: Some(key),
                delete_marker: marker.then_some(true),
                delete_marker_version_id: if asked.is_none() && marker {
                    removed.clone()
                } else {
                    None
                },
                version_id: asked,
            });
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: (!deleted.is_empty()).then_some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            ..Default::default()
        }))
    }
}

/// What one `<Object>` of a DeleteObjects body asks to delete, or why it is refused.
fn delete_target(o: &ObjectIdentifier) -> S3Result<DeleteTarget> {
    if let Some(v) = o.version_id.as_deref()
        && crate::meta::parse_version_id(v).is_none()
    {
        return Err(s3_error!(InvalidArgument, "Invalid version id specified"));
    }
    Ok(DeleteTarget {
        key: o.key.clone(),
        version: o.version_id.clone(),
        condition: delete_condition(
            o.e_tag.as_ref().map(ETag::value),
            o.last_modified_time.as_ref(),
            o.size,
        )?,
    })
}

/// One key's `<Error>` in a DeleteObjects answer.
fn key_error(key: String, version_id: Option<String>, e: &S3Error) -> Error {
    Error {
        code: Some(e.code().as_str().to_owned()),
        key: Some(key),
        message: e.message().map(str::to_owned),
        version_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_ranges_parse_like_s3() {
        assert_eq!(copy_range(None, 10).unwrap(), 0..10);
        assert_eq!(copy_range(Some("bytes=2-5"), 10).unwrap(), 2..6);
        assert_eq!(copy_range(Some("bytes=0-9"), 10).unwrap(), 0..10);
        for bad in ["bytes=5-2", "2-5", "bytes=-5", "bytes=a-b", "bytes=3-"] {
            assert_eq!(
                *copy_range(Some(bad), 10).unwrap_err().code(),
                S3ErrorCode::InvalidArgument,
                "{bad}"
            );
        }
        assert_eq!(
            *copy_range(Some("bytes=5-10"), 10).unwrap_err().code(),
            S3ErrorCode::InvalidRange
        );
    }
}
