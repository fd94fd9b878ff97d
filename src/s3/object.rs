//! PutObject, GetObject and HeadObject: request validation, checksums, conditional
//! requests and ranges around the ingest and retrieve pipelines.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use http::HeaderMap;
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

use super::{HoardS3, ingest_error, meta_error, retrieve_error, timestamp};
use crate::ingest::{ChecksumSet, IngestParams, Ingested, IngestedBody};
use crate::meta::{
    BucketRecord, DeleteCondition, ObjectData, ObjectRecord, ReplicationState, WriteCondition,
};

/// S3's limit for one PUT.
pub(super) const MAX_PUT_SIZE: i64 = crate::ingest::MAX_BODY_BYTES as i64;
pub(super) const MAX_KEY_LEN: usize = 1024;

/// Checks the key of an object about to be created: at most 1024 bytes, and no
/// character that XML 1.0 cannot carry (U+0000-U+0008, U+000B, U+000C,
/// U+000E-U+001F, U+FFFE, U+FFFF), which would make every listing of the bucket
/// unparsable for clients that do not ask for `encoding-type=url`. Tab, line feed and
/// carriage return are kept (the last is escaped in listings, see `server`).
pub(super) fn check_new_key(key: &str) -> S3Result<()> {
    if key.len() > MAX_KEY_LEN {
        return Err(s3_error!(KeyTooLongError, "Your key is too long"));
    }
    let unlistable = |c: char| matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}');
    if let Some(c) = key.chars().find(|c| unlistable(*c)) {
        return Err(s3_error!(
            InvalidArgument,
            "Object key contains the character U+{:04X}, which XML 1.0 cannot carry; listings of the bucket would break",
            c as u32
        ));
    }
    Ok(())
}
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

/// What a PutObject or UploadPart request declares about its body.
pub(super) struct BodyClaims<'a> {
    /// `x-amz-checksum-algorithm` (or the SDK's `x-amz-sdk-checksum-algorithm`).
    pub algorithm: Option<String>,
    /// Declared checksum values, in `ALGORITHMS` order.
    pub values: [Option<&'a String>; 5],
    pub content_md5: Option<&'a String>,
    pub content_length: Option<i64>,
}

/// The [`BodyClaims`] of a PutObjectInput or UploadPartInput.
macro_rules! body_claims {
    ($i:expr) => {{
        let i = $i;
        BodyClaims {
            algorithm: i
                .checksum_algorithm
                .as_ref()
                .map(|a| a.as_str().to_ascii_uppercase()),
            values: [
                i.checksum_crc32.as_ref(),
                i.checksum_crc32c.as_ref(),
                i.checksum_crc64nvme.as_ref(),
                i.checksum_sha1.as_ref(),
                i.checksum_sha256.as_ref(),
            ],
            content_md5: i.content_md5.as_ref(),
            content_length: i.content_length,
        }
    }};
}
pub(super) use body_claims;

impl BodyClaims<'_> {
    fn declared(&self, alg: &str) -> Option<&String> {
        let i = ALGORITHMS.iter().position(|(name, _)| *name == alg)?;
        self.values[i]
    }
}

/// Builds an output struct with the five checksum fields taken from `sums`
/// ((algorithm, base64 value) pairs), plus the fields given.
macro_rules! with_checksums {
    ($ty:ident, $sums:expr, { $($field:ident: $value:expr),* $(,)? }) => {{
        let sums: &[(String, String)] = $sums;
        let get = |alg: &str| sums.iter().find(|(a, _)| a == alg).map(|(_, v)| v.clone());
        $ty {
            checksum_crc32: get("CRC32"),
            checksum_crc32c: get("CRC32C"),
            checksum_crc64nvme: get("CRC64NVME"),
            checksum_sha1: get("SHA1"),
            checksum_sha256: get("SHA256"),
            $($field: $value,)*
            ..Default::default()
        }
    }};
}
pub(super) use with_checksums;

