//! Mode "cloud": segments in an S3 bucket through OpenDAL (`backend = "s3"`), against
//! a real S3 server (s3s-fs) on 127.0.0.1. Objects, multipart and copies round-trip
//! and survive a restart with nothing on the local disk; gc deletes segment objects
//! in the bucket; an orphan object is found by listing and removed; a corrupted
//! object is detected, never served.

mod common;

use common::*;

/// A hoard whose segments live in `store`'s bucket `segs` under `site-a`.
fn cloud_hoard(store: &S3Fs, dir: &tempfile::TempDir) -> Server {
    let cfg = store.hoard_config(dir.path(), "segs", "site-a");
    Server::start_with(&["--config", cfg.to_str().unwrap()])
}

fn segment_objects(store: &S3Fs) -> Vec<std::path::PathBuf> {
    files_below(&store.bucket_dir("segs").join("site-a").join("segments"))
}

#[tokio::test]
async fn objects_live_in_the_bucket_and_survive_a_restart() {
    let store = S3Fs::start("segs");
    let dir = tempfile::tempdir().unwrap();
    let mut s = cloud_hoard(&store, &dir);
    let c = s.client();
    c.create_bucket().bucket("data").send().await.unwrap();
    let big = random_bytes(1, 20 << 20);
    put_bytes(&c, "data", "big", big.clone()).await;
    let parts = vec![random_bytes(2, 5 << 20), random_bytes(3, 1 << 20)];
    put_multipart(&c, "data", "parts", &parts).await;
    c.copy_object()
        .bucket("data")
        .key("copy")
        .copy_source("data/big")
        .send()
        .await
        .unwrap();
    let whole_parts = parts.concat();
    for (key, want) in [("big", &big), ("parts", &whole_parts), ("copy", &big)] {
        assert!(get_bytes(&c, "data", key).await == *want, "{key}");
    }
    // 26 MiB of unique data: several 4 MiB segments, all in the bucket, none local.
    let objects = segment_objects(&store);
    assert!(objects.len() >= 6, "{objects:?}");
    assert!(!s.data_dir().join("segments").exists());
    let r = stats(&s).await;
    assert_eq!(r.total.segments as usize, objects.len());

    s.restart();
    let c = s.client();
    for (key, want) in [("big", &big), ("parts", &whole_parts), ("copy", &big)] {
        assert!(
            get_bytes(&c, "data", key).await == *want,
            "{key} after restart"
        );
    }
    let ranged = c
        .get_object()
        .bucket("data")
        .key("big")
        .range("bytes=9000000-9000999")
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert_eq!(&ranged[..], &big[9_000_000..9_001_000]);
    let report = admin(&s).verify(None, false).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.segments_checked as usize, objects.len());
    assert_no_panic(&s);
}

