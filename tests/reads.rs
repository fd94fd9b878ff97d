//! What GET, HEAD and DELETE answer beside the bytes, as S3 does: part numbers on
//! simple objects and out of range, `x-amz-tagging-count`, the `response-*`
//! overrides, and `x-amz-delete-marker` only where a delete marker is involved.

mod common;

use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::DateTime;
use common::*;

fn presigning() -> PresigningConfig {
    PresigningConfig::expires_in(Duration::from_secs(300)).unwrap()
}

#[tokio::test]
async fn part_numbers_on_a_simple_object_and_out_of_range() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("parts").send().await.unwrap();
    put_bytes(&c, "parts", "simple", b"one piece".to_vec()).await;
    let whole = c
        .get_object()
        .bucket("parts")
        .key("simple")
        .part_number(1)
        .send()
        .await
        .unwrap();
    assert_eq!(whole.content_length(), Some(9));
    assert_eq!(
        whole.parts_count(),
        None,
        "a simple object has no parts count"
    );
    assert_eq!(
        whole.body.collect().await.unwrap().into_bytes().as_ref(),
        b"one piece"
    );
    let get = |n| c.get_object().bucket("parts").key("simple").part_number(n);
    refused!(get(2), "InvalidPartNumber", 416);
    refused!(get(0), "InvalidArgument", 400);
    refused!(get(10_001), "InvalidArgument", 400);
    refused!(get(-1), "InvalidArgument", 400);
    let head = |n| c.head_object().bucket("parts").key("simple").part_number(n);
    assert_eq!(status_of(&head(2).send().await.unwrap_err()), 416);
    assert_eq!(status_of(&head(0).send().await.unwrap_err()), 400);
    // A part number and a range together are refused.
    refused!(get(1).range("bytes=0-1"), "InvalidRequest", 400);
    assert_no_panic(&s);
}

#[tokio::test]
async fn get_and_head_count_tags_and_get_takes_response_overrides() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("hdrs").send().await.unwrap();
    c.put_object()
        .bucket("hdrs")
        .key("report.csv")
        .body(b"a,b\n1,2\n".to_vec().into())
        .content_type("text/csv")
        .cache_control("no-cache")
        .tagging("job=nightly&site=dr")
        .send()
        .await
        .unwrap();
    let got = c
        .get_object()
        .bucket("hdrs")
        .key("report.csv")
        .send()
        .await
        .unwrap();
    assert_eq!(got.tag_count(), Some(2));
    let head = c.head_object().bucket("hdrs").key("report.csv");
    let url = head.presigned(presigning()).await.unwrap().uri().to_owned();
    let r = reqwest::Client::new().head(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-amz-tagging-count"], "2");
    put_bytes(&c, "hdrs", "untagged", b"x".to_vec()).await;
    let url = c
        .head_object()
        .bucket("hdrs")
        .key("untagged")
        .presigned(presigning())
        .await
        .unwrap()
        .uri()
        .to_owned();
    let r = reqwest::Client::new().head(&url).send().await.unwrap();
    assert!(!r.headers().contains_key("x-amz-tagging-count"));

    let expires = DateTime::from_secs(1_893_456_000); // 2030-01-01
    let over = c
        .get_object()
        .bucket("hdrs")
        .key("report.csv")
        .response_content_type("application/octet-stream")
        .response_content_disposition("attachment; filename=\"report.csv\"")
        .response_cache_control("max-age=60")
        .response_content_language("en")
        .response_content_encoding("identity")
        .response_expires(expires)
        .send()
        .await
        .unwrap();
    assert_eq!(over.content_type(), Some("application/octet-stream"));
    assert_eq!(
        over.content_disposition(),
        Some("attachment; filename=\"report.csv\"")
    );
    assert_eq!(over.cache_control(), Some("max-age=60"));
    assert_eq!(over.content_language(), Some("en"));
    assert_eq!(over.content_encoding(), Some("identity"));
    assert_eq!(over.expires_string(), Some("Tue, 01 Jan 2030 00:00:00 GMT"));
    // The stored headers are unchanged.
    let again = c
        .head_object()
        .bucket("hdrs")
        .key("report.csv")
        .send()
        .await
        .unwrap();
    assert_eq!(again.content_type(), Some("text/csv"));
    assert_eq!(again.cache_control(), Some("no-cache"));
    assert_eq!(again.content_disposition(), None);
    assert_no_panic(&s);
}

/// Deletes `key` through a presigned URL and answers the raw response.
async fn raw_delete(c: &aws_sdk_s3::Client, bucket: &str, key: &str) -> reqwest::Response {
    let del = c.delete_object().bucket(bucket).key(key);
    let url = del.presigned(presigning()).await.unwrap().uri().to_owned();
    reqwest::Client::new().delete(&url).send().await.unwrap()
}

#[tokio::test]
async fn delete_marker_headers_only_where_a_marker_is_made() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("plain").send().await.unwrap();
    put_bytes(&c, "plain", "k", b"v".to_vec()).await;
    for key in ["k", "never-there"] {
        let r = raw_delete(&c, "plain", key).await;
        assert_eq!(r.status(), 204);
        assert!(!r.headers().contains_key("x-amz-delete-marker"), "{key}");
        assert!(!r.headers().contains_key("x-amz-version-id"), "{key}");
    }

    c.create_bucket().bucket("kept").send().await.unwrap();
    set_versioning(
        &c,
        "kept",
        aws_sdk_s3::types::BucketVersioningStatus::Enabled,
    )
    .await;
    put_bytes(&c, "kept", "k", b"v".to_vec()).await;
    let r = raw_delete(&c, "kept", "k").await;
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["x-amz-delete-marker"], "true");
    let marker = r.headers()["x-amz-version-id"].to_str().unwrap().to_owned();
    // Removing the marker by its id says it was one.
    let out = c
        .delete_object()
        .bucket("kept")
        .key("k")
        .version_id(&marker)
        .send()
        .await
        .unwrap();
    assert_eq!(out.delete_marker(), Some(true));
    assert_eq!(out.version_id(), Some(marker.as_str()));
    assert_eq!(get_bytes(&c, "kept", "k").await, b"v");
    assert_no_panic(&s);
}
