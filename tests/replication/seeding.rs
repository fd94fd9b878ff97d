//! Seeding: a bucket carried on disk, then the rule sends only the delta.

use super::*;

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
