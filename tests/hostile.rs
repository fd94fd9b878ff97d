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

/// Opens `n` PUTs that declare 1 MiB, send 1 KiB, then nothing.
async fn stalled_puts(s: &Server, bucket: &str, n: usize) -> Vec<tokio::net::TcpStream> {
    let mut conns = Vec::new();
    for i in 0..n {
        let head = signed_head(
            s,
            "PUT",
            &format!("/{bucket}/stalled-{i}"),
            &[("content-length", "1048576")],
            UNSIGNED,
        );
        let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        tcp.write_all(format!("{head}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        tcp.write_all(&[7u8; 1024]).await.unwrap();
        conns.push(tcp);
    }
    conns
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_bodies_time_out_and_free_their_slots_while_slow_ones_finish() {
    let cfg = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        cfg.path(),
        "body_idle_timeout_secs = 2\nmax_streams = 64\nstream_wait_ms = 200\n",
    )
    .unwrap();
    let s = Server::start_with(&["--config", cfg.path().to_str().unwrap()]);
    let c = s.client();
    c.create_bucket().bucket("stall").send().await.unwrap();

    // A slow body that keeps moving for longer than the idle timeout: one 4 KiB
    // piece every 500 ms for 5 s.
    let slow_head = signed_head(
        &s,
        "PUT",
        "/stall/slow",
        &[("content-length", &(40 * 4096).to_string())],
        UNSIGNED,
    );
    let addr = s.addr;
    let slow = tokio::spawn(async move {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(format!("{slow_head}\r\nconnection: close\r\n\r\n").as_bytes())
            .await
            .unwrap();
        for _ in 0..10 {
            for _ in 0..4 {
                tcp.write_all(&[1u8; 4096]).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    });

    // 70 stalled bodies take every stream slot: another PUT is refused meanwhile.
    let mut stalled = stalled_puts(&s, "stall", 70).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refused = c
        .put_object()
        .bucket("stall")
        .key("meanwhile")
        .body(vec![5u8; 100_000].into())
        .send()
        .await
        .expect_err("every slot is held");
    assert_eq!(code_of(&refused), "SlowDown");

    // After the idle timeout each stalled PUT is answered 400 RequestTimeout and
    // its slot is free again, though the clients keep their sockets open.
    let started = Instant::now();
    let mut answers = Vec::new();
    for tcp in stalled.iter_mut().take(5) {
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
            .await
            .expect("the stalled PUT is answered")
            .unwrap();
        answers.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(started.elapsed() < Duration::from_secs(8));
    for a in &answers {
        assert!(a.starts_with("HTTP/1.1 400"), "{a}");
        assert!(a.contains("<Code>RequestTimeout</Code>"), "{a}");
    }
    put_bytes(&c, "stall", "after", vec![6u8; 200_000]).await;

    let slow = slow.await.unwrap();
    assert!(
        slow.starts_with("HTTP/1.1 200"),
        "the slow body was cut: {slow}"
    );
    assert_eq!(get_bytes(&c, "stall", "slow").await, vec![1u8; 40 * 4096]);
    drop(stalled);
    // Nothing of the stalled uploads is listed, and nothing leaked.
    let listed = c.list_objects_v2().bucket("stall").send().await.unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, vec!["after", "slow"]);
    let (ok, out) = cli(&s, &["verify"]);
    assert!(ok, "{out}");
    assert_no_panic(&s);
}

/// A presigned GET URL for `path`, expiring after `expires` seconds, signed for
/// `region`.
fn presigned_url(s: &Server, path: &str, expires: u64, region: &str) -> String {
    use aws_sigv4::http_request::{
        SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
    };
    use aws_sigv4::sign::v4;
    let identity =
        aws_credential_types::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test").into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(Duration::from_secs(expires));
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("s3")
        .time(std::time::SystemTime::now())
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let url = format!("{}{}", s.endpoint(), path);
    let host = s.addr.to_string();
    let req = SignableRequest::new(
        "GET",
        &url,
        [("host", host.as_str())].into_iter(),
        SignableBody::UnsignedPayload,
    )
    .unwrap();
    let (instructions, _) = sign(req, &params).unwrap().into_parts();
    let encode = |v: &str| -> String {
        v.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    let query: Vec<String> = instructions
        .params()
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    format!("{url}?{}", query.join("&"))
}

#[tokio::test]
async fn presigned_urls_live_at_most_a_week_and_signatures_name_this_region() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("sig").send().await.unwrap();
    put_bytes(&c, "sig", "k", b"signed".to_vec()).await;
    let http = reqwest::Client::new();

    let week = presigned_url(&s, "/sig/k", 604_800, "us-east-1");
    let r = http.get(&week).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"signed");

    for expires in [604_801, 999_999_999] {
        let url = presigned_url(&s, "/sig/k", expires, "us-east-1");
        let r = http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 400, "X-Amz-Expires={expires}");
        let body = r.text().await.unwrap();
        assert!(
            body.contains("<Code>AuthorizationQueryParametersError</Code>"),
            "{body}"
        );
        assert!(body.contains("604800"), "{body}");
    }

    // Other values of X-Amz-Expires, as a hand-edited URL carries them.
    let minute = presigned_url(&s, "/sig/k", 60, "us-east-1");
    for (expires, status, code, message) in [
        (
            "-5",
            400,
            "AuthorizationQueryParametersError",
            "must be non-negative",
        ),
        (
            "soon",
            400,
            "AuthorizationQueryParametersError",
            "should be a number",
        ),
        (
            "99999999999999999999",
            400,
            "AuthorizationQueryParametersError",
            "604800",
        ),
        ("0", 403, "AccessDenied", "Request has expired"),
    ] {
        let url = minute.replace("X-Amz-Expires=60", &format!("X-Amz-Expires={expires}"));
        let r = http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), status, "X-Amz-Expires={expires}");
        let body = r.text().await.unwrap();
        assert!(body.contains(&format!("<Code>{code}</Code>")), "{body}");
        assert!(body.contains(message), "{body}");
    }

    let other = presigned_url(&s, "/sig/k", 60, "eu-west-1");
    let r = http.get(&other).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let body = r.text().await.unwrap();
    assert!(body.contains("AuthorizationQueryParametersError"), "{body}");
    assert!(
        body.contains("&apos;eu-west-1&apos; is wrong; expecting &apos;us-east-1&apos;"),
        "{body}"
    );

    // A header-signed request scoped to another region.
    let wrong = aws_sdk_s3::Client::from_conf(
        c.config()
            .to_builder()
            .region(aws_sdk_s3::config::Region::new("eu-west-1"))
            .build(),
    );
    let err = wrong
        .put_object()
        .bucket("sig")
        .key("k")
        .body(b"overwritten".to_vec().into())
        .send()
        .await
        .expect_err("another region's signature");
    assert_eq!(code_of(&err), "AuthorizationHeaderMalformed");
    assert_eq!(status_of(&err), 400);
    assert_eq!(get_bytes(&c, "sig", "k").await, b"signed");
    assert_no_panic(&s);
}

