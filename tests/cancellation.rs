//! Uploads that clients give up on: reset or cancelled at random points (mid-headers,
//! mid-body, right after the last byte, while the commit runs), over HTTP/1.1 and
//! HTTP/2, plain and TLS, for PutObject, UploadPart, CompleteMultipartUpload and
//! CopyObject. Afterwards no committed object may be lost, no reference may leak
//! (`hoard verify` is clean), and after `hoard gc --grace-period 0s` every listed
//! object reads back byte for byte.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures::SinkExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

const BUCKET: &str = "cancel";

type Chunks = futures::channel::mpsc::Receiver<Result<Frame<Bytes>, std::io::Error>>;
type ReqBody = StreamBody<Chunks>;

trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

#[derive(Clone, Copy, Debug)]
struct Link {
    tls: bool,
    h2: bool,
}

/// One listener of the server under test.
struct Target {
    addr: std::net::SocketAddr,
    tls: bool,
    ca: std::path::PathBuf,
}

impl Target {
    fn endpoint(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.addr
        )
    }
}

/// Where the client gives up.
#[derive(Clone, Copy, Debug)]
enum Cut {
    /// Only part of the request head is sent (HTTP/1.1), or nothing of the body.
    Headers,
    /// Part of the body, then the connection is reset.
    Body(f64),
    /// The whole body, then the client gives up after this many milliseconds
    /// (around the commit).
    After(u64),
    /// The client waits for the answer.
    Never,
}

/// Opens a connection: plain or TLS (trusting the server's CA), as the raw stream
/// (its TCP socket kept for a reset).
async fn open(server: &Target) -> (Box<dyn Io>, tokio::net::TcpStream) {
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let reset_handle = tcp.into_std().unwrap();
    let dup = reset_handle.try_clone().unwrap();
    let tcp = tokio::net::TcpStream::from_std(reset_handle).unwrap();
    let keeper = tokio::net::TcpStream::from_std(dup).unwrap();
    if !server.tls {
        return (Box::new(tcp), keeper);
    }
    let cfg = tls_client_config(&std::fs::read(&server.ca).unwrap());
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    (Box::new(tls), keeper)
}

/// Resets the connection (RST, not FIN), as a client killed or timed out does.
#[allow(deprecated)] // a zero linger never blocks: it resets
fn reset(keeper: tokio::net::TcpStream) {
    let _ = keeper.set_linger(Some(Duration::ZERO));
    drop(keeper);
}

/// A signed request (UNSIGNED-PAYLOAD) and its body's sender.
fn request(
    server: &Target,
    method: &str,
    path_and_query: &str,
    extra: &[(&str, &str)],
    len: usize,
) -> (
    http::Request<ReqBody>,
    futures::channel::mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>,
) {
    let url = format!("{}{}", server.endpoint(), path_and_query);
    let host = server.addr.to_string();
    let len_s = len.to_string();
    let mut signed: Vec<(&str, &str)> = vec![("host", host.as_str())];
    signed.extend_from_slice(extra);
    let auth = sigv4_headers(method, &url, &signed, "UNSIGNED-PAYLOAD", SECRET_KEY);
    let (tx, rx) = futures::channel::mpsc::channel(4);
    let mut b = http::Request::builder()
        .method(method)
        .uri(&url)
        .header("content-length", len_s.as_str());
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    for (k, v) in auth {
        b = b.header(k, v);
    }
    (b.body(StreamBody::new(rx)).unwrap(), tx)
}

/// Sends one request over a fresh connection, giving up as `cut` says; returns the
/// status and body when the answer came.
async fn attempt(
    server: &Target,
    link: Link,
    cut: Cut,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: Bytes,
) -> Option<(u16, Bytes)> {
    let (io, keeper) = open(server).await;
    if let (Cut::Headers, false) = (cut, link.h2) {
        // Part of the request head, written by hand, then a reset.
        let mut io = io;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: {}\r\ncontent-le",
            server.addr
        );
        let _ = io.write_all(head.as_bytes()).await;
        let _ = io.flush().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        reset(keeper);
        return None;
    }
    let (req, mut tx) = request(server, method, path, extra, body.len());
    let (respond, conn) = if link.h2 {
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
                .await
                .unwrap();
        let conn = tokio::spawn(conn);
        let respond: futures::future::BoxFuture<'static, _> =
            Box::pin(async move { send.send_request(req).await });
        (respond, conn)
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .unwrap();
        let conn = tokio::spawn(conn);
        let respond: futures::future::BoxFuture<'static, _> =
            Box::pin(async move { send.send_request(req).await });
        (respond, conn)
    };
    let respond = tokio::spawn(async move {
        let resp = respond.await.ok()?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        Some((status, body))
    });
    let sent_upto = match cut {
        Cut::Headers => 0,
        Cut::Body(share) => {
            ((body.len() as f64 * share) as usize).min(body.len().saturating_sub(1))
        }
        Cut::After(_) | Cut::Never => body.len(),
    };
    let mut at = 0;
    while at < sent_upto {
        let end = (at + 64 * 1024).min(sent_upto);
        if tx.send(Ok(Frame::data(body.slice(at..end)))).await.is_err() {
            break;
        }
        at = end;
    }
    match cut {
        Cut::Never => {
            drop(tx);
            let out = tokio::time::timeout(Duration::from_secs(60), respond)
                .await
                .ok()?
                .ok()?;
            conn.abort();
            out
        }
        Cut::After(ms) => {
            drop(tx);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            let out = if respond.is_finished() {
                respond.await.ok()?
            } else {
                respond.abort();
                None
            };
            conn.abort();
            reset(keeper);
            out
        }
        Cut::Headers | Cut::Body(_) => {
            tokio::time::sleep(Duration::from_millis(2)).await;
            respond.abort();
            conn.abort();
            reset(keeper);
            None
        }
    }
}

