//! Never lose data: acknowledged writes survive kill -9, interrupted writes are
//! invisible, corrupt bytes are detected and never served. Real kills, real
//! corruption.

mod common;

use std::time::Duration;

use common::*;

const MIB: usize = 1024 * 1024;

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let mut s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("acked").send().await.unwrap();
    let sizes = [
        0usize,
        1,
        5000,
        16 * 1024,
        16 * 1024 + 1,
        300_000,
        4 * MIB - 3,
        9 * MIB + 7,
    ];
    let mut tasks = Vec::new();
    for round in 0..3u64 {
        for (i, size) in sizes.iter().enumerate() {
            let c = c.clone();
            let key = format!("r{round}/obj{i}");
            let data = random_bytes(round * 100 + i as u64, *size);
            tasks.push(tokio::spawn(async move {
                let etag = put_bytes(&c, "acked", &key, data.clone()).await;
                (key, data, etag)
            }));
        }
    }
    let mut written = Vec::new();
    for t in tasks {
        written.push(t.await.unwrap());
    }
    // Every PUT above was acknowledged; crash right away.
    s.kill9();
    s.restart();
    let c = s.client();
    for (key, data, etag) in &written {
        let got = c
            .get_object()
            .bucket("acked")
            .key(key)
            .send()
            .await
            .unwrap();
        assert_eq!(got.e_tag().unwrap().trim_matches('"'), etag);
        assert!(
            got.body.collect().await.unwrap().into_bytes() == *data,
            "{key} after kill -9"
        );
    }
    let listed = c.list_objects_v2().bucket("acked").send().await.unwrap();
    assert_eq!(listed.key_count(), Some(written.len() as i32));
}

#[tokio::test]
async fn put_interrupted_by_kill_9_leaves_the_previous_version() {
    let mut s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("crash").send().await.unwrap();
    let v1 = random_bytes(1, 6 * MIB + 11);
    let v1_etag = put_bytes(&c, "crash", "key", v1.clone()).await;
    let total = 48 * MIB;
    let v2 = random_bytes(2, total);
    for sent in [0usize, 100, 5 * MIB, 30 * MIB, total] {
        let conn = start_partial_put(&s, "/crash/key", &v2, sent).await;
        // Let the server chunk, write segments and index some of what it got.
        tokio::time::sleep(Duration::from_millis(400)).await;
        s.kill9();
        drop(conn);
        s.restart();
        let c = s.client();
        let listed = c.list_objects_v2().bucket("crash").send().await.unwrap();
        let objects = listed.contents();
        assert_eq!(objects.len(), 1, "after a kill at byte {sent}");
        let size = objects[0].size().unwrap() as usize;
        let got = get_bytes(&c, "crash", "key").await;
        assert_eq!(got.len(), size, "listing and GET agree");
        if sent < total {
            assert!(
                got == v1,
                "a PUT killed at byte {sent} left the previous version"
            );
            assert_eq!(objects[0].e_tag().unwrap().trim_matches('"'), v1_etag);
        } else {
            // The whole body arrived: it was either committed before the kill or not
            // at all; never partly.
            assert!(
                got == v1 || got == v2,
                "after a kill with the whole body sent"
            );
        }
    }
}

#[tokio::test]
async fn client_disconnect_mid_body_changes_nothing_and_releases_references() {
    let mut s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("gone").send().await.unwrap();
    let v1 = random_bytes(3, 2 * MIB);
    put_bytes(&c, "gone", "key", v1.clone()).await;
    let body = random_bytes(4, 20 * MIB);
    let head = signed_head(
        &s,
        "PUT",
        "/gone/key",
        &[("content-length", &(40 * MIB).to_string())],
        "UNSIGNED-PAYLOAD",
    );
    let resp = raw_send(s.addr, &head, &body, true, Duration::from_secs(20)).await;
    assert!(!resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(get_bytes(&c, "gone", "key").await == v1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(s.stop());
    let audit = s.meta().audit_refs_blocking().unwrap();
    assert!(
        audit.is_empty(),
        "an abandoned upload's references were released: {audit:?}"
    );
}

#[tokio::test]
async fn a_flipped_byte_is_detected_and_never_served() {
    let mut s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("rot").send().await.unwrap();
    let small = random_bytes(5, MIB);
    put_bytes(&c, "rot", "small", small.clone()).await;
    assert!(s.stop());
    let files = segment_files(&s);
    assert_eq!(files.len(), 1);
    // Offset 16 + 100: inside the first chunk's payload.
    flip_byte(&files[0].1, 116);
    s.restart();
    let c = s.client();
    let e = c
        .get_object()
        .bucket("rot")
        .key("small")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), 500);
    assert_eq!(code_of(&e), "InternalError");
    assert!(
        s.log().contains("failed verification"),
        "a clear log line names the damage:\n{}",
        s.log()
    );
    // Bytes of other, intact chunks are still served by ranged GETs.
    let tail = c
        .get_object()
        .bucket("rot")
        .key("small")
        .range("bytes=-1000")
        .send()
        .await
        .unwrap();
    assert!(tail.body.collect().await.unwrap().into_bytes()[..] == small[small.len() - 1000..]);
    let metrics = metrics_text(&s).await;
    assert!(
        metrics.contains("hoard_integrity_errors_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn damage_past_the_first_read_aborts_the_body_instead_of_serving_it() {
    let mut s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("rot2").send().await.unwrap();
    let big = random_bytes(6, 40 * MIB);
    put_bytes(&c, "rot2", "big", big.clone()).await;
    assert!(s.stop());
    let files = segment_files(&s);
    assert!(files.len() >= 8, "{} segments", files.len());
    let last = &files.last().unwrap().1;
    flip_byte(last, 16 + 10);
    s.restart();
    let c = s.client();
    match c.get_object().bucket("rot2").key("big").send().await {
        Err(e) => assert_eq!(status_of(&e), 500),
        Ok(out) => {
            let body = out.body.collect().await;
            assert!(
                body.is_err(),
                "a damaged object must not be delivered whole"
            );
        }
    }
    let head = c
        .get_object()
        .bucket("rot2")
        .key("big")
        .range("bytes=0-999999")
        .send()
        .await
        .unwrap();
    assert!(head.body.collect().await.unwrap().into_bytes()[..] == big[..1_000_000]);
}
