//! Bucket versioning, ListObjectVersions, object and bucket tagging, and
//! GetObjectAttributes.

use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

use super::list::Encoder;
use super::object::{check_version_id, reported_version};
use super::{HoardS3, meta_error, timestamp};
use crate::meta::{
    ObjectData, VersionEntry, VersionQuery, Versioning, check_tags, parse_version_id,
};

const MAX_OBJECT_TAGS: usize = 10;
const MAX_BUCKET_TAGS: usize = 50;
const DEFAULT_MAX_KEYS: i32 = 1000;

fn tags_from(tagging: Tagging, max: usize) -> S3Result<Vec<(String, String)>> {
    let tags: Vec<(String, String)> = tagging
        .tag_set
        .into_iter()
        .map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default()))
        .collect();
    check_tags(&tags, max).map_err(|m| S3Error::with_message(S3ErrorCode::InvalidTag, m))?;
    Ok(tags)
}

pub(super) fn tag_set(tags: Vec<(String, String)>) -> TagSet {
    tags.into_iter()
        .map(|(k, v)| Tag {
            key: Some(k),
            value: Some(v),
        })
        .collect()
}

impl HoardS3 {
    pub(super) async fn put_bucket_versioning_impl(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        let i = req.input;
        let state = match i
            .versioning_configuration
            .status
            .as_ref()
            .map(|s| s.as_str())
        {
            Some(BucketVersioningStatus::ENABLED) => Versioning::Enabled,
            Some(BucketVersioningStatus::SUSPENDED) => Versioning::Suspended,
            _ => {
                return Err(super::malformed_xml());
            }
        };
        // A bucket never returns to "unversioned".
        self.meta
            .set_versioning(&i.bucket, state)
            .await
            .map_err(meta_error)?;
        tracing::info!(bucket = %i.bucket, ?state, "bucket versioning changed");
        Ok(S3Response::new(PutBucketVersioningOutput::default()))
    }

    pub(super) async fn get_bucket_versioning_impl(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        let rec = self.bucket(&req.input.bucket).await?;
        let status = match rec.versioning {
            Versioning::Unversioned => None,
            Versioning::Enabled => Some(BucketVersioningStatus::from_static(
                BucketVersioningStatus::ENABLED,
            )),
            Versioning::Suspended => Some(BucketVersioningStatus::from_static(
                BucketVersioningStatus::SUSPENDED,
            )),
        };
        Ok(S3Response::new(GetBucketVersioningOutput {
            status,
            ..Default::default()
        }))
    }

