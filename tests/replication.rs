//! Replication rules and the hello between two real hoards on 127.0.0.1: a rule is
//! stored only after its replica answered; refusals for an untrusted certificate, a
//! wrong key and an incompatible protocol; read-only replica buckets and promotion.

mod common;

use common::*;

/// `hoard replication add` on `source`'s bucket `data` towards `replica`'s `mirror`.
fn add_rule(source: &Server, replica: &Server, key: &Key, trust: &[&str]) -> (bool, String) {
    add_rule_for(source, "data", replica, key, trust)
}

fn source_with_bucket() -> Server {
    let source = Server::start();
    let (ok, text) = cli(&source, &["bucket", "create", "data"]);
    assert!(ok, "{text}");
    source
}

fn server_fingerprint(s: &Server) -> String {
    let data_dir = s.data_dir().display().to_string();
    let (ok, text) = cli(s, &["cert", "show", "--data-dir", &data_dir]);
    assert!(ok, "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix("server SHA-256 fingerprint: "))
        .expect("fingerprint line")
        .trim()
        .to_owned()
}

fn rules(source: &Server) -> String {
    let (ok, text) = cli(source, &["replication", "list"]);
    assert!(ok, "{text}");
    text
}

#[tokio::test]
async fn a_rule_is_stored_after_the_hello_and_the_replica_bucket_turns_read_only() {
    let (replica, key) = replica_with_key(&[]);
    let source = source_with_bucket();
    let ca = replica.ca_pem().display().to_string();

    let (ok, text) = add_rule(
        &source,
        &replica,
        &key,
        &[
            "--target-ca",
            &ca,
            "--schedule",
            "22:00-06:00",
            "--bandwidth",
            "50MiB/s",
        ],
    );
    assert!(ok, "{text}");
    assert!(text.contains("replica answered: hoard"), "{text}");
    let listed = rules(&source);
    assert!(
        listed.contains("data -> https://") && listed.contains("mirror"),
        "{listed}"
    );
    assert!(
        listed.contains("22:00-06:00") && listed.contains("50.00 MiB/s"),
        "{listed}"
    );
    assert!(!listed.contains(&key.secret), "{listed}");
    assert!(replica.log().contains("replication hello accepted"));

    // The replica bucket is read-only to everyone, root included; reads work.
    let root = replica.client();
    refused!(
        root.put_object()
            .bucket("mirror")
            .key("x")
            .body(aws_sdk_s3::primitives::ByteStream::from_static(b"x")),
        "AccessDenied",
        403
    );
    refused!(
        root.delete_object().bucket("mirror").key("x"),
        "AccessDenied",
        403
    );
    refused!(root.delete_bucket().bucket("mirror"), "AccessDenied", 403);
    let listed = root
        .list_objects_v2()
        .bucket("mirror")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.key_count(), Some(0));
    // The replication key is for replication only.
    let ca_pem = std::fs::read(replica.ca_pem()).unwrap();
    let link_as_s3 = tls_client_as(&replica.endpoint(), Some(&ca_pem), &key.access, &key.secret);
    refused!(
        link_as_s3.list_objects_v2().bucket("mirror"),
        "AccessDenied",
        403
    );

    // A pinned fingerprint works as well as the CA; pause, resume, remove.
    let fp = server_fingerprint(&replica);
    let (ok, text) = add_rule(&source, &replica, &key, &["--target-fingerprint", &fp]);
    assert!(ok, "{text}");
    assert!(
        rules(&source).contains("fingerprint"),
        "the rule was replaced"
    );
    let (ok, text) = cli(&source, &["replication", "pause", "data"]);
    assert!(ok && text.contains("PAUSED"), "{text}");
    let (ok, text) = cli(&source, &["replication", "resume", "data"]);
    assert!(ok && !text.contains("PAUSED"), "{text}");
    let (ok, text) = cli(&source, &["replication", "remove", "data"]);
    assert!(ok, "{text}");
    assert!(rules(&source).contains("no replication rules"));
    let (ok, text) = cli(&source, &["replication", "remove", "data"]);
    assert!(
        !ok && text.contains("ReplicationConfigurationNotFoundError"),
        "{text}"
    );

    // Promotion makes the bucket writable; a stale source cannot take it back.
    let (ok, text) = cli(&replica, &["bucket", "promote", "mirror"]);
    assert!(ok, "{text}");
    put_bytes(&root, "mirror", "after-promotion", b"mine now".to_vec()).await;
    let (ok, text) = add_rule(&source, &replica, &key, &["--target-ca", &ca]);
    assert!(!ok && text.contains("BucketNotEmpty"), "{text}");
    assert!(rules(&source).contains("no replication rules"));
    let (ok, text) = cli(&replica, &["bucket", "promote", "mirror"]);
    assert!(!ok && text.contains("not a replica"), "{text}");
    assert_no_panic(&replica);
    assert_no_panic(&source);
}

