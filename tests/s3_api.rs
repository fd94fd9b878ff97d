//! The S3 surface of the core gateway, driven with aws-sdk-s3 against a real server.

mod common;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, EncodingType};
use common::*;

#[tokio::test]
async fn bucket_lifecycle_and_naming_rules() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("alpha").send().await.unwrap();
    put_bytes(&c, "alpha", "kept", b"kept".to_vec()).await;
    // Created again by its owner: 200 OK in us-east-1 (hoard's default region),
    // with the ACL reset and nothing else touched.
    c.put_bucket_acl()
        .bucket("alpha")
        .acl(aws_sdk_s3::types::BucketCannedAcl::PublicRead)
        .send()
        .await
        .unwrap();
    c.create_bucket().bucket("alpha").send().await.unwrap();
    let acl = c.get_bucket_acl().bucket("alpha").send().await.unwrap();
    assert_eq!(
        acl.grants().len(),
        1,
        "only the owner's FULL_CONTROL is left"
    );
    assert_eq!(get_bytes(&c, "alpha", "kept").await, b"kept");
    delete_keys(&c, "alpha", &["kept"]).await;
    for bad in ["ab", "Upper-Case", "under_score", "-lead"] {
        let e = c.create_bucket().bucket(bad).send().await.unwrap_err();
        assert_eq!(status_of(&e), 400, "{bad}");
    }
    let reserved = c
        .create_bucket()
        .bucket("hoard-admin")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&reserved), "InvalidBucketName");

    c.head_bucket().bucket("alpha").send().await.unwrap();
    let missing = c
        .head_bucket()
        .bucket("nope-missing")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status_of(&missing), 404);

    let loc = c
        .get_bucket_location()
        .bucket("alpha")
        .send()
        .await
        .unwrap();
    assert!(
        loc.location_constraint()
            .is_none_or(|l| l.as_str().is_empty())
    );

    c.create_bucket().bucket("beta").send().await.unwrap();
    let names: Vec<String> = c
        .list_buckets()
        .send()
        .await
        .unwrap()
        .buckets()
        .iter()
        .filter_map(|b| b.name().map(str::to_owned))
        .collect();
    assert_eq!(names, vec!["alpha", "beta"]);

    put_bytes(&c, "alpha", "k", b"x".to_vec()).await;
    let busy = c.delete_bucket().bucket("alpha").send().await.unwrap_err();
    assert_eq!(code_of(&busy), "BucketNotEmpty");
    assert_eq!(status_of(&busy), 409);
    c.delete_object()
        .bucket("alpha")
        .key("k")
        .send()
        .await
        .unwrap();
    c.delete_bucket().bucket("alpha").send().await.unwrap();
    let gone = c.delete_bucket().bucket("alpha").send().await.unwrap_err();
    assert_eq!(code_of(&gone), "NoSuchBucket");
}

