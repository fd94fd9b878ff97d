//! PutObject, GetObject and HeadObject: request validation, checksums, conditional
//! requests and ranges around the ingest and retrieve pipelines.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use http::HeaderMap;
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

use super::{HoardS3, ingest_error, meta_error, retrieve_error, timestamp};
use crate::ingest::{ChecksumSet, IngestParams, IngestedBody};
use crate::meta::{ObjectData, ObjectRecord, StoredHeaders};

/// S3's limit for one PUT.
const MAX_PUT_SIZE: i64 = 5 * 1024 * 1024 * 1024;
const MAX_KEY_LEN: usize = 1024;
const DEFAULT_CONTENT_TYPE: &str = "binary/octet-stream";

/// The checksum algorithms S3 knows, with the header that carries each.
const ALGORITHMS: [(&str, &str); 5] = [
    ("CRC32", "x-amz-checksum-crc32"),
    ("CRC32C", "x-amz-checksum-crc32c"),
    ("CRC64NVME", "x-amz-checksum-crc64nvme"),
    ("SHA1", "x-amz-checksum-sha1"),
    ("SHA256", "x-amz-checksum-sha256"),
];

fn computed_value<'a>(c: &'a Checksum, alg: &str) -> Option<&'a String> {
    match alg {
        "CRC32" => c.checksum_crc32.as_ref(),
        "CRC32C" => c.checksum_crc32c.as_ref(),
        "CRC64NVME" => c.checksum_crc64nvme.as_ref(),
        "SHA1" => c.checksum_sha1.as_ref(),
        "SHA256" => c.checksum_sha256.as_ref(),
        _ => None,
    }
}

fn declared_value<'a>(input: &'a PutObjectInput, alg: &str) -> Option<&'a String> {
    match alg {
        "CRC32" => input.checksum_crc32.as_ref(),
        "CRC32C" => input.checksum_crc32c.as_ref(),
        "CRC64NVME" => input.checksum_crc64nvme.as_ref(),
        "SHA1" => input.checksum_sha1.as_ref(),
        "SHA256" => input.checksum_sha256.as_ref(),
        _ => None,
    }
}

/// Which checksums the request declares (header, algorithm or trailer).
fn wanted_checksums(input: &PutObjectInput, headers: &HeaderMap) -> S3Result<ChecksumSet> {
    let trailer = headers
        .get("x-amz-trailer")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let algorithm = input
        .checksum_algorithm
        .as_ref()
        .map(|a| a.as_str().to_ascii_uppercase());
    if let Some(a) = &algorithm
        && !ALGORITHMS.iter().any(|(name, _)| name == a)
    {
        return Err(s3_error!(
            InvalidRequest,
            "Checksum algorithm {a} is not supported"
        ));
    }
    let want = |alg: &str, header: &str| {
        declared_value(input, alg).is_some()
            || algorithm.as_deref() == Some(alg)
            || trailer.split(',').any(|t| t.trim() == header)
    };
    Ok(ChecksumSet {
        crc32: want("CRC32", "x-amz-checksum-crc32"),
        crc32c: want("CRC32C", "x-amz-checksum-crc32c"),
        crc64nvme: want("CRC64NVME", "x-amz-checksum-crc64nvme"),
        sha1: want("SHA1", "x-amz-checksum-sha1"),
        sha256: want("SHA256", "x-amz-checksum-sha256"),
    })
}

/// Compares every declared checksum (header or trailer) with the computed one and
/// returns what to store: (algorithm, base64 value) for each computed checksum.
fn verify_checksums(
    input: &PutObjectInput,
    trailers: Option<&HeaderMap>,
    computed: &Checksum,
) -> S3Result<Vec<(String, String)>> {
    let mut stored = Vec::new();
    for (alg, header) in ALGORITHMS {
        let Some(actual) = computed_value(computed, alg) else {
            continue;
        };
        let from_trailer = trailers
            .and_then(|t| t.get(header))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let declared = declared_value(input, alg).cloned().or(from_trailer);
        if let Some(d) = declared
            && d.trim() != actual
        {
            return Err(S3Error::with_message(
                S3ErrorCode::BadDigest,
                format!("The {alg} you specified did not match the calculated checksum."),
            ));
        }
        stored.push((alg.to_owned(), actual.clone()));
    }
    Ok(stored)
}

fn content_md5(input: &PutObjectInput) -> S3Result<Option<[u8; 16]>> {
    let Some(v) = &input.content_md5 else {
        return Ok(None);
    };
    let bytes = B64
        .decode(v.trim())
        .map_err(|_| s3_error!(InvalidDigest, "The Content-MD5 you specified is not valid."))?;
    let md5: [u8; 16] = bytes
        .try_into()
        .map_err(|_| s3_error!(InvalidDigest, "The Content-MD5 you specified is not valid."))?;
    Ok(Some(md5))
}

fn http_date(t: &Timestamp) -> Option<String> {
    let mut buf = Vec::new();
    t.format(TimestampFormat::HttpDate, &mut buf).ok()?;
    String::from_utf8(buf).ok()
}

