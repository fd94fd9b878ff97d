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
    // OpenDAL's metrics layer counted one write per segment object in the bucket
    // (and one for the store's marker), and a read of each segment the GETs fetched.
    let m = metrics_text(&s).await;
    let calls = |op: &str| {
        metric(
            &m,
            &format!("hoard_store_opendal_operation_duration_seconds_count{{scheme=\"s3\",namespace=\"segs\",root=\"/site-a/\",operation=\"{op}\"}}"),
        )
        .unwrap_or(0.0)
    };
    assert_eq!(calls("write") as usize, objects.len() + 1, "{m}");
    assert!(calls("read") >= objects.len() as f64, "{m}");

    s.restart();
    let c = s.client();
    for (key, want) in [("big", &big), ("parts", &whole_parts), ("copy", &big)] {
        assert!(
            get_bytes(&c, "data", key).await == *want,
            "{key} after restart"
        );
    }
    let ranged = get_range(&c, "data", "big", "bytes=9000000-9000999").await;
    assert_eq!(&ranged[..], &big[9_000_000..9_001_000]);
    let report = admin(&s).verify(None, false).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.segments_checked as usize, objects.len());
    assert_no_panic(&s);
}

/// A second, unrelated S3 implementation: moto's server keeps the segments.
#[tokio::test]
async fn a_moto_bucket_holds_the_segments_too() {
    let moto = Moto::start("segs").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = moto.hoard_config(dir.path(), "segs", "site-m");
    let mut s = Server::start_with(&["--config", cfg.to_str().unwrap()]);
    let c = s.client();
    c.create_bucket().bucket("data").send().await.unwrap();
    let big = random_bytes(31, 12 << 20);
    put_bytes(&c, "data", "big", big.clone()).await;
    let parts = vec![random_bytes(32, 5 << 20), random_bytes(33, 2 << 20)];
    put_multipart(&c, "data", "parts", &parts).await;
    let segments = moto.keys("segs", "site-m/segments/").await;
    assert!(segments.len() >= 4, "{segments:?}");
    assert!(!s.data_dir().join("segments").exists());

    s.restart();
    let c = s.client();
    assert!(get_bytes(&c, "data", "big").await == big);
    assert!(get_bytes(&c, "data", "parts").await == parts.concat());
    let report = admin(&s).verify(None, false).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.segments_checked as usize, segments.len());

    // Deleting everything and collecting empties the prefix of segments.
    delete_keys(&c, "data", &["big", "parts"]).await;
    let (ok, text) = cli(&s, &["gc", "--grace-period", "0s"]);
    assert!(ok, "{text}");
    assert_eq!(
        moto.keys("segs", "site-m/segments/").await,
        Vec::<String>::new()
    );
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

    // Flipped bytes in a segment object of an object never read (so the restore
    // cache holds none of it): detected by verify, never served.
    let c = s.client();
    let held = segment_objects(&store);
    let victim_data = random_bytes(12, 6 << 20);
    put_bytes(&c, "data", "victim", victim_data.clone()).await;
    let victim = segment_objects(&store)
        .into_iter()
        .find(|p| !held.contains(p))
        .expect("the victim's segment");
    flip_byte(&victim, 200);
    let got = try_get_bytes(&c, "data", "victim").await;
    assert!(got.is_err(), "a corrupted chunk was served");
    let report = admin(&s).verify(None, false).await.unwrap();
    assert!(!report.corrupt_chunks.is_empty(), "{report:?}");
    assert!(
        report.damaged_objects.iter().any(|d| d.key == "victim"),
        "{report:?}"
    );
    // Mended in the bucket, it is read again: the cache kept no copy of the damage.
    flip_byte(&victim, 200);
    assert!(get_bytes(&c, "data", "victim").await == victim_data);
    assert!(get_bytes(&c, "data", "kept").await == kept);
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

/// The chunk ids listed in the trailer of a plain (unsealed) segment object.
fn plain_trailer_ids(segment: &[u8]) -> Vec<[u8; 32]> {
    let footer = &segment[segment.len() - 28..];
    assert_eq!(&footer[20..], b"HOARDEND");
    let n = u32::from_le_bytes(footer[..4].try_into().unwrap()) as usize;
    let start = segment.len() - 28 - n * 45;
    segment[start..segment.len() - 28]
        .chunks_exact(45)
        .map(|e| e[..32].try_into().unwrap())
        .collect()
}

