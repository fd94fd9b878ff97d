//! Versioning, delete markers, tagging, GetObjectAttributes and 501 for what hoard
//! does not implement, driven by aws-sdk-s3.

mod common;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketVersioningStatus, ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart,
    ObjectAttributes, Tag, Tagging, TaggingDirective,
};
use common::*;

async fn put(c: &Client, bucket: &str, key: &str, data: &[u8]) -> Option<String> {
    c.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(data.to_vec()))
        .send()
        .await
        .expect("put")
        .version_id()
        .map(str::to_owned)
}

/// (key, version id, is latest, is delete marker) of every version, in listing order.
async fn versions(c: &Client, bucket: &str) -> Vec<(String, String, bool, bool)> {
    let out = c
        .list_object_versions()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    let mut all: Vec<(String, String, bool, bool, i64)> = Vec::new();
    for v in out.versions() {
        all.push((
            v.key().unwrap().into(),
            v.version_id().unwrap().into(),
            v.is_latest().unwrap(),
            false,
            v.last_modified().unwrap().as_nanos() as i64,
        ));
    }
    for m in out.delete_markers() {
        all.push((
            m.key().unwrap().into(),
            m.version_id().unwrap().into(),
            m.is_latest().unwrap(),
            true,
            m.last_modified().unwrap().as_nanos() as i64,
        ));
    }
    // S3 returns versions and delete markers in two lists; order them as one.
    all.sort_by(|a, b| a.0.cmp(&b.0).then(b.2.cmp(&a.2)).then(b.4.cmp(&a.4)));
    all.into_iter()
        .map(|(k, v, l, m, _)| (k, v, l, m))
        .collect()
}

#[tokio::test]
async fn versions_are_kept_read_by_id_and_hidden_by_delete_markers() {
    let mut s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("ver").send().await.unwrap();
    let got = c
        .get_bucket_versioning()
        .bucket("ver")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.status(),
        None,
        "never-versioned buckets report no status"
    );

    let v0_data = random_bytes(1, 100_000);
    assert_eq!(
        put(&c, "ver", "doc", &v0_data).await,
        None,
        "unversioned: no version id"
    );
    let listed = versions(&c, "ver").await;
    assert_eq!(listed, [("doc".into(), "null".into(), true, false)]);

    set_versioning(&c, "ver", BucketVersioningStatus::Enabled).await;
    assert_eq!(
        c.get_bucket_versioning()
            .bucket("ver")
            .send()
            .await
            .unwrap()
            .status(),
        Some(&BucketVersioningStatus::Enabled)
    );
    let v1_data = random_bytes(2, 90_000);
    let v2_data = random_bytes(3, 80_000);
    let v1 = put(&c, "ver", "doc", &v1_data).await.expect("v1 id");
    let v2 = put(&c, "ver", "doc", &v2_data).await.expect("v2 id");
    assert_ne!(v1, v2);

    assert_eq!(get_bytes(&c, "ver", "doc").await, v2_data);
    assert_eq!(get_version(&c, "ver", "doc", &v1).await, v1_data);
    assert_eq!(get_version(&c, "ver", "doc", "null").await, v0_data);
    let head = c
        .head_object()
        .bucket("ver")
        .key("doc")
        .version_id(&v1)
        .send()
        .await
        .unwrap();
    assert_eq!(head.version_id(), Some(v1.as_str()));
    assert_eq!(head.content_length(), Some(90_000));
    assert_eq!(
        versions(&c, "ver").await,
        [
            ("doc".into(), v2.clone(), true, false),
            ("doc".into(), v1.clone(), false, false),
            ("doc".into(), "null".into(), false, false),
        ]
    );

    // A delete without a version id adds a delete marker.
    let del = c
        .delete_object()
        .bucket("ver")
        .key("doc")
        .send()
        .await
        .unwrap();
    assert_eq!(del.delete_marker(), Some(true));
    let marker = del.version_id().expect("marker version").to_owned();
    let err = c
        .get_object()
        .bucket("ver")
        .key("doc")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        (status_of(&err), code_of(&err).as_str()),
        (404, "NoSuchKey")
    );
    let raw = err.raw_response().unwrap();
    assert_eq!(raw.headers().get("x-amz-delete-marker"), Some("true"));
    let err = c
        .head_object()
        .bucket("ver")
        .key("doc")
        .version_id(&marker)
        .send()
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), 405);
    let listed = c.list_objects_v2().bucket("ver").send().await.unwrap();
    assert!(
        listed.contents().is_empty(),
        "a delete marker hides the key"
    );
    assert_eq!(
        versions(&c, "ver").await[0],
        ("doc".into(), marker.clone(), true, true)
    );
    let err = c.delete_bucket().bucket("ver").send().await.unwrap_err();
    assert_eq!(code_of(&err), "BucketNotEmpty");

    // Removing the marker brings the object back; removing versions walks back.
    let del = c
        .delete_object()
        .bucket("ver")
        .key("doc")
        .version_id(&marker)
        .send()
        .await
        .unwrap();
    assert_eq!(del.delete_marker(), Some(true));
    assert_eq!(get_bytes(&c, "ver", "doc").await, v2_data);
    c.delete_object()
        .bucket("ver")
        .key("doc")
        .version_id(&v2)
        .send()
        .await
        .unwrap();
    assert_eq!(get_bytes(&c, "ver", "doc").await, v1_data);
    let err = c
        .get_object()
        .bucket("ver")
        .key("doc")
        .version_id(&v2)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        (status_of(&err), code_of(&err).as_str()),
        (404, "NoSuchVersion")
    );
    let err = c
        .get_object()
        .bucket("ver")
        .key("doc")
        .version_id("bogus")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        (status_of(&err), code_of(&err).as_str()),
        (400, "InvalidArgument")
    );
    for v in [v1.as_str(), "null"] {
        c.delete_object()
            .bucket("ver")
            .key("doc")
            .version_id(v)
            .send()
            .await
            .unwrap();
    }
    assert!(versions(&c, "ver").await.is_empty());
    c.delete_bucket()
        .bucket("ver")
        .send()
        .await
        .expect("empty bucket deletes");

    assert!(s.stop());
    let meta = s.meta();
    assert!(meta.audit_refs_blocking().unwrap().is_empty());
    assert_eq!(
        meta.live_usage_blocking().unwrap(),
        (0, 0),
        "every version released"
    );
}