/// The type of an object's checksum as S3 reports it: COMPOSITE for a multipart
/// object's checksum of checksums (its value ends in `-N`), FULL_OBJECT otherwise.
pub(super) fn checksum_type_of(sums: &[(String, String)]) -> Option<ChecksumType> {
    let (_, v) = sums.first()?;
    Some(ChecksumType::from_static(if v.contains('-') {
        ChecksumType::COMPOSITE
    } else {
        ChecksumType::FULL_OBJECT
    }))
}

/// Checks an algorithm name against the ones S3 knows; returns it as S3 spells it.
pub(super) fn checked_algorithm(a: &str) -> S3Result<String> {
    let a = a.to_ascii_uppercase();
    if ALGORITHMS.iter().any(|(name, _)| *name == a) {
        Ok(a)
    } else {
        Err(s3_error!(
            InvalidRequest,
            "Checksum algorithm {a} is not supported"
        ))
    }
}

/// Which checksums the request declares (header, algorithm or trailer).
fn wanted_checksums(claims: &BodyClaims<'_>, headers: &HeaderMap) -> S3Result<ChecksumSet> {
    let trailer = headers
        .get("x-amz-trailer")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if let Some(a) = &claims.algorithm {
        checked_algorithm(a)?;
    }
    let want = |alg: &str, header: &str| {
        claims.declared(alg).is_some()
            || claims.algorithm.as_deref() == Some(alg)
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

/// (algorithm, base64 value) of every checksum computed.
pub(super) fn computed_pairs(computed: &Checksum) -> Vec<(String, String)> {
    ALGORITHMS
        .iter()
        .filter_map(|(alg, _)| {
            computed_value(computed, alg).map(|v| ((*alg).to_owned(), v.clone()))
        })
        .collect()
}

/// Compares every declared checksum (header or trailer) with the computed one and
/// returns what to store: (algorithm, base64 value) for each computed checksum.
fn verify_checksums(
    claims: &BodyClaims<'_>,
    trailers: Option<&HeaderMap>,
    computed: &Checksum,
) -> S3Result<Vec<(String, String)>> {
    let stored = computed_pairs(computed);
    for (alg, actual) in &stored {
        let from_trailer = ALGORITHMS
            .iter()
            .find(|(a, _)| a == alg)
            .and_then(|(_, header)| trailers.and_then(|t| t.get(*header)))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let declared = claims.declared(alg).cloned().or(from_trailer);
        if let Some(d) = declared
            && d.trim() != actual
        {
            return Err(S3Error::with_message(
                S3ErrorCode::BadDigest,
                format!("The {alg} you specified did not match the calculated checksum."),
            ));
        }
    }
    Ok(stored)
}

fn content_md5(v: Option<&String>) -> S3Result<Option<[u8; 16]>> {
    let Some(v) = v else {
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

fn expects_continue(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
}

/// What a received body becomes: an object version of a key (which may stay inline,
/// and replaces that key's current body) or an upload part (always chunked; its
/// checksum in the upload's algorithm computed whether or not the client sends one,
/// so that the object's checksum can be made of the parts').
#[derive(Clone, Copy)]
pub(super) enum BodyTarget<'a> {
    Object { key: &'a str },
    Part { checksum: Option<&'a str> },
}

/// A body received through the pipeline with its declarations checked.
pub(super) struct Received {
    pub ingested: Ingested,
    /// (algorithm, base64 value) of every checksum computed.
    pub checksums: Vec<(String, String)>,
}

/// The standard headers of a PutObject, CreateMultipartUpload or CopyObject input,
/// as stored with the object.
macro_rules! stored_headers {
    ($i:expr) => {{
        let i = &mut *$i;
        $crate::meta::StoredHeaders {
            content_type: i.content_type.take(),
            content_encoding: $crate::s3::object::stored_content_encoding(
                i.content_encoding.take(),
            ),
            content_disposition: i.content_disposition.take(),
            content_language: i.content_language.take(),
            cache_control: i.cache_control.take(),
            expires: i.expires.as_ref().and_then($crate::s3::object::http_date),
        }
    }};
}
pub(super) use stored_headers;

/// `Content-Encoding` as stored: `aws-chunked` names how the body was sent, not
/// the object, and is dropped (`gzip, aws-chunked` stores `gzip`), as S3 does.
pub(super) fn stored_content_encoding(given: Option<String>) -> Option<String> {
    let given = given?;
    let kept: Vec<&str> = given
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("aws-chunked"))
        .collect();
    (!kept.is_empty()).then(|| kept.join(", "))
}

/// User metadata in a stable order.
/// S3's limit on user-defined metadata: the bytes of every key and value together.
const MAX_USER_META: usize = 2048;

/// The `x-amz-meta-*` pairs, sorted; more than 2 KB of them is 400 MetadataTooLarge.
pub(super) fn user_meta(m: Option<Metadata>) -> S3Result<Vec<(String, String)>> {
    let mut v: Vec<(String, String)> = m.unwrap_or_default().into_iter().collect();
    if v.iter().map(|(k, val)| k.len() + val.len()).sum::<usize>() > MAX_USER_META {
        return Err(s3_error!(
            MetadataTooLarge,
            "Your metadata headers exceed the maximum allowed metadata size."
        ));
    }
    v.sort();
    Ok(v)
}

/// Refuses a version id hoard cannot have issued (400 InvalidArgument, as S3).
pub(super) fn check_version_id(v: &str) -> S3Result<()> {
    match crate::meta::parse_version_id(v) {
        Some(_) => Ok(()),
        None => Err(s3_error!(InvalidArgument, "Invalid version id specified")),
    }
}

/// The version id to report: none for the "null" version of an unversioned write.
pub(super) fn reported_version(v: &str) -> Option<String> {
    (v != crate::meta::NULL_VERSION).then(|| v.to_owned())
}

/// Parses `x-amz-tagging` (URL query syntax) into tags and validates them.
pub(super) fn parse_tagging(v: Option<&str>) -> S3Result<Vec<(String, String)>> {
    let Some(v) = v.filter(|v| !v.is_empty()) else {
        return Ok(Vec::new());
    };
    let mut tags = Vec::new();
    for pair in v.split('&') {
        let (k, val) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            url_decode(s).ok_or_else(|| s3_error!(InvalidArgument, "The header 'x-amz-tagging' shall be encoded as UTF-8 then URLEncoded URL query parameters without tag name duplicates."))
        };
        tags.push((decode(k)?, decode(val)?));
    }
    crate::meta::check_tags(&tags, 10)
        .map_err(|m| S3Error::with_message(S3ErrorCode::InvalidTag, m))?;
    Ok(tags)
}

/// Percent-decoding for query strings (`+` is a space); `None` on an escape that is
/// not `%` and two hex digits, or on bytes that are not UTF-8.
fn url_decode(s: &str) -> Option<String> {
    let escapes_valid = s.match_indices('%').all(|(i, _)| {
        s.as_bytes()
            .get(i + 1..i + 3)
            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    if !escapes_valid {
        return None;
    }
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

pub(super) fn http_date(t: &Timestamp) -> Option<String> {
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

/// The precondition of a conditional write (PutObject, CompleteMultipartUpload):
/// `If-None-Match: *` (the key must not exist) or `If-Match` (its current ETag, or
/// `*` for any). S3 takes no other If-None-Match value on a write.
pub(super) fn write_condition(
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
) -> S3Result<Option<WriteCondition>> {
    match (if_none_match, if_match) {
        (Some(ETagCondition::Any), None) => Ok(Some(WriteCondition::Absent)),
        (Some(_), None) => Err(s3_error!(
            NotImplemented,
            "A header you provided implies functionality that is not implemented: If-None-Match takes only *"
        )),
        (None, Some(ETagCondition::Any)) => Ok(Some(WriteCondition::Matches(None))),
        (None, Some(ETagCondition::ETag(e))) => {
            Ok(Some(WriteCondition::Matches(Some(e.value().to_owned()))))
        }
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(s3_error!(
            InvalidRequest,
            "If-Match and If-None-Match cannot be given together on a write"
        )),
    }
}

/// The precondition of a conditional delete (DeleteObject headers, or the ETag,
/// LastModifiedTime and Size of an `<Object>` in DeleteObjects).
/// `if_match` is the ETag asked for, `*` for any.
pub(super) fn delete_condition(
    if_match: Option<&str>,
    modified: Option<&Timestamp>,
    size: Option<i64>,
) -> S3Result<DeleteCondition> {
    let size = size
        .map(u64::try_from)
        .transpose()
        .map_err(|_| s3_error!(InvalidArgument, "x-amz-if-match-size must not be negative"))?;
    Ok(DeleteCondition {
        etag: if_match.map(|e| (e != "*").then(|| e.to_owned())),
        modified_secs: modified.map(|t| super::lock::millis(t).div_euclid(1000)),
        size,
    })
}

impl HoardS3 {
    /// Fails a conditional write early, before its body is read, when the key's
    /// current version already says it cannot succeed; the commit checks again.
    pub(super) async fn precheck_write(
        &self,
        bucket: &str,
        key: &str,
        condition: Option<&WriteCondition>,
    ) -> S3Result<()> {
        let Some(c) = condition else { return Ok(()) };
        let current = self
            .meta
            .get_version(bucket, key, None)
            .await
            .map_err(meta_error)?;
        match c.holds(current.as_ref()) {
            true => Ok(()),
            false => Err(meta_error(crate::meta::MetaError::PreconditionFailed)),
        }
    }
}

/// Evaluates GET/HEAD preconditions in the order S3 (RFC 9110) applies them.
pub(super) fn check_conditions(
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

/// The byte range a GET/HEAD serves, and whether it was a range request. A part
/// number selects that part of a multipart object; a simple object has one part.
fn resolve_range(
    rec: &ObjectRecord,
    range: Option<&Range>,
    part_number: Option<i32>,
) -> S3Result<(std::ops::Range<u64>, bool)> {
    if let Some(n) = part_number {
        if range.is_some() {
            return Err(s3_error!(
                InvalidRequest,
                "Cannot specify both Range header and partNumber query parameter"
            ));
        }
        super::multipart::part_number(n)?;
        let pieces = rec.manifests();
        let found = match rec.parts_count() {
            None if n == 1 => Some((0..rec.size, false)),
            None => None,
            Some(_) => {
                let idx = usize::try_from(n).ok().and_then(|n| n.checked_sub(1));
                idx.filter(|&i| i < pieces.len()).map(|i| {
                    let start: u64 = pieces[..i].iter().map(|(_, size)| size).sum();
                    (start..start + pieces[i].1, true)
                })
            }
        };
        return found.ok_or_else(|| {
            let mut e = S3Error::with_message(
                S3ErrorCode::Custom("InvalidPartNumber".into()),
                "The requested partnumber is not satisfiable",
            );
            e.set_status_code(http::StatusCode::RANGE_NOT_SATISFIABLE);
            e
        });
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
/// applies its conditions and range:
/// `(record, range, ranged, checksums asked for, parts count to report)`.
macro_rules! resolve_read {
    ($self:ident, $input:expr) => {{
        let i = $input;
        let rec = $self
            .find_readable(&i.bucket, &i.key, i.version_id.as_deref())
            .await?;
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
        let parts_count = i.part_number.and(rec.parts_count()).map(|n| n as i32);
        (rec, range, ranged, checksums, parts_count)
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
        let (lock_mode, lock_until, legal_hold) = $crate::s3::lock::lock_output(rec);
        $ty {
            object_lock_mode: lock_mode,
            object_lock_retain_until_date: lock_until,
            object_lock_legal_hold_status: legal_hold,
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
            version_id: reported_version(&rec.version_id),
            checksum_type: checksum_type_of(&rec.checksums).filter(|_| with),
            $($field: $value,)*
            ..Default::default()
        }
    }};
}

impl HoardS3 {
    /// `x-amz-replication-status`: PENDING, COMPLETED or FAILED on a source bucket
    /// with a rule, REPLICA on a replica bucket, nothing elsewhere.
    async fn replication_status(
        &self,
        bucket: &str,
        key: &str,
    ) -> S3Result<Option<ReplicationStatus>> {
        let state = self
            .meta
            .replication_state(bucket, key)
            .await
            .map_err(meta_error)?;
        Ok(state.map(|s| {
            ReplicationStatus::from_static(match s {
                ReplicationState::Pending => ReplicationStatus::PENDING,
                ReplicationState::Completed => ReplicationStatus::COMPLETED,
                ReplicationState::Failed => ReplicationStatus::FAILED,
                ReplicationState::Replica => ReplicationStatus::REPLICA,
            })
        }))
    }
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
        // A browser POST arrives here too: its key may name the file's name, its
        // form may carry the tags.
        if let Some(form) = req.extensions.get::<crate::form_tap::FormFields>() {
            if let Some(key) = form.substitute(&req.input.key) {
                req.input.key = key;
            }
            if let Some(xml) = form.tagging()
                && req.input.tagging.is_none()
            {
                let tags = crate::form_tap::tags_of(xml).ok_or_else(super::malformed_xml)?;
                req.input.tagging = Some(
                    form_urlencoded::Serializer::new(String::new())
                        .extend_pairs(tags)
                        .finish(),
                );
            }
        }
        let bucket_rec = self.bucket(&req.input.bucket).await?;
        if super::sosapi::is_sosapi_key(&req.input.key) {
            return self.put_sosapi_document(req).await;
        }
        check_new_key(&req.input.key)?;
        let lock = self.new_version_lock(
            &bucket_rec,
            &super::lock::lock_headers!(&req.input),
            Some(&req.headers),
        )?;
        let condition = write_condition(
            req.input.if_match.as_ref(),
            req.input.if_none_match.as_ref(),
        )?;
        self.precheck_write(&req.input.bucket, &req.input.key, condition.as_ref())
            .await?;
        let tags = parse_tagging(req.input.tagging.as_deref())?;
        let acl = self
            .new_version_acl(&req.input.bucket, req.input.acl.as_ref(), &req.headers)
            .await?;
        let meta = user_meta(req.input.metadata.take())?;
        let body = req.input.body.take();
        let Received {
            ingested,
            checksums,
        } = self
            .receive(
                &req.input.bucket,
                &bucket_rec,
                body_claims!(&req.input),
                body,
                &req,
                BodyTarget::Object {
                    key: &req.input.key,
                },
            )
            .await?;
        let input = &mut req.input;
        let etag = hex::encode(ingested.md5);
        let rec = ObjectRecord {
            size: ingested.size,
            etag: etag.clone(),
            modified_ms: crate::meta::now_ms(),
            headers: stored_headers!(input),
            user_meta: meta,
            checksums,
            data: ObjectData::Inline(Vec::new()),
            version_id: crate::meta::NULL_VERSION.into(),
            seq: 0,
            delete_marker: false,
            tags,
            lock,
            acl,
            part_checksums: None,
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
        let version_id = self
            .meta
            .commit_object(
                &input.bucket,
                &input.key,
                rec.clone(),
                manifest,
                Some(ingested.held.hold().id()),
                condition,
            )
            .await
            .map_err(meta_error)?;
        ingested.held.disarm();
        tracing::debug!(bucket = %input.bucket, key = %input.key, size = rec.size, "object committed");

        let output = with_checksums!(PutObjectOutput, &rec.checksums, {
            e_tag: Some(ETag::Strong(etag)),
            checksum_type: checksum_type_of(&rec.checksums),
            size: Some(rec.size as i64),
            version_id: reported_version(&version_id),
        });
        Ok(S3Response::new(output))
    }

    /// Runs one body through the ingest pipeline within the stream limit.
    pub(super) async fn ingest_stream<S, E>(
        &self,
        params: IngestParams,
        body: S,
    ) -> S3Result<Ingested>
    where
        S: futures::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: Into<s3s::StdError>,
    {
        let permit = self.ingest.acquire().await.map_err(ingest_error)?;
        self.ingest
            .ingest(&permit, params, body)
            .await
            .map_err(ingest_error)
    }

    /// Receives a PutObject or UploadPart body through the ingest pipeline, within the
    /// stream limit, and checks its length, Content-MD5 and checksums. A declared
    /// length that would break a quota is refused before the body is read. On error
    /// the references taken while ingesting are released.
    pub(super) async fn receive<T>(
        &self,
        bucket: &str,
        bucket_rec: &BucketRecord,
        claims: BodyClaims<'_>,
        body: Option<StreamingBlob>,
        req: &S3Request<T>,
        target: BodyTarget<'_>,
    ) -> S3Result<Received> {
        if claims.content_length.is_some_and(|n| n > MAX_PUT_SIZE) {
            return Err(s3_error!(
                EntityTooLarge,
                "Your proposed upload exceeds the maximum allowed object size."
            ));
        }
        let (key, inline, upload_checksum) = match target {
            BodyTarget::Object { key } => (Some(key), true, None),
            BodyTarget::Part { checksum } => (None, false, checksum),
        };
        if let Some(n) = claims.content_length.and_then(|n| u64::try_from(n).ok())
            && let Err(e) = self.meta.check_quota(bucket, key, n).await
        {
            // A client that did not wait for `100 Continue` is sending the body now:
            // read it to the end, storing nothing, so that it sees this answer
            // rather than a broken pipe.
            if !expects_continue(&req.headers)
                && let Some(mut body) = body
            {
                while let Some(Ok(_)) = futures::StreamExt::next(&mut body).await {}
            }
            return Err(meta_error(e));
        }
        let md5_declared = content_md5(claims.content_md5)?;
        let params = IngestParams {
            bucket: bucket.to_owned(),
            chunking: bucket_rec.chunking,
            compression_level: bucket_rec.compression_level,
            checksums: match upload_checksum {
                Some(alg) => wanted_checksums(&claims, &req.headers)?.and(alg),
                None => wanted_checksums(&claims, &req.headers)?,
            },
            expected_len: claims.content_length.and_then(|n| u64::try_from(n).ok()),
            inline,
        };
        let ingested = match body {
            Some(body) => self.ingest_stream(params, body).await,
            None => {
                let empty = futures::stream::empty::<Result<bytes::Bytes, s3s::StdError>>();
                self.ingest_stream(params, empty).await
            }
        }?;
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
        let checksums = verify_checksums(&claims, trailers.as_ref(), &ingested.checksums)?;
        Ok(Received {
            ingested,
            checksums,
        })
    }

    /// The current version of a key, or the version named; a delete marker reads as
    /// 404 NoSuchKey (current) or 405 MethodNotAllowed (by id), with
    /// `x-amz-delete-marker: true`, as in S3.
    /// What a GET or HEAD reads: a SOSAPI document (`s3::sosapi`) or a stored
    /// version.
    pub(super) async fn find_readable(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> S3Result<ObjectRecord> {
        if version.is_none() && super::sosapi::is_sosapi_key(key) {
            let b = self.bucket(bucket).await?;
            if let Some(doc) = self.sosapi_document(&b, bucket, key).await? {
                return Ok(doc);
            }
        }
        self.find_object(bucket, key, version).await
    }

    pub(super) async fn find_object(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> S3Result<ObjectRecord> {
        if let Some(v) = version {
            check_version_id(v)?;
        }
        let rec = self
            .meta
            .get_version(bucket, key, version.map(str::to_owned))
            .await
            .map_err(meta_error)?;
        match rec {
            Some(r) if r.delete_marker => {
                let mut e = if version.is_some() {
                    s3_error!(
                        MethodNotAllowed,
                        "The specified method is not allowed against this resource."
                    )
                } else {
                    s3_error!(NoSuchKey, "The specified key does not exist.")
                };
                let mut h = HeaderMap::new();
                h.insert(
                    "x-amz-delete-marker",
                    http::HeaderValue::from_static("true"),
                );
                if let Ok(v) = r.version_id.parse() {
                    h.insert("x-amz-version-id", v);
                }
                e.set_headers(h);
                Err(e)
            }
            Some(r) => Ok(r),
            None if version.is_some() => Err(s3_error!(
                NoSuchVersion,
                "The specified version does not exist."
            )),
            None => Err(s3_error!(NoSuchKey, "The specified key does not exist.")),
        }
    }

    pub(super) async fn get_object_impl(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let (rec, range, ranged, with_checksums, parts_count) = resolve_read!(self, &req.input);
        let body = self
            .retrieve
            .open(&rec, range.clone())
            .await
            .map_err(retrieve_error)?;
        let mut output = object_output!(GetObjectOutput {
            rec: &rec,
            range: &range,
            ranged: ranged,
            checksums: with_checksums && !ranged,
            body: Some(StreamingBlob::wrap(body)),
            parts_count: parts_count,
            tag_count: (!rec.tags.is_empty()).then_some(rec.tags.len() as i32),
            replication_status: self
                .replication_status(&req.input.bucket, &req.input.key)
                .await?,
        });
        apply_response_overrides(&mut output, &req.input);
        Ok(S3Response::new(output))
    }

    pub(super) async fn head_object_impl(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let (rec, range, ranged, with_checksums, parts_count) = resolve_read!(self, &req.input);
        let output = object_output!(HeadObjectOutput {
            rec: &rec,
            range: &range,
            ranged: ranged,
            checksums: with_checksums && !ranged,
            parts_count: parts_count,
            replication_status: self
                .replication_status(&req.input.bucket, &req.input.key)
                .await?,
        });
        let mut resp = S3Response::new(output);
        // HeadObject's output has no field for it; S3 answers it as GET does.
        if !rec.tags.is_empty() {
            resp.headers.insert(
                "x-amz-tagging-count",
                http::HeaderValue::from(rec.tags.len()),
            );
        }
        Ok(resp)
    }
}

/// GetObject's `response-*` query parameters replace the stored headers in this
/// answer (the stored object is unchanged).
fn apply_response_overrides(o: &mut GetObjectOutput, i: &GetObjectInput) {
    let or = |given: &Option<String>, stored: &mut Option<String>| {
        if given.is_some() {
            stored.clone_from(given);
        }
    };
    or(&i.response_content_type, &mut o.content_type);
    or(&i.response_content_language, &mut o.content_language);
    or(&i.response_content_disposition, &mut o.content_disposition);
    or(&i.response_content_encoding, &mut o.content_encoding);
    or(&i.response_cache_control, &mut o.cache_control);
    if i.response_expires.is_some() {
        o.expires.clone_from(&i.response_expires);
    }
}

#[cfg(test)]
mod tests {
    use super::url_decode;

    #[test]
    fn tagging_values_decode_strictly() {
        assert_eq!(
            url_decode("two%20words+more").as_deref(),
            Some("two words more")
        );
        assert_eq!(url_decode("caf%C3%A9").as_deref(), Some("café"));
        for bad in ["%", "%2", "%zz", "%FF"] {
            assert_eq!(url_decode(bad), None, "{bad}");
        }
    }
}