    pub(super) async fn list_object_versions_impl(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        let i = req.input;
        let enc = Encoder::new(i.encoding_type.as_ref())?;
        let max = match i.max_keys {
            None => DEFAULT_MAX_KEYS,
            Some(n) if n < 0 => {
                return Err(s3_error!(InvalidArgument, "max-keys must be non-negative"));
            }
            Some(n) => n.min(DEFAULT_MAX_KEYS),
        } as usize;
        if let Some(v) = i.version_id_marker.as_deref().filter(|v| !v.is_empty()) {
            if i.key_marker.as_deref().unwrap_or("").is_empty() {
                return Err(s3_error!(
                    InvalidArgument,
                    "A version-id marker cannot be specified without a key marker."
                ));
            }
            if parse_version_id(v).is_none() {
                return Err(s3_error!(InvalidArgument, "Invalid version id marker"));
            }
        }
        let q = VersionQuery {
            prefix: i.prefix.clone().unwrap_or_default(),
            delimiter: i.delimiter.clone(),
            key_marker: i.key_marker.clone(),
            version_id_marker: i.version_id_marker.clone(),
            max,
        };
        let page = self
            .meta
            .list_versions(&i.bucket, q)
            .await
            .map_err(meta_error)?;
        let (mut versions, mut markers, mut prefixes) = (Vec::new(), Vec::new(), Vec::new());
        let (mut next_key, mut next_version) = (None, None);
        for e in page.entries {
            match e {
                VersionEntry::Prefix(p) => {
                    next_key = Some(p.clone());
                    next_version = None;
                    prefixes.push(CommonPrefix {
                        prefix: Some(enc.enc(&p)),
                    });
                }
                VersionEntry::Version { key, rec, latest } => {
                    next_key = Some(key.clone());
                    next_version = Some(rec.version_id.clone());
                    if rec.delete_marker {
                        markers.push(DeleteMarkerEntry {
                            is_latest: Some(latest),
                            key: Some(enc.enc(&key)),
                            last_modified: Some(timestamp(rec.modified_ms)),
                            owner: Some(self.owner()),
                            version_id: Some(rec.version_id),
                        });
                    } else {
                        versions.push(ObjectVersion {
                            e_tag: Some(ETag::Strong(rec.etag)),
                            is_latest: Some(latest),
                            key: Some(enc.enc(&key)),
                            last_modified: Some(timestamp(rec.modified_ms)),
                            owner: Some(self.owner()),
                            size: Some(rec.size as i64),
                            storage_class: Some(ObjectVersionStorageClass::from_static(
                                ObjectVersionStorageClass::STANDARD,
                            )),
                            version_id: Some(rec.version_id),
                            ..Default::default()
                        });
                    }
                }
            }
        }
        Ok(S3Response::new(ListObjectVersionsOutput {
            name: Some(i.bucket),
            prefix: enc.opt(i.prefix.as_deref()),
            delimiter: enc.opt(i.delimiter.as_deref()),
            key_marker: enc.opt(i.key_marker.as_deref()),
            version_id_marker: i.version_id_marker,
            max_keys: Some(max as i32),
            encoding_type: i.encoding_type,
            is_truncated: Some(page.truncated),
            next_key_marker: page
                .truncated
                .then(|| next_key.map(|k| enc.enc(&k)))
                .flatten(),
            next_version_id_marker: page.truncated.then_some(next_version).flatten(),
            versions: (!versions.is_empty()).then_some(versions),
            delete_markers: (!markers.is_empty()).then_some(markers),
            common_prefixes: (!prefixes.is_empty()).then_some(prefixes),
            ..Default::default()
        }))
    }

    pub(super) async fn put_object_tagging_impl(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        let i = req.input;
        if let Some(v) = &i.version_id {
            check_version_id(v)?;
        }
        let tags = tags_from(i.tagging, MAX_OBJECT_TAGS)?;
        let version = self
            .meta
            .set_object_tags(&i.bucket, &i.key, i.version_id, tags)
            .await
            .map_err(meta_error)?;
        Ok(S3Response::new(PutObjectTaggingOutput {
            version_id: reported_version(&version),
        }))
    }

    pub(super) async fn get_object_tagging_impl(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        let i = req.input;
        let rec = self
            .find_object(&i.bucket, &i.key, i.version_id.as_deref())
            .await?;
        Ok(S3Response::new(GetObjectTaggingOutput {
            version_id: reported_version(&rec.version_id),
            tag_set: tag_set(rec.tags),
        }))
    }

    pub(super) async fn delete_object_tagging_impl(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        let i = req.input;
        if let Some(v) = &i.version_id {
            check_version_id(v)?;
        }
        let version = self
            .meta
            .set_object_tags(&i.bucket, &i.key, i.version_id, Vec::new())
            .await
            .map_err(meta_error)?;
        Ok(S3Response::new(DeleteObjectTaggingOutput {
            version_id: reported_version(&version),
        }))
    }

    pub(super) async fn put_bucket_tagging_impl(
        &self,
        req: S3Request<PutBucketTaggingInput>,
    ) -> S3Result<S3Response<PutBucketTaggingOutput>> {
        let i = req.input;
        let tags = tags_from(i.tagging, MAX_BUCKET_TAGS)?;
        self.meta
            .set_bucket_tags(&i.bucket, tags)
            .await
            .map_err(meta_error)?;
        Ok(S3Response::new(PutBucketTaggingOutput::default()))
    }