#[tokio::test]
async fn suspended_versioning_writes_and_deletes_the_null_version() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("susp").send().await.unwrap();
    set_versioning(&c, "susp", BucketVersioningStatus::Enabled).await;
    let v1 = put(&c, "susp", "k", b"first version, kept").await.unwrap();
    set_versioning(&c, "susp", BucketVersioningStatus::Suspended).await;
    assert_eq!(put(&c, "susp", "k", &random_bytes(5, 50_000)).await, None);
    let latest = random_bytes(6, 60_000);
    put(&c, "susp", "k", &latest).await;
    assert_eq!(
        versions(&c, "susp").await,
        [
            ("k".into(), "null".into(), true, false),
            ("k".into(), v1.clone(), false, false)
        ],
        "the second null write replaced the first"
    );
    assert_eq!(get_version(&c, "susp", "k", "null").await, latest);

    let del = c
        .delete_object()
        .bucket("susp")
        .key("k")
        .send()
        .await
        .unwrap();
    assert_eq!(del.delete_marker(), Some(true));
    assert_eq!(
        versions(&c, "susp").await,
        [
            ("k".into(), "null".into(), true, true),
            ("k".into(), v1.clone(), false, false)
        ],
        "the null delete marker replaced the null version"
    );
    assert_eq!(
        get_version(&c, "susp", "k", &v1).await,
        b"first version, kept"
    );
}

