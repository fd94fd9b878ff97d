//! Mode "tiered": segments are written to the local disk and the mover copies them
//! to a cloud tier (a real S3 server, s3s-fs, on 127.0.0.1) by age or by bucket,
//! then removes the local files. Reads come from wherever a segment is; a restart,
//! kill -9 mid-move and outages of the tier lose nothing.

mod common;

use common::*;

/// A tiered hoard whose tier is `store`'s bucket `tier` under `site-a`, with `tier`
/// the other keys of its `[tier]` section.
fn tiered_hoard(store: &S3Fs, dir: &tempfile::TempDir, tier: &str) -> Server {
    let cfg = store.tiered_config(dir.path(), "tier", "site-a", tier);
    Server::start_with(&["--config", cfg.to_str().unwrap()])
}

fn tier_objects(store: &S3Fs) -> Vec<std::path::PathBuf> {
    files_below(&store.bucket_dir("tier").join("site-a").join("segments"))
}

/// Waits until every segment of the store is in the cloud tier and none is local.
async fn all_moved(s: &Server) {
    eventually(60, "every segment moved to the tier", || async {
        let r = stats(s).await;
        let t = r.tiers.expect("a tiered store reports its tiers");
        t.local_segments == 0 && t.cloud_segments == r.total.segments && segment_files(s).is_empty()
    })
    .await;
}

#[tokio::test]
async fn segments_move_to_the_tier_and_read_back_from_it_alone_after_a_restart() {
    let store = S3Fs::start("tier");
    let dir = tempfile::tempdir().unwrap();
    let mut s = tiered_hoard(&store, &dir, "after = \"0s\"\ninterval_secs = 1");
    let c = s.client();
    c.create_bucket().bucket("data").send().await.unwrap();
    let big = random_bytes(60, 18 << 20);
    put_bytes(&c, "data", "big", big.clone()).await;
    let parts = vec![random_bytes(61, 5 << 20), random_bytes(62, 2 << 20)];
    put_multipart(&c, "data", "parts", &parts).await;
    all_moved(&s).await;
    let r = stats(&s).await;
    let objects = tier_objects(&store);
    assert_eq!(objects.len() as u64, r.total.segments, "{objects:?}");
    let t = r.tiers.unwrap();
    assert_eq!(t.cloud_bytes, r.total.stored_bytes, "{t:?}");
    // A tiered store seals by default: the tier holds no plaintext.
    let probe = &big[10_000_000..10_000_064];
    assert!(
        objects
            .iter()
            .all(|f| !std::fs::read(f).unwrap().windows(64).any(|w| w == probe))
    );
    let m = metrics_text(&s).await;
    assert_eq!(
        metric(&m, "hoard_tier_moved_segments_total "),
        Some(r.total.segments as f64)
    );
    assert_eq!(
        metric(&m, "hoard_tier_segments{tier=\"cloud\"} "),
        Some(r.total.segments as f64)
    );
    let (ok, text) = cli(&s, &["stats"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("tiers: local 0 B in 0 segments, cloud "),
        "{text}"
    );

    s.restart();
    let c = s.client();
    let whole_parts = parts.concat();
    assert!(get_bytes(&c, "data", "big").await == big);
    assert!(get_bytes(&c, "data", "parts").await == whole_parts);
    let ranged = get_range(&c, "data", "big", "bytes=12345678-12399999").await;
    assert_eq!(&ranged[..], &big[12_345_678..12_400_000]);
    let report = admin(&s).verify(None, false).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.segments_checked, r.total.segments);

    // gc deletes in the tier: the objects of a deleted version go.
    c.delete_object()
        .bucket("data")
        .key("big")
        .send()
        .await
        .unwrap();
    let g = admin(&s)
        .gc(false, Some(std::time::Duration::ZERO))
        .await
        .unwrap();
    assert!(g.segments_deleted >= 4, "{g:?}");
    assert_eq!(
        tier_objects(&store).len() as u64,
        stats(&s).await.total.segments
    );
    assert!(get_bytes(&c, "data", "parts").await == whole_parts);
    assert_no_panic(&s);
}