fn pick_cut(rng: &mut impl Rng) -> Cut {
    match rng.random_range(0..10) {
        0 => Cut::Headers,
        1..=3 => Cut::Body(rng.random_range(0.0..1.0)),
        4..=7 => Cut::After(rng.random_range(0..25)),
        _ => Cut::Never,
    }
}

fn complete_xml(parts: &[(u32, String)]) -> String {
    let mut x = String::from("<CompleteMultipartUpload>");
    for (n, etag) in parts {
        x.push_str(&format!(
            "<Part><PartNumber>{n}</PartNumber><ETag>\"{etag}\"</ETag></Part>"
        ));
    }
    x.push_str("</CompleteMultipartUpload>");
    x
}

/// What the test knows of each key: the bytes an upload of it sent, and whether
/// the server acknowledged it.
#[derive(Default)]
struct Ledger {
    sent: HashMap<String, Vec<u8>>,
    acked: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uploads_cancelled_at_random_points_lose_nothing_and_leave_nothing_behind() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let plain_addr = free.local_addr().unwrap();
    drop(free);
    let plain_arg = plain_addr.to_string();
    let server = Server::start_with(&["--tls", "--listen-plain", &plain_arg]);
    let tls = Target {
        addr: server.addr,
        tls: true,
        ca: server.ca_pem(),
    };
    let plain = Target {
        addr: plain_addr,
        tls: false,
        ca: server.ca_pem(),
    };
    let c = server.client();
    c.create_bucket().bucket(BUCKET).send().await.unwrap();
    let ledger = Arc::new(Mutex::new(Ledger::default()));

    // Copy sources, and multipart uploads that cancelled parts go into.
    let mut sources = Vec::new();
    for i in 0..4 {
        let data = random_bytes(900 + i, 600_000 + i as usize * 97_000);
        let key = format!("source-{i}");
        put_bytes(&c, BUCKET, &key, data.clone()).await;
        ledger.lock().unwrap().sent.insert(key.clone(), data);
        ledger.lock().unwrap().acked.push(key.clone());
        sources.push(key);
    }
    let mut uploads = Vec::new();
    for i in 0..6 {
        let key = format!("parts-{i}");
        let id = create_upload(&c, &key).await;
        uploads.push((key, id));
    }

