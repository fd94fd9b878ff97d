//! Two-level dedup: content-defined chunks stored once, per-bucket chunking,
//! compression, and reference counts that match the committed manifests.

mod common;

use aws_sdk_s3::primitives::ByteStream;
use common::*;
use hoard::admin_api::CreateBucketRequest;

const MIB: usize = 1024 * 1024;

fn write_file(dir: &std::path::Path, name: &str, data: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

#[tokio::test]
async fn the_same_gigabyte_under_two_keys_is_stored_once() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("twice").send().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gig");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let mut buf = vec![0u8; 8 * MIB];
        for i in 0..128 {
            fill_random(1000 + i, &mut buf);
            f.write_all(&buf).unwrap();
        }
    }
    let size = 1024 * MIB as u64;
    for key in ["first", "second"] {
        c.put_object()
            .bucket("twice")
            .key(key)
            .body(ByteStream::from_path(&path).await.unwrap())
            .send()
            .await
            .unwrap();
    }
    let r = stats(&s).await;
    assert_eq!(r.total.logical_bytes, 2 * size);
    let stored = r.total.stored_bytes;
    assert!(
        stored > size && stored < size + size / 50,
        "stored {stored} for 2 x {size} identical bytes"
    );
    assert!(
        r.total.dedup_ratio > 1.95,
        "dedup ratio {}",
        r.total.dedup_ratio
    );
    let head = c
        .head_object()
        .bucket("twice")
        .key("second")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(size as i64));
}

#[tokio::test]
async fn an_insertion_in_the_middle_stores_only_the_changed_chunks() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("shift").send().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let base = random_bytes(77, 64 * MIB);
    let mut edited = base[..32 * MIB + 12345].to_vec();
    edited.extend_from_slice(&random_bytes(78, 100));
    edited.extend_from_slice(&base[32 * MIB + 12345..]);
    let p1 = write_file(dir.path(), "v1", &base);
    let p2 = write_file(dir.path(), "v2", &edited);
    c.put_object()
        .bucket("shift")
        .key("v1")
        .body(ByteStream::from_path(&p1).await.unwrap())
        .send()
        .await
        .unwrap();
    let before = stats(&s).await.total.stored_bytes;
    c.put_object()
        .bucket("shift")
        .key("v2")
        .body(ByteStream::from_path(&p2).await.unwrap())
        .send()
        .await
        .unwrap();
    let after = stats(&s).await.total.stored_bytes;
    assert!(
        after - before < MIB as u64,
        "a 100-byte insertion stored {} more bytes",
        after - before
    );
    assert!(get_bytes(&c, "shift", "v2").await == edited);
    assert!(get_bytes(&c, "shift", "v1").await == base);
}

#[tokio::test]
async fn per_bucket_chunk_size_from_admin_api_and_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("hoard.toml");
    std::fs::write(&cfg, "[buckets.configured]\nchunking = { avg = 1048576 }\n").unwrap();
    let s = Server::start_with(&["--config", cfg.to_str().unwrap()]);
    let c = s.client();
    let a = admin(&s);
    let made = a
        .create_bucket(
            "bigchunks",
            &CreateBucketRequest {
                chunk_avg: Some(1024 * 1024),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (made.chunk_min, made.chunk_avg, made.chunk_max),
        (256 * 1024, 1024 * 1024, 4 * 1024 * 1024)
    );
    let bad = a
        .create_bucket(
            "toosmall",
            &CreateBucketRequest {
                chunk_avg: Some(4096),
                ..Default::default()
            },
        )
        .await;
    assert!(bad.is_err(), "an average below 16 KiB is refused");
    c.create_bucket().bucket("configured").send().await.unwrap();
    c.create_bucket().bucket("defaults").send().await.unwrap();
    let data = random_bytes(5, 16 * MIB);
    for b in ["bigchunks", "configured", "defaults"] {
        put_bytes(&c, b, "obj", data.clone()).await;
    }
    let r = stats(&s).await;
    let chunks = |name: &str| {
        r.buckets
            .iter()
            .find(|b| b.name == name)
            .unwrap()
            .unique_chunks
    };
    assert!(
        chunks("bigchunks") < 40,
        "1 MiB chunks: {}",
        chunks("bigchunks")
    );
    assert!(
        chunks("defaults") > 150,
        "64 KiB chunks: {}",
        chunks("defaults")
    );
    // The two 1 MiB buckets share their chunks: the second one stored none.
    assert_eq!(chunks("configured"), 0);
    for b in ["bigchunks", "configured", "defaults"] {
        assert!(get_bytes(&c, b, "obj").await == data);
    }
}

