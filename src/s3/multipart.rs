//! Multipart uploads: create, upload part, complete, abort, list parts and uploads.
//!
//! Each part streams through the dedup pipeline like a PutObject (always chunked,
//! never inline) and keeps its own manifest. Completion never re-reads data: the
//! object's body is the chosen parts' manifests in order, its ETag the MD5 of the
//! parts' binary MD5s followed by `-N`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use s3s::crypto::Checksum as _;
use s3s::dto::*;
use s3s::{S3Error, S3Request, S3Response, S3Result, s3_error};

use super::list::Encoder;
use super::object::{
    BodyClaims, BodyTarget, Received, body_claims, check_new_key, checked_algorithm,
    stored_headers, user_meta, with_checksums,
};
use super::{HoardS3, meta_error, timestamp};
use crate::ingest::{ChecksumSet, IngestedBody};
use crate::meta::{
    CompletedUpload, MetaError, ObjectData, ObjectRecord, PartPiece, PartRecord, UploadEntry,
    UploadQuery, UploadRecord, now_ms,
};

/// S3's limits.
const MAX_PARTS: i32 = 10_000;
const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
const MAX_OBJECT_SIZE: u64 = 5 * 1024 * 1024 * 1024 * 1024;
const DEFAULT_LIST_MAX: i32 = 1000;

/// The part numbers a completion chose: at least one, each valid, ascending.
fn chosen_numbers(chosen: &[CompletedPart]) -> S3Result<Vec<u32>> {
    if chosen.is_empty() {
        return Err(super::malformed_xml());
    }
    let mut numbers = Vec::with_capacity(chosen.len());
    for c in chosen {
        let n = part_number(c.part_number.unwrap_or(0))?;
        if numbers.last().is_some_and(|&last| n <= last) {
            return Err(s3_error!(
                InvalidPartOrder,
                "The list of parts was not in ascending order. Parts must be ordered by part number."
            ));
        }
        numbers.push(n);
    }
    Ok(numbers)
}

/// The stored parts a completion names, checked as S3 checks them: each uploaded
/// with the ETag given, every one but the last at least 5 MiB, 5 TiB in all at most.
fn chosen_parts<'a>(
    chosen: &[CompletedPart],
    numbers: &[u32],
    stored: &'a std::collections::HashMap<u32, PartRecord>,
) -> S3Result<Vec<&'a PartRecord>> {
    let mut parts: Vec<&PartRecord> = Vec::with_capacity(chosen.len());
    for (c, n) in chosen.iter().zip(numbers) {
        let p = stored.get(n).ok_or_else(invalid_part)?;
        if c.e_tag.as_ref().is_some_and(|e| unquote(e) != p.etag) {
            return Err(invalid_part());
        }
        parts.push(p);
    }
    if parts[..parts.len() - 1]
        .iter()
        .any(|p| p.size < MIN_PART_SIZE)
    {
        return Err(s3_error!(
            EntityTooSmall,
            "Your proposed upload is smaller than the minimum allowed object size."
        ));
    }
    if parts.iter().map(|p| p.size).sum::<u64>() > MAX_OBJECT_SIZE {
        return Err(s3_error!(
            EntityTooLarge,
            "Your proposed upload exceeds the maximum allowed object size."
        ));
    }
    Ok(parts)
}

fn invalid_part() -> S3Error {
    s3_error!(
        InvalidPart,
        "One or more of the specified parts could not be found. The part may not have been \
         uploaded, or the specified entity tag may not match the part's entity tag."
    )
}

pub(super) fn part_number(n: i32) -> S3Result<u32> {
    if (1..=MAX_PARTS).contains(&n) {
        Ok(n as u32)
    } else {
        Err(s3_error!(
            InvalidArgument,
            "Part number must be an integer between 1 and 10000, inclusive"
        ))
    }
}

