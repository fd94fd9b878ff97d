//! Failures on the way: a key the replica refuses, the replica's cleaner meeting
//! chunks sent ahead of their commit, kill -9 of either side, a flaky WAN link.

use super::*;

#[tokio::test]
async fn a_key_the_replica_refuses_is_set_aside_as_failed_and_requeued() {
    let (replica, key) = replica_with_key(&[]);
    let source = source_with_bucket();
    let src = source.client();
    let dst = replica.client();
    let ca = replica.ca_pem().display().to_string();
    let (ok, text) = add_rule(&source, &replica, &key, &["--target-ca", &ca]);
    assert!(ok, "{text}");
    let (ok, text) = cli(&source, &["replication", "pause", "data"]);
    assert!(ok, "{text}");

    put_bytes(&src, "data", "good1", random_bytes(1, 200_000)).await;
    let bad = random_bytes(2, 300_000);
    put_bytes(&src, "data", "bad", bad.clone()).await;
    // A flipped byte in bad's chunk: the replica's BLAKE3 check refuses it.
    let segment = newest_segment(&source);
    flip_byte(&segment, 1000);
    put_bytes(&src, "data", "good2", random_bytes(3, 200_000)).await;
    assert_eq!(replication_status(&src, "data", "good1").await, "PENDING");

    let (ok, text) = cli(&source, &["replication", "resume", "data"]);
    assert!(ok, "{text}");
    // The source records the outcomes once its group of keys is done.
    eventually(60, "the keys after the bad one move on", || async {
        replication_status(&src, "data", "good2").await == "COMPLETED"
            && replication_status(&src, "data", "bad").await == "FAILED"
    })
    .await;
    assert_eq!(replication_status(&src, "data", "good1").await, "COMPLETED");
    assert_eq!(replication_status(&src, "data", "good2").await, "COMPLETED");
    assert_eq!(replication_status(&src, "data", "bad").await, "FAILED");
    assert_eq!(replication_status(&dst, "mirror", "good1").await, "REPLICA");
    let missing = dst.head_object().bucket("mirror").key("bad").send().await;
    assert_eq!(status_of(&missing.unwrap_err()), 404);
    let text = status(&source);
    // The replica's BLAKE3 check refuses the chunk; a sealed store (mode "cloud"
    // seals by default) already finds it will not open when the source reads it.
    assert!(
        text.contains("failed: 1 key(s)")
            && text.contains("\"bad\"")
            && (text.contains("failed verification") || text.contains("does not open")),
        "{text}"
    );
    // Set aside once by the resync of the new rule and once by its own change.
    let failed = metric(
        &metrics_text(&source).await,
        "hoard_replication_failed_total ",
    );
    assert!(failed.is_some_and(|n| n >= 1.0), "{failed:?}");

    // Mended on the source, the admin requeues it and it replicates.
    flip_byte(&segment, 1000);
    let (ok, text) = cli(&source, &["replication", "requeue", "data"]);
    assert!(
        ok && text.contains("1 failed key(s) of data queued again"),
        "{text}"
    );
    eventually(60, "the requeued key replicates", || async {
        replication_status(&src, "data", "bad").await == "COMPLETED"
    })
    .await;
    assert_eq!(get_bytes(&dst, "mirror", "bad").await, bad);
    assert!(!status(&source).contains("failed:"));
    let log = source.log();
    assert!(log.contains("set aside until a requeue"), "{log}");
    assert_no_panic(&replica);
    assert_no_panic(&source);
}

// The gc loop runs on the test's runtime while the CLI blocks a thread: two workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_sent_ahead_of_their_commit_survive_the_replicas_cleaner() {
    let (replica, key) = replica_with_key(&[]);
    let source = source_with_bucket();
    let src = source.client();
    let ca = replica.ca_pem().display().to_string();
    // 24 MiB at 4 MiB/s: three chunk batches and three staged parts over about
    // four seconds, each waiting in the replica for the commit at the end.
    let trust = [
        "--target-ca",
        &ca,
        "--bandwidth",
        "4MiB/s",
        "--connections",
        "1",
    ];
    let (ok, text) = add_rule(&source, &replica, &key, &trust);
    assert!(ok, "{text}");
    let data = random_bytes(5, 24 << 20);
    let parts: Vec<Vec<u8>> = data.chunks(6 << 20).map(<[u8]>::to_vec).collect();
    put_multipart(&src, "data", "slow", &parts).await;
    let dst = replica.client();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let mut passes = 0;
    while dst
        .head_object()
        .bucket("mirror")
        .key("slow")
        .send()
        .await
        .is_err()
    {
        // The replica's cleaner with no grace period, again and again, mid-transfer.
        let (ok, text) = cli(&replica, &["gc", "--grace-period", "0s"]);
        assert!(ok, "{text}");
        passes += 1;
        let late = std::time::Instant::now() > deadline;
        assert!(!late, "the object never arrived: {}", source.log());
    }
    assert!(passes >= 3, "the gc ran {passes} times during the transfer");
    let errors = metric(
        &metrics_text(&source).await,
        "hoard_replication_errors_total ",
    );
    assert_eq!(errors, Some(0.0), "no chunk had to be sent again");
    assert_eq!(get_bytes(&dst, "mirror", "slow").await, data);
    assert_eq!(
        part_bytes(&dst, "mirror", "slow", 3).await,
        (parts[2].clone(), 4)
    );
    // The hold was released at the commit: counts agree with the manifests.
    let (ok, text) = cli(&replica, &["verify"]);
    assert!(ok, "{text}");
    assert_no_panic(&replica);
}