#[tokio::test]
async fn untrusted_certificates_wrong_keys_and_incompatible_versions_are_refused() {
    let (replica, key) = replica_with_key(&[]);
    let source = source_with_bucket();
    let ca = replica.ca_pem().display().to_string();

    // Another hoard's CA, and a wrong pinned fingerprint: the certificate is refused.
    let stranger = Server::start_with(&["--tls"]);
    let other_ca = stranger.ca_pem().display().to_string();
    let (ok, text) = add_rule(&source, &replica, &key, &["--target-ca", &other_ca]);
    assert!(!ok && text.contains("InvalidReplicationTarget"), "{text}");
    assert!(text.to_lowercase().contains("certificate"), "{text}");
    let wrong_fp = "00".repeat(32);
    let (ok, text) = add_rule(
        &source,
        &replica,
        &key,
        &["--target-fingerprint", &wrong_fp],
    );
    assert!(!ok && text.to_lowercase().contains("certificate"), "{text}");

    // A wrong secret, and a key without the grant on the target bucket.
    let wrong = Key {
        access: key.access.clone(),
        secret: "not-the-secret".into(),
    };
    let (ok, text) = add_rule(&source, &replica, &wrong, &["--target-ca", &ca]);
    assert!(!ok && text.contains("SignatureDoesNotMatch"), "{text}");
    let elsewhere = add_user(&replica, "other-link", &["elsewhere=replication"]);
    let (ok, text) = add_rule(&source, &replica, &elsewhere, &["--target-ca", &ca]);
    assert!(!ok && text.contains("AccessDenied"), "{text}");

    // Bad input never reaches the target.
    let (ok, text) = add_rule(
        &source,
        &replica,
        &key,
        &["--target-ca", &ca, "--schedule", "25:00-26:00"],
    );
    assert!(!ok && text.contains("window"), "{text}");
    let (ok, text) = add_rule(&source, &replica, &key, &["--target-fingerprint", "abc"]);
    assert!(!ok && text.contains("fingerprint"), "{text}");
    assert!(
        rules(&source).contains("no replication rules"),
        "nothing was stored"
    );
    // None of those made the bucket a replica.
    put_bytes(&replica.client(), "mirror", "still-writable", b"w".to_vec()).await;
    let (ok, text) = cli(&replica, &["bucket", "create", "mirror2"]);
    assert!(ok, "{text}");
    let (ok, text) = cli(
        &replica,
        &["user", "grant", "from-source", "mirror2", "replication"],
    );
    assert!(ok, "{text}");

    // A replica that speaks another protocol version: refused on both sides, logged,
    // counted, nothing stored, the bucket left writable.
    let (future, fkey) = replica_with_key(&[("HOARD_REPLICATION_PROTOCOL", "99")]);
    let fca = future.ca_pem().display().to_string();
    let (ok, text) = add_rule(&source, &future, &fkey, &["--target-ca", &fca]);
    assert!(
        !ok && text.contains("incompatible replication protocol"),
        "{text}"
    );
    assert!(text.contains("99..=99"), "{text}");
    assert!(rules(&source).contains("no replication rules"));
    for (s, side) in [(&future, "replica"), (&source, "source")] {
        let m = metrics_text(s).await;
        let line = format!("hoard_replication_hello_refused_total{{side=\"{side}\"}} ");
        assert_eq!(metric(&m, &line), Some(1.0), "{side}: {m}");
        assert!(
            s.log().contains("replication hello refused"),
            "{side} logs it"
        );
    }
    put_bytes(&future.client(), "mirror", "writable", b"w".to_vec()).await;
    assert_no_panic(&future);
    assert_no_panic(&source);
}

