//! Multipart uploads driven by aws-sdk-s3 against a real hoard.

mod common;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use common::*;

const MIB: usize = 1024 * 1024;

async fn create(c: &Client, bucket: &str, key: &str) -> String {
    c.create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .content_type("application/x-tar")
        .metadata("job", "nightly")
        .send()
        .await
        .expect("create upload")
        .upload_id()
        .expect("upload id")
        .to_owned()
}

async fn upload(c: &Client, bucket: &str, key: &str, id: &str, n: i32, data: Vec<u8>) -> String {
    c.upload_part()
        .bucket(bucket)
        .key(key)
        .upload_id(id)
        .part_number(n)
        .body(ByteStream::from(data))
        .send()
        .await
        .expect("upload part")
        .e_tag()
        .expect("part etag")
        .to_owned()
}

fn parts(list: &[(i32, &str)]) -> CompletedMultipartUpload {
    CompletedMultipartUpload::builder()
        .set_parts(Some(
            list.iter()
                .map(|(n, e)| CompletedPart::builder().part_number(*n).e_tag(*e).build())
                .collect(),
        ))
        .build()
}

fn multipart_etag(part_md5s: &[String]) -> String {
    let mut bin = Vec::new();
    for m in part_md5s {
        bin.extend(hex::decode(m).unwrap());
    }
    format!("{}-{}", md5_hex(&bin), part_md5s.len())
}

#[tokio::test]
async fn three_parts_complete_into_one_object_readable_whole_by_range_and_by_part() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("mpu").send().await.unwrap();
    let data = random_bytes(1, 11 * MIB + 12345);
    let bounds = [0, 5 * MIB, 10 * MIB, data.len()];
    let id = create(&c, "mpu", "backup.tar").await;
    let mut etags = Vec::new();
    // Upload out of order: the part number, not the arrival, decides the position.
    for n in [3usize, 1, 2] {
        let e = upload(
            &c,
            "mpu",
            "backup.tar",
            &id,
            n as i32,
            data[bounds[n - 1]..bounds[n]].to_vec(),
        )
        .await;
        etags.push((n, e));
    }
    etags.sort();
    let md5s: Vec<String> = (1..=3)
        .map(|n| md5_hex(&data[bounds[n - 1]..bounds[n]]))
        .collect();
    for ((_, e), m) in etags.iter().zip(&md5s) {
        assert_eq!(e.trim_matches('"'), m);
    }

    // ListParts, paginated.
    let page = c
        .list_parts()
        .bucket("mpu")
        .key("backup.tar")
        .upload_id(&id)
        .max_parts(2)
        .send()
        .await
        .unwrap();
    assert_eq!(page.parts().len(), 2);
    assert_eq!(page.is_truncated(), Some(true));
    assert_eq!(page.next_part_number_marker(), Some("2"));
    assert_eq!(page.parts()[1].size(), Some(5 * MIB as i64));
    let rest = c
        .list_parts()
        .bucket("mpu")
        .key("backup.tar")
        .upload_id(&id)
        .part_number_marker("2")
        .send()
        .await
        .unwrap();
    assert_eq!(rest.parts().len(), 1);
    assert_eq!(rest.parts()[0].part_number(), Some(3));
    assert_eq!(rest.is_truncated(), Some(false));

    // Not visible before completion.
    let err = c
        .head_object()
        .bucket("mpu")
        .key("backup.tar")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), 404);

    let list: Vec<(i32, &str)> = etags.iter().map(|(n, e)| (*n as i32, e.as_str())).collect();
    let done = c
        .complete_multipart_upload()
        .bucket("mpu")
        .key("backup.tar")
        .upload_id(&id)
        .multipart_upload(parts(&list))
        .send()
        .await
        .unwrap();
    let want_etag = multipart_etag(&md5s);
    assert_eq!(done.e_tag().unwrap().trim_matches('"'), want_etag);

    assert_eq!(get_bytes(&c, "mpu", "backup.tar").await, data);
    let head = c
        .head_object()
        .bucket("mpu")
        .key("backup.tar")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(data.len() as i64));
    assert_eq!(head.e_tag().unwrap().trim_matches('"'), want_etag);
    assert_eq!(head.content_type(), Some("application/x-tar"));
    assert_eq!(
        head.metadata().unwrap().get("job").map(String::as_str),
        Some("nightly")
    );
    assert_eq!(head.parts_count(), None, "parts count only with partNumber");

    // A range across the first part boundary.
    let r = c
        .get_object()
        .bucket("mpu")
        .key("backup.tar")
        .range(format!("bytes={}-{}", 5 * MIB - 10, 5 * MIB + 9))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.body.collect().await.unwrap().into_bytes(),
        data[5 * MIB - 10..5 * MIB + 10]
    );

    // By part number.
    let p2 = c
        .head_object()
        .bucket("mpu")
        .key("backup.tar")
        .part_number(2)
        .send()
        .await
        .unwrap();
    assert_eq!(p2.parts_count(), Some(3));
    assert_eq!(p2.content_length(), Some(5 * MIB as i64));
    let p3 = c
        .get_object()
        .bucket("mpu")
        .key("backup.tar")
        .part_number(3)
        .send()
        .await
        .unwrap();
    assert_eq!(p3.parts_count(), Some(3));
    assert_eq!(
        p3.content_range(),
        Some(format!("bytes {}-{}/{}", 10 * MIB, data.len() - 1, data.len()).as_str())
    );
    assert_eq!(
        p3.body.collect().await.unwrap().into_bytes(),
        data[10 * MIB..]
    );
    let err = c
        .get_object()
        .bucket("mpu")
        .key("backup.tar")
        .part_number(4)
        .send()
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), 416);
    assert_eq!(code_of(&err), "InvalidPartNumber");

    // The upload is gone.
    let err = c
        .list_parts()
        .bucket("mpu")
        .key("backup.tar")
        .upload_id(&id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "NoSuchUpload");
    assert_no_panic(&s);
}