    let attempts: usize = std::env::var("HOARD_CANCEL_ATTEMPTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let links = [
        Link {
            tls: false,
            h2: false,
        },
        Link {
            tls: false,
            h2: true,
        },
        Link {
            tls: true,
            h2: false,
        },
        Link {
            tls: true,
            h2: true,
        },
    ];
    let server = Arc::new(server);
    let tls_server = Arc::new(tls);
    let plain_server = Arc::new(plain);
    let mut tasks = Vec::new();
    let workers = 8;
    for w in 0..workers {
        let (tls_server, plain_server, ledger) =
            (tls_server.clone(), plain_server.clone(), ledger.clone());
        let c = server.client();
        let (sources, uploads) = (sources.clone(), uploads.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(w as u64);
            for i in (w..attempts).step_by(workers) {
                let link = links[i % links.len()];
                let server: &Target = if link.tls { &tls_server } else { &plain_server };
                let cut = pick_cut(&mut rng);
                match rng.random_range(0..10) {
                    0..=5 => {
                        let key = format!("put-{i}");
                        let len = match rng.random_range(0..4) {
                            0 => rng.random_range(0..20_000),
                            _ => rng.random_range(20_000..3_000_000),
                        };
                        let data = random_bytes(i as u64, len);
                        ledger
                            .lock()
                            .unwrap()
                            .sent
                            .insert(key.clone(), data.clone());
                        let out = attempt(
                            server,
                            link,
                            cut,
                            "PUT",
                            &format!("/{BUCKET}/{key}"),
                            &[],
                            Bytes::from(data),
                        )
                        .await;
                        if out.is_some_and(|(s, _)| s == 200) {
                            ledger.lock().unwrap().acked.push(key);
                        }
                    }
                    6 => {
                        let (key, id) = &uploads[i % uploads.len()];
                        let n = rng.random_range(1..6);
                        let data = Bytes::from(random_bytes(
                            i as u64,
                            rng.random_range(100_000..1_500_000),
                        ));
                        let path = format!("/{BUCKET}/{key}?partNumber={n}&uploadId={id}");
                        attempt(server, link, cut, "PUT", &path, &[], data).await;
                    }
                    7 => {
                        // An upload of two parts, completed with a cut.
                        let key = format!("mp-{i}");
                        let parts = [
                            random_bytes(i as u64, 5 << 20),
                            random_bytes(i as u64 + 1, 70_000),
                        ];
                        let id = create_upload(&c, &key).await;
                        let mut etags = Vec::new();
                        for (n, p) in parts.iter().enumerate() {
                            let r = c
                                .upload_part()
                                .bucket(BUCKET)
                                .key(&key)
                                .upload_id(&id)
                                .part_number(n as i32 + 1)
                                .body(p.clone().into())
                                .send()
                                .await
                                .unwrap();
                            etags.push((
                                n as u32 + 1,
                                r.e_tag().unwrap().trim_matches('"').to_owned(),
                            ));
                        }
                        ledger
                            .lock()
                            .unwrap()
                            .sent
                            .insert(key.clone(), parts.concat());
                        let xml = complete_xml(&etags);
                        let path = format!("/{BUCKET}/{key}?uploadId={id}");
                        let out =
                            attempt(server, link, cut, "POST", &path, &[], Bytes::from(xml)).await;
                        if out.as_ref().is_some_and(|(s, b)| {
                            *s == 200 && !b.windows(7).any(|w| w == b"<Error>")
                        }) {
                            ledger.lock().unwrap().acked.push(key);
                        }
                    }
                    _ => {
                        let key = format!("copy-{i}");
                        let src = &sources[i % sources.len()];
                        let data = ledger.lock().unwrap().sent[src].clone();
                        ledger.lock().unwrap().sent.insert(key.clone(), data);
                        let source = format!("/{BUCKET}/{src}");
                        let cut = match cut {
                            Cut::Body(_) => Cut::After(rng.random_range(0..10)),
                            c => c,
                        };
                        let out = attempt(
                            server,
                            link,
                            cut,
                            "PUT",
                            &format!("/{BUCKET}/{key}"),
                            &[("x-amz-copy-source", source.as_str())],
                            Bytes::new(),
                        )
                        .await;
                        if out.is_some_and(|(s, _)| s == 200) {
                            ledger.lock().unwrap().acked.push(key);
                        }
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let ledger = ledger.lock().unwrap();
    assert!(
        ledger.acked.len() > attempts / 10,
        "too few uploads completed: {}",
        ledger.acked.len()
    );

    // Releases of abandoned uploads run in the background: give them a moment.
    let mut report = String::new();
    for _ in 0..50 {
        let (ok, out) = cli(&server, &["verify"]);
        report = out;
        if ok {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        !report.contains("COUNT"),
        "references leaked or were lost:\n{report}"
    );
    assert!(
        !report.contains("DAMAGED") && !report.contains("MISSING"),
        "{report}"
    );

    let (ok, out) = cli(&server, &["gc", "--grace-period", "0s"]);
    assert!(ok, "{out}");
    let listed = list_all(&c).await;
    for key in &ledger.acked {
        assert!(listed.contains(key), "acknowledged {key} is not listed");
    }
    for key in &listed {
        let got = get_bytes(&c, BUCKET, key).await;
        let want = &ledger.sent[key];
        assert!(
            got == *want,
            "{key}: {} bytes read, {} sent",
            got.len(),
            want.len()
        );
    }
    let (ok, out) = cli(&server, &["verify"]);
    assert!(ok, "{out}");
    assert_no_panic(&server);
    eprintln!(
        "{} attempts, {} acknowledged, {} listed",
        attempts,
        ledger.acked.len(),
        listed.len()
    );
}

async fn create_upload(c: &aws_sdk_s3::Client, key: &str) -> String {
    let up = c
        .create_multipart_upload()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .unwrap();
    up.upload_id().unwrap().to_owned()
}

async fn list_all(c: &aws_sdk_s3::Client) -> Vec<String> {
    let mut keys = Vec::new();
    let mut pages = c.list_objects_v2().bucket(BUCKET).into_paginator().send();
    while let Some(page) = pages.next().await {
        for o in page.unwrap().contents() {
            keys.push(o.key().unwrap().to_owned());
        }
    }
    keys
}
