//! CopyObject, UploadPartCopy and DeleteObjects, driven by aws-sdk-s3.

mod common;

use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, Delete, MetadataDirective, ObjectIdentifier,
};
use common::*;

const MIB: usize = 1024 * 1024;

#[tokio::test]
async fn copies_share_chunks_within_and_across_buckets_and_survive_the_source() {
    let mut s = Server::start();
    let c = s.client();
    for b in ["src-bucket", "dst-bucket"] {
        c.create_bucket().bucket(b).send().await.unwrap();
    }
    let data = random_bytes(7, 20 * MIB);
    c.put_object()
        .bucket("src-bucket")
        .key("vm.img")
        .content_type("application/octet-stream")
        .metadata("origin", "host-1")
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap();
    let before = stats(&s).await.total;

    // COPY (the default) keeps metadata; across buckets.
    let out = c
        .copy_object()
        .copy_source("src-bucket/vm.img")
        .bucket("dst-bucket")
        .key("copy.img")
        .send()
        .await
        .unwrap();
    let etag = out
        .copy_object_result()
        .unwrap()
        .e_tag()
        .unwrap()
        .to_owned();
    assert_eq!(etag.trim_matches('"'), md5_hex(&data));
    let head = c
        .head_object()
        .bucket("dst-bucket")
        .key("copy.img")
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.metadata().unwrap().get("origin").map(String::as_str),
        Some("host-1")
    );
    assert_eq!(head.content_type(), Some("application/octet-stream"));

    // REPLACE within the bucket, and onto itself.
    c.copy_object()
        .copy_source("src-bucket/vm.img")
        .bucket("src-bucket")
        .key("renamed.img")
        .metadata_directive(MetadataDirective::Replace)
        .content_type("application/x-raw-disk-image")
        .metadata("origin", "host-2")
        .send()
        .await
        .unwrap();
    let head = c
        .head_object()
        .bucket("src-bucket")
        .key("renamed.img")
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.metadata().unwrap().get("origin").map(String::as_str),
        Some("host-2")
    );
    assert_eq!(head.content_type(), Some("application/x-raw-disk-image"));
    let err = c
        .copy_object()
        .copy_source("src-bucket/vm.img")
        .bucket("src-bucket")
        .key("vm.img")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        (status_of(&err), code_of(&err).as_str()),
        (400, "InvalidRequest")
    );
    c.copy_object()
        .copy_source("src-bucket/vm.img")
        .bucket("src-bucket")
        .key("vm.img")
        .metadata_directive(MetadataDirective::Replace)
        .metadata("touched", "yes")
        .send()
        .await
        .unwrap();

    // Nothing new was stored: three more 20 MiB objects, no more unique bytes.
    let after = stats(&s).await.total;
    assert_eq!(after.objects, before.objects + 2);
    assert_eq!(
        after.logical_bytes,
        before.logical_bytes + 2 * data.len() as u64
    );
    assert_eq!(after.unique_bytes, before.unique_bytes);
    assert_eq!(after.stored_bytes, before.stored_bytes);

    // The copies outlive the source.
    c.delete_object()
        .bucket("src-bucket")
        .key("vm.img")
        .send()
        .await
        .unwrap();
    assert_eq!(get_bytes(&c, "dst-bucket", "copy.img").await, data);
    assert_eq!(get_bytes(&c, "src-bucket", "renamed.img").await, data);

    assert!(s.stop());
    let mismatches = s.meta().audit_refs_blocking().unwrap();
    assert!(mismatches.is_empty(), "{mismatches:?}");
}