#[tokio::test]
async fn a_bucket_policy_moves_only_that_buckets_segments() {
    let store = S3Fs::start("tier");
    let dir = tempfile::tempdir().unwrap();
    // No store-wide age: nothing moves until a bucket asks.
    let s = tiered_hoard(&store, &dir, "interval_secs = 1");
    let c = s.client();
    for b in ["cold", "hot"] {
        c.create_bucket().bucket(b).send().await.unwrap();
    }
    let cold = random_bytes(70, 9 << 20);
    put_bytes(&c, "cold", "archive", cold.clone()).await;
    put_bytes(&c, "hot", "recent", random_bytes(71, 9 << 20)).await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(tier_objects(&store).is_empty(), "moved without a policy");

    let (ok, text) = cli(&s, &["bucket", "tier", "cold", "--after", "0s"]);
    assert!(ok, "{text}");
    assert!(text.contains("after 0s"), "{text}");
    let cold_segments = stats(&s)
        .await
        .buckets
        .iter()
        .find(|b| b.name == "cold")
        .unwrap()
        .segments;
    eventually(30, "cold's segments moved", || async {
        tier_objects(&store).len() as u64 == cold_segments
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let r = stats(&s).await;
    let hot = r.buckets.iter().find(|b| b.name == "hot").unwrap();
    assert_eq!(
        segment_files(&s).len() as u64,
        hot.segments,
        "hot stays local"
    );
    assert_eq!(r.tiers.unwrap().cloud_segments, cold_segments);
    assert!(get_bytes(&c, "cold", "archive").await == cold);

    // A bad age and a missing bucket are refused; a store without a tier says so.
    let (ok, text) = cli(&s, &["bucket", "tier", "cold", "--after", "soon"]);
    assert!(!ok && text.contains("\"soon\""), "{text}");
    let (ok, text) = cli(&s, &["bucket", "tier", "nope", "--after", "1d"]);
    assert!(!ok && text.contains("NoSuchBucket"), "{text}");
    let plain = Server::start();
    let (ok, text) = cli(&plain, &["bucket", "create", "plain"]);
    assert!(ok, "{text}");
    let (ok, text) = cli(&plain, &["bucket", "tier", "plain", "--after", "1d"]);
    assert!(!ok && text.contains("no cloud tier"), "{text}");
    assert_no_panic(&s);
}

#[tokio::test]
async fn an_outage_of_the_tier_keeps_writes_local_fails_reads_fast_and_heals() {
    let mut store = S3Fs::start("tier");
    let dir = tempfile::tempdir().unwrap();
    let s = tiered_hoard(&store, &dir, "after = \"0s\"\ninterval_secs = 1");
    let c = s.client();
    c.create_bucket().bucket("data").send().await.unwrap();
    let moved = random_bytes(80, 9 << 20);
    put_bytes(&c, "data", "moved", moved.clone()).await;
    all_moved(&s).await;

    store.stop();
    // Writes go on to the local disk; the mover fails, retries and keeps them.
    let local = random_bytes(81, 9 << 20);
    put_bytes(&c, "data", "local", local.clone()).await;
    eventually(30, "the mover counted its failure", || async {
        metric(&metrics_text(&s).await, "hoard_tier_move_errors_total ").unwrap_or(0.0) >= 1.0
    })
    .await;
    assert!(
        !segment_files(&s).is_empty(),
        "local files went while the tier was down"
    );
    assert!(get_bytes(&c, "data", "local").await == local);
    // A read of cloud-only data fails promptly with 503, never with wrong bytes.
    let started = std::time::Instant::now();
    let got = c.get_object().bucket("data").key("moved").send().await;
    let err = got.expect_err("a GET of cloud-only data with the tier down succeeded");
    assert_eq!(status_of(&err), 503, "{err:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(120));

    // Mid-restore: the tier goes away while a GET streams; the body fails, and what
    // arrived is a prefix of the object, never other bytes.
    store.restart();
    let mut out = c
        .get_object()
        .bucket("data")
        .key("moved")
        .send()
        .await
        .unwrap()
        .body;
    let mut received = Vec::new();
    if let Some(first) = out.next().await {
        received.extend_from_slice(&first.unwrap());
    }
    store.stop();
    let mut failed = false;
    while let Some(next) = out.next().await {
        match next {
            Ok(b) => received.extend_from_slice(&b),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(moved.starts_with(&received), "wrong bytes served");
    assert!(failed || received == moved);

    store.restart();
    all_moved(&s).await;
    assert!(get_bytes(&c, "data", "moved").await == moved);
    assert!(get_bytes(&c, "data", "local").await == local);
    let report = admin(&s).verify(None, false).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_no_panic(&s);
}

#[tokio::test]
async fn kill_9_mid_move_loses_nothing_and_the_next_start_finishes_it() {
    let store = S3Fs::start("tier");
    let dir = tempfile::tempdir().unwrap();
    // Nothing moves until the bucket asks, so the kill can be timed.
    let mut s = tiered_hoard(&store, &dir, "interval_secs = 1");
    let c = s.client();
    c.create_bucket().bucket("data").send().await.unwrap();
    let data = random_bytes(90, 40 << 20);
    put_bytes(&c, "data", "big", data.clone()).await;
    let total = stats(&s).await.total.segments;
    let (ok, text) = cli(&s, &["bucket", "tier", "data", "--after", "0s"]);
    assert!(ok, "{text}");
    eventually(30, "a first move", || async {
        !tier_objects(&store).is_empty()
    })
    .await;
    s.kill9();

    s.restart();
    let c = s.client();
    assert!(get_bytes(&c, "data", "big").await == data, "after the kill");
    let report = admin(&s).verify(None, false).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    all_moved(&s).await;
    assert!(get_bytes(&c, "data", "big").await == data);
    // A copy the kill left unrecorded was made again, not twice: one object a segment.
    assert_eq!(tier_objects(&store).len() as u64, total);
    let g = admin(&s)
        .gc(false, Some(std::time::Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(g.orphans_removed, 0, "{g:?}");
    assert_no_panic(&s);
}
