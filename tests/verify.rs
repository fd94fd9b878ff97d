//! `hoard verify` against real damage: a flipped byte and a deleted segment file.

mod common;

use common::*;

const MIB: usize = 1024 * 1024;

#[tokio::test]
async fn verify_finds_corrupt_chunks_and_lost_segments_and_names_the_damaged_objects() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("vvv").send().await.unwrap();
    let a = random_bytes(1, 6 * MIB);
    put_bytes(&c, "vvv", "a", a.clone()).await;
    c.copy_object()
        .copy_source("vvv/a")
        .bucket("vvv")
        .key("b")
        .send()
        .await
        .unwrap();
    put_bytes(&c, "vvv", "c", random_bytes(2, 3 * MIB)).await;
    put_bytes(&c, "vvv", "small", b"inline".to_vec()).await;
    c.create_bucket().bucket("www").send().await.unwrap();
    put_bytes(&c, "www", "other", random_bytes(3, 2 * MIB)).await;

    let (ok, text) = cli(&s, &["verify"]);
    assert!(ok, "{text}");
    assert!(text.contains("clean"), "{text}");
    let files = segment_files(&s);
    assert!(files.len() >= 4, "{files:?}");

    // A flipped byte inside c's segment (written after a's).
    let c_segment = &files[files.len() - 2].1;
    let mut bytes = std::fs::read(c_segment).unwrap();
    bytes[1000] ^= 0x40;
    std::fs::write(c_segment, &bytes).unwrap();
    let report = admin(&s).verify(None, false).await.unwrap();
    assert_eq!(report.corrupt_chunks.len(), 1, "{report:?}");
    let damaged: Vec<(&str, &str)> = report
        .damaged_objects
        .iter()
        .map(|d| (d.bucket.as_str(), d.key.as_str()))
        .collect();
    assert_eq!(damaged, [("vvv", "c")]);
    let err = c
        .get_object()
        .bucket("vvv")
        .key("c")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), 500, "GET refuses the corrupt chunk");

    // a's first segment file is lost: a and its copy b are damaged.
    std::fs::remove_file(&files[0].1).unwrap();
    let (ok, text) = cli(&s, &["verify"]);
    assert!(!ok, "verify exits non-zero on problems: {text}");
    assert!(
        text.contains(&format!("MISSING segment {:016x}", files[0].0)),
        "{text}"
    );
    assert!(text.contains("DAMAGED vvv/a"), "{text}");
    assert!(text.contains("DAMAGED vvv/b"), "{text}");
    assert!(text.contains("DAMAGED vvv/c"), "{text}");
    assert!(
        !text.contains("vvv/small") && !text.contains("www/other"),
        "{text}"
    );

    // Bucket w's objects are intact, and verify --bucket w says so.
    let (ok, text) = cli(&s, &["verify", "--bucket", "www"]);
    assert!(ok, "{text}");
    assert_eq!(
        get_bytes(&c, "www", "other").await,
        random_bytes(3, 2 * MIB)
    );
    assert_no_panic(&s);
}