#[tokio::test]
async fn copy_conditions_and_missing_sources_are_s3_errors() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("cond").send().await.unwrap();
    let etag = put_bytes(&c, "cond", "a", random_bytes(1, 40_000)).await;
    let copy = || {
        c.copy_object()
            .copy_source("cond/a")
            .bucket("cond")
            .key("b")
    };
    let past = DateTime::from_secs(1_000_000_000);
    let future = DateTime::from_secs(4_000_000_000);

    for (name, req) in [
        ("if-match other", copy().copy_source_if_match("\"0123\"")),
        (
            "if-none-match same",
            copy().copy_source_if_none_match(format!("\"{etag}\"")),
        ),
        (
            "if-modified-since future",
            copy().copy_source_if_modified_since(future),
        ),
        (
            "if-unmodified-since past",
            copy().copy_source_if_unmodified_since(past),
        ),
    ] {
        let err = req.send().await.unwrap_err();
        assert_eq!(
            (status_of(&err), code_of(&err).as_str()),
            (412, "PreconditionFailed"),
            "{name}"
        );
    }
    let err = c
        .head_object()
        .bucket("cond")
        .key("b")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), 404, "a failed copy creates nothing");

    copy()
        .copy_source_if_match(format!("\"{etag}\""))
        .copy_source_if_unmodified_since(past)
        .send()
        .await
        .expect("if-match wins over if-unmodified-since");
    copy()
        .copy_source_if_none_match("\"0123\"")
        .copy_source_if_modified_since(past)
        .send()
        .await
        .expect("conditions that hold");

    let err = c
        .copy_object()
        .copy_source("cond/missing")
        .bucket("cond")
        .key("c")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        (status_of(&err), code_of(&err).as_str()),
        (404, "NoSuchKey")
    );
    let err = c
        .copy_object()
        .copy_source("cond/a")
        .bucket("no-such-bucket")
        .key("c")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        (status_of(&err), code_of(&err).as_str()),
        (404, "NoSuchBucket")
    );
    let err = c
        .copy_object()
        .copy_source("cond/a?versionId=00000000000000ff")
        .bucket("cond")
        .key("c")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        (status_of(&err), code_of(&err).as_str()),
        (404, "NoSuchVersion")
    );
    let err = c
        .copy_object()
        .copy_source("cond/a?versionId=not-a-version-id")
        .bucket("cond")
        .key("c")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        (status_of(&err), code_of(&err).as_str()),
        (400, "InvalidArgument")
    );
    assert_no_panic(&s);
}

#[tokio::test]
async fn upload_part_copy_assembles_an_object_from_ranges_of_another() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("parts").send().await.unwrap();
    let data = random_bytes(9, 13 * MIB + 777);
    put_bytes(&c, "parts", "source", data.clone()).await;
    let before = stats(&s).await.total.unique_bytes;

    let id = c
        .create_multipart_upload()
        .bucket("parts")
        .key("joined")
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_owned();
    let ranges = [(0, 6 * MIB - 1), (6 * MIB, data.len() - 1)];
    let mut done = Vec::new();
    for (n, (first, last)) in ranges.iter().enumerate() {
        let out = c
            .upload_part_copy()
            .bucket("parts")
            .key("joined")
            .upload_id(&id)
            .part_number(n as i32 + 1)
            .copy_source("parts/source")
            .copy_source_range(format!("bytes={first}-{last}"))
            .send()
            .await
            .unwrap();
        let etag = out.copy_part_result().unwrap().e_tag().unwrap().to_owned();
        assert_eq!(etag.trim_matches('"'), md5_hex(&data[*first..=*last]));
        done.push(
            CompletedPart::builder()
                .part_number(n as i32 + 1)
                .e_tag(etag)
                .build(),
        );
    }
    let err = c
        .upload_part_copy()
        .bucket("parts")
        .key("joined")
        .upload_id(&id)
        .part_number(3)
        .copy_source("parts/source")
        .copy_source_range(format!("bytes=0-{}", data.len()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        (status_of(&err), code_of(&err).as_str()),
        (416, "InvalidRange")
    );
    let err = c
        .upload_part_copy()
        .bucket("parts")
        .key("joined")
        .upload_id(&id)
        .part_number(3)
        .copy_source("parts/source")
        .copy_source_range("bytes=9-3")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        (status_of(&err), code_of(&err).as_str()),
        (400, "InvalidArgument")
    );

    c.complete_multipart_upload()
        .bucket("parts")
        .key("joined")
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(done))
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(get_bytes(&c, "parts", "joined").await, data);
    let added = stats(&s).await.total.unique_bytes - before;
    assert!(
        added < MIB as u64,
        "copying 13 MiB of stored data added {added} unique bytes"
    );
}