fn list_max(v: Option<i32>, what: &str) -> S3Result<usize> {
    match v {
        None => Ok(DEFAULT_LIST_MAX as usize),
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "{what} must be non-negative")),
        Some(n) => Ok(n.min(DEFAULT_LIST_MAX) as usize),
    }
}

/// A part's checksum in `alg`, if it was sent with one.
fn part_checksum<'a>(p: &'a PartRecord, alg: &str) -> Option<&'a str> {
    p.checksums
        .iter()
        .find(|(a, _)| a == alg)
        .map(|(_, v)| v.as_str())
}

/// The checksum type of an upload in `alg`: the one asked for, as S3 allows it
/// (FULL_OBJECT for the CRCs, COMPOSITE for all but CRC64NVME), or the algorithm's
/// default (FULL_OBJECT for CRC64NVME, COMPOSITE for the others).
fn upload_checksum_type(
    alg: Option<&str>,
    asked: Option<&ChecksumType>,
) -> S3Result<Option<String>> {
    let Some(alg) = alg else {
        return match asked {
            Some(_) => Err(s3_error!(
                InvalidRequest,
                "The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm header."
            )),
            None => Ok(None),
        };
    };
    let full = match asked.map(ChecksumType::as_str) {
        None => alg == "CRC64NVME",
        Some(ChecksumType::FULL_OBJECT) => true,
        Some(ChecksumType::COMPOSITE) => false,
        Some(other) => {
            return Err(s3_error!(
                InvalidRequest,
                "Value for x-amz-checksum-type header is invalid: {}",
                other
            ));
        }
    };
    let (name, allowed) = match full {
        true => (
            ChecksumType::FULL_OBJECT,
            matches!(alg, "CRC32" | "CRC32C" | "CRC64NVME"),
        ),
        false => (ChecksumType::COMPOSITE, alg != "CRC64NVME"),
    };
    if !allowed {
        return Err(s3_error!(
            InvalidRequest,
            "The {} checksum type cannot be used with the {} checksum algorithm.",
            name,
            alg.to_ascii_lowercase()
        ));
    }
    Ok(Some(name.to_owned()))
}

/// The composite checksum S3 gives a multipart object: the algorithm over the
/// concatenated binary part checksums, then `-N`. `None` when a part lacks it.
fn composite_checksum(alg: &str, parts: &[&PartRecord]) -> Option<String> {
    let mut hasher = ChecksumSet::of(alg).hasher();
    for p in parts {
        hasher.update(&B64.decode(part_checksum(p, alg)?).ok()?);
    }
    let sums = hasher.finalize();
    let v = match alg {
        "CRC32" => sums.checksum_crc32,
        "CRC32C" => sums.checksum_crc32c,
        "SHA1" => sums.checksum_sha1,
        "SHA256" => sums.checksum_sha256,
        _ => None,
    }?;
    Some(format!("{v}-{}", parts.len()))
}

/// The full-object CRC of a multipart object: the CRC of the whole body, combined
/// from the parts' CRCs and sizes. `None` when a part lacks it.
fn full_object_checksum(alg: &str, parts: &[&PartRecord]) -> Option<String> {
    let (algorithm, width) = match alg {
        "CRC32" => (crc_fast::CrcAlgorithm::Crc32IsoHdlc, 4),
        "CRC32C" => (crc_fast::CrcAlgorithm::Crc32Iscsi, 4),
        "CRC64NVME" => (crc_fast::CrcAlgorithm::Crc64Nvme, 8),
        _ => return None,
    };
    let mut whole: Option<u64> = None;
    for p in parts {
        let bytes = B64.decode(part_checksum(p, alg)?).ok()?;
        if bytes.len() != width {
            return None;
        }
        let crc = bytes.iter().fold(0u64, |v, b| (v << 8) | u64::from(*b));
        whole = Some(match whole {
            None => crc,
            Some(w) => crc_fast::checksum_combine(algorithm, w, crc, p.size),
        });
    }
    Some(B64.encode(&whole?.to_be_bytes()[8 - width..]))
}

