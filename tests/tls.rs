//! TLS on the listener: the generated CA, refusals, a user's own certificate and its
//! reload on SIGHUP.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: usize = 1024 * 1024;

/// SHA-256 of the first certificate in a PEM file, as `hoard cert show` prints it.
fn pem_fingerprint(path: &Path) -> String {
    use base64::Engine as _;
    let text = std::fs::read_to_string(path).unwrap();
    let b64: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let d = ring::digest::digest(&ring::digest::SHA256, &der);
    d.as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[tokio::test]
async fn the_sdk_works_over_https_trusting_the_generated_ca_and_others_are_refused() {
    let s = Server::start_with(&["--tls"]);
    assert_eq!(s.scheme, "https");
    let tls = s.data_dir().join("tls");
    for f in ["ca.pem", "server.pem", "server.key"] {
        assert!(tls.join(f).exists(), "{f}");
    }
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(tls.join("server.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o077,
        0,
        "the private key is readable by its owner only"
    );

    let c = s.client();
    c.create_bucket().bucket("sec").send().await.unwrap();
    let data = random_bytes(1, 3 * MIB);
    put_bytes(&c, "sec", "obj", data.clone()).await;
    assert_eq!(get_bytes(&c, "sec", "obj").await, data);
    // The certificate names localhost as well as 127.0.0.1.
    let ca = std::fs::read(s.ca_pem()).unwrap();
    let by_name = tls_client_for(&format!("https://localhost:{}", s.addr.port()), Some(&ca));
    assert_eq!(get_bytes(&by_name, "sec", "obj").await, data);

    // A client that trusts only the public roots is refused in the handshake.
    let untrusted = tls_client_for(&s.endpoint(), None);
    let err = untrusted.list_buckets().send().await.unwrap_err();
    assert!(
        err.raw_response().is_none(),
        "no HTTP answer without trust: {err:?}"
    );
    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = raw_exchange(
        s.addr,
        "GET / HTTP/1.1\r\nhost: x",
        b"",
        Duration::from_secs(5),
    )
    .await;
    assert!(!plain.starts_with("HTTP/"), "{plain}");

    // `hoard cert show` names the CA and the fingerprints clients and peers pin.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hoard"))
        .args(["cert", "show", "--data-dir"])
        .arg(s.data_dir())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(&s.ca_pem().display().to_string()), "{text}");
    assert!(
        text.contains(&format!(
            "server SHA-256 fingerprint: {}",
            pem_fingerprint(&tls.join("server.pem"))
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "CA SHA-256 fingerprint: {}",
            pem_fingerprint(&s.ca_pem())
        )),
        "{text}"
    );

    // The admin CLI reaches the server over https with --ca.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hoard"))
        .args(["stats", "--endpoint", &s.endpoint(), "--ca"])
        .arg(s.ca_pem())
        .env("HOARD_ROOT_ACCESS_KEY", ACCESS_KEY)
        .env("HOARD_ROOT_SECRET_KEY", SECRET_KEY)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("sec "), "{text}");
    assert_no_panic(&s);
}

#[tokio::test]
async fn a_tls_1_1_client_is_refused_and_the_server_serves_on() {
    let s = Server::start_with(&["--tls"]);
    // A ClientHello offering only TLS 1.1 (no supported_versions extension).
    let mut body = vec![0x03, 0x02];
    body.extend_from_slice(&[7u8; 32]);
    body.push(0); // session id
    body.extend_from_slice(&[0x00, 0x04, 0x00, 0x2f, 0x00, 0x35]);
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    let mut hs = vec![0x01, 0, (body.len() >> 8) as u8, body.len() as u8];
    hs.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x02, (hs.len() >> 8) as u8, hs.len() as u8];
    record.extend_from_slice(&hs);
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(&record).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server closes the connection");
    assert_eq!(
        answer.first(),
        Some(&0x15),
        "an alert, not a ServerHello: {answer:?}"
    );
    assert!(s.log().contains("TLS handshake failed") || !answer.is_empty());

    let c = s.client();
    c.create_bucket().bucket("still").send().await.unwrap();
    assert_no_panic(&s);
}

/// Waits up to 10 s for `text` to appear in the server log.
async fn wait_for_log(s: &Server, text: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !s.log().contains(text) {
        assert!(
            std::time::Instant::now() < deadline,
            "no {text:?} in:\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A CA and a leaf certificate for 127.0.0.1 it signs: (ca pem, leaf chain pem, key pem).
fn issue(name: &str) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} CA"));
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
        .unwrap()
        .signed_by(&key, &rcgen::Issuer::new(ca, &ca_key))
        .unwrap();
    (ca_cert.pem(), leaf.pem(), key.serialize_pem())
}

#[tokio::test]
async fn an_own_certificate_is_reloaded_on_sighup_while_an_old_connection_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let (ca1, leaf1, key1) = issue("first");
    let (ca2, leaf2, key2) = issue("second");
    std::fs::write(&cert, &leaf1).unwrap();
    std::fs::write(&key, &key1).unwrap();
    let s = Server::start_with(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    assert_eq!(s.scheme, "https");
    let first = tls_client_for(&s.endpoint(), Some(ca1.as_bytes()));
    first.create_bucket().bucket("rel").send().await.unwrap();

    // An upload on a connection made with the first certificate, half sent.
    let cfg = tls_client_config(ca1.as_bytes());
    let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut old = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .unwrap();
    let body = random_bytes(2, 2 * MIB);
    let head = signed_head(
        &s,
        "PUT",
        "/rel/slow",
        &[("content-length", &body.len().to_string())],
        "UNSIGNED-PAYLOAD",
    );
    old.write_all(format!("{head}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    old.write_all(&body[..MIB]).await.unwrap();

    // New files, then SIGHUP.
    std::fs::write(&cert, &leaf2).unwrap();
    std::fs::write(&key, &key2).unwrap();
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &s.pid().to_string()])
            .status()
            .unwrap()
            .success()
    );
    wait_for_log(&s, "TLS certificate reloaded").await;
    // New handshakes get the second certificate.
    let second = tls_client_for(&s.endpoint(), Some(ca2.as_bytes()));
    second.list_buckets().send().await.unwrap();
    let stale = tls_client_for(&s.endpoint(), Some(ca1.as_bytes()));
    assert!(stale.list_buckets().send().await.is_err());

    // The old connection finishes its upload.
    old.write_all(&body[MIB..]).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), old.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(get_bytes(&second, "rel", "slow").await, body);

    // A reload of broken files keeps the certificate in use.
    std::fs::write(&key, "not a key").unwrap();
    std::process::Command::new("kill")
        .args(["-HUP", &s.pid().to_string()])
        .status()
        .unwrap();
    wait_for_log(&s, "TLS reload failed").await;
    second.list_buckets().send().await.unwrap();
    assert_no_panic(&s);
}

#[tokio::test]
async fn rsa_4096_certificates_are_generated_on_request() {
    let s = Server::start_with(&["--tls", "--tls-key-type", "rsa4096"]);
    let key = std::fs::read_to_string(s.data_dir().join("tls").join("server.key")).unwrap();
    // A PKCS#8 RSA 4096 key is about 3.2 KB of PEM; a P-256 key about 240 bytes.
    assert!(
        key.contains("PRIVATE KEY") && key.len() > 3000,
        "{}",
        key.len()
    );
    let c = s.client();
    c.create_bucket().bucket("rsa").send().await.unwrap();
    put_bytes(&c, "rsa", "k", b"over rsa".repeat(4000)).await;
    assert_eq!(get_bytes(&c, "rsa", "k").await, b"over rsa".repeat(4000));
}
