//! Bad input gets the right S3 error, changes nothing, and never panics or hangs the
//! server.

mod common;

use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use common::*;

const UNSIGNED: &str = "UNSIGNED-PAYLOAD";

#[tokio::test]
async fn wrong_signature_and_unknown_key_are_refused() {
    let s = Server::start();
    s.client()
        .create_bucket()
        .bucket("auth")
        .send()
        .await
        .unwrap();
    let wrong = client_for(&s.endpoint(), ACCESS_KEY, "not-the-secret", true);
    let e = wrong
        .put_object()
        .bucket("auth")
        .key("k")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), "SignatureDoesNotMatch");
    assert_eq!(status_of(&e), 403);
    let unknown = client_for(&s.endpoint(), "NOSUCHKEY", SECRET_KEY, true);
    let e = unknown
        .list_objects_v2()
        .bucket("auth")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), "InvalidAccessKeyId");
    assert_eq!(status_of(&e), 403);
    let keys = s
        .client()
        .list_objects_v2()
        .bucket("auth")
        .send()
        .await
        .unwrap();
    assert_eq!(keys.key_count(), Some(0), "a refused PUT stores nothing");
    // Anonymous requests are refused too.
    let resp = reqwest::get(format!("{}/auth", s.endpoint()))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    assert_no_panic(&s);
}

#[tokio::test]
async fn presigned_urls_work_until_they_expire() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("pre").send().await.unwrap();
    put_bytes(&c, "pre", "k", b"presigned body".to_vec()).await;
    let cfg = PresigningConfig::expires_in(Duration::from_secs(1)).unwrap();
    let url = c
        .get_object()
        .bucket("pre")
        .key("k")
        .presigned(cfg)
        .await
        .unwrap()
        .uri()
        .to_owned();
    let ok = reqwest::get(&url).await.unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    assert_eq!(ok.text().await.unwrap(), "presigned body");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let expired = reqwest::get(&url).await.unwrap();
    assert_eq!(expired.status().as_u16(), 403);
    assert!(
        expired
            .text()
            .await
            .unwrap()
            .contains("<Code>AccessDenied</Code>")
    );
}

#[tokio::test]
async fn malformed_xml_is_refused() {
    let s = Server::start();
    s.client()
        .create_bucket()
        .bucket("xml")
        .send()
        .await
        .unwrap();
    let body = b"<CreateBucketConfiguration><LocationConstraint>eu";
    let sha = hex::encode(sha256(body));
    let head = signed_head(
        &s,
        "PUT",
        "/xml2",
        &[("content-length", &body.len().to_string())],
        &sha,
    );
    let resp = raw_exchange(s.addr, &head, body, Duration::from_secs(10)).await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert!(resp.contains("MalformedXML"), "{resp}");
    let e = s
        .client()
        .head_bucket()
        .bucket("xml2")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), 404, "nothing was created");
    assert_no_panic(&s);
}

#[tokio::test]
async fn short_body_fails_and_leaves_previous_version() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("short").send().await.unwrap();
    let v1 = random_bytes(9, 300_000);
    put_bytes(&c, "short", "k", v1.clone()).await;
    for sent in [10usize, 100_000, 1_999_999] {
        let head = signed_head(
            &s,
            "PUT",
            "/short/k",
            &[("content-length", "2000000")],
            UNSIGNED,
        );
        let resp = raw_send(
            s.addr,
            &head,
            &random_bytes(10, sent),
            true,
            Duration::from_secs(20),
        )
        .await;
        assert!(
            !resp.starts_with("HTTP/1.1 200"),
            "a short body must not succeed: {resp}"
        );
    }
    assert!(
        get_bytes(&c, "short", "k").await == v1,
        "the previous version is intact"
    );
    let list = c.list_objects_v2().bucket("short").send().await.unwrap();
    assert_eq!(list.key_count(), Some(1));
    assert_eq!(list.contents()[0].size(), Some(v1.len() as i64));
    assert_no_panic(&s);
}