#[tokio::test]
async fn sealed_segments_show_the_bucket_neither_plaintext_nor_chunk_ids_and_a_wrong_key_is_refused()
 {
    let store = S3Fs::start("segs");
    let data = random_bytes(40, 9 << 20);
    // The same object in a plain store (encrypt = false) and a sealed one (the
    // default for an object store), side by side in one bucket.
    let plain_dir = tempfile::tempdir().unwrap();
    let cfg = store.hoard_config(plain_dir.path(), "segs", "plain");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("backend = \"s3\"\n", "backend = \"s3\"\nencrypt = false\n"),
    )
    .unwrap();
    let plain = Server::start_with(&["--config", cfg.to_str().unwrap()]);
    let dir = tempfile::tempdir().unwrap();
    let mut sealed = cloud_hoard(&store, &dir);
    for s in [&plain, &sealed] {
        let c = s.client();
        c.create_bucket().bucket("data").send().await.unwrap();
        put_bytes(&c, "data", "object", data.clone()).await;
    }

    let plain_files = files_below(&store.bucket_dir("segs").join("plain").join("segments"));
    let ids: Vec<[u8; 32]> = plain_files
        .iter()
        .flat_map(|f| plain_trailer_ids(&std::fs::read(f).unwrap()))
        .collect();
    assert!(ids.len() > 50, "{} chunk ids", ids.len());
    let probe = &data[5_000_000..5_000_064];
    assert!(
        plain_files
            .iter()
            .any(|f| std::fs::read(f).unwrap().windows(64).any(|w| w == probe)),
        "the plain store holds the bytes as they are"
    );
    let sealed_files = files_below(&store.bucket_dir("segs").join("site-a"));
    assert!(sealed_files.len() >= 3, "{sealed_files:?}");
    for f in &sealed_files {
        let bytes = std::fs::read(f).unwrap();
        assert!(
            !bytes.windows(64).any(|w| w == probe),
            "{} holds plaintext",
            f.display()
        );
        for id in &ids {
            assert!(
                !bytes.windows(32).any(|w| w == id),
                "{} holds chunk id {}",
                f.display(),
                hex::encode(id)
            );
            let hex_id = hex::encode(id);
            assert!(!bytes.windows(64).any(|w| w == hex_id.as_bytes()));
        }
    }
    // Sealing costs 28 bytes a chunk; dedup within the sealed store works as before.
    let (p, s) = (stats(&plain).await.total, stats(&sealed).await.total);
    assert!(s.stored_bytes > p.stored_bytes, "{s:?} {p:?}");
    assert!(
        s.stored_bytes - p.stored_bytes <= 28 * ids.len() as u64 + 4096,
        "{s:?} {p:?}"
    );
    put_bytes(&sealed.client(), "data", "again", data.clone()).await;
    assert_eq!(stats(&sealed).await.total.stored_bytes, s.stored_bytes);
    assert!(get_bytes(&sealed.client(), "data", "again").await == data);
    let report = admin(&sealed).verify(None, false).await.unwrap();
    assert!(report.is_clean(), "{report:?}");

    // Started with another secrets key, the gateway refuses and says why, instead
    // of serving errors or calling the data corrupt.
    sealed.kill9();
    let said = serve_refused(
        &sealed.data_dir(),
        &["--config", dir.path().join("cloud.toml").to_str().unwrap()],
        &[("HOARD_SECRETS_KEY", &"22".repeat(32))],
    );
    assert!(said.contains("sealed under another secrets key"), "{said}");
    sealed.restart();
    assert!(get_bytes(&sealed.client(), "data", "object").await == data);
    assert_no_panic(&sealed);
}