fn parse_http_date(s: &str) -> Option<Timestamp> {
    Timestamp::parse(TimestampFormat::HttpDate, s).ok()
}

fn etag_matches(cond: &ETagCondition, etag: &str) -> bool {
    match cond {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value() == etag,
    }
}

/// Evaluates GET/HEAD preconditions in the order S3 (RFC 9110) applies them.
fn check_conditions(
    rec: &ObjectRecord,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> S3Result<()> {
    let modified_s = rec.modified_ms.div_euclid(1000);
    let secs = |t: &Timestamp| time::OffsetDateTime::from(t.clone()).unix_timestamp();
    let failed = || {
        s3_error!(
            PreconditionFailed,
            "At least one of the pre-conditions you specified did not hold"
        )
    };
    match if_match {
        Some(c) if !etag_matches(c, &rec.etag) => return Err(failed()),
        Some(_) => {}
        None => {
            if let Some(t) = if_unmodified_since
                && modified_s > secs(t)
            {
                return Err(failed());
            }
        }
    }
    let not_modified = match if_none_match {
        Some(c) => etag_matches(c, &rec.etag),
        None => if_modified_since.is_some_and(|t| modified_s <= secs(t)),
    };
    if not_modified {
        let mut e = S3Error::new(S3ErrorCode::NotModified);
        let mut h = HeaderMap::new();
        if let Ok(v) = format!("\"{}\"", rec.etag).parse() {
            h.insert(http::header::ETAG, v);
        }
        e.set_headers(h);
        return Err(e);
    }
    Ok(())
}

/// The byte range a GET/HEAD serves, and whether it was a range request.
fn resolve_range(
    rec: &ObjectRecord,
    range: Option<&Range>,
    part_number: Option<i32>,
) -> S3Result<(std::ops::Range<u64>, bool)> {
    if let Some(n) = part_number
        && n != 1
    {
        let mut e = S3Error::with_message(
            S3ErrorCode::Custom("InvalidPartNumber".into()),
            "The requested partnumber is not satisfiable",
        );
        e.set_status_code(http::StatusCode::RANGE_NOT_SATISFIABLE);
        return Err(e);
    }
    match range {
        None => Ok((0..rec.size, false)),
        Some(r) => match r.check(rec.size) {
            Ok(r) => Ok((r, true)),
            Err(_) => Err(s3_error!(
                InvalidRange,
                "The requested range is not satisfiable"
            )),
        },
    }
}

/// Looks up the object a GET or HEAD names (their inputs share these fields) and
/// applies its conditions and range: `(record, range, ranged, checksums asked for)`.
macro_rules! resolve_read {
    ($self:ident, $input:expr) => {{
        let i = $input;
        let rec = $self.find_object(&i.bucket, &i.key).await?;
        check_conditions(
            &rec,
            i.if_match.as_ref(),
            i.if_none_match.as_ref(),
            i.if_modified_since.as_ref(),
            i.if_unmodified_since.as_ref(),
        )?;
        let (range, ranged) = resolve_range(&rec, i.range.as_ref(), i.part_number)?;
        let checksums = i
            .checksum_mode
            .as_ref()
            .is_some_and(|m| m.as_str() == ChecksumMode::ENABLED);
        (rec, range, ranged, checksums)
    }};
}

/// Builds a GetObjectOutput or HeadObjectOutput: the stored headers, metadata,
/// length, range and (when asked for and the whole object is served) checksums,
/// plus any extra fields given.
macro_rules! object_output {
    ($ty:ident { rec: $rec:expr, range: $range:expr, ranged: $ranged:expr, checksums: $with:expr $(, $field:ident: $value:expr)* $(,)? }) => {{
        let rec: &ObjectRecord = $rec;
        let range: &std::ops::Range<u64> = $range;
        let with: bool = $with;
        let get = |alg| if with { stored_checksum(rec, alg) } else { None };
        let h = &rec.headers;
        $ty {
            content_length: Some((range.end - range.start) as i64),
            content_range: $ranged.then(|| format!("bytes {}-{}/{}", range.start, range.end.saturating_sub(1), rec.size)),
            accept_ranges: Some("bytes".into()),
            e_tag: Some(ETag::Strong(rec.etag.clone())),
            last_modified: Some(timestamp(rec.modified_ms)),
            content_type: Some(h.content_type.clone().unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_owned())),
            content_encoding: h.content_encoding.clone(),
            content_disposition: h.content_disposition.clone(),
            content_language: h.content_language.clone(),
            cache_control: h.cache_control.clone(),
            expires: h.expires.as_deref().and_then(parse_http_date),
            metadata: (!rec.user_meta.is_empty()).then(|| rec.user_meta.iter().cloned().collect::<HashMap<_, _>>()),
            checksum_crc32: get("CRC32"),
            checksum_crc32c: get("CRC32C"),
            checksum_crc64nvme: get("CRC64NVME"),
            checksum_sha1: get("SHA1"),
            checksum_sha256: get("SHA256"),
            checksum_type: (with && !rec.checksums.is_empty()).then(|| ChecksumType::from_static(ChecksumType::FULL_OBJECT)),
            $($field: $value,)*
            ..Default::default()
        }
    }};
}