#[tokio::test]
async fn completion_errors_are_s3_errors_and_leave_the_upload_completable() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("mpu").send().await.unwrap();
    let id = create(&c, "mpu", "k").await;
    let small = upload(&c, "mpu", "k", &id, 1, random_bytes(2, MIB)).await;
    let big1 = upload(&c, "mpu", "k", &id, 2, random_bytes(3, 5 * MIB)).await;
    let last = upload(&c, "mpu", "k", &id, 3, random_bytes(4, 100)).await;

    let complete = |list: CompletedMultipartUpload| {
        c.complete_multipart_upload()
            .bucket("mpu")
            .key("k")
            .upload_id(&id)
            .multipart_upload(list)
            .send()
    };
    let err = complete(parts(&[(1, &small), (3, &last)]))
        .await
        .unwrap_err();
    assert_eq!(
        (status_of(&err), code_of(&err).as_str()),
        (400, "EntityTooSmall")
    );
    let err = complete(parts(&[(3, &last), (2, &big1)]))
        .await
        .unwrap_err();
    assert_eq!(
        (status_of(&err), code_of(&err).as_str()),
        (400, "InvalidPartOrder")
    );
    let err = complete(parts(&[(2, &small), (3, &last)]))
        .await
        .unwrap_err();
    assert_eq!(
        (status_of(&err), code_of(&err).as_str()),
        (400, "InvalidPart")
    );
    let err = complete(parts(&[(2, &big1), (4, &last)]))
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "InvalidPart");
    let err = c
        .complete_multipart_upload()
        .bucket("mpu")
        .key("k")
        .upload_id(&id)
        .multipart_upload(CompletedMultipartUpload::builder().build())
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        (status_of(&err), code_of(&err).as_str()),
        (400, "MalformedXML")
    );

    for bad in [0, 10_001] {
        let err = c
            .upload_part()
            .bucket("mpu")
            .key("k")
            .upload_id(&id)
            .part_number(bad)
            .body(ByteStream::from_static(b"x"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            (status_of(&err), code_of(&err).as_str()),
            (400, "InvalidArgument"),
            "part {bad}"
        );
    }
    let bogus = "00000000000000ff0123456789abcdef";
    let err = c
        .upload_part()
        .bucket("mpu")
        .key("k")
        .upload_id(bogus)
        .part_number(1)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        (status_of(&err), code_of(&err).as_str()),
        (404, "NoSuchUpload")
    );
    let err = c
        .abort_multipart_upload()
        .bucket("mpu")
        .key("k")
        .upload_id(bogus)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "NoSuchUpload");
    let err = c
        .upload_part()
        .bucket("mpu")
        .key("other")
        .upload_id(&id)
        .part_number(1)
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code_of(&err),
        "NoSuchUpload",
        "an upload id belongs to its key"
    );

    // Nothing became visible; leaving the small part 1 out, the upload completes.
    assert_eq!(
        status_of(
            &c.head_object()
                .bucket("mpu")
                .key("k")
                .send()
                .await
                .unwrap_err()
        ),
        404
    );
    complete(parts(&[(2, &big1), (3, &last)]))
        .await
        .expect("complete");
    let mut want = random_bytes(3, 5 * MIB);
    want.extend(random_bytes(4, 100));
    assert_eq!(get_bytes(&c, "mpu", "k").await, want);
    assert_no_panic(&s);
}