#[tokio::test]
async fn put_get_head_delete_round_trip_with_headers_and_metadata() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("bkt1").send().await.unwrap();
    let data = random_bytes(1, 3 * 1024 * 1024 + 17);
    let put = c
        .put_object()
        .bucket("bkt1")
        .key("dir/file.bin")
        .body(ByteStream::from(data.clone()))
        .content_type("application/x-test")
        .content_encoding("identity")
        .content_disposition("attachment; filename=\"f.bin\"")
        .content_language("en-GB")
        .cache_control("max-age=60")
        .expires(aws_sdk_s3::primitives::DateTime::from_secs(1_900_000_000))
        .metadata("owner", "backup-job-7")
        .metadata("Mixed-Case", "Value with spaces")
        .send()
        .await
        .unwrap();
    assert_eq!(
        put.e_tag().unwrap(),
        format!("\"{}\"", md5_hex(&data)),
        "the ETag of a single PUT is the body's MD5"
    );

    let got = c
        .get_object()
        .bucket("bkt1")
        .key("dir/file.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_type(), Some("application/x-test"));
    assert_eq!(got.content_encoding(), Some("identity"));
    assert_eq!(
        got.content_disposition(),
        Some("attachment; filename=\"f.bin\"")
    );
    assert_eq!(got.content_language(), Some("en-GB"));
    assert_eq!(got.cache_control(), Some("max-age=60"));
    assert_eq!(got.expires_string(), Some("Sun, 17 Mar 2030 17:46:40 GMT"));
    let meta = got.metadata().unwrap();
    assert_eq!(meta.get("owner").map(String::as_str), Some("backup-job-7"));
    assert_eq!(
        meta.get("mixed-case").map(String::as_str),
        Some("Value with spaces")
    );
    assert_eq!(got.content_length(), Some(data.len() as i64));
    let body = got.body.collect().await.unwrap().into_bytes();
    assert!(body == data, "GET returns the bytes that were PUT");

    let head = c
        .head_object()
        .bucket("bkt1")
        .key("dir/file.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(data.len() as i64));
    assert_eq!(head.e_tag(), put.e_tag());
    assert_eq!(
        head.metadata().unwrap().get("owner").map(String::as_str),
        Some("backup-job-7")
    );

    c.delete_object()
        .bucket("bkt1")
        .key("dir/file.bin")
        .send()
        .await
        .unwrap();
    let e = c
        .get_object()
        .bucket("bkt1")
        .key("dir/file.bin")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), "NoSuchKey");
    assert_eq!(status_of(&e), 404);
    let e = c
        .head_object()
        .bucket("bkt1")
        .key("dir/file.bin")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), 404);
    // Deleting an absent key succeeds, as in S3.
    c.delete_object()
        .bucket("bkt1")
        .key("never-was")
        .send()
        .await
        .unwrap();
    let e = c
        .get_object()
        .bucket("nope-missing")
        .key("k")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), "NoSuchBucket");
    let e = c
        .put_object()
        .bucket("nope-missing")
        .key("k")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), "NoSuchBucket");
}

#[tokio::test]
async fn overwrite_replaces_and_zero_length_objects_work() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("bkt").send().await.unwrap();
    put_bytes(&c, "bkt", "k", random_bytes(2, 600_000)).await;
    let second = random_bytes(3, 900_000);
    put_bytes(&c, "bkt", "k", second.clone()).await;
    assert!(get_bytes(&c, "bkt", "k").await == second);

    let etag = put_bytes(&c, "bkt", "empty", Vec::new()).await;
    assert_eq!(etag, "d41d8cd98f00b204e9800998ecf8427e");
    assert!(get_bytes(&c, "bkt", "empty").await.is_empty());
    let head = c
        .head_object()
        .bucket("bkt")
        .key("empty")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(0));
}

#[tokio::test]
async fn ranges_suffix_open_ended_and_unsatisfiable() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("rng").send().await.unwrap();
    let data = random_bytes(4, 5 * 1024 * 1024 + 333);
    put_bytes(&c, "rng", "big", data.clone()).await;
    put_bytes(&c, "rng", "small", b"0123456789".to_vec()).await;
    let n = data.len();
    let cases: Vec<(String, std::ops::Range<usize>)> = vec![
        ("bytes=0-0".into(), 0..1),
        ("bytes=100-199".into(), 100..200),
        ("bytes=65530-300000".into(), 65530..300001),
        (format!("bytes={}-", n - 1000), n - 1000..n),
        ("bytes=-4096".into(), n - 4096..n),
        (format!("bytes=1000-{}", n + 5000), 1000..n),
    ];
    for (h, want) in cases {
        let got = c
            .get_object()
            .bucket("rng")
            .key("big")
            .range(&h)
            .send()
            .await
            .unwrap();
        assert_eq!(
            got.content_range(),
            Some(format!("bytes {}-{}/{}", want.start, want.end - 1, n).as_str()),
            "{h}"
        );
        let body = got.body.collect().await.unwrap().into_bytes();
        assert!(body[..] == data[want.clone()], "range {h}");
    }
    let small = c
        .get_object()
        .bucket("rng")
        .key("small")
        .range("bytes=-3")
        .send()
        .await
        .unwrap();
    assert_eq!(
        &small.body.collect().await.unwrap().into_bytes()[..],
        b"789"
    );
    let e = c
        .get_object()
        .bucket("rng")
        .key("big")
        .range(format!("bytes={}-", n + 10))
        .send()
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), 416);
    assert_eq!(code_of(&e), "InvalidRange");
}