/// A completion's own checksum of the whole object (`x-amz-checksum-*` on
/// CompleteMultipartUpload) must be the one computed: 400 BadDigest otherwise.
fn check_stated_checksum(
    input: &CompleteMultipartUploadInput,
    computed: &[(String, String)],
) -> S3Result<()> {
    let stated = [
        ("CRC32", &input.checksum_crc32),
        ("CRC32C", &input.checksum_crc32c),
        ("CRC64NVME", &input.checksum_crc64nvme),
        ("SHA1", &input.checksum_sha1),
        ("SHA256", &input.checksum_sha256),
    ];
    for (alg, value) in stated {
        let (Some(value), Some((_, ours))) = (value, computed.iter().find(|(a, _)| a == alg))
        else {
            continue;
        };
        if value != ours {
            return Err(s3_error!(
                BadDigest,
                "The {} you specified did not match the calculated checksum.",
                alg.to_ascii_lowercase()
            ));
        }
    }
    Ok(())
}

/// ETag of a multipart object: MD5 of the parts' binary MD5s, then `-N`.
fn multipart_etag(parts: &[&PartRecord]) -> S3Result<String> {
    let mut md5 = s3s::crypto::Md5::new();
    for p in parts {
        let bin = hex::decode(&p.etag).map_err(|_| invalid_part())?;
        md5.update(&bin);
    }
    Ok(format!("{}-{}", hex::encode(md5.finalize()), parts.len()))
}

fn unquote(e: &ETag) -> &str {
    e.value()
}

