//! The CLI's progress of long jobs when its output is not a terminal (logs, CI):
//! plain lines of done of total, fed by the server (`GET /hoard-admin/v1/jobs` for
//! gc and verify, a rule's status for `replication run --wait`).

mod common;

use common::*;

const MIB: usize = 1024 * 1024;

/// `hoard ARGS` against `s` with a progress line at every change.
fn cli_with_progress(s: &Server, args: &[&str]) -> (bool, String) {
    cli_with(s, &[("HOARD_PROGRESS_SECS", "0")], args)
}

/// The (done, total) of each line `label: DONE/TOTAL unit ...`.
fn progress_lines(text: &str, label: &str) -> Vec<(u64, u64)> {
    text.lines()
        .filter_map(|l| l.strip_prefix(&format!("{label}: ")))
        .filter_map(|rest| {
            let (done, rest) = rest.split_once('/')?;
            let total = rest.split_whitespace().next()?;
            Some((done.parse().ok()?, total.parse().ok()?))
        })
        .collect()
}

#[tokio::test]
async fn verify_and_gc_print_the_servers_progress_as_plain_lines() {
    let cfg = tempfile::NamedTempFile::new().unwrap();
    // Small segments: many of them, so the jobs take a few polls.
    std::fs::write(cfg.path(), "segment_size = 65536\n").unwrap();
    let s = Server::start_with(&["--config", cfg.path().to_str().unwrap()]);
    let c = s.client();
    c.create_bucket().bucket("many").send().await.unwrap();
    for i in 0..16 {
        put_bytes(&c, "many", &format!("k{i}"), random_bytes(i, 8 * MIB)).await;
    }
    let segments = segment_files(&s).len() as u64;
    assert!(segments > 1000, "{segments} segments");
    let (ok, text) = cli_with_progress(&s, &["verify"]);
    assert!(ok, "{text}");
    let lines = progress_lines(&text, "verify");
    assert!(!lines.is_empty(), "no progress line in {text}");
    assert!(lines.iter().all(|&(_, total)| total == segments), "{text}");
    assert!(lines.windows(2).all(|w| w[0].0 < w[1].0), "{text}");
    assert!(text.contains("segments ("), "{text}");
    // Deleted objects leave segments for the pass to examine.
    let doomed: Vec<String> = (0..8).map(|i| format!("k{i}")).collect();
    let doomed: Vec<&str> = doomed.iter().map(String::as_str).collect();
    delete_keys(&c, "many", &doomed).await;
    let (ok, text) = cli_with_progress(&s, &["gc", "--grace-period", "0s"]);
    assert!(ok, "{text}");
    let lines = progress_lines(&text, "gc");
    assert!(!lines.is_empty(), "no progress line in {text}");
    assert!(
        lines
            .iter()
            .all(|&(done, total)| done <= total && total > 0),
        "{text}"
    );
}

#[tokio::test]
async fn replication_run_wait_follows_the_rule_until_nothing_waits() {
    let (replica, key) = replica_with_key(&[]);
    let source = Server::start();
    let (ok, text) = cli(&source, &["bucket", "create", "data"]);
    assert!(ok, "{text}");
    let ca = replica.ca_pem().display().to_string();
    let (ok, text) = add_rule_for(&source, "data", &replica, &key, &["--target-ca", &ca]);
    assert!(ok, "{text}");
    let (ok, text) = cli(&source, &["replication", "pause", "data"]);
    assert!(ok, "{text}");
    let src = source.client();
    for i in 0..40 {
        put_bytes(
            &src,
            "data",
            &format!("k{i:02}"),
            random_bytes(100 + i, 300_000),
        )
        .await;
    }
    let (ok, text) = cli(&source, &["replication", "resume", "data"]);
    assert!(ok, "{text}");
    let (ok, text) = cli_with_progress(&source, &["replication", "run", "data", "--wait"]);
    assert!(ok, "{text}");
    let lines = progress_lines(&text, "replication data");
    assert!(!lines.is_empty(), "no progress line in {text}");
    assert!(lines.iter().all(|&(done, total)| done <= total), "{text}");
    // It returned once nothing waits: every key is on the replica now.
    let listed = replica
        .client()
        .list_objects_v2()
        .bucket("mirror")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.key_count(), Some(40), "{text}");
}