#[tokio::test]
async fn abort_replace_and_unused_parts_release_their_references() {
    let mut s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("mpu").send().await.unwrap();

    // Aborted upload.
    let a = create(&c, "mpu", "aborted").await;
    upload(&c, "mpu", "aborted", &a, 1, random_bytes(10, 5 * MIB)).await;
    upload(&c, "mpu", "aborted", &a, 2, random_bytes(11, 2 * MIB)).await;
    c.abort_multipart_upload()
        .bucket("mpu")
        .key("aborted")
        .upload_id(&a)
        .send()
        .await
        .unwrap();
    let err = c
        .list_parts()
        .bucket("mpu")
        .key("aborted")
        .upload_id(&a)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "NoSuchUpload");

    // Part 1 uploaded twice (the first copy is replaced); part 2 left out.
    let k = create(&c, "mpu", "kept").await;
    upload(&c, "mpu", "kept", &k, 1, random_bytes(20, 5 * MIB)).await;
    let e1 = upload(&c, "mpu", "kept", &k, 1, random_bytes(21, 5 * MIB)).await;
    upload(&c, "mpu", "kept", &k, 2, random_bytes(22, 3 * MIB)).await;
    c.complete_multipart_upload()
        .bucket("mpu")
        .key("kept")
        .upload_id(&k)
        .multipart_upload(parts(&[(1, &e1)]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        get_bytes(&c, "mpu", "kept").await,
        random_bytes(21, 5 * MIB)
    );

    // An upload still open when its bucket goes away.
    c.create_bucket().bucket("doomed").send().await.unwrap();
    let d = create(&c, "doomed", "x").await;
    upload(&c, "doomed", "x", &d, 1, random_bytes(30, 2 * MIB)).await;
    c.delete_bucket().bucket("doomed").send().await.unwrap();

    assert!(s.stop());
    let meta = s.meta();
    let mismatches = meta.audit_refs_blocking().unwrap();
    assert!(
        mismatches.is_empty(),
        "reference counts disagree: {mismatches:?}"
    );
    // Only the 5 MiB of the completed object is still referenced.
    let (_, live_bytes) = meta.live_usage_blocking().unwrap();
    assert!(
        (5 * MIB as u64..5 * MIB as u64 + 64 * 1024).contains(&live_bytes),
        "live bytes {live_bytes}"
    );
    // No outbox event but the completion's (the sender drops events of buckets
    // without a rule every half second, so the completion's may be gone too).
    let events = meta.outbox_events(0, 100).await.unwrap();
    let keys: Vec<&str> = events.iter().map(|(_, e)| e.key.as_str()).collect();
    assert!(keys.iter().all(|k| *k == "kept"), "outbox events: {keys:?}");
}

