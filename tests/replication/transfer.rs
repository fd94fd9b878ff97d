//! What replicates and what crosses the wire: writes, overwrites, deletes, versions,
//! tags and parts; only missing chunks; the bandwidth limit; the replica's quota;
//! the resync of existing objects and the windows.

use super::*;

#[tokio::test]
async fn writes_overwrites_and_deletes_replicate_sending_only_missing_chunks() {
    let (mut replica, key) = replica_with_key(&[]);
    let source = source_with_bucket();
    let ca = replica.ca_pem().display().to_string();
    let (ok, text) = add_rule(&source, &replica, &key, &["--target-ca", &ca]);
    assert!(ok, "{text}");
    let src = source.client();
    let dst = replica.client();

    let big = random_bytes(41, 16 << 20);
    put_bytes(&src, "data", "big.bin", big.clone()).await;
    src.put_object()
        .bucket("data")
        .key("dir/tiny é.txt")
        .content_type("text/x-hoard")
        .metadata("job", "nightly")
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"first"))
        .send()
        .await
        .unwrap();
    put_bytes(&src, "data", "gone", b"short-lived".to_vec()).await;
    put_bytes(&src, "data", "dir/tiny é.txt", b"second".to_vec()).await;
    src.delete_object()
        .bucket("data")
        .key("gone")
        .send()
        .await
        .unwrap();

    mirrored(&src, &dst, 60, "the replica equals the source").await;
    let head = dst
        .head_object()
        .bucket("mirror")
        .key("big.bin")
        .send()
        .await
        .unwrap();
    let src_head = src
        .head_object()
        .bucket("data")
        .key("big.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(head.e_tag(), src_head.e_tag());
    assert_eq!(head.last_modified(), src_head.last_modified());
    let text = status(&source);
    let rate = text.lines().find_map(|l| l.trim().strip_prefix("rate: "));
    assert!(rate.is_some_and(|r| !r.starts_with("0 ")), "{text}");

    // A new object that is the first with two 4 KiB edits: only the changed chunks
    // travel (measured: about 400 KB).
    let before = sent_bytes(&source).await;
    let mut edited = big.clone();
    for at in [3 << 20, 11 << 20] {
        edited[at..at + 4096].copy_from_slice(&random_bytes(at as u64, 4096));
    }
    put_bytes(&src, "data", "big-v2.bin", edited.clone()).await;
    eventually(60, "the edited copy replicates", || async {
        dst.head_object()
            .bucket("mirror")
            .key("big-v2.bin")
            .send()
            .await
            .is_ok()
    })
    .await;
    assert_eq!(get_bytes(&dst, "mirror", "big-v2.bin").await, edited);
    let delta = sent_bytes(&source).await - before;
    assert!(
        delta > 0.0 && delta <= 0.05 * edited.len() as f64,
        "sent {delta} bytes for a 16 MiB object with two 4 KiB edits"
    );

    // The replica goes away: writes queue up, errors are counted, nothing is lost.
    replica.kill9();
    put_bytes(&src, "data", "while-down", random_bytes(7, 300_000)).await;
    eventually(30, "the failure is counted", || async {
        metric(
            &metrics_text(&source).await,
            "hoard_replication_errors_total ",
        )
        .unwrap_or(0.0)
            > 0.0
    })
    .await;
    replica.restart();
    let dst = replica.client();
    mirrored(&src, &dst, 90, "the replica catches up after it comes back").await;
    assert_no_panic(&replica);
    assert_no_panic(&source);
}