#[tokio::test]
async fn a_sealed_cloud_store_replicates_to_a_local_replica_and_compacts() {
    let store = S3Fs::start("segs");
    let dir = tempfile::tempdir().unwrap();
    let source = cloud_hoard(&store, &dir);
    let (replica, key) = replica_with_key(&[]);
    let src = source.client();
    src.create_bucket().bucket("data").send().await.unwrap();
    let kept = random_bytes(50, 10 << 20);
    put_bytes(&src, "data", "kept", kept.clone()).await;
    // A slice of each of gone's segments stays: deleting gone leaves them sparse.
    let gone = random_bytes(51, 12 << 20);
    put_bytes(&src, "data", "gone", gone.clone()).await;
    let mut slices = Vec::new();
    for i in 0..3 {
        let slice = gone[i * (4 << 20) + (1 << 20)..][..1 << 20].to_vec();
        put_bytes(&src, "data", &format!("slice-{i}"), slice.clone()).await;
        slices.push(slice);
    }
    let ca = replica.ca_pem().display().to_string();
    let (ok, text) = add_rule_for(&source, "data", &replica, &key, &["--target-ca", &ca]);
    assert!(ok, "{text}");
    let dst = replica.client();
    mirrored(&src, &dst, 60, "the replica equals the source").await;
    // The replica seals under its own key, or not at all: its segments are plain.
    let probe = &kept[7_000_000..7_000_064];
    assert!(
        segment_files(&replica)
            .iter()
            .any(|(_, f)| std::fs::read(f).unwrap().windows(64).any(|w| w == probe))
    );

    // Compaction in the bucket copies sealed chunks into new sealed segments.
    src.delete_object()
        .bucket("data")
        .key("gone")
        .send()
        .await
        .unwrap();
    let r = admin(&source)
        .gc(false, Some(std::time::Duration::ZERO))
        .await
        .unwrap();
    assert!(r.segments_compacted >= 2, "{r:?}");
    assert!(get_bytes(&src, "data", "kept").await == kept);
    for (i, slice) in slices.iter().enumerate() {
        assert!(get_bytes(&src, "data", &format!("slice-{i}")).await == *slice);
    }
    let report = admin(&source).verify(None, false).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_no_panic(&source);
}

#[tokio::test]
async fn the_restore_cache_answers_repeated_reads_and_refetches_a_damaged_entry() {
    let store = S3Fs::start("segs");
    let dir = tempfile::tempdir().unwrap();
    let mut s = cloud_hoard(&store, &dir);
    let c = s.client();
    c.create_bucket().bucket("data").send().await.unwrap();
    let data = random_bytes(95, 12 << 20);
    put_bytes(&c, "data", "restore", data.clone()).await;
    let counter =
        |m: &str, name: &str| metric(m, &format!("hoard_cache_{name}_total ")).unwrap_or(0.0);
    assert!(get_bytes(&c, "data", "restore").await == data);
    let m = metrics_text(&s).await;
    let fetched = counter(&m, "fetched_bytes");
    assert!(fetched >= data.len() as f64, "{m}");
    // Again: every segment from the cache, nothing from the bucket.
    assert!(get_bytes(&c, "data", "restore").await == data);
    let m = metrics_text(&s).await;
    assert_eq!(counter(&m, "fetched_bytes"), fetched, "{m}");
    assert!(counter(&m, "hits") >= 3.0, "{m}");

    // Damaged cache files: after a restart the entries fail their checks (or do not
    // load) and the segments come from the bucket again; the bytes are right.
    s.kill9();
    let cache_files = files_below(&s.data_dir().join("cache"));
    assert!(!cache_files.is_empty(), "the cache wrote no files");
    for f in &cache_files {
        damage_written_pages(f);
    }
    s.restart();
    let c = s.client();
    assert!(
        get_bytes(&c, "data", "restore").await == data,
        "damaged cache bytes were served"
    );
    let m = metrics_text(&s).await;
    assert!(counter(&m, "fetched_bytes") >= data.len() as f64, "{m}");
    assert_no_panic(&s);
}

/// Flips bytes in every 4 KiB page of `path` that holds data, in place: the cache
/// file is sparse (its size is the configured capacity), and rewriting it whole
/// would allocate every hole on the disk.
fn damage_written_pages(path: &std::path::Path) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut page = vec![0u8; 4096];
    let mut offset = 0u64;
    loop {
        let n = file.read_at(&mut page, offset).unwrap();
        if n == 0 {
            break;
        }
        if page[..n].iter().any(|&b| b != 0) {
            for b in page[..n].iter_mut().step_by(97) {
                *b ^= 0x5a;
            }
            file.write_at(&page[..n], offset).unwrap();
        }
        offset += n as u64;
    }
}