#[tokio::test]
async fn conditional_gets_answer_304_and_412() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("cond").send().await.unwrap();
    let etag = format!(
        "\"{}\"",
        put_bytes(&c, "cond", "k", b"conditional".to_vec()).await
    );
    let head = c
        .head_object()
        .bucket("cond")
        .key("k")
        .send()
        .await
        .unwrap();
    let modified = *head.last_modified().unwrap();
    let later = aws_sdk_s3::primitives::DateTime::from_secs(modified.secs() + 3600);
    let earlier = aws_sdk_s3::primitives::DateTime::from_secs(modified.secs() - 3600);

    c.get_object()
        .bucket("cond")
        .key("k")
        .if_match(&etag)
        .send()
        .await
        .unwrap();
    let e = c
        .get_object()
        .bucket("cond")
        .key("k")
        .if_match("\"0000\"")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), 412);
    let e = c
        .get_object()
        .bucket("cond")
        .key("k")
        .if_none_match(&etag)
        .send()
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), 304);
    c.get_object()
        .bucket("cond")
        .key("k")
        .if_none_match("\"other\"")
        .send()
        .await
        .unwrap();
    let e = c
        .get_object()
        .bucket("cond")
        .key("k")
        .if_modified_since(later)
        .send()
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), 304);
    c.get_object()
        .bucket("cond")
        .key("k")
        .if_modified_since(earlier)
        .send()
        .await
        .unwrap();
    let e = c
        .get_object()
        .bucket("cond")
        .key("k")
        .if_unmodified_since(earlier)
        .send()
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), 412);
    c.get_object()
        .bucket("cond")
        .key("k")
        .if_unmodified_since(later)
        .send()
        .await
        .unwrap();
    // If-Match that holds wins over If-Unmodified-Since that does not (RFC 9110).
    c.get_object()
        .bucket("cond")
        .key("k")
        .if_match(&etag)
        .if_unmodified_since(earlier)
        .send()
        .await
        .unwrap();
    let e = c
        .head_object()
        .bucket("cond")
        .key("k")
        .if_none_match(&etag)
        .send()
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), 304);
    // The connection stays usable after a 304.
    assert_eq!(get_bytes(&c, "cond", "k").await, b"conditional");
}

#[tokio::test]
async fn checksums_are_verified_stored_and_returned() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("sum").send().await.unwrap();
    let data = random_bytes(5, 2 * 1024 * 1024 + 5);
    for alg in [
        ChecksumAlgorithm::Crc32,
        ChecksumAlgorithm::Crc32C,
        ChecksumAlgorithm::Crc64Nvme,
        ChecksumAlgorithm::Sha1,
        ChecksumAlgorithm::Sha256,
    ] {
        let key = format!("obj-{}", alg.as_str());
        // The SDK sends these as aws-chunked bodies with a trailing checksum.
        let put = c
            .put_object()
            .bucket("sum")
            .key(&key)
            .checksum_algorithm(alg.clone())
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .unwrap();
        let sent = [
            put.checksum_crc32(),
            put.checksum_crc32_c(),
            put.checksum_crc64_nvme(),
            put.checksum_sha1(),
            put.checksum_sha256(),
        ];
        assert_eq!(sent.iter().filter(|v| v.is_some()).count(), 1, "{alg:?}");
        let got = c
            .get_object()
            .bucket("sum")
            .key(&key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        let back = [
            got.checksum_crc32(),
            got.checksum_crc32_c(),
            got.checksum_crc64_nvme(),
            got.checksum_sha1(),
            got.checksum_sha256(),
        ];
        assert_eq!(sent, back, "stored checksum returned for {alg:?}");
        assert!(got.body.collect().await.unwrap().into_bytes() == data);
    }
    // A wrong declared checksum is refused and stores nothing.
    let e = c
        .put_object()
        .bucket("sum")
        .key("bad")
        .checksum_crc32("AAAAAA==")
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), "BadDigest");
    let e = c
        .head_object()
        .bucket("sum")
        .key("bad")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), 404);
}