#[tokio::test]
async fn list_multipart_uploads_filters_and_pages() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("mpu").send().await.unwrap();
    let mut ids = Vec::new();
    for key in ["a/1", "a/2", "b", "b", "c/d/e"] {
        ids.push((key, create(&c, "mpu", key).await));
    }
    let all = c
        .list_multipart_uploads()
        .bucket("mpu")
        .send()
        .await
        .unwrap();
    let got: Vec<(&str, &str)> = all
        .uploads()
        .iter()
        .map(|u| (u.key().unwrap(), u.upload_id().unwrap()))
        .collect();
    let want: Vec<(&str, &str)> = ids.iter().map(|(k, i)| (*k, i.as_str())).collect();
    assert_eq!(got, want, "key order, then upload order");

    let grouped = c
        .list_multipart_uploads()
        .bucket("mpu")
        .delimiter("/")
        .send()
        .await
        .unwrap();
    let prefixes: Vec<&str> = grouped
        .common_prefixes()
        .iter()
        .filter_map(|p| p.prefix())
        .collect();
    assert_eq!(prefixes, ["a/", "c/"]);
    assert_eq!(grouped.uploads().len(), 2);
    assert!(grouped.uploads().iter().all(|u| u.key() == Some("b")));

    let prefixed = c
        .list_multipart_uploads()
        .bucket("mpu")
        .prefix("a/")
        .send()
        .await
        .unwrap();
    assert_eq!(prefixed.uploads().len(), 2);

    // Page by two, following the markers.
    let mut seen = Vec::new();
    let (mut km, mut im): (Option<String>, Option<String>) = (None, None);
    loop {
        let p = c
            .list_multipart_uploads()
            .bucket("mpu")
            .max_uploads(2)
            .set_key_marker(km.clone())
            .set_upload_id_marker(im.clone())
            .send()
            .await
            .unwrap();
        seen.extend(
            p.uploads()
                .iter()
                .map(|u| u.upload_id().unwrap().to_owned()),
        );
        if p.is_truncated() != Some(true) {
            break;
        }
        km = p.next_key_marker().map(str::to_owned);
        im = p.next_upload_id_marker().map(str::to_owned);
    }
    let want_ids: Vec<String> = ids.iter().map(|(_, i)| i.clone()).collect();
    assert_eq!(seen, want_ids);

    // key-marker alone skips every upload of that key.
    let after_b = c
        .list_multipart_uploads()
        .bucket("mpu")
        .key_marker("b")
        .send()
        .await
        .unwrap();
    let keys: Vec<&str> = after_b.uploads().iter().filter_map(|u| u.key()).collect();
    assert_eq!(keys, ["c/d/e"]);
}

#[tokio::test]
async fn uploads_older_than_the_configured_age_are_aborted_in_the_background() {
    let s = Server::start_with(&["--multipart-max-age-secs", "2"]);
    let c = s.client();
    c.create_bucket().bucket("mpu").send().await.unwrap();
    let id = create(&c, "mpu", "stale").await;
    upload(&c, "mpu", "stale", &id, 1, random_bytes(5, MIB)).await;
    let mut gone = false;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        if c.list_multipart_uploads()
            .bucket("mpu")
            .send()
            .await
            .unwrap()
            .uploads()
            .is_empty()
        {
            gone = true;
            break;
        }
    }
    assert!(gone, "stale upload still listed after 10 s");
    let err = c
        .upload_part()
        .bucket("mpu")
        .key("stale")
        .upload_id(&id)
        .part_number(2)
        .body(ByteStream::from_static(b"late"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "NoSuchUpload");
    assert!(s.log().contains("stale multipart upload aborted"));
}

#[tokio::test]
async fn acknowledged_parts_survive_kill_9_and_the_upload_completes_after_restart() {
    let mut s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("mpu").send().await.unwrap();
    let id = create(&c, "mpu", "big").await;
    let e1 = upload(&c, "mpu", "big", &id, 1, random_bytes(40, 6 * MIB)).await;
    let e2 = upload(&c, "mpu", "big", &id, 2, random_bytes(41, 2 * MIB)).await;
    s.kill9();
    s.restart();
    let c = s.client();
    let listed = c
        .list_parts()
        .bucket("mpu")
        .key("big")
        .upload_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.parts().len(), 2);
    c.complete_multipart_upload()
        .bucket("mpu")
        .key("big")
        .upload_id(&id)
        .multipart_upload(parts(&[(1, &e1), (2, &e2)]))
        .send()
        .await
        .unwrap();
    let mut want = random_bytes(40, 6 * MIB);
    want.extend(random_bytes(41, 2 * MIB));
    assert_eq!(get_bytes(&c, "mpu", "big").await, want);
}

#[tokio::test]
async fn a_multipart_copy_of_stored_data_dedups_against_it() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("mpu").send().await.unwrap();
    let data = random_bytes(50, 15 * MIB);
    put_bytes(&c, "mpu", "single", data.clone()).await;
    let before = stats(&s).await.total.unique_bytes;
    let id = create(&c, "mpu", "multi").await;
    let mut list = Vec::new();
    for (n, part) in data.chunks(5 * MIB).enumerate() {
        list.push((
            (n + 1) as i32,
            upload(&c, "mpu", "multi", &id, (n + 1) as i32, part.to_vec()).await,
        ));
    }
    let refs: Vec<(i32, &str)> = list.iter().map(|(n, e)| (*n, e.as_str())).collect();
    c.complete_multipart_upload()
        .bucket("mpu")
        .key("multi")
        .upload_id(&id)
        .multipart_upload(parts(&refs))
        .send()
        .await
        .unwrap();
    let added = stats(&s).await.total.unique_bytes - before;
    // Chunking restarts at each part boundary; only the chunks around the two
    // boundaries are new.
    assert!(
        added < 2 * MIB as u64,
        "uploading stored data as 3 parts added {added} bytes"
    );
    assert_eq!(get_bytes(&c, "mpu", "multi").await, data);
}