#[tokio::test]
async fn kill_9_of_either_side_mid_transfer_loses_nothing() {
    let (mut replica, key) = replica_with_key(&[]);
    let mut source = source_with_bucket();
    let ca = replica.ca_pem().display().to_string();
    let (ok, text) = add_rule(&source, &replica, &key, &["--target-ca", &ca]);
    assert!(ok, "{text}");
    let src = source.client();
    put_twelve(&src, "a", 100).await;
    // The replica dies while the source is sending, and comes back.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    replica.kill9();
    replica.restart();
    put_twelve(&src, "b", 200).await;
    // The source dies while sending; what it acknowledged to its clients is
    // replicated after it restarts.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    source.kill9();
    source.restart();
    let src = source.client();
    let dst = replica.client();
    mirrored(&src, &dst, 120, "the replica equals the source").await;
    assert_eq!(contents(&dst, "mirror").await.len(), 24);
    // The replica's store is consistent: every chunk verifies, counts match. A
    // segment file written when the kill came, before its rows, is an orphan the
    // cleaner removes after `orphan_grace_secs`; nothing else may be found.
    let creds = hoard::auth::Credentials {
        access_key: ACCESS_KEY.into(),
        secret_key: SECRET_KEY.into(),
    };
    let admin = hoard::client::AdminClient::new(
        &replica.endpoint(),
        "us-east-1",
        creds,
        Some(&replica.ca_pem()),
    )
    .unwrap();
    let r = admin.verify(None, false).await.unwrap();
    assert!(r.chunks_checked > 0);
    assert!(
        r.missing_segments.is_empty()
            && r.corrupt_chunks.is_empty()
            && r.trailer_problems.is_empty()
            && r.count_problems.is_empty()
            && r.lost_chunks.is_empty()
            && r.damaged_objects.is_empty(),
        "{r:?}"
    );
    assert_no_panic(&replica);
    assert_no_panic(&source);
}

// The proxy runs on the test's runtime while the CLI blocks a thread: two workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_wan_link_loses_nothing() {
    let (replica, key) = replica_with_key(&[]);
    let source = source_with_bucket();
    let proxy = FaultProxy::start(replica.addr).await;
    let through_proxy = format!("https://{}", proxy.addr);
    let ca = replica.ca_pem().display().to_string();
    let (ok, text) = cli(
        &source,
        &[
            "replication",
            "add",
            "--bucket",
            "data",
            "--target",
            &through_proxy,
            "--target-bucket",
            "mirror",
            "--target-access-key",
            &key.access,
            "--target-secret-key",
            &key.secret,
            "--target-ca",
            &ca,
        ],
    );
    assert!(ok, "{text}");
    proxy
        .chaos
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let src = source.client();
    for i in 0..500u64 {
        let len = match i % 100 {
            0 => 2 << 20,
            n if n % 10 == 0 => 200_000,
            _ => 500 + (i as usize * 37) % 20_000,
        };
        put_bytes(&src, "data", &format!("obj/{i:03}"), random_bytes(i, len)).await;
        if i % 97 == 0 {
            src.delete_object()
                .bucket("data")
                .key(format!("obj/{:03}", i / 2))
                .send()
                .await
                .unwrap();
        }
    }
    eventually(120, "the chaos hits the link", || async {
        let text = metrics_text(&source).await;
        metric(&text, "hoard_replication_errors_total ").unwrap_or(0.0) > 0.0
    })
    .await;
    // The link heals: the replica ends equal to the source.
    proxy
        .chaos
        .store(false, std::sync::atomic::Ordering::Relaxed);
    let dst = replica.client();
    mirrored(
        &src,
        &dst,
        180,
        "the replica equals the source after the link heals",
    )
    .await;
    assert_eq!(contents(&dst, "mirror").await.len(), 500 - 6);
    assert_no_panic(&replica);
    assert_no_panic(&source);
}