#[tokio::test]
async fn content_md5_is_checked() {
    use base64::Engine as _;
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("md5").send().await.unwrap();
    let data = random_bytes(6, 100_000);
    let good =
        base64::engine::general_purpose::STANDARD.encode(hex::decode(md5_hex(&data)).unwrap());
    c.put_object()
        .bucket("md5")
        .key("ok")
        .content_md5(&good)
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap();
    let wrong = base64::engine::general_purpose::STANDARD.encode([7u8; 16]);
    let e = c
        .put_object()
        .bucket("md5")
        .key("bad")
        .content_md5(&wrong)
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), "BadDigest");
    assert_eq!(status_of(&e), 400);
    let e = c
        .put_object()
        .bucket("md5")
        .key("bad")
        .content_md5("not-base64!")
        .body(ByteStream::from(data))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), "InvalidDigest");
    let keys = c.list_objects_v2().bucket("md5").send().await.unwrap();
    assert_eq!(
        keys.key_count(),
        Some(1),
        "refused uploads leave nothing behind"
    );
}

async fn keys_v2(
    c: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
    max: i32,
) -> (Vec<String>, Vec<String>) {
    let mut keys = Vec::new();
    let mut prefixes = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut req = c
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .max_keys(max);
        if let Some(d) = delimiter {
            req = req.delimiter(d);
        }
        if let Some(t) = &token {
            req = req.continuation_token(t);
        }
        let out = req.send().await.unwrap();
        assert!(out.key_count().unwrap() <= max);
        keys.extend(
            out.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
        prefixes.extend(
            out.common_prefixes()
                .iter()
                .filter_map(|p| p.prefix().map(str::to_owned)),
        );
        if out.is_truncated() == Some(true) {
            token = out.next_continuation_token().map(str::to_owned);
            assert!(token.is_some());
        } else {
            break;
        }
    }
    (keys, prefixes)
}

