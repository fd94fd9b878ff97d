//! Quotas on logical bytes, per bucket and for the whole store: a write beyond one is
//! refused with 403 QuotaExceeded and a message, and stores nothing.

mod common;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::BucketVersioningStatus;
use common::*;

const MIB: usize = 1024 * 1024;

fn set_quota(s: &Server, args: &[&str]) -> String {
    let mut all = vec!["quota", "set"];
    all.extend_from_slice(args);
    let (ok, text) = cli(s, &all);
    assert!(ok, "hoard quota set {args:?}: {text}");
    text
}

/// (stored bytes, segments) of the whole store.
async fn stored(s: &Server) -> (u64, u64) {
    let r = stats(s).await;
    (r.total.stored_bytes, r.total.segments)
}

async fn put_err(
    c: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    data: Vec<u8>,
) -> (u16, String, String) {
    let err = c
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(data))
        .send()
        .await
        .expect_err("write beyond the quota must fail");
    let msg = err
        .as_service_error()
        .and_then(|e| aws_sdk_s3::error::ProvideErrorMetadata::message(e))
        .unwrap_or("")
        .to_owned();
    (status_of(&err), code_of(&err), msg)
}

#[tokio::test]
async fn a_put_beyond_the_bucket_quota_is_refused_and_stores_nothing() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("quo").send().await.unwrap();
    c.create_bucket().bucket("free").send().await.unwrap();
    let text = set_quota(&s, &["--bucket", "quo", "10MiB"]);
    assert!(text.contains("bucket quo: 10.00 MiB"), "{text}");

    put_bytes(&c, "quo", "a", random_bytes(1, 6 * MIB)).await;
    let before = stored(&s).await;
    let (status, code, msg) = put_err(&c, "quo", "b", random_bytes(2, 6 * MIB)).await;
    assert_eq!((status, code.as_str()), (403, "QuotaExceeded"));
    assert!(
        msg.contains("quo") && msg.contains("10485760") && msg.contains("6291456"),
        "{msg}"
    );
    // Nothing was stored: no key, no new segment, same stored bytes.
    assert!(c.head_object().bucket("quo").key("b").send().await.is_err());
    assert_eq!(stored(&s).await, before);

    // Replacing the current version frees its bytes, so an overwrite fits; another
    // bucket has no quota.
    let a2 = random_bytes(3, 7 * MIB);
    put_bytes(&c, "quo", "a", a2.clone()).await;
    assert_eq!(get_bytes(&c, "quo", "a").await, a2);
    put_bytes(&c, "free", "big", random_bytes(4, 12 * MIB)).await;

    // A copy into the bucket is checked inside its commit.
    let err = c
        .copy_object()
        .copy_source("free/big")
        .bucket("quo")
        .key("copy")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        (status_of(&err), code_of(&err).as_str()),
        (403, "QuotaExceeded")
    );

    // `hoard stats` shows the quota; removing it lets the write through.
    let r = stats(&s).await;
    let q = r.buckets.iter().find(|b| b.name == "quo").unwrap();
    assert_eq!(q.quota_bytes, Some(10 * MIB as u64));
    assert_eq!(q.logical_bytes, 7 * MIB as u64);
    set_quota(&s, &["--bucket", "quo", "none"]);
    put_bytes(&c, "quo", "b", random_bytes(2, 6 * MIB)).await;
    assert_no_panic(&s);
}

#[tokio::test]
async fn noncurrent_versions_count_and_deletes_make_room() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("ver").send().await.unwrap();
    set_versioning(&c, "ver", BucketVersioningStatus::Enabled).await;
    set_quota(&s, &["--bucket", "ver", "5MB"]);
    put_bytes(&c, "ver", "k", random_bytes(1, 3_000_000)).await;
    // The first version stays, so a second 3 MB version would make 6 MB.
    let (status, code, _) = put_err(&c, "ver", "k", random_bytes(2, 3_000_000)).await;
    assert_eq!((status, code.as_str()), (403, "QuotaExceeded"));
    // A delete marker adds nothing; deleting the version frees its bytes.
    c.delete_object()
        .bucket("ver")
        .key("k")
        .send()
        .await
        .unwrap();
    let versions = c.list_object_versions().bucket("ver").send().await.unwrap();
    let v = versions.versions()[0].version_id().unwrap().to_owned();
    c.delete_object()
        .bucket("ver")
        .key("k")
        .version_id(v)
        .send()
        .await
        .unwrap();
    put_bytes(&c, "ver", "k", random_bytes(2, 3_000_000)).await;
}