/// A client whose CompleteMultipartUpload response was lost sends it again: the
/// same parts get the same answer (status, ETag, location, version id) for as long
/// as `multipart_max_age_secs`; other parts get NoSuchUpload, as from S3.
#[tokio::test]
async fn a_repeated_completion_gets_the_same_answer() {
    let s = Server::start_with(&["--multipart-max-age-secs", "3"]);
    let c = s.client();
    c.create_bucket().bucket("mpu").send().await.unwrap();
    set_versioning(
        &c,
        "mpu",
        aws_sdk_s3::types::BucketVersioningStatus::Enabled,
    )
    .await;
    let id = create(&c, "mpu", "big").await;
    let p1 = random_bytes(1, 5 * MIB);
    let p2 = random_bytes(2, 1000);
    let e1 = upload(&c, "mpu", "big", &id, 1, p1.clone()).await;
    let e2 = upload(&c, "mpu", "big", &id, 2, p2.clone()).await;
    let complete = || {
        c.complete_multipart_upload()
            .bucket("mpu")
            .key("big")
            .upload_id(&id)
    };
    let first = complete()
        .multipart_upload(parts(&[(1, &e1), (2, &e2)]))
        .send()
        .await
        .unwrap();
    let again = complete()
        .multipart_upload(parts(&[(1, &e1), (2, &e2)]))
        .send()
        .await
        .expect("the repeat of a completion succeeds");
    assert_eq!(again.e_tag(), first.e_tag());
    assert!(
        first.e_tag().unwrap().ends_with("-2\""),
        "{:?}",
        first.e_tag()
    );
    assert_eq!(again.version_id(), first.version_id());
    assert!(first.version_id().is_some());
    assert_eq!(again.location(), first.location());
    assert_eq!(first.location(), Some("/mpu/big"));
    // It stored nothing new: one version, the object whole.
    let versions = c.list_object_versions().bucket("mpu").send().await.unwrap();
    assert_eq!(versions.versions().len(), 1);
    assert_eq!(get_bytes(&c, "mpu", "big").await, [p1, p2].concat());

    let other = complete()
        .multipart_upload(parts(&[(1, &e1)]))
        .send()
        .await
        .expect_err("other parts");
    assert_eq!(code_of(&other), "NoSuchUpload");

    // Once the upload is older than the configured age, the answer is forgotten.
    let mut forgotten = false;
    for _ in 0..40 {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        let r = complete()
            .multipart_upload(parts(&[(1, &e1), (2, &e2)]))
            .send()
            .await;
        if r.as_ref().is_err_and(|e| code_of(e) == "NoSuchUpload") {
            forgotten = true;
            break;
        }
    }
    assert!(forgotten, "the completion is remembered for ever");
}

