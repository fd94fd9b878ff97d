//! `hoard verify` against real damage: a flipped byte and a deleted segment file.

mod common;

use common::*;

const MIB: usize = 1024 * 1024;

/// Segment files by id, lowest first.
fn segment_files(s: &Server) -> Vec<(u64, std::path::PathBuf)> {
    let mut out = Vec::new();
    for fan in std::fs::read_dir(s.data_dir().join("segments")).unwrap() {
        for f in std::fs::read_dir(fan.unwrap().path()).unwrap() {
            let f = f.unwrap();
            let id = u64::from_str_radix(f.file_name().to_str().unwrap(), 16).unwrap();
            out.push((id, f.path()));
        }
    }
    out.sort();
    out
}

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
    let report = admin(&s).verify(None).await.unwrap();
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