#[tokio::test]
async fn broken_chunk_signature_fails_and_stores_nothing() {
    let s = Server::start();
    s.client()
        .create_bucket()
        .bucket("chunks")
        .send()
        .await
        .unwrap();
    let data = random_bytes(11, 70_000);
    let mut body = Vec::new();
    body.extend_from_slice(
        format!("{:x};chunk-signature={}\r\n", data.len(), "0".repeat(64)).as_bytes(),
    );
    body.extend_from_slice(&data);
    body.extend_from_slice(format!("\r\n0;chunk-signature={}\r\n\r\n", "0".repeat(64)).as_bytes());
    let len = body.len().to_string();
    let decoded = data.len().to_string();
    let head = signed_head(
        &s,
        "PUT",
        "/chunks/k",
        &[
            ("content-length", &len),
            ("content-encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", &decoded),
        ],
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    );
    let resp = raw_exchange(s.addr, &head, &body, Duration::from_secs(20)).await;
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    assert!(resp.contains("SignatureDoesNotMatch"), "{resp}");
    let e = s
        .client()
        .head_object()
        .bucket("chunks")
        .key("k")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), 404);
    assert_no_panic(&s);
}

#[tokio::test]
async fn expect_100_continue_keeps_the_connection_usable() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = Server::start();
    s.client()
        .create_bucket()
        .bucket("cont")
        .send()
        .await
        .unwrap();
    let mut conn = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    // Zero-length body with Expect: 100-continue, then a second request on the
    // same connection.
    let head = signed_head(
        &s,
        "PUT",
        "/cont/empty",
        &[("content-length", "0"), ("expect", "100-continue")],
        UNSIGNED,
    );
    conn.write_all(format!("{head}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let first = read_response(&mut conn).await;
    assert!(first.contains("200 OK"), "{first}");
    // A non-empty body: wait for 100 Continue before sending it.
    let head = signed_head(
        &s,
        "PUT",
        "/cont/five",
        &[("content-length", "5"), ("expect", "100-continue")],
        UNSIGNED,
    );
    conn.write_all(format!("{head}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = [0u8; 25];
    let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    conn.write_all(b"hello").await.unwrap();
    let second = read_response(&mut conn).await;
    assert!(second.contains("200 OK"), "{second}");
    assert_eq!(get_bytes(&s.client(), "cont", "five").await, b"hello");
    assert!(get_bytes(&s.client(), "cont", "empty").await.is_empty());
}

/// Reads one response without a body (PUT answers) from a kept-alive connection.
async fn read_response(conn: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
            .await
            .expect("response in time")
            .unwrap();
        assert!(
            n > 0,
            "connection closed: {}",
            String::from_utf8_lossy(&out)
        );
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out);
        if let Some(end) = text.find("\r\n\r\n") {
            let head = &text[..end];
            if head.starts_with("HTTP/1.1 100") {
                out.drain(..end + 4);
                continue;
            }
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if out.len() >= end + 4 + len {
                return text.into_owned();
            }
        }
    }
}

#[tokio::test]
async fn garbage_requests_do_not_hurt_the_server() {
    let s = Server::start();
    s.client()
        .create_bucket()
        .bucket("junk")
        .send()
        .await
        .unwrap();
    let heads = [
        "GARBAGE / HTTP/1.1\r\nhost: x".to_owned(),
        "GET /junk/%ZZ HTTP/1.1\r\nhost: x".to_owned(),
        "PUT /junk/k HTTP/1.1\r\nhost: x\r\ncontent-length: -5".to_owned(),
        "GET /junk?list-type=2&max-keys=abc HTTP/1.1\r\nhost: x".to_owned(),
        signed_head(&s, "GET", "/junk?list-type=2&max-keys=-1", &[], UNSIGNED),
        signed_head(
            &s,
            "GET",
            "/junk?list-type=2&continuation-token=!!!",
            &[],
            UNSIGNED,
        ),
        signed_head(&s, "GET", "/junk?encoding-type=bogus", &[], UNSIGNED),
        signed_head(
            &s,
            "GET",
            "/junk/missing",
            &[("range", "bytes=zz-1")],
            UNSIGNED,
        ),
    ];
    for h in &heads {
        let resp = raw_exchange(s.addr, h, b"", Duration::from_secs(10)).await;
        assert!(
            resp.is_empty() || resp.starts_with("HTTP/1.1 4") || resp.starts_with("HTTP/1.1 5"),
            "{h:?} -> {resp}"
        );
        assert!(!resp.starts_with("HTTP/1.1 500"), "{h:?} -> {resp}");
    }
    // Still serving.
    put_bytes(&s.client(), "junk", "after", b"fine".to_vec()).await;
    assert_no_panic(&s);
}