#[tokio::test]
async fn version_listing_pages_through_keys_and_versions() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("pages").send().await.unwrap();
    set_versioning(&c, "pages", BucketVersioningStatus::Enabled).await;
    let mut want = Vec::new();
    for key in ["a", "b/1", "b/2", "c"] {
        let mut ids = Vec::new();
        for i in 0..3 {
            ids.push(
                put(&c, "pages", key, format!("{key} {i}").as_bytes())
                    .await
                    .unwrap(),
            );
        }
        ids.reverse();
        want.extend(ids.into_iter().map(|v| (key.to_owned(), v)));
    }
    let mut seen = Vec::new();
    let (mut km, mut vm): (Option<String>, Option<String>) = (None, None);
    for _ in 0..20 {
        let p = c
            .list_object_versions()
            .bucket("pages")
            .max_keys(2)
            .set_key_marker(km.clone())
            .set_version_id_marker(vm.clone())
            .send()
            .await
            .unwrap();
        seen.extend(p.versions().iter().map(|v| {
            (
                v.key().unwrap().to_owned(),
                v.version_id().unwrap().to_owned(),
            )
        }));
        if p.is_truncated() != Some(true) {
            break;
        }
        km = p.next_key_marker().map(str::to_owned);
        vm = p.next_version_id_marker().map(str::to_owned);
    }
    assert_eq!(seen, want);

    let grouped = c
        .list_object_versions()
        .bucket("pages")
        .delimiter("/")
        .send()
        .await
        .unwrap();
    let prefixes: Vec<&str> = grouped
        .common_prefixes()
        .iter()
        .filter_map(|p| p.prefix())
        .collect();
    assert_eq!(prefixes, ["b/"]);
    assert_eq!(grouped.versions().len(), 6);
}

#[tokio::test]
async fn object_and_bucket_tags_round_trip_and_are_validated() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("tags").send().await.unwrap();
    c.put_object()
        .bucket("tags")
        .key("t")
        .tagging("job=nightly&note=two%20words")
        .body(ByteStream::from_static(b"tagged"))
        .send()
        .await
        .unwrap();
    let tags = |out: &[Tag]| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = out
            .iter()
            .map(|t| (t.key().to_owned(), t.value().to_owned()))
            .collect();
        v.sort();
        v
    };
    let got = c
        .get_object_tagging()
        .bucket("tags")
        .key("t")
        .send()
        .await
        .unwrap();
    assert_eq!(
        tags(got.tag_set()),
        [
            ("job".into(), "nightly".into()),
            ("note".into(), "two words".into())
        ]
    );
    let obj = c.get_object().bucket("tags").key("t").send().await.unwrap();
    assert_eq!(obj.tag_count(), Some(2));

    let tagging = |pairs: &[(&str, &str)]| {
        Tagging::builder()
            .set_tag_set(Some(
                pairs
                    .iter()
                    .map(|(k, v)| Tag::builder().key(*k).value(*v).build().unwrap())
                    .collect(),
            ))
            .build()
            .unwrap()
    };
    c.put_object_tagging()
        .bucket("tags")
        .key("t")
        .tagging(tagging(&[("tier", "gold")]))
        .send()
        .await
        .unwrap();
    let got = c
        .get_object_tagging()
        .bucket("tags")
        .key("t")
        .send()
        .await
        .unwrap();
    assert_eq!(tags(got.tag_set()), [("tier".into(), "gold".into())]);

    // Copy keeps tags by default, REPLACE takes the request's.
    c.copy_object()
        .copy_source("tags/t")
        .bucket("tags")
        .key("kept")
        .send()
        .await
        .unwrap();
    let got = c
        .get_object_tagging()
        .bucket("tags")
        .key("kept")
        .send()
        .await
        .unwrap();
    assert_eq!(tags(got.tag_set()), [("tier".into(), "gold".into())]);
    c.copy_object()
        .copy_source("tags/t")
        .bucket("tags")
        .key("replaced")
        .tagging_directive(TaggingDirective::Replace)
        .tagging("x=y")
        .send()
        .await
        .unwrap();
    let got = c
        .get_object_tagging()
        .bucket("tags")
        .key("replaced")
        .send()
        .await
        .unwrap();
    assert_eq!(tags(got.tag_set()), [("x".into(), "y".into())]);

    c.delete_object_tagging()
        .bucket("tags")
        .key("t")
        .send()
        .await
        .unwrap();
    assert!(
        c.get_object_tagging()
            .bucket("tags")
            .key("t")
            .send()
            .await
            .unwrap()
            .tag_set()
            .is_empty()
    );

    let eleven: Vec<(String, String)> = (0..11).map(|i| (format!("k{i}"), "v".into())).collect();
    let refs: Vec<(&str, &str)> = eleven
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let err = c
        .put_object_tagging()
        .bucket("tags")
        .key("t")
        .tagging(tagging(&refs))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        (status_of(&err), code_of(&err).as_str()),
        (400, "InvalidTag")
    );
    let err = c
        .put_object_tagging()
        .bucket("tags")
        .key("t")
        .tagging(tagging(&[("a", "1"), ("a", "2")]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "InvalidTag");
    let err = c
        .put_object()
        .bucket("tags")
        .key("bad")
        .tagging("a=1&a=2")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "InvalidTag");
    let err = c
        .get_object_tagging()
        .bucket("tags")
        .key("missing")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "NoSuchKey");

    let err = c
        .get_bucket_tagging()
        .bucket("tags")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        (status_of(&err), code_of(&err).as_str()),
        (404, "NoSuchTagSet")
    );
    c.put_bucket_tagging()
        .bucket("tags")
        .tagging(tagging(&[("owner", "backup-team")]))
        .send()
        .await
        .unwrap();
    let got = c.get_bucket_tagging().bucket("tags").send().await.unwrap();
    assert_eq!(
        tags(got.tag_set()),
        [("owner".into(), "backup-team".into())]
    );
    c.delete_bucket_tagging()
        .bucket("tags")
        .send()
        .await
        .unwrap();
    assert_eq!(
        code_of(
            &c.get_bucket_tagging()
                .bucket("tags")
                .send()
                .await
                .unwrap_err()
        ),
        "NoSuchTagSet"
    );
    assert_no_panic(&s);
}