/// Waits until `check` holds, for up to `secs`.
async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {secs} s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// (key, bytes) of every object in a bucket.
async fn contents(c: &aws_sdk_s3::Client, bucket: &str) -> Vec<(String, Vec<u8>)> {
    let listed = c.list_objects_v2().bucket(bucket).send().await.unwrap();
    let mut out = Vec::new();
    for o in listed.contents() {
        let key = o.key().unwrap().to_owned();
        let body = get_bytes(c, bucket, &key).await;
        out.push((key, body));
    }
    out
}

async fn sent_bytes(s: &Server) -> f64 {
    metric(
        &metrics_text(s).await,
        "hoard_replication_sent_bytes_total ",
    )
    .unwrap_or(0.0)
}

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

    eventually(60, "the replica equals the source", || async {
        contents(&dst, "mirror").await == contents(&src, "data").await
    })
    .await;
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
    eventually(90, "the replica catches up after it comes back", || async {
        contents(&dst, "mirror").await == contents(&src, "data").await
    })
    .await;
    assert_no_panic(&replica);
    assert_no_panic(&source);
}

/// (key, version id, ETag, size, latest, delete marker) of every version in a bucket.
async fn versions(
    c: &aws_sdk_s3::Client,
    bucket: &str,
) -> Vec<(String, String, String, i64, bool, bool)> {
    let listed = c
        .list_object_versions()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    let mut out: Vec<_> = listed
        .versions()
        .iter()
        .map(|v| {
            (
                v.key().unwrap().to_owned(),
                v.version_id().unwrap().to_owned(),
                v.e_tag().unwrap_or("").to_owned(),
                v.size().unwrap_or(0),
                v.is_latest().unwrap(),
                false,
            )
        })
        .collect();
    out.extend(listed.delete_markers().iter().map(|m| {
        (
            m.key().unwrap().to_owned(),
            m.version_id().unwrap().to_owned(),
            String::new(),
            0,
            m.is_latest().unwrap(),
            true,
        )
    }));
    out.sort();
    out
}

/// PUTs into bucket `data`; returns the new version's id.
async fn put_version(c: &aws_sdk_s3::Client, key: &str, body: &[u8]) -> String {
    let out = c
        .put_object()
        .bucket("data")
        .key(key)
        .body(body.to_vec().into())
        .send()
        .await
        .unwrap();
    out.version_id().unwrap().to_owned()
}

async fn tags_of(c: &aws_sdk_s3::Client, bucket: &str, key: &str, v: &str) -> Vec<String> {
    let t = c
        .get_object_tagging()
        .bucket(bucket)
        .key(key)
        .version_id(v)
        .send()
        .await
        .unwrap();
    t.tag_set()
        .iter()
        .map(|t| format!("{}={}", t.key(), t.value()))
        .collect()
}