#[tokio::test]
async fn delete_objects_removes_a_batch_and_reports_each_key() {
    let mut s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("batch").send().await.unwrap();
    for i in 0..6 {
        put_bytes(
            &c,
            "batch",
            &format!("k{i}"),
            random_bytes(i, 30_000 + i as usize),
        )
        .await;
    }
    let ids = |keys: &[&str]| {
        Delete::builder().set_objects(Some(
            keys.iter()
                .map(|k| ObjectIdentifier::builder().key(*k).build().unwrap())
                .collect(),
        ))
    };
    let out = c
        .delete_objects()
        .bucket("batch")
        .delete(ids(&["k0", "k1", "absent"]).build().unwrap())
        .send()
        .await
        .unwrap();
    let mut deleted: Vec<&str> = out.deleted().iter().filter_map(|d| d.key()).collect();
    deleted.sort();
    assert_eq!(
        deleted,
        ["absent", "k0", "k1"],
        "absent keys count as deleted, as in S3"
    );
    assert!(out.errors().is_empty());

    let out = c
        .delete_objects()
        .bucket("batch")
        .delete(ids(&["k2", "k3"]).quiet(true).build().unwrap())
        .send()
        .await
        .unwrap();
    assert!(out.deleted().is_empty(), "quiet mode lists only errors");

    let out = c
        .delete_objects()
        .bucket("batch")
        .delete(
            Delete::builder()
                .objects(
                    ObjectIdentifier::builder()
                        .key("k4")
                        .version_id("v-that-does-not-exist")
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(out.errors().len(), 1);
    assert_eq!(out.errors()[0].code(), Some("InvalidArgument"));
    assert_eq!(out.errors()[0].key(), Some("k4"));

    let too_many: Vec<String> = (0..1001).map(|i| format!("x{i}")).collect();
    let refs: Vec<&str> = too_many.iter().map(String::as_str).collect();
    let err = c
        .delete_objects()
        .bucket("batch")
        .delete(ids(&refs).build().unwrap())
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        (status_of(&err), code_of(&err).as_str()),
        (400, "MalformedXML")
    );

    let left = c.list_objects_v2().bucket("batch").send().await.unwrap();
    let keys: Vec<&str> = left.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["k4", "k5"]);

    assert!(s.stop());
    let meta = s.meta();
    assert!(meta.audit_refs_blocking().unwrap().is_empty());
    // Six PUTs, then one event per key that existed: k0, k1, k2, k3.
    let events = meta.outbox_events(0, 100).await.unwrap();
    assert_eq!(events.len(), 10);
}

#[tokio::test]
async fn a_copied_multipart_object_keeps_its_parts() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("mpcopy").send().await.unwrap();
    let data = random_bytes(12, 7 * MIB);
    let id = c
        .create_multipart_upload()
        .bucket("mpcopy")
        .key("m")
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_owned();
    let mut done = Vec::new();
    for (n, part) in data.chunks(5 * MIB).enumerate() {
        let e = c
            .upload_part()
            .bucket("mpcopy")
            .key("m")
            .upload_id(&id)
            .part_number(n as i32 + 1)
            .body(ByteStream::from(part.to_vec()))
            .send()
            .await
            .unwrap()
            .e_tag()
            .unwrap()
            .to_owned();
        done.push(
            CompletedPart::builder()
                .part_number(n as i32 + 1)
                .e_tag(e)
                .build(),
        );
    }
    c.complete_multipart_upload()
        .bucket("mpcopy")
        .key("m")
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(done))
                .build(),
        )
        .send()
        .await
        .unwrap();
    c.copy_object()
        .copy_source("mpcopy/m")
        .bucket("mpcopy")
        .key("m2")
        .send()
        .await
        .unwrap();
    let p2 = c
        .get_object()
        .bucket("mpcopy")
        .key("m2")
        .part_number(2)
        .send()
        .await
        .unwrap();
    assert_eq!(p2.parts_count(), Some(2));
    assert_eq!(
        p2.body.collect().await.unwrap().into_bytes(),
        data[5 * MIB..]
    );
    assert_eq!(get_bytes(&c, "mpcopy", "m2").await, data);
}
