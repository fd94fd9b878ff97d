//! Conditional writes and deletes as S3 has them: PutObject and
//! CompleteMultipartUpload with `If-None-Match: *` and `If-Match`, DeleteObject and
//! DeleteObjects with `If-Match`, size and last-modified time, checked in the commit
//! itself, so of racing writers exactly one wins; a refused request changes nothing.

mod common;

use aws_sdk_s3::primitives::ByteStream;
use common::*;

#[tokio::test]
async fn if_none_match_and_if_match_guard_puts() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("cond").send().await.unwrap();
    let put = |key: &'static str, body: &'static [u8]| {
        c.put_object()
            .bucket("cond")
            .key(key)
            .body(ByteStream::from_static(body))
    };
    put("lock", b"first")
        .if_none_match("*")
        .send()
        .await
        .unwrap();
    refused!(
        put("lock", b"second").if_none_match("*"),
        "PreconditionFailed",
        412
    );
    assert_eq!(get_bytes(&c, "cond", "lock").await, b"first");
    let etag = md5_hex(b"first");
    refused!(
        put("lock", b"third").if_match(format!("\"{}\"", md5_hex(b"other"))),
        "PreconditionFailed",
        412
    );
    refused!(
        put("absent", b"x").if_match(format!("\"{etag}\"")),
        "PreconditionFailed",
        412
    );
    refused!(put("absent", b"x").if_match("*"), "PreconditionFailed", 412);
    put("lock", b"fourth")
        .if_match(format!("\"{etag}\""))
        .send()
        .await
        .expect("the matching ETag");
    put("lock", b"fifth").if_match("*").send().await.unwrap();
    assert_eq!(get_bytes(&c, "cond", "lock").await, b"fifth");
    refused!(
        put("lock", b"x").if_none_match(format!("\"{etag}\"")),
        "NotImplemented",
        501
    );
    // Deleted, the key is absent again (a delete marker counts as absent).
    set_versioning(
        &c,
        "cond",
        aws_sdk_s3::types::BucketVersioningStatus::Enabled,
    )
    .await;
    delete_keys(&c, "cond", &["lock"]).await;
    put("lock", b"again")
        .if_none_match("*")
        .send()
        .await
        .unwrap();
    assert_no_panic(&s);
}

/// Eight writers race to create one key with `If-None-Match: *`: one wins, the
/// others get 412, and the key holds the winner's bytes.
#[tokio::test]
async fn of_racing_creators_exactly_one_wins() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("race").send().await.unwrap();
    let tries = (0..8u64).map(|i| {
        let c = c.clone();
        async move {
            let body = random_bytes(i, 2 << 20);
            let r = c
                .put_object()
                .bucket("race")
                .key("state.lock")
                .body(ByteStream::from(body.clone()))
                .if_none_match("*")
                .send()
                .await;
            (r.map_err(|e| (status_of(&e), code_of(&e))), body)
        }
    });
    let results = futures::future::join_all(tries).await;
    let winners: Vec<_> = results.iter().filter(|(r, _)| r.is_ok()).collect();
    assert_eq!(
        winners.len(),
        1,
        "{:?}",
        results
            .iter()
            .map(|(r, _)| r.as_ref().err())
            .collect::<Vec<_>>()
    );
    for (r, _) in &results {
        if let Err((status, code)) = r {
            assert!(
                (*status, code.as_str()) == (412, "PreconditionFailed")
                    || (*status, code.as_str()) == (409, "ConditionalRequestConflict"),
                "{status} {code}"
            );
        }
    }
    assert!(get_bytes(&c, "race", "state.lock").await == winners[0].1);
    assert_eq!(stats(&s).await.buckets[0].objects, 1);
    assert_no_panic(&s);
}