#[tokio::test]
async fn versions_delete_markers_tags_and_parts_replicate_as_such() {
    use aws_sdk_s3::types::{BucketVersioningStatus, Tag, Tagging};
    let (replica, key) = replica_with_key(&[]);
    let source = source_with_bucket();
    let src = source.client();
    let dst = replica.client();
    set_versioning(&src, "data", BucketVersioningStatus::Enabled).await;
    let ca = replica.ca_pem().display().to_string();
    let (ok, text) = add_rule(&source, &replica, &key, &["--target-ca", &ca]);
    assert!(ok, "{text}");

    // doc: two versions, then a delete marker; the older version gets tags later.
    let v1 = put_version(&src, "doc", b"version one").await;
    put_bytes(&src, "data", "doc", b"version two".to_vec()).await;
    src.delete_object()
        .bucket("data")
        .key("doc")
        .send()
        .await
        .unwrap();
    let tagging = Tagging::builder()
        .tag_set(Tag::builder().key("keep").value("7y").build().unwrap())
        .build()
        .unwrap();
    src.put_object_tagging()
        .bucket("data")
        .key("doc")
        .version_id(&v1)
        .tagging(tagging)
        .send()
        .await
        .unwrap();
    // pv: the older of two versions is deleted by id.
    let pv1 = put_version(&src, "pv", b"old").await;
    put_bytes(&src, "data", "pv", b"new".to_vec()).await;
    src.delete_object()
        .bucket("data")
        .key("pv")
        .version_id(&pv1)
        .send()
        .await
        .unwrap();
    // multi: a two-part multipart object.
    let parts = [random_bytes(1, 5 << 20), random_bytes(2, 1 << 20)];
    put_multipart(&src, "data", "multi", &parts).await;

    eventually(60, "the replica holds the same versions", || async {
        versions(&dst, "mirror").await == versions(&src, "data").await
    })
    .await;
    eventually(30, "the tags replicate", || async {
        tags_of(&dst, "mirror", "doc", &v1).await == ["keep=7y"]
    })
    .await;
    let old = dst
        .get_object()
        .bucket("mirror")
        .key("doc")
        .version_id(&v1)
        .send()
        .await
        .unwrap();
    assert_eq!(old.body.collect().await.unwrap().to_vec(), b"version one");
    let (p2, count) = part_bytes(&dst, "mirror", "multi", 2).await;
    assert_eq!((p2, count), (parts[1].clone(), 2), "part 2 on the replica");
    let got = dst
        .get_bucket_versioning()
        .bucket("mirror")
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), Some(&BucketVersioningStatus::Enabled));

    // Removing a version by id on the source removes it on the replica.
    src.delete_object()
        .bucket("data")
        .key("doc")
        .version_id(&v1)
        .send()
        .await
        .unwrap();
    eventually(30, "the removed version goes", || async {
        versions(&dst, "mirror").await == versions(&src, "data").await
    })
    .await;
    assert_eq!(versions(&dst, "mirror").await.len(), 4);

    // After a promotion, a new version on the replica is the latest.
    let (ok, text) = cli(&replica, &["bucket", "promote", "mirror"]);
    assert!(ok, "{text}");
    let mine = put_bytes(&dst, "mirror", "pv", b"written on the replica".to_vec()).await;
    assert_eq!(mine, md5_hex(b"written on the replica"));
    assert_eq!(
        get_bytes(&dst, "mirror", "pv").await,
        b"written on the replica"
    );
    assert_no_panic(&replica);
    assert_no_panic(&source);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replicas_quota_holds_for_replicated_versions() {
    let (replica, key) = replica_with_key(&[]);
    let source = source_with_bucket();
    let (src, dst) = (source.client(), replica.client());
    let (ok, text) = cli(&replica, &["quota", "set", "--bucket", "mirror", "1MiB"]);
    assert!(ok, "{text}");
    let ca = replica.ca_pem().display().to_string();
    let (ok, text) = add_rule(&source, &replica, &key, &["--target-ca", &ca]);
    assert!(ok, "{text}");
    let big = random_bytes(7, 11 << 20);
    // The big one in three parts: the parts staged before the refusal are released.
    let parts: Vec<Vec<u8>> = big.chunks(5 << 20).map(<[u8]>::to_vec).collect();
    put_multipart(&src, "data", "big", &parts).await;
    put_bytes(&src, "data", "small", random_bytes(8, 200_000)).await;
    eventually(
        60,
        "the small object replicates, the big one fails",
        || async {
            replication_status(&src, "data", "small").await == "COMPLETED"
                && replication_status(&src, "data", "big").await == "FAILED"
        },
    )
    .await;
    let text = status(&source);
    assert!(text.contains("over its quota"), "{text}");
    let missing = dst.head_object().bucket("mirror").key("big").send().await;
    assert_eq!(status_of(&missing.unwrap_err()), 404);
    // Nothing of the refused version stays referenced: the cleaner reclaims it all.
    let (ok, text) = cli(&replica, &["gc", "--grace-period", "0s"]);
    assert!(ok, "{text}");
    let left = stats(&replica).await.total.unique_bytes;
    assert!(left < 1 << 20, "{left} bytes of chunks stay on the replica");
    let (ok, text) = cli(&replica, &["verify"]);
    assert!(ok, "{text}");

    // With room made on the replica, a requeue brings it over.
    let (ok, text) = cli(&replica, &["quota", "set", "--bucket", "mirror", "none"]);
    assert!(ok, "{text}");
    let (ok, text) = cli(&source, &["replication", "requeue", "data"]);
    assert!(ok, "{text}");
    eventually(60, "the requeued key replicates", || async {
        replication_status(&src, "data", "big").await == "COMPLETED"
    })
    .await;
    assert_eq!(get_bytes(&dst, "mirror", "big").await, big);
    assert_no_panic(&replica);
    assert_no_panic(&source);
}

