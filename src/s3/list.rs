//! ListObjects (v1) and ListObjectsV2: markers, continuation tokens, delimiters and
//! `encoding-type=url`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as TOKEN;
use s3s::dto::*;
use s3s::{S3Response, S3Result, s3_error};

use super::{HoardS3, meta_error, timestamp};
use crate::meta::{ListEntry, ListPage, ListQuery};

const MAX_KEYS: i32 = 1000;

/// What `encoding-type=url` leaves as it is: RFC 3986 unreserved characters and
/// `/`, which every S3 client decodes (`+` becomes %2B, space %20).
const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

pub(super) fn url_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, KEEP).to_string()
}

pub(super) struct Encoder(bool);

impl Encoder {
    pub(super) fn new(t: Option<&EncodingType>) -> S3Result<Encoder> {
        match t.map(EncodingType::as_str) {
            None => Ok(Encoder(false)),
            Some(v) if v.eq_ignore_ascii_case(EncodingType::URL) => Ok(Encoder(true)),
            Some(_) => Err(s3_error!(
                InvalidArgument,
                "Invalid Encoding Method specified in Request"
            )),
        }
    }
    pub(super) fn enc(&self, s: &str) -> String {
        if self.0 { url_encode(s) } else { s.to_owned() }
    }
    pub(super) fn opt(&self, s: Option<&str>) -> Option<String> {
        s.map(|s| self.enc(s))
    }
}

fn max_keys(v: Option<i32>) -> S3Result<usize> {
    match v {
        None => Ok(MAX_KEYS as usize),
        Some(n) if n < 0 => Err(s3_error!(
            InvalidArgument,
            "max-keys must be a non-negative integer"
        )),
        Some(n) => Ok(n.min(MAX_KEYS) as usize),
    }
}

struct Split {
    contents: Vec<Object>,
    prefixes: Vec<CommonPrefix>,
}

impl HoardS3 {
    /// A page of the bucket's keys, with the SOSAPI documents a listing of their
    /// folder includes (`s3::sosapi`) merged in key order.
    async fn list_page(&self, bucket: &str, q: ListQuery) -> S3Result<ListPage> {
        let virtual_docs = self
            .sosapi_listed(bucket, &q.prefix, q.after.as_deref())
            .await?;
        let max = q.max;
        let mut page = self
            .meta
            .list_objects(bucket, q)
            .await
            .map_err(meta_error)?;
        if virtual_docs.is_empty() {
            return Ok(page);
        }
        for (key, rec) in virtual_docs {
            if !page.entries.iter().any(|e| e.name() == key) {
                page.entries.push(ListEntry::Object(key, rec));
            }
        }
        page.entries.sort_by(|a, b| a.name().cmp(b.name()));
        if page.entries.len() > max {
            page.entries.truncate(max);
            page.truncated = true;
        }
        Ok(page)
    }

    fn split(&self, page: &ListPage, enc: &Encoder, with_owner: bool) -> Split {
        let mut contents = Vec::new();
        let mut prefixes = Vec::new();
        for e in &page.entries {
            match e {
                ListEntry::Object(key, rec) => contents.push(Object {
                    key: Some(enc.enc(key)),
                    size: Some(rec.size as i64),
                    e_tag: Some(ETag::Strong(rec.etag.clone())),
                    last_modified: Some(timestamp(rec.modified_ms)),
                    storage_class: Some(ObjectStorageClass::from_static(
                        ObjectStorageClass::STANDARD,
                    )),
                    owner: with_owner.then(|| self.owner()),
                    ..Default::default()
                }),
                ListEntry::Prefix(p) => prefixes.push(CommonPrefix {
                    prefix: Some(enc.enc(p)),
                }),
            }
        }
        Split { contents, prefixes }
    }

    pub(super) async fn list_objects_v1(
        &self,
        i: ListObjectsInput,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let enc = Encoder::new(i.encoding_type.as_ref())?;
        let max = max_keys(i.max_keys)?;
        let prefix = i.prefix.clone().unwrap_or_default();
        let marker = i.marker.clone().filter(|m| !m.is_empty());
        let q = ListQuery {
            prefix: prefix.clone(),
            delimiter: i.delimiter.clone(),
            after: marker.clone(),
            max,
        };
        let page = self.list_page(&i.bucket, q).await?;
        let next_marker = page
            .truncated
            .then(|| page.entries.last().map(|e| enc.enc(e.name())))
            .flatten();
        let split = self.split(&page, &enc, true);
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(i.bucket),
            prefix: Some(enc.enc(&prefix)),
            marker: Some(enc.opt(marker.as_deref()).unwrap_or_default()),
            max_keys: Some(max as i32),
            is_truncated: Some(page.truncated),
            contents: Some(split.contents),
            common_prefixes: Some(split.prefixes),
            delimiter: enc.opt(i.delimiter.as_deref().filter(|d| !d.is_empty())),
            next_marker,
            encoding_type: i.encoding_type,
            ..Default::default()
        }))
    }

    pub(super) async fn list_objects_v2_impl(
        &self,
        i: ListObjectsV2Input,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let enc = Encoder::new(i.encoding_type.as_ref())?;
        let max = max_keys(i.max_keys)?;
        let prefix = i.prefix.clone().unwrap_or_default();
        let after = match i.continuation_token.as_deref() {
            Some(t) => Some(decode_token(t)?),
            None => i.start_after.clone().filter(|s| !s.is_empty()),
        };
        let q = ListQuery {
            prefix: prefix.clone(),
            delimiter: i.delimiter.clone(),
            after,
            max,
        };
        let page = self.list_page(&i.bucket, q).await?;
        let next = page
            .truncated
            .then(|| page.entries.last().map(|e| TOKEN.encode(e.name())))
            .flatten();
        let split = self.split(&page, &enc, i.fetch_owner == Some(true));
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(i.bucket),
            prefix: Some(enc.enc(&prefix)),
            max_keys: Some(max as i32),
            key_count: Some(page.entries.len() as i32),
            continuation_token: i.continuation_token,
            is_truncated: Some(page.truncated),
            next_continuation_token: next,
            contents: Some(split.contents),
            common_prefixes: Some(split.prefixes),
            delimiter: enc.opt(i.delimiter.as_deref().filter(|d| !d.is_empty())),
            encoding_type: i.encoding_type,
            start_after: enc.opt(i.start_after.as_deref()),
            ..Default::default()
        }))
    }
}

fn decode_token(t: &str) -> S3Result<String> {
    TOKEN
        .decode(t)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "The continuation token provided is incorrect"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encoding_escapes_what_clients_decode() {
        assert_eq!(url_encode("a b+c%/é"), "a%20b%2Bc%25/%C3%A9");
        assert_eq!(url_encode("plain-key_1.txt~"), "plain-key_1.txt~");
    }

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let t = TOKEN.encode("photos/2024/");
        assert_eq!(decode_token(&t).unwrap(), "photos/2024/");
        assert!(decode_token("!!!").is_err());
    }
}
