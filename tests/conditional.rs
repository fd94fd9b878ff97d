//! Conditional writes as S3 has them: PutObject and CompleteMultipartUpload with
//! `If-None-Match: *` and `If-Match`, checked in the commit itself, so of racing
//! writers exactly one wins; a refused write changes nothing.

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