#[tokio::test]
async fn listing_with_prefix_delimiter_and_pagination() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("lst").send().await.unwrap();
    let keys = [
        "a",
        "a/",
        "a/b",
        "a/c/d",
        "a/c/e",
        "b/x",
        "b/y/z",
        "c",
        "photos/2024/jan.jpg",
        "photos/2024/feb.jpg",
        "photos/2025/mar.jpg",
    ];
    for k in keys {
        put_bytes(&c, "lst", k, k.as_bytes().to_vec()).await;
    }
    let (all, none) = keys_v2(&c, "lst", "", None, 1000).await;
    let mut sorted: Vec<String> = keys.iter().map(|s| s.to_string()).collect();
    sorted.sort();
    assert_eq!(all, sorted);
    assert!(none.is_empty());
    // An empty delimiter means none.
    let (flat, p) = keys_v2(&c, "lst", "", Some(""), 1000).await;
    assert_eq!(flat, sorted);
    assert!(p.is_empty());

    let (k, p) = keys_v2(&c, "lst", "", Some("/"), 1000).await;
    assert_eq!(k, vec!["a", "c"]);
    assert_eq!(p, vec!["a/", "b/", "photos/"]);
    let (k, p) = keys_v2(&c, "lst", "a/", Some("/"), 1000).await;
    assert_eq!(k, vec!["a/", "a/b"]);
    assert_eq!(p, vec!["a/c/"]);
    let (k, p) = keys_v2(&c, "lst", "photos/", Some("/"), 1000).await;
    assert!(k.is_empty());
    assert_eq!(p, vec!["photos/2024/", "photos/2025/"]);

    // Pagination of one item per page yields the same, with common prefixes counted once.
    for max in [1, 2, 3] {
        let (k, p) = keys_v2(&c, "lst", "", Some("/"), max).await;
        assert_eq!(k, vec!["a", "c"], "max {max}");
        assert_eq!(p, vec!["a/", "b/", "photos/"], "max {max}");
        let (k, _) = keys_v2(&c, "lst", "", None, max).await;
        assert_eq!(k, sorted, "max {max}");
    }

    let after = c
        .list_objects_v2()
        .bucket("lst")
        .start_after("b/x")
        .send()
        .await
        .unwrap();
    let k: Vec<&str> = after.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(k[0], "b/y/z");

    let owner = c
        .list_objects_v2()
        .bucket("lst")
        .fetch_owner(true)
        .max_keys(1)
        .send()
        .await
        .unwrap();
    assert!(owner.contents()[0].owner().and_then(|o| o.id()).is_some());
    let no_owner = c
        .list_objects_v2()
        .bucket("lst")
        .max_keys(1)
        .send()
        .await
        .unwrap();
    assert!(no_owner.contents()[0].owner().is_none());

    let zero = c
        .list_objects_v2()
        .bucket("lst")
        .max_keys(0)
        .send()
        .await
        .unwrap();
    assert_eq!(zero.key_count(), Some(0));

    // v1 with marker and NextMarker.
    let mut marker: Option<String> = None;
    let mut v1 = Vec::new();
    loop {
        let mut req = c.list_objects().bucket("lst").max_keys(4);
        if let Some(m) = &marker {
            req = req.marker(m);
        }
        let out = req.send().await.unwrap();
        v1.extend(
            out.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
        if out.is_truncated() == Some(true) {
            marker = Some(
                out.next_marker()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v1.last().cloned().unwrap()),
            );
        } else {
            break;
        }
    }
    assert_eq!(v1, sorted);
    let v1d = c
        .list_objects()
        .bucket("lst")
        .delimiter("/")
        .prefix("a/")
        .send()
        .await
        .unwrap();
    let p: Vec<&str> = v1d
        .common_prefixes()
        .iter()
        .filter_map(|p| p.prefix())
        .collect();
    assert_eq!(p, vec!["a/c/"]);
    let e = c
        .list_objects_v2()
        .bucket("nope-missing")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), "NoSuchBucket");
}