async fn part_bytes(c: &aws_sdk_s3::Client, bucket: &str, key: &str, n: i32) -> (Vec<u8>, i32) {
    let got = c
        .get_object()
        .bucket(bucket)
        .key(key)
        .part_number(n)
        .send()
        .await
        .unwrap();
    let parts = got.parts_count().unwrap_or(0);
    (got.body.collect().await.unwrap().to_vec(), parts)
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

async fn replication_status(c: &aws_sdk_s3::Client, bucket: &str, key: &str) -> String {
    let head = c
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    head.replication_status()
        .map_or("none".to_owned(), |s| s.as_str().to_owned())
}

/// The newest segment file of a server (written by its last upload).
fn newest_segment(s: &Server) -> std::path::PathBuf {
    segment_files(s).pop().unwrap().1
}

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
    eventually(60, "the keys after the bad one move on", || async {
        dst.head_object()
            .bucket("mirror")
            .key("good2")
            .send()
            .await
            .is_ok()
    })
    .await;
    assert_eq!(replication_status(&src, "data", "good1").await, "COMPLETED");
    assert_eq!(replication_status(&src, "data", "good2").await, "COMPLETED");
    assert_eq!(replication_status(&src, "data", "bad").await, "FAILED");
    assert_eq!(replication_status(&dst, "mirror", "good1").await, "REPLICA");
    let missing = dst.head_object().bucket("mirror").key("bad").send().await;
    assert_eq!(status_of(&missing.unwrap_err()), 404);
    let text = status(&source);
    assert!(
        text.contains("failed: 1 key(s)")
            && text.contains("\"bad\"")
            && text.contains("failed verification"),
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

/// A copy of `data` with `edits` scattered 4 KiB overwrites and `inserts` 1000-byte
/// insertions (which shift every later offset).
fn edited_copy(data: &[u8], edits: usize, inserts: usize) -> Vec<u8> {
    let mut out = data.to_vec();
    let step = data.len() / edits;
    for i in 0..edits {
        let at = i * step + (i * 7919) % (step - 4096);
        out[at..at + 4096].copy_from_slice(&random_bytes(1000 + i as u64, 4096));
    }
    let step = out.len() / (inserts + 1);
    for i in (1..=inserts).rev() {
        let at = i * step;
        out.splice(at..at, random_bytes(5000 + i as u64, 1000));
    }
    out
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

/// Every file of a directory with its bytes.
fn files_in(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|f| {
            let f = f.unwrap();
            (
                f.file_name().to_string_lossy().into_owned(),
                std::fs::read(f.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_carries_the_bucket_and_the_rule_then_sends_only_the_delta() {
    use aws_sdk_s3::types::BucketVersioningStatus;
    let (replica, key) = replica_with_key(&[]);
    let source = source_with_bucket();
    let src = source.client();
    let dst = replica.client();
    set_versioning(&src, "data", BucketVersioningStatus::Enabled).await;
    let twin = random_bytes(9, 8 << 20);
    put_bytes(&src, "data", "twin-a", twin.clone()).await;
    put_bytes(&src, "data", "twin-b", twin.clone()).await;
    put_bytes(&src, "data", "confidential-name", b"v1".to_vec()).await;
    put_bytes(&src, "data", "confidential-name", b"v2".to_vec()).await;
    src.delete_object()
        .bucket("data")
        .key("confidential-name")
        .send()
        .await
        .unwrap();
    for i in 0..250u64 {
        put_bytes(&src, "data", &format!("k/{i:03}"), random_bytes(i, 20_000)).await;
    }
    // A multipart object travels a part at a time: two parts staged, then the last.
    let parts = [
        random_bytes(31, 5 << 20),
        random_bytes(32, 5 << 20),
        random_bytes(33, 1 << 20),
    ];
    put_multipart(&src, "data", "multi", &parts).await;
    let work = tempfile::tempdir().unwrap();
    let seed = work.path().join("seed");
    let pass = work.path().join("pass");
    std::fs::write(&pass, "correct horse battery staple\n").unwrap();
    let (seed_s, pass_s) = (seed.display().to_string(), pass.display().to_string());
    let export = [
        "seed",
        "export",
        "--bucket",
        "data",
        "--out",
        &seed_s,
        "--passphrase-file",
        &pass_s,
    ];

    // Interrupted after its first step, the export resumes where it stopped.
    let (ok, text) = cli(&source, &[&export[..], &["--max-steps", "1"]].concat());
    assert!(ok && text.contains("stopped after 1 step(s)"), "{text}");
    let (ok, text) = cli(&source, &export);
    assert!(ok && text.contains("seed of data complete"), "{text}");
    assert!(
        text.contains("step 3: 254 key(s), 256 version(s)"),
        "{text}"
    );
    let files = files_in(&seed);
    let chunk_bytes: usize = files
        .iter()
        .filter(|(n, _)| n.ends_with(".chunks"))
        .map(|(_, b)| b.len())
        .sum();
    assert!(
        chunk_bytes < (8 << 20) + (11 << 20) + 250 * 20_000 + (1 << 20),
        "the twins' chunks are in the seed once: {chunk_bytes} bytes"
    );
    for (name, bytes) in files.iter().filter(|(n, _)| n.ends_with("objects")) {
        let hit = bytes.windows(17).any(|w| w == b"confidential-name");
        assert!(!hit, "{name} shows a key in the clear");
    }

    // Refusals: a wrong passphrase, a bucket holding objects of its own.
    let wrong = work.path().join("wrong");
    std::fs::write(&wrong, "tr0ub4dor&3").unwrap();
    let wrong_s = wrong.display().to_string();
    let import = |bucket: &'static str, pf: &str| {
        let args = [
            "seed",
            "import",
            "--in",
            &seed_s,
            "--bucket",
            bucket,
            "--passphrase-file",
            pf,
        ];
        cli(&replica, &args)
    };
    let (ok, text) = import("mirror", &wrong_s);
    assert!(!ok && text.contains("passphrase does not open"), "{text}");
    // An altered file of a sealed seed is refused.
    let tampered = work.path().join("tampered");
    std::fs::create_dir(&tampered).unwrap();
    for (name, mut bytes) in files.clone() {
        if name == "00000000-0000.chunks" {
            bytes[100] ^= 0x01;
        }
        std::fs::write(tampered.join(&name), bytes).unwrap();
    }
    let (ok, text) = cli(&replica, &["bucket", "create", "other"]);
    assert!(ok, "{text}");
    let t = tampered.display().to_string();
    let args = [
        "seed",
        "import",
        "--in",
        &t,
        "--bucket",
        "other",
        "--passphrase-file",
        &pass_s,
    ];
    let (ok, text) = cli(&replica, &args);
    assert!(!ok && text.contains("does not open"), "{text}");
    let (ok, text) = cli(&replica, &["bucket", "create", "own"]);
    assert!(ok, "{text}");
    put_bytes(&dst, "own", "mine", b"mine".to_vec()).await;
    let (ok, text) = import("own", &pass_s);
    assert!(!ok && text.contains("holds objects of its own"), "{text}");
    assert!(versions(&dst, "mirror").await.is_empty());

    let (ok, text) = import("mirror", &pass_s);
    assert!(ok && text.contains("seed imported into mirror"), "{text}");
    assert_eq!(versions(&dst, "mirror").await, versions(&src, "data").await);
    assert_eq!(get_bytes(&dst, "mirror", "twin-b").await, twin);
    assert_eq!(
        part_bytes(&dst, "mirror", "multi", 2).await,
        (parts[1].clone(), 3)
    );
    // The staged parts joined their version: counts agree with the manifests.
    let (ok, text) = cli(&replica, &["verify"]);
    assert!(ok, "{text}");
    let refused = dst
        .put_object()
        .bucket("mirror")
        .key("x")
        .body(b"x".to_vec().into())
        .send()
        .await;
    assert_eq!(
        status_of(&refused.unwrap_err()),
        403,
        "a seeded bucket is a replica"
    );

    // The rule then sends what changed since the export, and little else.
    put_bytes(&src, "data", "after-seed", random_bytes(99, 1 << 20)).await;
    let ca = replica.ca_pem().display().to_string();
    let (ok, text) = add_rule(&source, &replica, &key, &["--target-ca", &ca]);
    assert!(ok, "{text}");
    eventually(60, "the replica equals the source", || async {
        versions(&dst, "mirror").await == versions(&src, "data").await
            && !status(&source).contains("resync of existing objects: pending")
            && status(&source).contains("resync of existing objects: done")
    })
    .await;
    let sent = sent_bytes(&source).await;
    assert!(
        sent < (1 << 20) as f64 + 200_000.0,
        "after a seed, {sent} bytes sent for a 1 MiB change"
    );
    assert_eq!(
        get_bytes(&dst, "mirror", "after-seed").await,
        random_bytes(99, 1 << 20)
    );
    assert_no_panic(&replica);
    assert_no_panic(&source);
}

fn replication_config(
    arn: &str,
    status: aws_sdk_s3::types::ReplicationRuleStatus,
    prefix: &str,
    rules: usize,
) -> aws_sdk_s3::types::ReplicationConfiguration {
    use aws_sdk_s3::types::*;
    let rule = || {
        ReplicationRule::builder()
            .status(status.clone())
            .priority(1)
            .filter(ReplicationRuleFilter::builder().prefix(prefix).build())
            .delete_marker_replication(
                DeleteMarkerReplication::builder()
                    .status(DeleteMarkerReplicationStatus::Enabled)
                    .build(),
            )
            .destination(Destination::builder().bucket(arn).build().unwrap())
            .build()
            .unwrap()
    };
    ReplicationConfiguration::builder()
        .role("")
        .set_rules(Some((0..rules).map(|_| rule()).collect()))
        .build()
        .unwrap()
}

#[tokio::test]
async fn s3_bucket_replication_names_a_configured_target() {
    use aws_sdk_s3::types::ReplicationRuleStatus;
    let (replica, key) = replica_with_key(&[]);
    let source = source_with_bucket();
    let src = source.client();
    let ca = replica.ca_pem().display().to_string();
    let target = replica.endpoint();
    let (ok, text) = cli(
        &source,
        &[
            "replication",
            "target",
            "add",
            "dr-site",
            "--target",
            &target,
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
    assert!(ok && text.contains("ARN: arn:aws:s3:::dr-site"), "{text}");
    assert!(!text.contains(&key.secret), "{text}");
    let get = || src.get_bucket_replication().bucket("data").send();
    let none = get().await.unwrap_err();
    assert_eq!(code_of(&none), "ReplicationConfigurationNotFoundError");

    // Refused, changing nothing: an unknown target, two rules, a prefix filter.
    let put = |cfg| {
        src.put_bucket_replication()
            .bucket("data")
            .replication_configuration(cfg)
            .send()
    };
    let enabled = ReplicationRuleStatus::Enabled;
    let bad = put(replication_config(
        "arn:aws:s3:::nowhere",
        enabled.clone(),
        "",
        1,
    ))
    .await;
    let bad = bad.unwrap_err();
    assert_eq!(
        (status_of(&bad), code_of(&bad).as_str()),
        (400, "InvalidArgument")
    );
    let bad = put(replication_config(
        "arn:aws:s3:::dr-site",
        enabled.clone(),
        "",
        2,
    ))
    .await;
    assert_eq!(code_of(&bad.unwrap_err()), "InvalidRequest");
    let bad = put(replication_config(
        "arn:aws:s3:::dr-site",
        enabled.clone(),
        "logs/",
        1,
    ))
    .await;
    assert_eq!(code_of(&bad.unwrap_err()), "InvalidRequest");
    assert!(get().await.is_err());
    let writer = add_user(&source, "writer", &["data=readwrite"]);
    let denied = client_as(&source, &writer)
        .put_bucket_replication()
        .bucket("data")
        .replication_configuration(replication_config(
            "arn:aws:s3:::dr-site",
            enabled.clone(),
            "",
            1,
        ))
        .send()
        .await;
    assert_eq!(code_of(&denied.unwrap_err()), "AccessDenied");

    put(replication_config(
        "arn:aws:s3:::dr-site",
        enabled.clone(),
        "",
        1,
    ))
    .await
    .unwrap();
    let got = get().await.unwrap();
    let rule = &got.replication_configuration().unwrap().rules()[0];
    assert_eq!(rule.destination().unwrap().bucket(), "arn:aws:s3:::dr-site");
    assert_eq!(rule.status(), &ReplicationRuleStatus::Enabled);
    put_bytes(&src, "data", "via-s3-api", b"replicated".to_vec()).await;
    let dst = replica.client();
    eventually(60, "the object replicates", || async {
        contents(&dst, "mirror").await.len() == 1
    })
    .await;

    // Disabled pauses the rule; DeleteBucketReplication removes it.
    let disabled = ReplicationRuleStatus::Disabled;
    put(replication_config(
        "arn:aws:s3:::dr-site",
        disabled.clone(),
        "",
        1,
    ))
    .await
    .unwrap();
    assert!(rules(&source).contains("PAUSED"), "{}", rules(&source));
    let got = get().await.unwrap();
    assert_eq!(
        got.replication_configuration().unwrap().rules()[0].status(),
        &disabled
    );
    src.delete_bucket_replication()
        .bucket("data")
        .send()
        .await
        .unwrap();
    assert!(rules(&source).contains("no replication rules"));
    assert_eq!(
        code_of(&get().await.unwrap_err()),
        "ReplicationConfigurationNotFoundError"
    );
    let (ok, text) = cli(&source, &["replication", "target", "list"]);
    assert!(ok && text.contains("dr-site"), "{text}");
    let (ok, text) = cli(&source, &["replication", "target", "remove", "dr-site"]);
    assert!(ok, "{text}");
    let (ok, text) = cli(&source, &["replication", "target", "remove", "dr-site"]);
    assert!(!ok && text.contains("NoSuchReplicationTarget"), "{text}");
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

/// "HH:MM-HH:MM" from minutes after midnight UTC (wrapping).
fn window(start: u64, end: u64) -> String {
    let hm = |m: u64| format!("{:02}:{:02}", (m % 1440) / 60, m % 60);
    format!("{}-{}", hm(start), hm(end))
}

fn utc_minute() -> u64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    (secs % 86_400) / 60
}

/// The queue length `hoard replication status` shows.
fn queued(status: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.trim().strip_prefix("queue: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("a queue line")
}

fn status(source: &Server) -> String {
    let (ok, text) = cli(source, &["replication", "status", "data"]);
    assert!(ok, "{text}");
    text
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
    eventually(120, "the manual run copies everything", || async {
        contents(&dst, "mirror").await == contents(&src, "data").await
    })
    .await;
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
    eventually(30, "the change moves inside the window", || async {
        contents(&dst, "mirror").await == contents(&src, "data").await
    })
    .await;
    assert!(status(&source).contains("resync of existing objects: done"));
}

/// Twelve 3 MiB objects `PREFIX/0..12` of new data.
async fn put_twelve(c: &aws_sdk_s3::Client, prefix: &str, seed: u64) {
    for i in 0..12u64 {
        let data = random_bytes(seed + i, 3 << 20);
        put_bytes(c, "data", &format!("{prefix}/{i}"), data).await;
    }
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
    eventually(120, "the replica equals the source", || async {
        contents(&dst, "mirror").await == contents(&src, "data").await
    })
    .await;
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

/// A TCP proxy between source and replica that, while `chaos` is set, cuts
/// connections and stalls traffic at random.
struct FaultProxy {
    addr: std::net::SocketAddr,
    chaos: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl FaultProxy {
    async fn start(upstream: std::net::SocketAddr) -> FaultProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let chaos = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = chaos.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let flag = flag.clone();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let one = pump(cr, sw, flag.clone());
                    let two = pump(sr, cw, flag);
                    // Either direction ending (or being cut) ends the connection.
                    tokio::select! { _ = one => {}, _ = two => {} }
                });
            }
        });
        FaultProxy { addr, chaos }
    }
}

/// Copies one direction; under chaos, each read may cut the connection (2%) or
/// stall it for up to 1.5 s (5%).
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    chaos: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use rand::Rng;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if chaos.load(std::sync::atomic::Ordering::Relaxed) {
            let (roll, stall) = {
                let mut rng = rand::rng();
                (rng.random_range(0..100u32), rng.random_range(100..1500u64))
            };
            if roll < 2 {
                return;
            }
            if roll < 7 {
                tokio::time::sleep(std::time::Duration::from_millis(stall)).await;
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
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
    eventually(
        180,
        "the replica equals the source after the link heals",
        || async { contents(&dst, "mirror").await == contents(&src, "data").await },
    )
    .await;
    assert_eq!(contents(&dst, "mirror").await.len(), 500 - 6);
    assert_no_panic(&replica);
    assert_no_panic(&source);
}