#[tokio::test]
async fn compressible_data_is_compressed_and_reads_back() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("text").send().await.unwrap();
    let mut text = Vec::new();
    let mut n = 0u64;
    while text.len() < 8 * MIB {
        text.extend_from_slice(
            format!(
                "{n:08} INFO backup job wrote block {} of volume vol{}\n",
                n * 7919 % 100_003,
                n % 13
            )
            .as_bytes(),
        );
        n += 1;
    }
    put_bytes(&c, "text", "log", text.clone()).await;
    let r = stats(&s).await;
    assert!(
        r.total.compression_ratio > 2.0,
        "compression ratio {}",
        r.total.compression_ratio
    );
    assert!(get_bytes(&c, "text", "log").await == text);
}

#[tokio::test]
async fn reference_counts_match_manifests_after_overwrites_and_deletes() {
    let mut s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("refs").send().await.unwrap();
    // A paused replication rule keeps the bucket's outbox events where they are
    // (without a rule, the sender drops them), so the test can read them at the end.
    let (replica, key) = replica_with_key(&[]);
    let ca = replica.ca_pem().display().to_string();
    let (ok, text) = add_rule_for(&s, "refs", &replica, &key, &["--target-ca", &ca]);
    assert!(ok, "{text}");
    let (ok, text) = cli(&s, &["replication", "pause", "refs"]);
    assert!(ok, "{text}");
    let shared = random_bytes(1, 6 * MIB);
    // Repeated chunks within one object, shared chunks across objects, overwrites and deletes.
    let mut doubled = shared.clone();
    doubled.extend_from_slice(&shared);
    put_bytes(&c, "refs", "a", shared.clone()).await;
    put_bytes(&c, "refs", "b", doubled.clone()).await;
    put_bytes(&c, "refs", "c", random_bytes(2, 3 * MIB)).await;
    put_bytes(&c, "refs", "c", random_bytes(3, 3 * MIB)).await;
    put_bytes(&c, "refs", "tiny", b"inline".to_vec()).await;
    c.delete_object()
        .bucket("refs")
        .key("a")
        .send()
        .await
        .unwrap();
    c.delete_object()
        .bucket("refs")
        .key("nothing-here")
        .send()
        .await
        .unwrap();
    assert!(get_bytes(&c, "refs", "b").await == doubled);
    assert!(s.stop(), "clean shutdown");

    let meta = s.meta();
    let mismatches = meta.audit_refs_blocking().unwrap();
    assert!(
        mismatches.is_empty(),
        "reference counts disagree with manifests: {mismatches:?}"
    );
    // Exactly one outbox event per committed change, in commit order: five PUTs and
    // one DELETE of an existing key (deleting an absent key commits nothing).
    let events = meta.outbox_events(0, 1000).await.unwrap();
    let summary: Vec<(String, bool)> = events
        .iter()
        .map(|(_, e)| {
            (
                e.key.clone(),
                matches!(e.kind, hoard::meta::EventKind::Put { .. }),
            )
        })
        .collect();
    let want: Vec<(String, bool)> = [
        ("a", true),
        ("b", true),
        ("c", true),
        ("c", true),
        ("tiny", true),
        ("a", false),
    ]
    .iter()
    .map(|(k, p)| (k.to_string(), *p))
    .collect();
    assert_eq!(summary, want);
    let seqs: Vec<u64> = events.iter().map(|(s, _)| *s).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "sequence numbers are gapless: {seqs:?}"
    );
}