#[tokio::test]
async fn multipart_parts_and_completion_respect_the_quota() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("mpq").send().await.unwrap();
    set_quota(&s, &["--bucket", "mpq", "12MiB"]);
    put_bytes(&c, "mpq", "held", random_bytes(9, 4 * MIB)).await;
    let up = c
        .create_multipart_upload()
        .bucket("mpq")
        .key("big")
        .send()
        .await
        .unwrap();
    let id = up.upload_id().unwrap();
    let part = |n: i32, seed: u64, len: usize| {
        c.upload_part()
            .bucket("mpq")
            .key("big")
            .upload_id(id)
            .part_number(n)
            .body(ByteStream::from(random_bytes(seed, len)))
            .send()
    };
    // A part alone bigger than the room left is refused before it is read.
    let err = part(1, 1, 9 * MIB).await.unwrap_err();
    assert_eq!(
        (status_of(&err), code_of(&err).as_str()),
        (403, "QuotaExceeded")
    );
    // Parts that fit one by one, whose sum does not: completion is refused and the
    // upload stays, so the client can abort it.
    let mut parts = Vec::new();
    for n in 1..=2 {
        let out = part(n, n as u64, 5 * MIB).await.unwrap();
        parts.push(
            aws_sdk_s3::types::CompletedPart::builder()
                .part_number(n)
                .e_tag(out.e_tag().unwrap())
                .build(),
        );
    }
    let complete = || {
        c.complete_multipart_upload()
            .bucket("mpq")
            .key("big")
            .upload_id(id)
            .multipart_upload(
                aws_sdk_s3::types::CompletedMultipartUpload::builder()
                    .set_parts(Some(parts.clone()))
                    .build(),
            )
            .send()
    };
    let err = complete().await.unwrap_err();
    assert_eq!(
        (status_of(&err), code_of(&err).as_str()),
        (403, "QuotaExceeded")
    );
    let listed = c
        .list_parts()
        .bucket("mpq")
        .key("big")
        .upload_id(id)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.parts().len(), 2);
    // Room made by deleting the other object lets the same completion through.
    c.delete_object()
        .bucket("mpq")
        .key("held")
        .send()
        .await
        .unwrap();
    complete().await.unwrap();
    assert_eq!(
        get_bytes(&c, "mpq", "big").await.len(),
        10 * MIB,
        "the completed object"
    );
}

#[tokio::test]
async fn the_store_quota_counts_all_buckets() {
    let s = Server::start();
    let c = s.client();
    for b in ["one", "two"] {
        c.create_bucket().bucket(b).send().await.unwrap();
    }
    let text = set_quota(&s, &["8MiB"]);
    assert!(text.contains("store: 8.00 MiB"), "{text}");
    put_bytes(&c, "one", "a", random_bytes(1, 5 * MIB)).await;
    let (status, code, msg) = put_err(&c, "two", "b", random_bytes(2, 4 * MIB)).await;
    assert_eq!((status, code.as_str()), (403, "QuotaExceeded"));
    assert!(msg.contains("store"), "{msg}");
    // Identical bytes still count: the quota is on logical bytes, not stored ones.
    let (status, _, _) = put_err(&c, "two", "same", random_bytes(1, 5 * MIB)).await;
    assert_eq!(status, 403);
    put_bytes(&c, "two", "b", random_bytes(2, 3 * MIB)).await;
    let (ok, shown) = cli(&s, &["quota", "show"]);
    assert!(ok && shown.contains("store: 8.00 MiB"), "{shown}");
    let r = stats(&s).await;
    assert_eq!(r.total.quota_bytes, Some(8 * MIB as u64));
    set_quota(&s, &["none"]);
    put_bytes(&c, "two", "c", random_bytes(3, 4 * MIB)).await;
    // Bad input to the CLI is refused before anything is sent.
    let (ok, text) = cli(&s, &["quota", "set", "12parsecs"]);
    assert!(!ok && text.contains("unknown unit"), "{text}");
    let (ok, text) = cli(&s, &["quota", "set", "--bucket", "nope", "1GiB"]);
    assert!(!ok && text.contains("NoSuchBucket"), "{text}");
}