#[tokio::test]
async fn get_object_attributes_reports_size_etag_checksum_and_parts() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("attrs").send().await.unwrap();
    let data = random_bytes(8, 70_000);
    let put = c
        .put_object()
        .bucket("attrs")
        .key("one")
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap();
    let all = [
        ObjectAttributes::Etag,
        ObjectAttributes::ObjectSize,
        ObjectAttributes::Checksum,
        ObjectAttributes::ObjectParts,
        ObjectAttributes::StorageClass,
    ];
    let got = c
        .get_object_attributes()
        .bucket("attrs")
        .key("one")
        .set_object_attributes(Some(all.to_vec()))
        .send()
        .await
        .unwrap();
    assert_eq!(got.object_size(), Some(70_000));
    assert_eq!(
        got.e_tag().map(|e| e.trim_matches('"')),
        Some(md5_hex(&data).as_str())
    );
    assert_eq!(
        got.checksum().and_then(|c| c.checksum_crc32()),
        put.checksum_crc32()
    );
    assert!(got.object_parts().is_none(), "a simple object has no parts");

    let mib = 1024 * 1024;
    let id = c
        .create_multipart_upload()
        .bucket("attrs")
        .key("multi")
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_owned();
    let mut done = Vec::new();
    for (n, len) in [(1, 5 * mib), (2, 1000)] {
        let e = c
            .upload_part()
            .bucket("attrs")
            .key("multi")
            .upload_id(&id)
            .part_number(n)
            .body(ByteStream::from(random_bytes(n as u64, len)))
            .send()
            .await
            .unwrap()
            .e_tag()
            .unwrap()
            .to_owned();
        done.push(CompletedPart::builder().part_number(n).e_tag(e).build());
    }
    c.complete_multipart_upload()
        .bucket("attrs")
        .key("multi")
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(done))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let got = c
        .get_object_attributes()
        .bucket("attrs")
        .key("multi")
        .object_attributes(ObjectAttributes::ObjectParts)
        .object_attributes(ObjectAttributes::ObjectSize)
        .send()
        .await
        .unwrap();
    let parts = got.object_parts().expect("parts");
    assert_eq!(parts.total_parts_count(), Some(2));
    let sizes: Vec<i64> = parts.parts().iter().filter_map(|p| p.size()).collect();
    assert_eq!(sizes, [5 * mib as i64, 1000]);
    assert_eq!(got.object_size(), Some(5 * mib as i64 + 1000));
    assert!(got.e_tag().is_none(), "only the attributes asked for");
}

#[tokio::test]
async fn operations_hoard_does_not_implement_answer_501() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("unimpl").send().await.unwrap();
    let err = c
        .get_bucket_website()
        .bucket("unimpl")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        (status_of(&err), code_of(&err).as_str()),
        (501, "NotImplemented")
    );
    let err = c
        .get_bucket_notification_configuration()
        .bucket("unimpl")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        (status_of(&err), code_of(&err).as_str()),
        (501, "NotImplemented")
    );
    // The server keeps serving.
    put_bytes(&c, "unimpl", "after", b"still here".to_vec()).await;
    assert_no_panic(&s);
}