#[tokio::test]
async fn the_bandwidth_limit_holds_the_transfer_back() {
    let (replica, key) = replica_with_key(&[]);
    let source = source_with_bucket();
    let src = source.client();
    let dst = replica.client();
    let ca = replica.ca_pem().display().to_string();
    let trust = ["--target-ca", &ca, "--bandwidth", "1MiB/s"];
    let (ok, text) = add_rule(&source, &replica, &key, &trust);
    assert!(ok && text.contains("bandwidth 1.00 MiB/s"), "{text}");
    let (ok, text) = cli(&source, &["replication", "pause", "data"]);
    assert!(ok, "{text}");
    for i in 0..4u64 {
        put_bytes(&src, "data", &format!("mb{i}"), random_bytes(i, 1 << 20)).await;
    }
    // 4 MiB of incompressible chunks at 1 MiB/s: the first batch goes at once,
    // each later one waits for the bytes before it.
    let started = std::time::Instant::now();
    let (ok, text) = cli(&source, &["replication", "resume", "data"]);
    assert!(ok, "{text}");
    eventually(60, "everything arrives", || async {
        contents(&dst, "mirror").await.len() == 4
    })
    .await;
    let took = started.elapsed();
    assert!(took.as_secs_f64() >= 2.9, "4 MiB at 1 MiB/s took {took:?}");
    assert_eq!(contents(&dst, "mirror").await, contents(&src, "data").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_of_a_1_gib_object_sends_only_its_changes() {
    let (replica, key) = replica_with_key(&[]);
    let source = source_with_bucket();
    let src = source.client();
    let dst = replica.client();
    set_versioning(
        &src,
        "data",
        aws_sdk_s3::types::BucketVersioningStatus::Enabled,
    )
    .await;
    let ca = replica.ca_pem().display().to_string();
    let (ok, text) = add_rule(&source, &replica, &key, &["--target-ca", &ca]);
    assert!(ok, "{text}");

    let first = random_bytes(77, 1 << 30);
    let second = edited_copy(&first, 150, 8);
    put_bytes(&src, "data", "backup.vbk", first).await;
    eventually(300, "the first version replicates", || async {
        replication_status(&src, "data", "backup.vbk").await == "COMPLETED"
    })
    .await;
    let before = sent_bytes(&source).await;
    let etag = put_bytes(&src, "data", "backup.vbk", second.clone()).await;
    eventually(300, "the second version replicates", || async {
        replication_status(&src, "data", "backup.vbk").await == "COMPLETED"
    })
    .await;
    let sent = sent_bytes(&source).await - before;
    let ratio = sent / second.len() as f64;
    println!(
        "second version: {sent} bytes sent for {} logical ({ratio:.4})",
        second.len()
    );
    assert!(
        sent > 0.0 && ratio <= 0.05,
        "sent {sent} bytes, {ratio:.4} of the object"
    );

    let got = dst
        .get_object()
        .bucket("mirror")
        .key("backup.vbk")
        .send()
        .await
        .unwrap();
    assert_eq!(got.e_tag().unwrap().trim_matches('"'), etag);
    let mut body = got.body.into_async_read();
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        use tokio::io::AsyncReadExt;
        let n = body.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
    }
    let want = ring::digest::digest(&ring::digest::SHA256, &second);
    assert_eq!(
        hash.finish().as_ref(),
        want.as_ref(),
        "sha256 of the replica's copy"
    );
    let listed = versions(&dst, "mirror").await;
    assert_eq!(listed, versions(&src, "data").await);
    assert_eq!(listed.len(), 2);
}

#[tokio::test]
async fn existing_objects_resync_and_windows_decide_when_changes_move() {
    let (replica, key) = replica_with_key(&[]);
    let source = source_with_bucket();
    let src = source.client();
    let dst = replica.client();
    for i in 0..230u64 {
        let len = if i % 50 == 0 {
            200_000
        } else {
            1_000 + i as usize
        };
        put_bytes(&src, "data", &format!("old/{i:04}"), random_bytes(i, len)).await;
    }
    let ca = replica.ca_pem().display().to_string();
    let now = utc_minute();
    let closed = window(now + 120, now + 180);
    let (ok, text) = add_rule(
        &source,
        &replica,
        &key,
        &["--target-ca", &ca, "--schedule", &closed],
    );
    assert!(ok, "{text}");
    put_bytes(&src, "data", "new/1", b"after the rule".to_vec()).await;

    // Outside the window nothing moves.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert!(contents(&dst, "mirror").await.is_empty());
    let shown = status(&source);
    assert!(
        shown.contains("resync of existing objects: pending"),
        "{shown}"
    );
    assert!(queued(&shown) >= 1, "{shown}");

    // A manual run sends the existing objects and the waiting change.
    let (ok, text) = cli(&source, &["replication", "run", "data"]);
    assert!(ok, "{text}");
    mirrored(&src, &dst, 120, "the manual run copies everything").await;
    eventually(30, "the manual run ends", || async {
        !status(&source).contains("manual run in progress")
    })
    .await;
    let shown = status(&source);
    assert!(
        shown.contains("resync of existing objects: done"),
        "{shown}"
    );
    assert_eq!(queued(&shown), 0, "{shown}");

    // Back outside the window: a new change waits ...
    put_bytes(&src, "data", "new/2", b"waits for the window".to_vec()).await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert!(
        dst.head_object()
            .bucket("mirror")
            .key("new/2")
            .send()
            .await
            .is_err(),
        "moved outside the window"
    );
    // ... and moves once the window is open (same target: no second resync).
    let open = window(now + 1440 - 5, now + 60);
    let (ok, text) = add_rule(
        &source,
        &replica,
        &key,
        &["--target-ca", &ca, "--schedule", &open],
    );
    assert!(ok, "{text}");
    mirrored(&src, &dst, 30, "the change moves inside the window").await;
    assert!(status(&source).contains("resync of existing objects: done"));
}