fn stored_checksum(rec: &ObjectRecord, alg: &str) -> Option<String> {
    rec.checksums
        .iter()
        .find(|(a, _)| a == alg)
        .map(|(_, v)| v.clone())
}

impl HoardS3 {
    pub(super) async fn put_object_impl(
        &self,
        mut req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let bucket_rec = self.bucket(&req.input.bucket).await?;
        let input = &mut req.input;
        if input.key.len() > MAX_KEY_LEN {
            return Err(s3_error!(KeyTooLongError, "Your key is too long"));
        }
        if input.content_length.is_some_and(|n| n > MAX_PUT_SIZE) {
            return Err(s3_error!(
                EntityTooLarge,
                "Your proposed upload exceeds the maximum allowed object size."
            ));
        }
        let md5_declared = content_md5(input)?;
        let checksums = wanted_checksums(input, &req.headers)?;
        let params = IngestParams {
            bucket: input.bucket.clone(),
            chunking: bucket_rec.chunking,
            compression_level: bucket_rec.compression_level,
            checksums,
            expected_len: input.content_length.and_then(|n| u64::try_from(n).ok()),
        };
        let body = input.body.take();
        let permit = self.ingest.acquire().await.map_err(ingest_error)?;
        let ingested = match body {
            Some(body) => self.ingest.ingest(&permit, params, body).await,
            None => {
                let empty = futures::stream::empty::<Result<bytes::Bytes, s3s::StdError>>();
                self.ingest.ingest(&permit, params, empty).await
            }
        }
        .map_err(ingest_error)?;
        drop(permit);

        if let Some(declared) = md5_declared
            && declared != ingested.md5
        {
            return Err(s3_error!(
                BadDigest,
                "The Content-MD5 you specified did not match what we received."
            ));
        }
        let trailers = req
            .trailing_headers
            .as_ref()
            .and_then(s3s::TrailingHeaders::take);
        let stored_checksums = verify_checksums(input, trailers.as_ref(), &ingested.checksums)?;

        let etag = hex::encode(ingested.md5);
        let mut user_meta: Vec<(String, String)> = input
            .metadata
            .take()
            .unwrap_or_default()
            .into_iter()
            .collect();
        user_meta.sort();
        let rec = ObjectRecord {
            size: ingested.size,
            etag: etag.clone(),
            modified_ms: crate::meta::now_ms(),
            headers: StoredHeaders {
                content_type: input.content_type.take(),
                content_encoding: input.content_encoding.take(),
                content_disposition: input.content_disposition.take(),
                content_language: input.content_language.take(),
                cache_control: input.cache_control.take(),
                expires: input.expires.as_ref().and_then(http_date),
            },
            user_meta,
            checksums: stored_checksums,
            data: ObjectData::Inline(Vec::new()),
        };
        let (rec, manifest) = match ingested.body {
            IngestedBody::Inline(d) => (
                ObjectRecord {
                    data: ObjectData::Inline(d),
                    ..rec
                },
                None,
            ),
            IngestedBody::Chunked(m) => (rec, Some(m)),
        };
        self.meta
            .commit_object(&input.bucket, &input.key, rec.clone(), manifest)
            .await
            .map_err(meta_error)?;
        ingested.held.disarm();
        tracing::debug!(bucket = %input.bucket, key = %input.key, size = rec.size, "object committed");

        let get = |alg| stored_checksum(&rec, alg);
        let output = PutObjectOutput {
            e_tag: Some(ETag::Strong(etag)),
            checksum_crc32: get("CRC32"),
            checksum_crc32c: get("CRC32C"),
            checksum_crc64nvme: get("CRC64NVME"),
            checksum_sha1: get("SHA1"),
            checksum_sha256: get("SHA256"),
            checksum_type: (!rec.checksums.is_empty())
                .then(|| ChecksumType::from_static(ChecksumType::FULL_OBJECT)),
            size: Some(rec.size as i64),
            ..Default::default()
        };
        Ok(S3Response::new(output))
    }

    async fn find_object(&self, bucket: &str, key: &str) -> S3Result<ObjectRecord> {
        self.meta
            .get_object(bucket, key)
            .await
            .map_err(meta_error)?
            .ok_or_else(|| s3_error!(NoSuchKey, "The specified key does not exist."))
    }

    pub(super) async fn get_object_impl(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let (rec, range, ranged, with_checksums) = resolve_read!(self, &req.input);
        let body = self
            .retrieve
            .open(&rec, range.clone())
            .await
            .map_err(retrieve_error)?;
        let output = object_output!(GetObjectOutput {
            rec: &rec,
            range: &range,
            ranged: ranged,
            checksums: with_checksums && !ranged,
            body: Some(StreamingBlob::wrap(body)),
        });
        Ok(S3Response::new(output))
    }

    pub(super) async fn head_object_impl(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let (rec, range, ranged, with_checksums) = resolve_read!(self, &req.input);
        let output = object_output!(HeadObjectOutput {
            rec: &rec,
            range: &range,
            ranged: ranged,
            checksums: with_checksums
        });
        Ok(S3Response::new(output))
    }
}