/// Names of the files in the data dir's quarantine.
fn quarantined(s: &Server) -> Vec<String> {
    match std::fs::read_dir(s.store_root().join("quarantine")) {
        Ok(d) => d
            .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[tokio::test]
async fn repair_moves_damage_aside_keeps_intact_chunks_and_a_reupload_heals() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("rrr").send().await.unwrap();
    let a = random_bytes(1, 6 * MIB);
    put_bytes(&c, "rrr", "a", a.clone()).await;
    c.copy_object()
        .copy_source("rrr/a")
        .bucket("rrr")
        .key("b")
        .send()
        .await
        .unwrap();
    let cc = random_bytes(2, 3 * MIB);
    put_bytes(&c, "rrr", "c", cc.clone()).await;
    // d shares all but its first chunks with c's tail, stored in c's segment.
    let d = cc[3 * MIB / 2..].to_vec();
    put_bytes(&c, "rrr", "d", d.clone()).await;
    let files = segment_files(&s);
    // c's segment is the one written after a's two; flip a byte of its first chunk.
    let c_segment = files[2].clone();
    let mut bytes = std::fs::read(&c_segment.1).unwrap();
    bytes[1000] ^= 0x40;
    std::fs::write(&c_segment.1, &bytes).unwrap();
    // And a's first segment is lost.
    std::fs::remove_file(&files[0].1).unwrap();

    let (ok, text) = cli(&s, &["verify", "--repair"]);
    assert!(!ok, "damaged objects remain, so verify still fails: {text}");
    assert!(
        text.contains("repair: 2 segments moved to quarantine"),
        "{text}"
    );
    for key in ["a", "b", "c"] {
        assert!(text.contains(&format!("DAMAGED rrr/{key}")), "{text}");
    }
    assert!(!text.contains("DAMAGED rrr/d"), "{text}");
    assert!(text.contains("LOST 51 chunks"), "{text}");
    assert!(text.contains("(43 chunks rescued, 51 lost)"), "{text}");
    assert!(
        !text.contains("CORRUPT") && !text.contains("MISSING"),
        "{text}"
    );
    let aside = quarantined(&s);
    assert!(
        aside.contains(&format!("{:016x}", c_segment.0)),
        "the corrupt segment is kept for inspection: {aside:?}"
    );
    assert!(!c_segment.1.exists());
    // d's chunks were rescued from the corrupt segment; c and a still refuse to serve.
    assert_eq!(get_bytes(&c, "rrr", "d").await, d);
    for key in ["a", "c"] {
        let err = c.get_object().bucket("rrr").key(key).send().await;
        let err = match err {
            Ok(out) => out.body.collect().await.map(drop).unwrap_err().to_string(),
            Err(e) => format!("{}", status_of(&e)),
        };
        assert!(!err.is_empty(), "{key} must not be served");
    }

    // Uploading the same data again stores the lost chunks and heals every object
    // that names them; deleting the re-uploads and collecting keeps them healed.
    put_bytes(&c, "rrr", "a-again", a.clone()).await;
    put_bytes(&c, "rrr", "c-again", cc.clone()).await;
    let (ok, text) = cli(&s, &["verify"]);
    assert!(ok, "{text}");
    delete_keys(&c, "rrr", &["a-again", "c-again"]).await;
    let (ok, text) = cli(&s, &["gc", "--grace-period", "0s"]);
    assert!(ok, "{text}");
    assert_eq!(get_bytes(&c, "rrr", "a").await, a);
    assert_eq!(get_bytes(&c, "rrr", "b").await, a);
    assert_eq!(get_bytes(&c, "rrr", "c").await, cc);
    assert_eq!(get_bytes(&c, "rrr", "d").await, d);
    let (ok, text) = cli(&s, &["verify"]);
    assert!(ok, "{text}");
    assert_no_panic(&s);
}

use redb::ReadableTable as _;

const CHUNKS: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("chunks");

#[tokio::test]
async fn repair_fixes_wrong_counts_and_reindexes_a_lost_row_from_the_trailer() {
    let mut s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("cnt").send().await.unwrap();
    let x = random_bytes(5, 4 * MIB);
    let mut y = x.clone();
    y.extend_from_slice(&random_bytes(6, MIB));
    put_bytes(&c, "cnt", "x", x.clone()).await;
    put_bytes(&c, "cnt", "y", y.clone()).await;
    assert!(s.stop());

    // Damage the index: one count leaked high, one fallen to zero long ago (the next
    // gc would delete a chunk two objects name), one row gone.
    {
        let db = redb::Database::open(s.data_dir().join("meta.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(CHUNKS).unwrap();
            let rows: Vec<(Vec<u8>, hoard::meta::ChunkRow)> = t
                .iter()
                .unwrap()
                .take(3)
                .map(|r| {
                    let (k, v) = r.unwrap();
                    let row = hoard::meta::ChunkRow::decode(v.value()).unwrap();
                    (k.value().to_vec(), row)
                })
                .collect();
            let mut high = rows[0].1;
            high.refs += 5;
            t.insert(rows[0].0.as_slice(), high.encode().as_slice())
                .unwrap();
            let mut zero = rows[1].1;
            zero.refs = 0;
            zero.zero_since = 1;
            t.insert(rows[1].0.as_slice(), zero.encode().as_slice())
                .unwrap();
            t.remove(rows[2].0.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    s.restart();
    let report = admin(&s).verify(None, false).await.unwrap();
    assert_eq!(report.count_problems.len(), 3, "{report:?}");
    assert!(!report.damaged_objects.is_empty(), "{report:?}");

    let report = admin(&s).verify(None, true).await.unwrap();
    let done = report.repair.clone().expect("repair ran");
    assert_eq!(done.counts.fixed, 2, "{done:?}");
    assert_eq!(done.chunks_reindexed, 1, "{done:?}");
    assert!(done.segments_quarantined.is_empty(), "{done:?}");
    assert!(report.is_clean(), "{report:?}");

    let (ok, text) = cli(&s, &["gc", "--grace-period", "0s"]);
    assert!(ok, "{text}");
    assert_eq!(get_bytes(&c, "cnt", "x").await, x);
    assert_eq!(get_bytes(&c, "cnt", "y").await, y);
    let (ok, text) = cli(&s, &["verify"]);
    assert!(ok, "{text}");
    assert_no_panic(&s);
}

#[tokio::test]
async fn the_background_scrub_finds_a_flipped_byte_by_itself() {
    let cfg = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(cfg.path(), "[scrub]\nrate_mib = 200\ncycle_secs = 1\n").unwrap();
    let s = Server::start_with(&["--config", cfg.path().to_str().unwrap()]);
    let c = s.client();
    c.create_bucket().bucket("scr").send().await.unwrap();
    put_bytes(&c, "scr", "fine", random_bytes(1, 5 * MIB)).await;
    put_bytes(&c, "scr", "doomed", random_bytes(2, 2 * MIB)).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let wait_for = |name: &'static str, min: f64| {
        let s = &s;
        async move {
            loop {
                let text = metrics_text(s).await;
                let v = metric(&text, name).unwrap_or(0.0);
                if v >= min {
                    return text;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "{name} stayed below {min}:\n{text}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    };
    // Whole cycles over a clean store find nothing.
    let text = wait_for("hoard_scrub_cycles_total ", 2.0).await;
    assert_eq!(metric(&text, "hoard_scrub_problems_total "), Some(0.0));
    assert!(metric(&text, "hoard_scrub_read_bytes_total ").unwrap() >= (7 * MIB) as f64);

    let files = segment_files(&s);
    let last = &files.last().unwrap().1;
    let mut bytes = std::fs::read(last).unwrap();
    bytes[500] ^= 0x01;
    std::fs::write(last, &bytes).unwrap();
    wait_for("hoard_scrub_problems_total ", 1.0).await;
    let log = s.log();
    assert!(log.contains("scrub found damage"), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("scrub: object is damaged") && l.contains("doomed")),
        "{log}"
    );
    assert!(
        !log.lines()
            .any(|l| l.contains("scrub: object is damaged") && l.contains("fine")),
        "{log}"
    );
    assert_no_panic(&s);
}

/// A segment file that exists but cannot be read (a directory in its place stands
/// for EIO or EACCES, which root would not see) is reported as unreadable, not as
/// missing, and `--repair` leaves it and its chunks alone: once the disk is fixed
/// everything reads again.
#[tokio::test]
async fn an_unreadable_segment_is_reported_and_left_alone_by_repair() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("eio").send().await.unwrap();
    let data = random_bytes(11, 3 * MIB);
    put_bytes(&c, "eio", "k", data.clone()).await;
    let files = segment_files(&s);
    let (_, path) = &files[0];
    let aside = path.with_extension("aside");
    std::fs::rename(path, &aside).unwrap();
    std::fs::create_dir(path).unwrap();

    let report = admin(&s).verify(None, true).await.unwrap();
    assert_eq!(report.unreadable_segments.len(), 1, "{report:?}");
    assert!(report.missing_segments.is_empty(), "{report:?}");
    let repair = report.repair.as_ref().expect("repair ran");
    assert!(repair.segments_quarantined.is_empty(), "{repair:?}");
    assert_eq!(repair.chunks_lost, 0);
    assert!(report.lost_chunks.is_empty(), "{report:?}");
    let (ok, text) = cli(&s, &["verify"]);
    assert!(!ok, "{text}");
    assert!(text.contains("UNREADABLE"), "{text}");

    std::fs::remove_dir(path).unwrap();
    std::fs::rename(&aside, path).unwrap();
    let (ok, text) = cli(&s, &["verify"]);
    assert!(ok, "{text}");
    assert_eq!(get_bytes(&c, "eio", "k").await, data);
}