/// A completion whose precondition fails changes nothing: the upload can still be
/// completed without it.
#[tokio::test]
async fn a_refused_conditional_completion_leaves_the_upload_completable() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("mpu").send().await.unwrap();
    put_bytes(&c, "mpu", "big", b"already here".to_vec()).await;
    let up = c
        .create_multipart_upload()
        .bucket("mpu")
        .key("big")
        .send()
        .await
        .unwrap();
    let id = up.upload_id().unwrap();
    let data = random_bytes(3, 1 << 20);
    let part = c
        .upload_part()
        .bucket("mpu")
        .key("big")
        .upload_id(id)
        .part_number(1)
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap();
    let parts = || completed(&[part.e_tag().unwrap()]);
    refused!(
        c.complete_multipart_upload()
            .bucket("mpu")
            .key("big")
            .upload_id(id)
            .multipart_upload(parts())
            .if_none_match("*"),
        "PreconditionFailed",
        412
    );
    assert_eq!(get_bytes(&c, "mpu", "big").await, b"already here");
    c.complete_multipart_upload()
        .bucket("mpu")
        .key("big")
        .upload_id(id)
        .multipart_upload(parts())
        .if_match(format!("\"{}\"", md5_hex(b"already here")))
        .send()
        .await
        .expect("the upload is still completable");
    assert!(get_bytes(&c, "mpu", "big").await == data);
    assert_no_panic(&s);
}

/// DeleteObject removes only the version the caller describes: `If-Match` (an ETag
/// or `*`), `x-amz-if-match-size` and `x-amz-if-match-last-modified-time`, on the
/// current version and by version id. `If-Match` on an absent key (or one whose
/// current version is a delete marker) is 404 NoSuchKey; a size or time condition on
/// an absent key deletes nothing and succeeds.
#[tokio::test]
async fn conditional_deletes_remove_only_the_version_the_caller_saw() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("conddel").send().await.unwrap();
    let etag = put_bytes(&c, "conddel", "k", b"one".to_vec()).await;
    let modified = *c
        .head_object()
        .bucket("conddel")
        .key("k")
        .send()
        .await
        .unwrap()
        .last_modified()
        .unwrap();
    let earlier = aws_sdk_s3::primitives::DateTime::from_secs(modified.secs() - 1);
    let delete = || c.delete_object().bucket("conddel").key("k");
    refused!(
        delete().if_match(format!("\"{}\"", md5_hex(b"two"))),
        "PreconditionFailed",
        412
    );
    refused!(delete().if_match_size(4), "PreconditionFailed", 412);
    refused!(
        delete().if_match_last_modified_time(earlier),
        "PreconditionFailed",
        412
    );
    refused!(
        delete().if_match(format!("\"{etag}\"")).if_match_size(2),
        "PreconditionFailed",
        412
    );
    assert_eq!(get_bytes(&c, "conddel", "k").await, b"one");
    delete()
        .if_match(format!("\"{etag}\""))
        .if_match_size(3)
        .if_match_last_modified_time(modified)
        .send()
        .await
        .expect("every condition holds");
    assert!(try_get_bytes(&c, "conddel", "k").await.is_err());
    refused!(delete().if_match("*"), "NoSuchKey", 404);
    delete()
        .if_match_size(3)
        .send()
        .await
        .expect("nothing to delete");

    // Versioned: by version id, and a delete marker counts as absent.
    set_versioning(
        &c,
        "conddel",
        aws_sdk_s3::types::BucketVersioningStatus::Enabled,
    )
    .await;
    let put = |body: &'static [u8]| {
        c.put_object()
            .bucket("conddel")
            .key("v")
            .body(ByteStream::from_static(body))
            .send()
    };
    let v1 = put(b"v1").await.unwrap().version_id.unwrap();
    put(b"v2").await.unwrap();
    let delete = || c.delete_object().bucket("conddel").key("v");
    refused!(
        delete()
            .version_id(&v1)
            .if_match(format!("\"{}\"", md5_hex(b"v2"))),
        "PreconditionFailed",
        412
    );
    delete()
        .version_id(&v1)
        .if_match(format!("\"{}\"", md5_hex(b"v1")))
        .send()
        .await
        .expect("the named version matches");
    refused!(
        delete().if_match(format!("\"{}\"", md5_hex(b"v1"))),
        "PreconditionFailed",
        412
    );
    let marked = delete().if_match("*").send().await.unwrap();
    assert_eq!(marked.delete_marker(), Some(true));
    refused!(delete().if_match("*"), "NoSuchKey", 404);
    let versions = c
        .list_object_versions()
        .bucket("conddel")
        .prefix("v")
        .send()
        .await
        .unwrap();
    assert_eq!(versions.versions().len(), 1, "v2 is kept");
    assert_eq!(versions.delete_markers().len(), 1, "one marker, not two");
    assert_no_panic(&s);
}