#[tokio::test]
async fn keys_xml_cannot_carry_are_refused_and_listings_stay_parsable() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("names").send().await.unwrap();
    for key in ["nul\0key", "ctl\u{1}\u{1b}\u{7f}key", "bell\u{7}"] {
        let err = c
            .put_object()
            .bucket("names")
            .key(key)
            .body(b"x".to_vec().into())
            .send()
            .await
            .expect_err("a key XML cannot carry");
        assert_eq!(code_of(&err), "InvalidArgument", "{key:?}");
        let err = c
            .create_multipart_upload()
            .bucket("names")
            .key(key)
            .send()
            .await
            .expect_err("a key XML cannot carry");
        assert_eq!(code_of(&err), "InvalidArgument", "{key:?}");
    }
    // Tab, line feed, carriage return and DEL are stored and listed exactly.
    let kept = [
        "tab\tkey",
        "lf\nkey",
        "cr\rkey",
        "crlf\r\nkey",
        "del\u{7f}key",
        "plain",
    ];
    for key in kept {
        put_bytes(&c, "names", key, key.as_bytes().to_vec()).await;
    }
    let listed = c.list_objects_v2().bucket("names").send().await.unwrap();
    let mut got: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    let mut want = kept.to_vec();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    let v1 = c.list_objects().bucket("names").send().await.unwrap();
    assert_eq!(v1.contents().len(), kept.len());
    for key in kept {
        assert_eq!(get_bytes(&c, "names", key).await, key.as_bytes());
    }
    assert_no_panic(&s);
}