impl HoardS3 {
    pub(super) async fn create_multipart_upload_impl(
        &self,
        mut req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let bucket = self.bucket(&req.input.bucket).await?;
        let input = &mut req.input;
        check_new_key(&input.key)?;
        let lock = self.new_version_lock(&bucket, &super::lock::lock_headers!(&*input), None)?;
        let checksum_algorithm = input
            .checksum_algorithm
            .as_ref()
            .map(|a| checked_algorithm(a.as_str()))
            .transpose()?;
        let checksum_type =
            upload_checksum_type(checksum_algorithm.as_deref(), input.checksum_type.as_ref())?;
        let acl = self
            .new_version_acl(&input.bucket, input.acl.as_ref(), &req.headers)
            .await?;
        let rec = UploadRecord {
            checksum_type: checksum_type.clone(),
            acl,
            initiated_ms: now_ms(),
            headers: stored_headers!(input),
            user_meta: user_meta(input.metadata.take())?,
            checksum_algorithm: checksum_algorithm.clone(),
            tags: super::object::parse_tagging(input.tagging.as_deref())?,
            lock,
        };
        let upload_id = self
            .meta
            .create_upload(&input.bucket, &input.key, rec)
            .await
            .map_err(meta_error)?;
        tracing::debug!(bucket = %input.bucket, key = %input.key, %upload_id, "multipart upload created");
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket.clone()),
            key: Some(input.key.clone()),
            upload_id: Some(upload_id),
            checksum_algorithm: checksum_algorithm.map(ChecksumAlgorithm::from),
            checksum_type: checksum_type.map(ChecksumType::from),
            ..Default::default()
        }))
    }

    pub(super) async fn upload_part_impl(
        &self,
        mut req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let number = part_number(req.input.part_number)?;
        let bucket_rec = self.bucket(&req.input.bucket).await?;
        // Refuse before reading gigabytes for an upload that does not exist.
        let (bucket, key, upload_id) = (
            req.input.bucket.clone(),
            req.input.key.clone(),
            req.input.upload_id.clone(),
        );
        let upload = self
            .meta
            .get_upload(&bucket, &key, &upload_id)
            .await
            .map_err(meta_error)?;
        let body = req.input.body.take();
        let Received {
            ingested,
            checksums,
        } = self
            .receive(
                &bucket,
                &bucket_rec,
                body_claims!(&req.input),
                body,
                &req,
                BodyTarget::Part {
                    checksum: upload.checksum_algorithm.as_deref(),
                },
            )
            .await?;
        let manifest = match ingested.body {
            IngestedBody::Chunked(m) => m,
            IngestedBody::Inline(d) if d.is_empty() => Vec::new(),
            IngestedBody::Inline(_) => {
                return Err(super::internal(
                    "part ingest",
                    &std::io::Error::other("part came back inline"),
                ));
            }
        };
        let etag = hex::encode(ingested.md5);
        let rec = PartRecord {
            size: ingested.size,
            etag: etag.clone(),
            modified_ms: now_ms(),
            manifest: 0,
            chunks: 0,
            checksums,
        };
        self.meta
            .put_part(
                &bucket,
                &key,
                &upload_id,
                number,
                rec.clone(),
                manifest,
                Some(ingested.held.hold().id()),
            )
            .await
            .map_err(meta_error)?;
        ingested.held.disarm();
        Ok(S3Response::new(
            with_checksums!(UploadPartOutput, &rec.checksums, {
                e_tag: Some(ETag::Strong(etag)),
            }),
        ))
    }

    pub(super) async fn complete_multipart_upload_impl(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let mut input = req.input;
        let condition =
            super::object::write_condition(input.if_match.as_ref(), input.if_none_match.as_ref())?;
        let chosen: Vec<CompletedPart> = input
            .multipart_upload
            .take()
            .and_then(|m| m.parts)
            .unwrap_or_default();
        let numbers = chosen_numbers(&chosen)?;
        let listed = self
            .meta
            .list_parts(
                &input.bucket,
                &input.key,
                &input.upload_id,
                0,
                MAX_PARTS as usize,
            )
            .await;
        let (upload, stored, _) = match listed {
            Err(MetaError::NoSuchUpload) => {
                return self.repeated_completion(&input, &chosen, &numbers).await;
            }
            other => other.map_err(meta_error)?,
        };
        let stored: std::collections::HashMap<u32, PartRecord> = stored.into_iter().collect();
        let parts = chosen_parts(&chosen, &numbers, &stored)?;
        let size: u64 = parts.iter().map(|p| p.size).sum();
        let etag = multipart_etag(&parts)?;
        let alg = upload.checksum_algorithm.as_deref();
        let full_object = match upload.checksum_type.as_deref() {
            Some(t) => t == ChecksumType::FULL_OBJECT,
            None => alg == Some("CRC64NVME"),
        };
        let checksums: Vec<(String, String)> = alg
            .and_then(|alg| {
                let v = match full_object {
                    true => full_object_checksum(alg, &parts),
                    false => composite_checksum(alg, &parts),
                };
                v.map(|v| (alg.to_owned(), v))
            })
            .into_iter()
            .collect();
        check_stated_checksum(&input, &checksums)?;
        let part_checksums = alg.and_then(|alg| {
            parts
                .iter()
                .map(|p| part_checksum(p, alg).map(str::to_owned))
                .collect::<Option<Vec<_>>>()
        });
        let rec = ObjectRecord {
            size,
            etag: etag.clone(),
            modified_ms: now_ms(),
            headers: upload.headers,
            user_meta: upload.user_meta,
            checksums,
            version_id: crate::meta::NULL_VERSION.into(),
            seq: 0,
            delete_marker: false,
            tags: upload.tags,
            lock: upload.lock,
            acl: upload.acl,
            part_checksums,
            data: ObjectData::Parts(
                parts
                    .iter()
                    .map(|p| PartPiece {
                        manifest: p.manifest,
                        chunks: p.chunks,
                        size: p.size,
                    })
                    .collect(),
            ),
        };
        let chosen_manifests = numbers
            .iter()
            .zip(&parts)
            .map(|(n, p)| (*n, p.manifest))
            .collect();
        let mut answer = CompletedUpload {
            parts: numbers
                .iter()
                .zip(&parts)
                .map(|(n, p)| (*n, p.etag.clone()))
                .collect(),
            etag,
            version_id: String::new(),
            checksums: rec.checksums.clone(),
            completed_ms: now_ms(),
        };
        answer.version_id = self
            .meta
            .complete_upload(
                &input.bucket,
                &input.key,
                &input.upload_id,
                rec,
                chosen_manifests,
                answer.clone(),
                condition,
            )
            .await
            .map_err(meta_error)?;
        tracing::debug!(bucket = %input.bucket, key = %input.key, parts = parts.len(), size, "multipart upload completed");
        Ok(completion_output(&input, &answer))
    }

    /// A CompleteMultipartUpload for an upload that is gone: if it completed with
    /// the same parts (the client lost the response and retries), the same answer;
    /// otherwise `NoSuchUpload`, as S3 answers.
    async fn repeated_completion(
        &self,
        input: &CompleteMultipartUploadInput,
        chosen: &[CompletedPart],
        numbers: &[u32],
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let done = self
            .meta
            .completed_upload(&input.bucket, &input.key, &input.upload_id)
            .await
            .map_err(meta_error)?;
        let same_parts = |d: &CompletedUpload| {
            d.parts.len() == chosen.len()
                && d.parts
                    .iter()
                    .zip(chosen)
                    .zip(numbers)
                    .all(|(((n, etag), c), number)| {
                        n == number && c.e_tag.as_ref().is_none_or(|e| unquote(e) == etag)
                    })
        };
        match done {
            Some(d) if same_parts(&d) => {
                tracing::info!(bucket = %input.bucket, key = %input.key, upload_id = %input.upload_id, "repeated completion answered as the first");
                Ok(completion_output(input, &d))
            }
            _ => Err(meta_error(MetaError::NoSuchUpload)),
        }
    }

    pub(super) async fn abort_multipart_upload_impl(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let i = &req.input;
        self.meta
            .abort_upload(&i.bucket, &i.key, &i.upload_id)
            .await
            .map_err(meta_error)?;
        tracing::debug!(bucket = %i.bucket, key = %i.key, upload_id = %i.upload_id, "multipart upload aborted");
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    pub(super) async fn list_parts_impl(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let i = req.input;
        let max = list_max(i.max_parts, "max-parts")?;
        let after = u32::try_from(i.part_number_marker.unwrap_or(0).max(0)).unwrap_or(0);
        let (upload, parts, truncated) = self
            .meta
            .list_parts(&i.bucket, &i.key, &i.upload_id, after, max)
            .await
            .map_err(meta_error)?;
        let next = parts.last().map(|(n, _)| *n as i32);
        let parts = parts
            .into_iter()
            .map(|(n, p)| {
                with_checksums!(Part, &p.checksums, {
                    e_tag: Some(ETag::Strong(p.etag.clone())),
                    last_modified: Some(timestamp(p.modified_ms)),
                    part_number: Some(n as i32),
                    size: Some(p.size as i64),
                })
            })
            .collect();
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(i.bucket),
            key: Some(i.key),
            upload_id: Some(i.upload_id),
            checksum_type: upload
                .checksum_type
                .or_else(|| {
                    upload
                        .checksum_algorithm
                        .as_ref()
                        .map(|_| ChecksumType::COMPOSITE.to_owned())
                })
                .map(ChecksumType::from),
            checksum_algorithm: upload.checksum_algorithm.map(ChecksumAlgorithm::from),
            initiator: Some(Initiator {
                display_name: self.owner().display_name,
                id: self.owner().id,
            }),
            owner: Some(self.owner()),
            storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
            max_parts: Some(max as i32),
            part_number_marker: i.part_number_marker,
            next_part_number_marker: next,
            is_truncated: Some(truncated),
            parts: Some(parts),
            ..Default::default()
        }))
    }

    pub(super) async fn list_multipart_uploads_impl(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let i = req.input;
        let enc = Encoder::new(i.encoding_type.as_ref())?;
        let max = list_max(i.max_uploads, "max-uploads")?;
        let q = UploadQuery {
            prefix: i.prefix.clone().unwrap_or_default(),
            delimiter: i.delimiter.clone(),
            key_marker: i.key_marker.clone(),
            upload_id_marker: i.upload_id_marker.clone(),
            max,
        };
        let page = self
            .meta
            .list_uploads(&i.bucket, q)
            .await
            .map_err(meta_error)?;
        let (mut uploads, mut prefixes) = (Vec::new(), Vec::new());
        let (mut next_key, mut next_id) = (None, None);
        for e in page.entries {
            match e {
                UploadEntry::Upload {
                    key,
                    upload_id,
                    rec,
                } => {
                    next_key = Some(key.clone());
                    next_id = Some(upload_id.clone());
                    uploads.push(MultipartUpload {
                        key: Some(enc.enc(&key)),
                        upload_id: Some(upload_id),
                        initiated: Some(timestamp(rec.initiated_ms)),
                        initiator: Some(Initiator {
                            display_name: self.owner().display_name,
                            id: self.owner().id,
                        }),
                        owner: Some(self.owner()),
                        storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
                        checksum_algorithm: rec.checksum_algorithm.map(ChecksumAlgorithm::from),
                        ..Default::default()
                    });
                }
                UploadEntry::Prefix(p) => {
                    next_key = Some(p.clone());
                    next_id = None;
                    prefixes.push(CommonPrefix {
                        prefix: Some(enc.enc(&p)),
                    });
                }
            }
        }
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(i.bucket),
            prefix: enc.opt(i.prefix.as_deref()),
            delimiter: enc.opt(i.delimiter.as_deref()),
            key_marker: enc.opt(i.key_marker.as_deref()),
            upload_id_marker: i.upload_id_marker,
            max_uploads: Some(max as i32),
            is_truncated: Some(page.truncated),
            next_key_marker: page
                .truncated
                .then(|| next_key.map(|k| enc.enc(&k)))
                .flatten(),
            next_upload_id_marker: page.truncated.then_some(next_id).flatten(),
            encoding_type: i.encoding_type,
            uploads: Some(uploads),
            common_prefixes: (!prefixes.is_empty()).then_some(prefixes),
            ..Default::default()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(etag: &str) -> PartRecord {
        PartRecord {
            size: 0,
            etag: etag.into(),
            modified_ms: 0,
            manifest: 0,
            chunks: 0,
            checksums: Vec::new(),
        }
    }

    #[test]
    fn multipart_etag_is_md5_of_binary_part_md5s() {
        // Two parts "a" and "b": md5("a") and md5("b") concatenated, hashed again.
        let a = part("0cc175b9c0f1b6a831c399e269772661");
        let b = part("92eb5ffee6ae2fec3ad71c777531578f");
        let mut md5 = s3s::crypto::Md5::new();
        md5.update(&hex::decode(&a.etag).unwrap());
        md5.update(&hex::decode(&b.etag).unwrap());
        let want = format!("{}-2", hex::encode(md5.finalize()));
        assert_eq!(multipart_etag(&[&a, &b]).unwrap(), want);
        assert!(multipart_etag(&[&part("zz")]).is_err());
    }
}

/// The answer to a completion, first or repeated. Location is the object's
/// path-style URL on this server.
fn completion_output(
    input: &CompleteMultipartUploadInput,
    done: &CompletedUpload,
) -> S3Response<CompleteMultipartUploadOutput> {
    S3Response::new(
        with_checksums!(CompleteMultipartUploadOutput, &done.checksums, {
            bucket: Some(input.bucket.clone()),
            key: Some(input.key.clone()),
            location: Some(format!(
                "/{}/{}",
                input.bucket,
                super::list::url_encode(&input.key)
            )),
            e_tag: Some(ETag::Strong(done.etag.clone())),
            checksum_type: super::object::checksum_type_of(&done.checksums),
            version_id: super::object::reported_version(&done.version_id),
        }),
    )
}