/// Reads an HTTP answer's status line and headers from a raw connection.
async fn answer_head(conn: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(std::time::Duration::from_secs(30), conn.read(&mut buf))
            .await
            .expect("an answer within 30 s")
            .unwrap();
        assert!(n > 0, "the server closed without answering");
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn a_part_resent_while_its_first_send_is_in_flight_is_the_send_that_finishes_last() {
    use tokio::io::AsyncWriteExt;
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("resend").send().await.unwrap();
    let id = create(&c, "resend", "obj").await;
    let (first, second) = (random_bytes(1, 6 * MIB), random_bytes(2, 6 * MIB));
    let tail = random_bytes(3, MIB);

    // The first send of part 1 stalls one byte short; a retry of it completes.
    let path = format!("/resend/obj?partNumber=1&uploadId={id}");
    let mut slow = start_partial_put(&s, &path, &first, first.len() - 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let retry_etag = upload(&c, "resend", "obj", &id, 1, second.clone()).await;
    assert_eq!(retry_etag.trim_matches('"'), md5_hex(&second));

    // Then the first send finishes: it is the last one, and it wins.
    slow.write_all(&first[first.len() - 1..]).await.unwrap();
    let head = answer_head(&mut slow).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let first_etag = format!("\"{}\"", md5_hex(&first));
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("etag: {first_etag}")),
        "{head}"
    );
    let tail_etag = upload(&c, "resend", "obj", &id, 2, tail.clone()).await;
    let listed = c
        .list_parts()
        .bucket("resend")
        .key("obj")
        .upload_id(&id)
        .send()
        .await
        .unwrap();
    let etags: Vec<_> = listed.parts().iter().filter_map(|p| p.e_tag()).collect();
    assert_eq!(etags, [first_etag.as_str(), tail_etag.as_str()]);

    // Complete with the overtaken send's ETag is InvalidPart; with the last one's
    // it succeeds and the object holds that send's bytes.
    refused!(
        c.complete_multipart_upload()
            .bucket("resend")
            .key("obj")
            .upload_id(&id)
            .multipart_upload(parts(&[(1, &retry_etag), (2, &tail_etag)])),
        "InvalidPart",
        400
    );
    c.complete_multipart_upload()
        .bucket("resend")
        .key("obj")
        .upload_id(&id)
        .multipart_upload(parts(&[(1, &first_etag), (2, &tail_etag)]))
        .send()
        .await
        .unwrap();
    let mut whole = first.clone();
    whole.extend_from_slice(&tail);
    assert_eq!(get_bytes(&c, "resend", "obj").await, whole);

    // The overtaken send's chunks are released: a gc leaves only the object's.
    admin(&s)
        .gc(false, Some(std::time::Duration::ZERO))
        .await
        .unwrap();
    let unique = stats(&s).await.total.unique_bytes;
    assert!(
        unique <= (whole.len() + MIB / 2) as u64,
        "{unique} unique bytes kept for a {}-byte object",
        whole.len()
    );
    assert_no_panic(&s);
}

/// The base64 CRC S3 reports for `data` in `alg`.
fn crc_of(alg: &aws_sdk_s3::types::ChecksumAlgorithm, data: &[u8]) -> String {
    use aws_sdk_s3::types::ChecksumAlgorithm as A;
    use base64::Engine as _;
    use crc_fast::CrcAlgorithm as C;
    let (algorithm, width) = match alg {
        A::Crc32 => (C::Crc32IsoHdlc, 4),
        A::Crc32C => (C::Crc32Iscsi, 4),
        _ => (C::Crc64Nvme, 8),
    };
    let v = crc_fast::checksum(algorithm, data);
    base64::engine::general_purpose::STANDARD.encode(&v.to_be_bytes()[8 - width..])
}

