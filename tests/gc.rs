//! The cleaner against a real hoard: space comes back, nothing referenced is lost,
//! with concurrent writers, deleters and readers, and across kill -9.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::Client;
use common::*;
use hoard::cleaner::GcReport;

const MIB: usize = 1024 * 1024;

async fn gc(s: &Server, dry_run: bool) -> GcReport {
    // On PostgreSQL a restarted server is a new gateway: the killed one's cleaner
    // turn passes on when its lease (3 s in the tests) has run out.
    for _ in 0..50 {
        match admin(s).gc(dry_run, Some(Duration::ZERO)).await {
            Ok(r) => return r,
            Err(e) if s.is_postgres() && e.to_string().contains("OperationAborted") => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => panic!("gc: {e}"),
        }
    }
    panic!("gc: the cleaner stayed busy");
}

#[tokio::test]
async fn deleting_everything_and_running_gc_gives_the_space_back() {
    let mut s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("gone").send().await.unwrap();
    for i in 0..10 {
        put_bytes(&c, "gone", &format!("o{i}"), random_bytes(i, 3 * MIB)).await;
    }
    let full = stats(&s).await.total;
    assert!(full.stored_bytes > 29 * MIB as u64);
    for i in 0..10 {
        c.delete_object()
            .bucket("gone")
            .key(format!("o{i}"))
            .send()
            .await
            .unwrap();
    }

    let dry = gc(&s, true).await;
    assert!(dry.dry_run);
    assert!(dry.bytes_freed > 29 * MIB as u64, "{dry:?}");
    assert_eq!(
        stats(&s).await.total.stored_bytes,
        full.stored_bytes,
        "a dry run changes nothing"
    );

    let files_before = segment_files(&s).len();
    let r = gc(&s, false).await;
    assert!(r.segments_deleted >= 10, "{r:?}");
    assert!(r.bytes_freed > 29 * MIB as u64, "{r:?}");
    let after = stats(&s).await.total;
    assert!(
        after.stored_bytes < 64 * 1024,
        "stored bytes after gc: {}",
        after.stored_bytes
    );
    assert_eq!(after.segments, 0);
    assert_eq!(
        segment_files(&s).len(),
        files_before - r.segments_deleted as usize
    );
    assert_eq!(segment_files(&s).len(), 0);
    let metrics = metrics_text(&s).await;
    assert!(metrics.contains("hoard_gc_runs_total 1"), "{metrics}");

    // The store works on: the same data again is stored anew.
    put_bytes(&c, "gone", "again", random_bytes(0, 3 * MIB)).await;
    assert_eq!(
        get_bytes(&c, "gone", "again").await,
        random_bytes(0, 3 * MIB)
    );
    assert!(s.stop());
    assert!(s.meta().audit_refs_blocking().unwrap().is_empty());
}

/// A 24 MiB object and six 1 MiB slices of it, one in the middle of each 4 MiB
/// stretch; deleting the big one leaves each of its segments about a quarter live.
async fn big_and_slices(c: &Client, bucket: &str) -> HashMap<String, Vec<u8>> {
    c.create_bucket().bucket(bucket).send().await.unwrap();
    let big = random_bytes(77, 24 * MIB);
    put_bytes(c, bucket, "big", big.clone()).await;
    let mut kept = HashMap::new();
    for i in 0..6 {
        let at = i * 4 * MIB + 3 * MIB / 2;
        let slice = big[at..at + MIB].to_vec();
        put_bytes(c, bucket, &format!("slice-{i}"), slice.clone()).await;
        kept.insert(format!("slice-{i}"), slice);
    }
    c.delete_object()
        .bucket(bucket)
        .key("big")
        .send()
        .await
        .unwrap();
    kept
}