#[tokio::test]
async fn an_empty_put_that_expects_100_continue_gets_it_first() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("cont").send().await.unwrap();
    let empty_sha = sha256_hex(b"");
    let head = signed_head(
        &s,
        "PUT",
        "/cont/empty",
        &[("content-length", "0"), ("expect", "100-continue")],
        &empty_sha,
    );
    let answer = raw_exchange(s.addr, &head, b"", Duration::from_secs(5)).await;
    assert!(
        answer.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200"),
        "{answer}"
    );
    // A PUT with a body still gets exactly one interim response (hyper's).
    let body = b"hello";
    let head = signed_head(
        &s,
        "PUT",
        "/cont/full",
        &[("content-length", "5"), ("expect", "100-continue")],
        &sha256_hex(body),
    );
    let answer = raw_exchange(s.addr, &head, body, Duration::from_secs(5)).await;
    assert_eq!(answer.matches("100 Continue").count(), 1, "{answer}");
    assert!(answer.contains("HTTP/1.1 200"), "{answer}");
    assert_eq!(get_bytes(&c, "cont", "empty").await, b"");
    assert_eq!(get_bytes(&c, "cont", "full").await, b"hello");
}

/// A replica handles at most 8 replication requests at once (each may hold a 64 MiB
/// body): a peer that opens more and stalls them makes the next wait, then get
/// `503 SlowDown`, instead of making the replica hold ever more memory; the turns
/// come back when those requests end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_bounds_the_replication_requests_it_holds_at_once() {
    let s = Server::start();
    let (ok, text) = cli(&s, &["bucket", "create", "mirror"]);
    assert!(ok, "{text}");
    let hello = serde_json::to_vec(&hoard::replication::Hello::ours()).unwrap();
    let head = signed_head(
        &s,
        "POST",
        "/hoard-replica/v1/hello?bucket=mirror",
        &[("content-length", &hello.len().to_string())],
        &sha256_hex(&hello),
    );
    let answer = raw_exchange(s.addr, &head, &hello, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let mut stalled = Vec::new();
    for _ in 0..8 {
        let head = signed_head(
            &s,
            "PUT",
            "/hoard-replica/v1/chunks?bucket=mirror",
            &[("content-length", &(32 << 20).to_string())],
            UNSIGNED,
        );
        let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        tcp.write_all(format!("{head}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        tcp.write_all(&[0u8; 1024]).await.unwrap();
        stalled.push(tcp);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let missing = |s: &Server| {
        signed_head(
            s,
            "POST",
            "/hoard-replica/v1/missing?bucket=mirror",
            &[("content-length", "32")],
            &sha256_hex(&[1u8; 32]),
        )
    };
    let started = Instant::now();
    let answer = raw_exchange(s.addr, &missing(&s), &[1u8; 32], Duration::from_secs(30)).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("<Code>SlowDown</Code>"), "{answer}");
    assert!(started.elapsed() >= Duration::from_secs(9));

    drop(stalled);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let answer = raw_exchange(s.addr, &missing(&s), &[1u8; 32], Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_no_panic(&s);
}
