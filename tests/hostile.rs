//! Hostile clients on the listener: each gets a clean close or a 4xx within a bounded
//! time, and the server keeps serving everyone else.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const UNSIGNED: &str = "UNSIGNED-PAYLOAD";

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
}

/// Sends a signed POST `path` with `body` and returns the answer. The server may
/// answer and close before the body is all sent; that write error is not a failure.
async fn post(s: &Server, path: &str, body: &[u8], wait: Duration) -> String {
    let head = signed_head(
        s,
        "POST",
        path,
        &[("content-length", &body.len().to_string())],
        &sha256_hex(body),
    );
    let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let (mut rd, mut wr) = tcp.into_split();
    let mut request = format!("{head}\r\nconnection: close\r\n\r\n").into_bytes();
    request.extend_from_slice(body);
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&request).await;
        wr
    });
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, rd.read_to_end(&mut out)).await;
    drop(writer.await);
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn garbage_bytes_on_the_tls_port_get_a_clean_close() {
    let s = Server::start_with(&["--tls"]);
    let started = Instant::now();
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    // Not a TLS record; the write may be cut short by the close.
    let _ = tcp.write_all(&random_bytes(9, 64 * 1024)).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), tcp.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection is closed, not left hanging");
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(!String::from_utf8_lossy(&answer).contains("HTTP/"));
    let c = s.client();
    c.create_bucket().bucket("after").send().await.unwrap();
    assert_no_panic(&s);
}

#[tokio::test]
async fn a_slowloris_client_is_cut_off_while_others_are_served() {
    let cfg = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(cfg.path(), "header_timeout_secs = 2\n").unwrap();
    let s = Server::start_with(&["--config", cfg.path().to_str().unwrap()]);
    let c = s.client();
    c.create_bucket().bucket("slow").send().await.unwrap();
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut closed = false;
    for i in 0..40 {
        // One header byte every 250 ms, never finishing the head.
        if tcp.write_all(b"x").await.is_err() {
            closed = true;
            break;
        }
        if i % 4 == 0 {
            // Meanwhile other clients are served.
            put_bytes(&c, "slow", "other", b"served".to_vec()).await;
        }
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(Duration::from_millis(250), tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => {
                let text = String::from_utf8_lossy(&buf[..n]);
                assert!(text.starts_with("HTTP/1.1 4"), "{text}");
            }
            Err(_) => {}
        }
    }
    assert!(closed, "the slow client is cut off");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(get_bytes(&c, "slow", "other").await, b"served");
    assert_no_panic(&s);
}

#[tokio::test]
async fn a_100_kb_header_block_is_refused() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("hdr").send().await.unwrap();
    let big = "a".repeat(100 * 1024);
    // Unsigned: refused before anything else.
    let head = format!("PUT /hdr/k HTTP/1.1\r\nhost: x\r\nx-junk: {big}\r\ncontent-length: 0");
    let resp = raw_exchange(s.addr, &head, b"", Duration::from_secs(10)).await;
    assert!(
        resp.is_empty() || resp.starts_with("HTTP/1.1 4"),
        "{}",
        &resp[..resp.len().min(300)]
    );
    // Signed, as user metadata: S3 allows 2 KB of it.
    let head = signed_head(
        &s,
        "PUT",
        "/hdr/k",
        &[("content-length", "0"), ("x-amz-meta-big", &big)],
        UNSIGNED,
    );
    let resp = raw_exchange(s.addr, &head, b"", Duration::from_secs(10)).await;
    assert!(
        resp.starts_with("HTTP/1.1 400"),
        "{}",
        &resp[..resp.len().min(300)]
    );
    assert!(
        resp.contains("MetadataTooLarge"),
        "{}",
        &resp[..resp.len().min(600)]
    );
    assert!(c.head_object().bucket("hdr").key("k").send().await.is_err());
    put_bytes(&c, "hdr", "k", b"small".to_vec()).await;
    assert_no_panic(&s);
}

#[tokio::test]
async fn a_deeply_nested_xml_body_gets_400() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("nest").send().await.unwrap();
    put_bytes(&c, "nest", "keep", b"kept".to_vec()).await;
    let depth = 100_000;
    let mut body = String::from("<Delete>");
    body.push_str(&"<Object>".repeat(depth));
    body.push_str(&"</Object>".repeat(depth));
    body.push_str("</Delete>");
    let resp = post(&s, "/nest?delete", body.as_bytes(), Duration::from_secs(20)).await;
    assert!(
        resp.starts_with("HTTP/1.1 400"),
        "{}",
        &resp[..resp.len().min(300)]
    );
    assert_eq!(get_bytes(&c, "nest", "keep").await, b"kept");
    assert_no_panic(&s);
}

#[tokio::test]
async fn a_million_key_delete_objects_body_gets_400_and_deletes_nothing() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("many").send().await.unwrap();
    put_bytes(&c, "many", "k0000001", b"kept".to_vec()).await;
    let mut body = String::from("<Delete>");
    for i in 0..1_000_000 {
        body.push_str(&format!("<Object><Key>k{i:07}</Key></Object>"));
    }
    body.push_str("</Delete>");
    let started = Instant::now();
    let resp = post(&s, "/many?delete", body.as_bytes(), Duration::from_secs(60)).await;
    assert!(
        resp.starts_with("HTTP/1.1 4"),
        "{}",
        &resp[..resp.len().min(300)]
    );
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(get_bytes(&c, "many", "k0000001").await, b"kept");
    assert!(
        s.peak_rss() < 1024 * 1024 * 1024,
        "peak RSS {}",
        s.peak_rss()
    );
    assert_no_panic(&s);
}