#[tokio::test]
async fn full_object_crcs_combine_the_parts_and_object_attributes_page_the_parts_checksums() {
    use aws_sdk_s3::types::{ChecksumAlgorithm as A, ChecksumMode, ChecksumType, ObjectAttributes};
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("whole").send().await.unwrap();
    let sizes = [5 * MIB, 5 * MIB, MIB + 7];
    for (alg, asked) in [
        (A::Crc32, Some(ChecksumType::FullObject)),
        (A::Crc32C, Some(ChecksumType::FullObject)),
        (A::Crc64Nvme, None),
    ] {
        let key = format!("obj-{}", alg.as_str());
        let created = c
            .create_multipart_upload()
            .bucket("whole")
            .key(&key)
            .checksum_algorithm(alg.clone())
            .set_checksum_type(asked)
            .send()
            .await
            .unwrap();
        assert_eq!(created.checksum_type(), Some(&ChecksumType::FullObject));
        let id = created.upload_id().unwrap();
        let mut whole = Vec::new();
        let mut done = Vec::new();
        for (n, size) in (1..).zip(sizes) {
            let data = random_bytes(n as u64 * 7, size);
            let part = c
                .upload_part()
                .bucket("whole")
                .key(&key)
                .upload_id(id)
                .part_number(n)
                .checksum_algorithm(alg.clone())
                .body(ByteStream::from(data.clone()))
                .send()
                .await
                .unwrap();
            let etag = part.e_tag().unwrap().to_owned();
            done.push((n, etag, crc_of(&alg, &data)));
            whole.extend_from_slice(&data);
        }
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(
                done.iter()
                    .map(|(n, e, _)| CompletedPart::builder().part_number(*n).e_tag(e).build())
                    .collect(),
            ))
            .build();
        let expected = crc_of(&alg, &whole);
        // A completion that states another whole-object CRC is refused.
        let wrong = c
            .complete_multipart_upload()
            .bucket("whole")
            .key(&key)
            .upload_id(id)
            .multipart_upload(completed.clone());
        let wrong = match alg {
            A::Crc32 => wrong.checksum_crc32("AAAAAA=="),
            A::Crc32C => wrong.checksum_crc32_c("AAAAAA=="),
            _ => wrong.checksum_crc64_nvme("AAAAAAAAAAA="),
        };
        refused!(wrong, "BadDigest", 400);
        let out = c
            .complete_multipart_upload()
            .bucket("whole")
            .key(&key)
            .upload_id(id)
            .multipart_upload(completed)
            .send()
            .await
            .unwrap();
        let answered = [
            out.checksum_crc32(),
            out.checksum_crc32_c(),
            out.checksum_crc64_nvme(),
        ];
        assert_eq!(
            answered.iter().flatten().collect::<Vec<_>>(),
            [&expected],
            "{alg:?}"
        );
        assert_eq!(out.checksum_type(), Some(&ChecksumType::FullObject));

        let head = c
            .head_object()
            .bucket("whole")
            .key(&key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        let headed = [
            head.checksum_crc32(),
            head.checksum_crc32_c(),
            head.checksum_crc64_nvme(),
        ];
        assert_eq!(headed.iter().flatten().collect::<Vec<_>>(), [&expected]);
        assert_eq!(head.checksum_type(), Some(&ChecksumType::FullObject));

        // GetObjectAttributes: the object's checksum, and its parts' a page at a time.
        let mut marker = None;
        let mut seen = Vec::new();
        loop {
            let attrs = c
                .get_object_attributes()
                .bucket("whole")
                .key(&key)
                .object_attributes(ObjectAttributes::Checksum)
                .object_attributes(ObjectAttributes::ObjectParts)
                .object_attributes(ObjectAttributes::Etag)
                .max_parts(2)
                .set_part_number_marker(marker.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(attrs.e_tag(), Some(out.e_tag().unwrap().trim_matches('"')));
            let sum = attrs.checksum().unwrap();
            assert_eq!(sum.checksum_type(), Some(&ChecksumType::FullObject));
            let parts = attrs.object_parts().unwrap();
            assert_eq!(parts.total_parts_count(), Some(3));
            for p in parts.parts() {
                let v = [
                    p.checksum_crc32(),
                    p.checksum_crc32_c(),
                    p.checksum_crc64_nvme(),
                ];
                let v = v.iter().flatten().next().map(|v| v.to_string());
                seen.push((p.part_number().unwrap(), v.unwrap_or_default()));
            }
            if parts.is_truncated() != Some(true) {
                break;
            }
            marker = parts.next_part_number_marker().map(str::to_owned);
        }
        let wanted: Vec<_> = done.iter().map(|(n, _, crc)| (*n, crc.clone())).collect();
        assert_eq!(seen, wanted, "{alg:?}");
    }

    // SHA256 multipart checksums are COMPOSITE: a checksum of checksums, then -N.
    let id = c
        .create_multipart_upload()
        .bucket("whole")
        .key("sha")
        .checksum_algorithm(A::Sha256)
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_owned();
    let part = c
        .upload_part()
        .bucket("whole")
        .key("sha")
        .upload_id(&id)
        .part_number(1)
        .checksum_algorithm(A::Sha256)
        .body(ByteStream::from(random_bytes(9, MIB)))
        .send()
        .await
        .unwrap();
    let out = c
        .complete_multipart_upload()
        .bucket("whole")
        .key("sha")
        .upload_id(&id)
        .multipart_upload(parts(&[(1, part.e_tag().unwrap())]))
        .send()
        .await
        .unwrap();
    assert!(out.checksum_sha256().unwrap().ends_with("-1"));
    assert_eq!(out.checksum_type(), Some(&ChecksumType::Composite));

    // Types S3 does not allow with an algorithm, or without one.
    for (alg, t) in [
        (Some(A::Sha256), ChecksumType::FullObject),
        (Some(A::Crc64Nvme), ChecksumType::Composite),
        (None, ChecksumType::FullObject),
    ] {
        refused!(
            c.create_multipart_upload()
                .bucket("whole")
                .key("bad")
                .set_checksum_algorithm(alg)
                .checksum_type(t),
            "InvalidRequest",
            400
        );
    }
    assert_no_panic(&s);
}