/// In DeleteObjects each `<Object>` carries its own precondition; the objects whose
/// precondition fails are reported and kept, the others deleted.
#[tokio::test]
async fn delete_objects_checks_each_objects_precondition() {
    use aws_sdk_s3::types::{Delete, ObjectIdentifier};
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("many").send().await.unwrap();
    for key in ["a", "b", "c", "d"] {
        put_bytes(&c, "many", key, key.as_bytes().to_vec()).await;
    }
    let object = |key: &str| ObjectIdentifier::builder().key(key);
    let delete = Delete::builder()
        .objects(object("a").e_tag(md5_hex(b"a")).size(1).build().unwrap())
        .objects(object("b").e_tag(md5_hex(b"not b")).build().unwrap())
        .objects(object("c").size(7).build().unwrap())
        .objects(object("d").e_tag("*").build().unwrap())
        .objects(object("absent").e_tag("*").build().unwrap())
        .build()
        .unwrap();
    let out = c
        .delete_objects()
        .bucket("many")
        .delete(delete)
        .send()
        .await
        .unwrap();
    let mut deleted: Vec<_> = out.deleted().iter().filter_map(|d| d.key()).collect();
    deleted.sort();
    assert_eq!(deleted, ["a", "d"]);
    let mut errors: Vec<_> = out
        .errors()
        .iter()
        .map(|e| (e.key().unwrap(), e.code().unwrap()))
        .collect();
    errors.sort();
    assert_eq!(
        errors,
        [
            ("absent", "NoSuchKey"),
            ("b", "PreconditionFailed"),
            ("c", "PreconditionFailed")
        ]
    );
    assert_eq!(get_bytes(&c, "many", "b").await, b"b");
    assert_eq!(get_bytes(&c, "many", "c").await, b"c");
    assert!(try_get_bytes(&c, "many", "a").await.is_err());
    assert_no_panic(&s);
}

/// The x-amz-copy-source-if-* conditions of a copy judge the source version the copy
/// names, not the key's current version.
#[tokio::test]
async fn copy_source_conditions_judge_the_named_source_version() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("vsrc").send().await.unwrap();
    set_versioning(
        &c,
        "vsrc",
        aws_sdk_s3::types::BucketVersioningStatus::Enabled,
    )
    .await;
    let put = |body: &'static [u8]| {
        c.put_object()
            .bucket("vsrc")
            .key("src")
            .body(ByteStream::from_static(body))
            .send()
    };
    let old = put(b"old").await.unwrap().version_id.unwrap();
    put(b"new").await.unwrap();
    let copy = || {
        c.copy_object()
            .bucket("vsrc")
            .key("dst")
            .copy_source(format!("vsrc/src?versionId={old}"))
    };
    let (old_etag, new_etag) = (md5_hex(b"old"), md5_hex(b"new"));
    refused!(
        copy().copy_source_if_match(format!("\"{new_etag}\"")),
        "PreconditionFailed",
        412
    );
    refused!(
        copy().copy_source_if_none_match(format!("\"{old_etag}\"")),
        "PreconditionFailed",
        412
    );
    let future = aws_sdk_s3::primitives::DateTime::from_secs(4_000_000_000);
    refused!(
        copy().copy_source_if_modified_since(future),
        "PreconditionFailed",
        412
    );
    let past = aws_sdk_s3::primitives::DateTime::from_secs(1_000_000_000);
    refused!(
        copy().copy_source_if_unmodified_since(past),
        "PreconditionFailed",
        412
    );
    assert!(try_get_bytes(&c, "vsrc", "dst").await.is_err());
    copy()
        .copy_source_if_match(format!("\"{old_etag}\""))
        .copy_source_if_none_match(format!("\"{new_etag}\""))
        .copy_source_if_unmodified_since(future)
        .send()
        .await
        .expect("every condition holds for the old version");
    assert_eq!(get_bytes(&c, "vsrc", "dst").await, b"old");
    assert_no_panic(&s);
}