#[tokio::test]
async fn compaction_frees_the_dead_part_while_readers_keep_reading() {
    let mut s = Server::start();
    let c = s.client();
    let kept = Arc::new(big_and_slices(&c, "half").await);
    let before = stats(&s).await.total.stored_bytes;

    // Readers run through the whole compaction.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for r in 0..2 {
        let (c, kept, stop) = (c.clone(), kept.clone(), stop.clone());
        readers.push(tokio::spawn(async move {
            let mut reads = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let key = format!("slice-{}", (reads + r) % 6);
                assert_eq!(
                    get_bytes(&c, "half", &key).await,
                    kept[&key],
                    "{key} during gc"
                );
                reads += 1;
            }
            reads
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = gc(&s, false).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for h in readers {
        assert!(h.await.expect("reader") > 0);
    }
    assert!(r.segments_compacted >= 5, "{r:?}");
    assert!(
        r.bytes_rewritten > 0 && r.bytes_rewritten < 8 * MIB as u64,
        "{r:?}"
    );
    let after = stats(&s).await.total.stored_bytes;
    assert!(
        after < before - 12 * MIB as u64,
        "stored {before} -> {after}"
    );
    for (k, v) in kept.iter() {
        assert_eq!(&get_bytes(&c, "half", k).await, v);
    }
    assert!(s.stop());
    let meta = s.meta();
    assert!(meta.audit_refs_blocking().unwrap().is_empty());
}

#[tokio::test]
async fn gc_in_a_loop_with_writers_and_deleters_loses_nothing_even_with_zero_grace() {
    let mut s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("churn").send().await.unwrap();
    // Objects mix blocks from a small shared pool with blocks of their own, so
    // deletes leave segments partly live and the cleaner compacts while writers
    // take references on the shared chunks.
    fn compose(seed: u64) -> Vec<u8> {
        (0..8)
            .flat_map(|i| {
                let block = if i % 2 == 0 {
                    1000 + (seed * 7 + i * 3) % 12
                } else {
                    seed * 100 + i
                };
                random_bytes(block, 200 * 1024)
            })
            .collect()
    }
    let live: Arc<tokio::sync::Mutex<HashMap<String, u64>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));

    let mut tasks = Vec::new();
    for w in 0..2u64 {
        let (c, live, stop) = (c.clone(), live.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let seed = w * 1_000_000 + n;
                let key = format!("w{w}/{}", n % 6);
                put_bytes(&c, "churn", &key, compose(seed)).await;
                live.lock().await.insert(key.clone(), seed);
                if n % 3 == 2 {
                    let victim = format!("w{w}/{}", (n + 2) % 6);
                    c.delete_object()
                        .bucket("churn")
                        .key(&victim)
                        .send()
                        .await
                        .unwrap();
                    live.lock().await.remove(&victim);
                }
                n += 1;
            }
        }));
    }
    let admin = admin(&s);
    let mut passes = 0;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(8) {
        admin
            .gc(false, Some(Duration::ZERO))
            .await
            .expect("gc during churn");
        passes += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        t.await.expect("writer");
    }
    assert!(passes >= 3, "only {passes} gc passes");
    admin.gc(false, Some(Duration::ZERO)).await.unwrap();
    let live = live.lock().await.clone();
    assert!(!live.is_empty());
    for (key, seed) in &live {
        assert_eq!(get_bytes(&c, "churn", key).await, compose(*seed), "{key}");
    }
    assert_no_panic(&s);
    assert!(s.stop());
    let mismatches = s.meta().audit_refs_blocking().unwrap();
    assert!(mismatches.is_empty(), "{mismatches:?}");
}