#[tokio::test]
async fn url_encoded_listing_round_trips_odd_keys() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("enc").send().await.unwrap();
    let odd = [
        "plus+sign",
        "per%cent",
        "with space",
        "ünïcödé/文件",
        "amp&eq=q?",
    ];
    for k in odd {
        put_bytes(&c, "enc", k, k.as_bytes().to_vec()).await;
        assert_eq!(get_bytes(&c, "enc", k).await, k.as_bytes(), "GET of {k}");
    }
    let out = c
        .list_objects_v2()
        .bucket("enc")
        .encoding_type(EncodingType::Url)
        .send()
        .await
        .unwrap();
    let mut got: Vec<String> = out
        .contents()
        .iter()
        .map(|o| percent_decode(o.key().unwrap()))
        .collect();
    got.sort();
    let mut want: Vec<String> = odd.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(got, want);
    // Raw keys come back unencoded without encoding-type.
    let out = c
        .list_objects_v2()
        .bucket("enc")
        .prefix("plus")
        .send()
        .await
        .unwrap();
    assert_eq!(out.contents()[0].key(), Some("plus+sign"));
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() + 0 {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn plain_chunked_puts_are_stored_and_aws_chunked_is_not_an_encoding() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("tenc").send().await.unwrap();
    // HTTP/1.1 chunking without a Content-Length, as curl -T - and streaming
    // clients send it.
    let data = random_bytes(21, 300_000);
    let mut body = Vec::new();
    for piece in data.chunks(70_001) {
        body.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        body.extend_from_slice(piece);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let head = signed_head(
        &s,
        "PUT",
        "/tenc/streamed",
        &[("transfer-encoding", "chunked")],
        "UNSIGNED-PAYLOAD",
    );
    let resp = raw_exchange(s.addr, &head, &body, std::time::Duration::from_secs(20)).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains(&md5_hex(&data)), "{resp}");
    assert_eq!(get_bytes(&c, "tenc", "streamed").await, data);
    // Cut off mid-chunk by a client that goes away: nothing is stored.
    let head = signed_head(
        &s,
        "PUT",
        "/tenc/cut",
        &[("transfer-encoding", "chunked")],
        "UNSIGNED-PAYLOAD",
    );
    let cut = &body[..body.len() / 2];
    raw_send(s.addr, &head, cut, true, std::time::Duration::from_secs(20)).await;
    refused!(c.head_object().bucket("tenc").key("cut"), "NotFound", 404);

    // The SDK's trailing-checksum uploads are aws-chunked: that encoding is the
    // transfer's, never stored; the object's own encoding stays.
    for (given, stored) in [(None, None), (Some("gzip"), Some("gzip"))] {
        let key = format!("sum-{given:?}");
        let mut put = c
            .put_object()
            .bucket("tenc")
            .key(&key)
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
            .body(ByteStream::from(data.clone()));
        if let Some(e) = given {
            put = put.content_encoding(e);
        }
        put.send().await.unwrap();
        let head = c
            .head_object()
            .bucket("tenc")
            .key(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(head.content_encoding(), stored, "{given:?}");
    }
    // Sent by hand as `gzip, aws-chunked` on a raw aws-chunked body.
    let mut chunked = format!("{:x}\r\n", 5).into_bytes();
    chunked.extend_from_slice(b"hello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n");
    let head = signed_head(
        &s,
        "PUT",
        "/tenc/raw",
        &[
            ("content-length", &chunked.len().to_string()),
            ("content-encoding", "gzip, aws-chunked"),
            ("x-amz-decoded-content-length", "5"),
            ("x-amz-trailer", "x-amz-checksum-crc32"),
        ],
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
    );
    let resp = raw_exchange(s.addr, &head, &chunked, std::time::Duration::from_secs(20)).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let got = c
        .get_object()
        .bucket("tenc")
        .key("raw")
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_encoding(), Some("gzip"));
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        b"hello"
    );
    let (ok, out) = cli(&s, &["verify"]);
    assert!(ok, "{out}");
    assert_no_panic(&s);
}

#[tokio::test]
async fn a_taken_bucket_name_is_bucket_already_exists_and_regions_other_than_us_east_1_refuse_a_second_create()
 {
    let s = Server::start();
    let c = s.client();
    let alice = client_as(&s, &add_user(&s, "alice", &["*=admin"]));
    let bob = client_as(&s, &add_user(&s, "bob", &["*=admin"]));
    alice.create_bucket().bucket("alices").send().await.unwrap();
    refused!(
        bob.create_bucket().bucket("alices"),
        "BucketAlreadyExists",
        409
    );
    alice.create_bucket().bucket("alices").send().await.unwrap();
    c.create_bucket().bucket("alices").send().await.unwrap();
    c.create_bucket().bucket("roots").send().await.unwrap();
    refused!(
        alice.create_bucket().bucket("roots"),
        "BucketAlreadyExists",
        409
    );
    drop(s);

    let s = Server::start_with(&["--region", "eu-west-1"]);
    let c = aws_sdk_s3::Client::from_conf(
        s.client()
            .config()
            .to_builder()
            .region(aws_sdk_s3::config::Region::new("eu-west-1"))
            .build(),
    );
    c.create_bucket().bucket("euro").send().await.unwrap();
    refused!(
        c.create_bucket().bucket("euro"),
        "BucketAlreadyOwnedByYou",
        409
    );
    assert_no_panic(&s);
}