    pub(super) async fn get_bucket_tagging_impl(
        &self,
        req: S3Request<GetBucketTaggingInput>,
    ) -> S3Result<S3Response<GetBucketTaggingOutput>> {
        let rec = self.bucket(&req.input.bucket).await?;
        if rec.tags.is_empty() {
            return Err(s3_error!(NoSuchTagSet, "The TagSet does not exist"));
        }
        Ok(S3Response::new(GetBucketTaggingOutput {
            tag_set: tag_set(rec.tags),
        }))
    }

    pub(super) async fn delete_bucket_tagging_impl(
        &self,
        req: S3Request<DeleteBucketTaggingInput>,
    ) -> S3Result<S3Response<DeleteBucketTaggingOutput>> {
        self.meta
            .set_bucket_tags(&req.input.bucket, Vec::new())
            .await
            .map_err(meta_error)?;
        Ok(S3Response::new(DeleteBucketTaggingOutput::default()))
    }

    pub(super) async fn get_object_attributes_impl(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        let i = req.input;
        let rec = self
            .find_object(&i.bucket, &i.key, i.version_id.as_deref())
            .await?;
        // Clients send one comma-separated header or one header per attribute.
        let wants = |a: &str| {
            i.object_attributes
                .iter()
                .flat_map(|x| x.as_str().split(','))
                .any(|x| x.trim() == a)
        };
        let get = |alg: &str| {
            rec.checksums
                .iter()
                .find(|(a, _)| a == alg)
                .map(|(_, v)| v.clone())
        };
        let checksum =
            (wants(ObjectAttributes::CHECKSUM) && !rec.checksums.is_empty()).then(|| Checksum {
                checksum_crc32: get("CRC32"),
                checksum_crc32c: get("CRC32C"),
                checksum_crc64nvme: get("CRC64NVME"),
                checksum_sha1: get("SHA1"),
                checksum_sha256: get("SHA256"),
                checksum_type: super::object::checksum_type_of(&rec.checksums),
            });
        let part_alg = rec.checksums.first().map(|(a, _)| a.as_str());
        let object_parts = match (&rec.data, wants(ObjectAttributes::OBJECT_PARTS)) {
            (ObjectData::Parts(parts), true) => {
                let max = i.max_parts.unwrap_or(1000).clamp(0, 1000) as usize;
                let after = i.part_number_marker.unwrap_or(0).max(0) as usize;
                let page: Vec<ObjectPart> = parts
                    .iter()
                    .enumerate()
                    .skip(after)
                    .take(max)
                    .map(|(n, p)| {
                        let sum = rec.part_checksums.as_ref().and_then(|s| s.get(n)).cloned();
                        let of = |alg: &str| sum.clone().filter(|_| part_alg == Some(alg));
                        ObjectPart {
                            part_number: Some(n as i32 + 1),
                            size: Some(p.size as i64),
                            checksum_crc32: of("CRC32"),
                            checksum_crc32c: of("CRC32C"),
                            checksum_crc64nvme: of("CRC64NVME"),
                            checksum_sha1: of("SHA1"),
                            checksum_sha256: of("SHA256"),
                        }
                    })
                    .collect();
                let truncated = after + page.len() < parts.len();
                Some(GetObjectAttributesParts {
                    total_parts_count: Some(parts.len() as i32),
                    part_number_marker: i.part_number_marker,
                    next_part_number_marker: page.last().and_then(|p| p.part_number),
                    max_parts: Some(max as i32),
                    is_truncated: Some(truncated),
                    parts: Some(page),
                })
            }
            _ => None,
        };
        Ok(S3Response::new(GetObjectAttributesOutput {
            e_tag: wants(ObjectAttributes::ETAG).then(|| ETag::Strong(rec.etag.clone())),
            object_size: wants(ObjectAttributes::OBJECT_SIZE).then_some(rec.size as i64),
            storage_class: wants(ObjectAttributes::STORAGE_CLASS)
                .then(|| StorageClass::from_static(StorageClass::STANDARD)),
            checksum,
            object_parts,
            last_modified: Some(timestamp(rec.modified_ms)),
            version_id: reported_version(&rec.version_id),
            ..Default::default()
        }))
    }
}