#[tokio::test]
async fn kill_9_during_gc_leaves_a_consistent_store() {
    let mut s = Server::start();
    let c = s.client();
    let kept = big_and_slices(&c, "crash").await;
    for i in 0..20 {
        put_bytes(
            &c,
            "crash",
            &format!("doomed-{i}"),
            random_bytes(500 + i, 2 * MIB),
        )
        .await;
    }
    for i in 0..20 {
        c.delete_object()
            .bucket("crash")
            .key(format!("doomed-{i}"))
            .send()
            .await
            .unwrap();
    }
    let admin = admin(&s);
    let pass = tokio::spawn(async move { admin.gc(false, Some(Duration::ZERO)).await });
    tokio::time::sleep(Duration::from_millis(40)).await;
    s.kill9();
    let _ = pass.await;
    s.restart();
    let c = s.client();
    for (k, v) in &kept {
        assert_eq!(
            &get_bytes(&c, "crash", k).await,
            v,
            "{k} after kill -9 during gc"
        );
    }
    let r = gc(&s, false).await;
    let after = stats(&s).await.total.stored_bytes;
    assert!(
        after < 16 * MIB as u64,
        "stored {after} after a full gc; {r:?}"
    );
    for (k, v) in &kept {
        assert_eq!(&get_bytes(&c, "crash", k).await, v);
    }
    assert!(s.stop());
    assert!(s.meta().audit_refs_blocking().unwrap().is_empty());
}

#[tokio::test]
async fn segment_files_no_metadata_names_are_removed_after_the_orphan_grace() {
    let cfg = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(cfg.path(), "[cleaner]\norphan_grace_secs = 0\n").unwrap();
    let s = Server::start_with(&["--config", cfg.path().to_str().unwrap()]);
    let c = s.client();
    c.create_bucket().bucket("orphans").send().await.unwrap();
    let data = random_bytes(3, 5 * MIB);
    put_bytes(&c, "orphans", "real", data.clone()).await;
    put_bytes(&c, "orphans", "gone", random_bytes(4, 5 * MIB)).await;
    let before = segment_files(&s);
    delete_keys(&c, "orphans", &["gone"]).await;
    gc(&s, false).await;
    // A crash between a segment's durable write and its index row leaves a file that
    // nothing names; its id was handed out (here: one whose segment the pass just
    // removed). An id beyond the counter is not touched.
    let after = segment_files(&s);
    let (_, orphan) = before
        .into_iter()
        .find(|f| !after.contains(f))
        .expect("the pass removed a segment");
    let future = s.data_dir().join("segments/ff/ffffffffffffffff");
    std::fs::write(&orphan, b"left by a crash").unwrap();
    std::fs::write(&future, b"not handed out").unwrap();
    let r = gc(&s, false).await;
    assert_eq!(r.orphans_removed, 1, "{r:?}");
    assert!(!orphan.exists());
    assert!(future.exists());
    assert_eq!(get_bytes(&c, "orphans", "real").await, data);
}

async fn wait_for_stored_below(s: &Server, limit: u64) -> u64 {
    let mut stored = u64::MAX;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        stored = stats(s).await.total.stored_bytes;
        if stored < limit {
            break;
        }
    }
    stored
}

#[tokio::test]
async fn the_cleaner_runs_by_itself_when_idle_and_in_its_window() {
    // The window pass runs at the first check inside the window (here: 3 s after
    // start, after the delete); the idle pass once requests stopped for ~2 s.
    for (name, schedule) in [
        ("idle", "idle_minutes = 0.03\ncheck_secs = 1"),
        ("window", "window = \"00:00-24:00\"\ncheck_secs = 3"),
    ] {
        let cfg = tempfile::NamedTempFile::new().unwrap();
        let text = format!("[cleaner]\ngrace_secs = 0\n{schedule}\n");
        std::fs::write(cfg.path(), text).unwrap();
        let s = Server::start_with(&["--config", cfg.path().to_str().unwrap()]);
        let c = s.client();
        c.create_bucket().bucket("auto").send().await.unwrap();
        put_bytes(&c, "auto", "x", random_bytes(9, 6 * MIB)).await;
        c.delete_object()
            .bucket("auto")
            .key("x")
            .send()
            .await
            .unwrap();
        let stored = wait_for_stored_below(&s, MIB as u64).await;
        assert!(
            stored < MIB as u64,
            "{name}: stored {stored} bytes 15 s after the delete"
        );
        assert!(s.log().contains("scheduled gc pass"), "{name}");
        assert!(
            s.log().contains(&format!("trigger=\"{name}\""))
                || s.log().contains(&format!("trigger={name}")),
            "{name}: {}",
            s.log()
        );
    }
}