#[tokio::test]
async fn gc_orphans_and_corruption_are_handled_in_the_bucket() {
    let store = S3Fs::start("segs");
    let dir = tempfile::tempdir().unwrap();
    let mut s = cloud_hoard(&store, &dir);
    let c = s.client();
    c.create_bucket().bucket("data").send().await.unwrap();
    put_bytes(&c, "data", "gone", random_bytes(10, 12 << 20)).await;
    let kept = random_bytes(11, 12 << 20);
    put_bytes(&c, "data", "kept", kept.clone()).await;
    let before = segment_objects(&store);
    c.delete_object()
        .bucket("data")
        .key("gone")
        .send()
        .await
        .unwrap();
    let r = admin(&s)
        .gc(false, Some(std::time::Duration::ZERO))
        .await
        .unwrap();
    assert!(r.segments_deleted >= 2, "{r:?}");
    let after = segment_objects(&store);
    assert_eq!(after.len(), before.len() - r.segments_deleted as usize);
    assert!(get_bytes(&c, "data", "kept").await == kept);

    // An object no row names, with the id of a segment gc deleted: what a PUT that
    // was acknowledged but never committed leaves behind.
    let gone_id = before
        .iter()
        .find(|p| !after.contains(p))
        .expect("a deleted segment")
        .clone();
    std::fs::copy(&after[0], &gone_id).unwrap();
    let report = admin(&s).verify(None, false).await.unwrap();
    let orphan = u64::from_str_radix(gone_id.file_name().unwrap().to_str().unwrap(), 16).unwrap();
    assert_eq!(report.orphan_segments, vec![orphan], "{report:?}");
    // Of an earlier run after a restart: the next pass removes it.
    s.restart();
    let r = admin(&s)
        .gc(false, Some(std::time::Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(r.orphans_removed, 1, "{r:?}");
    assert!(!gone_id.exists());

    // Flipped bytes in a segment object: detected by verify, never served.
    let victim = segment_objects(&store)[0].clone();
    flip_byte(&victim, 200);
    let c = s.client();
    let got = try_get_bytes(&c, "data", "kept").await;
    assert!(got.is_err(), "a corrupted chunk was served");
    let report = admin(&s).verify(None, false).await.unwrap();
    assert!(!report.corrupt_chunks.is_empty(), "{report:?}");
    assert!(
        report.damaged_objects.iter().any(|d| d.key == "kept"),
        "{report:?}"
    );
    assert_no_panic(&s);
}

#[tokio::test]
async fn an_unreachable_bucket_fails_fast_with_503_stores_nothing_and_heals() {
    let mut store = S3Fs::start("segs");
    let dir = tempfile::tempdir().unwrap();
    let s = cloud_hoard(&store, &dir);
    let c = s.client();
    c.create_bucket().bucket("data").send().await.unwrap();
    let before = random_bytes(20, 6 << 20);
    put_bytes(&c, "data", "before", before.clone()).await;
    store.stop();

    let started = std::time::Instant::now();
    let put = c
        .put_object()
        .bucket("data")
        .key("during")
        .body(aws_sdk_s3::primitives::ByteStream::from(random_bytes(
            21,
            6 << 20,
        )))
        .send()
        .await;
    let err = put.expect_err("a PUT with the segment store down succeeded");
    assert_eq!(status_of(&err), 503, "{err:?}");
    assert_eq!(code_of(&err), "SlowDown");
    let got = c.get_object().bucket("data").key("before").send().await;
    let err = got.expect_err("a GET with the segment store down succeeded");
    assert_eq!(status_of(&err), 503, "{err:?}");
    // The SDK retries 503s itself; the server answered each within the timeouts.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(120),
        "the requests hung for {:?}",
        started.elapsed()
    );
    let listed = c.list_objects_v2().bucket("data").send().await.unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["before"], "a failed PUT became visible");

    // Back up: reads and writes work again, nothing was half written.
    store.restart();
    assert!(get_bytes(&c, "data", "before").await == before);
    let after = random_bytes(22, 6 << 20);
    put_bytes(&c, "data", "after", after.clone()).await;
    assert!(get_bytes(&c, "data", "after").await == after);
    let report = admin(&s).verify(None, false).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_no_panic(&s);
}

#[tokio::test]
async fn kill_9_mid_upload_leaves_the_previous_version_and_only_debris_the_cleaner_removes() {
    let store = S3Fs::start("segs");
    let dir = tempfile::tempdir().unwrap();
    let mut s = cloud_hoard(&store, &dir);
    let c = s.client();
    c.create_bucket().bucket("crash").send().await.unwrap();
    let v1 = random_bytes(30, 6 << 20);
    put_bytes(&c, "crash", "key", v1.clone()).await;
    let total = 32usize << 20;
    let v2 = random_bytes(31, total);
    for sent in [5usize << 20, 20 << 20] {
        let conn = start_partial_put(&s, "/crash/key", &v2, sent).await;
        // Segments of the body are PUT into the bucket meanwhile.
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
        s.kill9();
        drop(conn);
        s.restart();
        let c = s.client();
        assert!(
            get_bytes(&c, "crash", "key").await == v1,
            "killed at byte {sent}"
        );
        let report = admin(&s).verify(None, false).await.unwrap();
        assert!(report.is_clean(), "killed at byte {sent}: {report:?}");
    }
    // What the killed uploads wrote is debris of an earlier run: one pass removes it
    // all, and the bucket holds only what the surviving version needs.
    let r = admin(&s)
        .gc(false, Some(std::time::Duration::ZERO))
        .await
        .unwrap();
    assert!(
        r.segments_deleted + r.orphans_removed > 0,
        "the killed uploads left nothing to clean: {r:?}"
    );
    let report = admin(&s).verify(None, false).await.unwrap();
    assert!(report.orphan_segments.is_empty(), "{r:?} {report:?}");
    assert_eq!(
        segment_objects(&store).len() as u64,
        stats(&s).await.total.segments
    );
    assert!(get_bytes(&s.client(), "crash", "key").await == v1);
    assert_no_panic(&s);
}
