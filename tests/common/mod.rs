//! Test harness: runs the real `hoard` binary on 127.0.0.1 with a fresh data dir and
//! drives it with aws-sdk-s3. Servers are killed when the harness is dropped.
#![allow(dead_code)]

mod fault_proxy;
mod moto;
mod pg;
mod s3fs;
#[allow(unused_imports)]
pub use fault_proxy::FaultProxy;
#[allow(unused_imports)]
pub use moto::Moto;
#[allow(unused_imports)]
pub use pg::{Cluster, Site, database_bytes, gateway_id};
#[allow(unused_imports)]
pub use s3fs::{S3FS_ACCESS_KEY, S3FS_SECRET_KEY, S3Fs, files_below};

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};

pub const ACCESS_KEY: &str = "hoardtestaccess";
pub const SECRET_KEY: &str = "hoardtestsecret0123456789";

pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    /// "http" or "https".
    pub scheme: String,
    tmp: tempfile::TempDir,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    /// The object store of a server started in mode "cloud" by `HOARD_TEST_CLOUD`.
    cloud: Option<S3Fs>,
    /// The PostgreSQL database of a server started by `HOARD_TEST_POSTGRES`.
    meta_url: Option<String>,
}

/// `HOARD_TEST_CLOUD=1` (scripts/nightly.sh) starts every server that brings no
/// config of its own in mode "cloud", its segments in an s3s-fs of its own: the same
/// tests then run against the `s3` backend.
fn cloud_store_for(dir: &Path, args: &[String], envs: &[(String, String)]) -> Option<S3Fs> {
    let own_config =
        args.iter().any(|a| a == "--config") || envs.iter().any(|(k, _)| k == "HOARD_CONFIG");
    if own_config || std::env::var_os("HOARD_TEST_CLOUD").is_none() {
        return None;
    }
    let store = S3Fs::start("segments");
    let config = store.hoard_config(dir, "segments", "hoard");
    // A small restore cache, so that the memory bounds the tests assert hold with it.
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("[segments.cache]\nmemory_mib = 32\ndisk_mib = 256\n");
    std::fs::write(&config, text).unwrap();
    Some(store)
}

impl Server {
    pub fn start() -> Server {
        Self::start_with(&[])
    }

    /// Starts with extra `hoard serve` flags.
    pub fn start_with(args: &[&str]) -> Server {
        Self::start_with_env(args, &[])
    }

    /// Starts with extra `hoard serve` flags and environment variables.
    pub fn start_with_env(args: &[&str], envs: &[(&str, &str)]) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut envs: Vec<(String, String)> = envs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let cloud = cloud_store_for(tmp.path(), &args, &envs);
        if cloud.is_some() {
            let config = tmp.path().join("cloud.toml");
            envs.push(("HOARD_CONFIG".into(), config.display().to_string()));
        }
        let given = envs
            .iter()
            .find(|(k, _)| k == "HOARD_META")
            .map(|(_, v)| v.clone());
        let meta_url = given.or_else(|| {
            let url = pg::fresh_database()?;
            envs.push(("HOARD_META".into(), url.clone()));
            // A restarted server is a new gateway: a short lease lets what the
            // killed one held (its cleaner turn, its uploads' references) pass on
            // within seconds, as a test expects of one process.
            if !envs.iter().any(|(k, _)| k == "HOARD_META_LEASE_SECS") {
                envs.push(("HOARD_META_LEASE_SECS".into(), "3".into()));
            }
            Some(url)
        });
        let (child, scheme, addr) = spawn(
            &tmp.path().join("data"),
            &tmp.path().join("server.log"),
            &args,
            &envs,
            "127.0.0.1:0",
        );
        Server {
            child: Some(child),
            addr,
            scheme,
            tmp,
            args,
            envs,
            cloud,
            meta_url,
        }
    }

    /// The bytes of the server's metadata as they rest: the redb file, or every row
    /// of its PostgreSQL database.
    pub fn metadata_bytes(&self) -> Vec<u8> {
        match &self.meta_url {
            Some(url) => pg::database_bytes(url),
            None => std::fs::read(self.data_dir().join("meta.redb")).expect("meta.redb"),
        }
    }

    /// What `hoard serve` on this server's data dir and metadata (with `args` and
    /// `envs` besides) said on stderr when it refused to start.
    pub fn serve_refused(&self, args: &[&str], envs: &[(&str, &str)]) -> String {
        let mut envs = envs.to_vec();
        if let Some(url) = &self.meta_url {
            envs.push(("HOARD_META", url));
        }
        serve_refused(&self.data_dir(), args, &envs)
    }

    /// Whether `HOARD_TEST_POSTGRES` put this server's metadata in PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.meta_url.is_some()
    }

    /// Whether `HOARD_TEST_CLOUD` put this server's segments in an object store.
    pub fn is_cloud(&self) -> bool {
        self.cloud.is_some()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.tmp.path().join("data")
    }

    pub fn endpoint(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// The generated CA certificate of a server started with --tls.
    pub fn ca_pem(&self) -> PathBuf {
        self.data_dir().join("tls").join("ca.pem")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// An SDK client; over https it trusts the server's generated CA.
    pub fn client(&self) -> aws_sdk_s3::Client {
        if self.scheme == "https" {
            let ca = std::fs::read(self.ca_pem()).expect("ca.pem");
            return tls_client_for(&self.endpoint(), Some(&ca));
        }
        client_for(&self.endpoint(), ACCESS_KEY, SECRET_KEY, true)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join("server.log")).unwrap_or_default()
    }

    /// kill -9, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns whether it exited successfully.
    pub fn stop(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        for _ in 0..600 {
            if let Ok(Some(status)) = c.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }

    /// Starts again on the same data dir and port.
    pub fn restart(&mut self) {
        self.kill9();
        let listen = self.addr.to_string();
        let (child, scheme, addr) = spawn(
            &self.data_dir(),
            &self.tmp.path().join("server.log"),
            &self.args,
            &self.envs,
            &listen,
        );
        self.child = Some(child);
        self.scheme = scheme;
        self.addr = addr;
    }

    /// Opens the metadata store of a stopped server.
    pub fn meta(&self) -> hoard::meta::MetaStore {
        assert!(
            self.child.is_none(),
            "stop the server before opening its metadata"
        );
        match &self.meta_url {
            Some(url) => hoard::meta::MetaStore::open_postgres(url, 4, None, 30),
            None => hoard::meta::MetaStore::open(&self.data_dir().join("meta.redb"), 16 << 20),
        }
        .expect("open meta")
    }

    /// Peak resident memory of the server process (VmHWM), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn spawn(
    data: &Path,
    log: &Path,
    args: &[String],
    envs: &[(String, String)],
    listen: &str,
) -> (Child, String, SocketAddr) {
    // The test binaries link rustls with two providers (the SDK's and hoard's), so
    // reqwest needs one chosen for the process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_hoard"))
        .arg("serve")
        .arg("--listen")
        .arg(listen)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env("HOARD_ROOT_ACCESS_KEY", ACCESS_KEY)
        .env("HOARD_ROOT_SECRET_KEY", SECRET_KEY)
        .env("HOARD_LOG", "info,s3s=off")
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn hoard");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(url) = line.strip_prefix("hoard: listening on ")
                && let Some((scheme, addr)) = url.trim().split_once("://")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send((scheme.to_owned(), addr.to_owned()));
            }
        }
    });
    let (scheme, addr) = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("hoard did not start listening within 60 s");
    (child, scheme, addr.parse().expect("listen address"))
}

pub fn client_for(
    endpoint: &str,
    access: &str,
    secret: &str,
    path_style: bool,
) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(sdk_config(endpoint, access, secret, path_style).build())
}

/// The SDK settings every test client shares.
fn sdk_config(
    endpoint: &str,
    access: &str,
    secret: &str,
    path_style: bool,
) -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(access, secret, None, None, "test"))
        .force_path_style(path_style)
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
}

/// An SDK client over https that trusts exactly the CA certificates in `ca` (PEM), or
/// the system's roots when `None`.
pub fn tls_client_for(endpoint: &str, ca: Option<&[u8]>) -> aws_sdk_s3::Client {
    tls_client_as(endpoint, ca, ACCESS_KEY, SECRET_KEY)
}

/// `tls_client_for` with other keys.
pub fn tls_client_as(
    endpoint: &str,
    ca: Option<&[u8]>,
    access: &str,
    secret: &str,
) -> aws_sdk_s3::Client {
    use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
    let store = match ca {
        Some(pem) => TrustStore::empty().with_pem_certificate(pem),
        None => TrustStore::default(),
    };
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .tls_context(
            TlsContext::builder()
                .with_trust_store(store)
                .build()
                .expect("tls context"),
        )
        .build_https();
    let conf = sdk_config(endpoint, access, secret, true).http_client(http);
    aws_sdk_s3::Client::from_conf(conf.build())
}

/// Deterministic pseudo-random bytes (xorshift), so tests can regenerate data.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    fill_random(seed, &mut out);
    out
}

pub fn fill_random(seed: u64, buf: &mut [u8]) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for chunk in buf.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
}

pub fn md5_hex(data: &[u8]) -> String {
    use s3s::crypto::Checksum as _;
    let mut m = s3s::crypto::Md5::new();
    m.update(data);
    hex::encode(m.finalize())
}

/// The error code of an SDK error, if the service sent one.
pub fn code_of<E, R>(err: &aws_sdk_s3::error::SdkError<E, R>) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata,
{
    err.as_service_error()
        .and_then(|e| e.code())
        .unwrap_or("")
        .to_owned()
}

/// The HTTP status of an SDK error response.
pub fn status_of<E>(
    err: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> u16 {
    err.raw_response().map(|r| r.status().as_u16()).unwrap_or(0)
}

pub async fn get_bytes(c: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<u8> {
    try_get_bytes(c, bucket, key).await.expect("get_object")
}

/// The bytes of `range` ("bytes=A-B") of an object.
pub async fn get_range(c: &aws_sdk_s3::Client, bucket: &str, key: &str, range: &str) -> Vec<u8> {
    c.get_object()
        .bucket(bucket)
        .key(key)
        .range(range)
        .send()
        .await
        .expect("ranged get_object")
        .body
        .collect()
        .await
        .expect("ranged body")
        .into_bytes()
        .to_vec()
}

/// The bytes of version `v` of an object.
pub async fn get_version(c: &aws_sdk_s3::Client, bucket: &str, key: &str, v: &str) -> Vec<u8> {
    c.get_object()
        .bucket(bucket)
        .key(key)
        .version_id(v)
        .send()
        .await
        .expect("get version")
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes()
        .to_vec()
}

/// An object's bytes, or what failed: the request, or its body midway.
pub async fn try_get_bytes(
    c: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<Vec<u8>, String> {
    let out = c
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let body = out.body.collect().await.map_err(|e| e.to_string())?;
    Ok(body.into_bytes().to_vec())
}

/// Deletes `keys` of `bucket` (their current versions).
pub async fn delete_keys(c: &aws_sdk_s3::Client, bucket: &str, keys: &[&str]) {
    for key in keys {
        c.delete_object()
            .bucket(bucket)
            .key(*key)
            .send()
            .await
            .unwrap();
    }
}

pub async fn put_bytes(c: &aws_sdk_s3::Client, bucket: &str, key: &str, data: Vec<u8>) -> String {
    let out = c
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(aws_sdk_s3::primitives::ByteStream::from(data))
        .send()
        .await
        .expect("put_object");
    out.e_tag().unwrap_or("").trim_matches('"').to_owned()
}

/// The CompleteMultipartUpload body naming parts 1, 2, ... with these ETags.
pub fn completed(etags: &[&str]) -> aws_sdk_s3::types::CompletedMultipartUpload {
    let parts = etags
        .iter()
        .zip(1..)
        .map(|(e, n)| {
            aws_sdk_s3::types::CompletedPart::builder()
                .part_number(n)
                .e_tag(*e)
                .build()
        })
        .collect();
    aws_sdk_s3::types::CompletedMultipartUpload::builder()
        .set_parts(Some(parts))
        .build()
}

/// Uploads `parts` as one multipart object; returns its ETag.
pub async fn put_multipart(
    c: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    parts: &[Vec<u8>],
) -> String {
    try_put_multipart(c, bucket, key, parts)
        .await
        .expect("multipart upload")
}

/// A multipart upload of `parts`, created, uploaded and completed; the ETag, or the
/// first step's error.
pub async fn try_put_multipart(
    c: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    parts: &[Vec<u8>],
) -> Result<String, String> {
    let e = |x: &dyn std::fmt::Debug| format!("{x:?}");
    let up = c
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|x| e(&x))?;
    let id = up.upload_id().unwrap_or_default();
    let mut done = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let n = i as i32 + 1;
        let r = c
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(id)
            .part_number(n)
            .body(p.clone().into())
            .send()
            .await
            .map_err(|x| e(&x))?;
        done.push(r.e_tag().unwrap_or_default().to_owned());
    }
    let done: Vec<&str> = done.iter().map(String::as_str).collect();
    let out = c
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(id)
        .multipart_upload(completed(&done))
        .send()
        .await
        .map_err(|x| e(&x))?;
    Ok(out.e_tag().unwrap_or_default().to_owned())
}

/// A rustls client configuration trusting exactly the certificates in `ca_pem`.
pub fn tls_client_config(ca_pem: &[u8]) -> rustls::ClientConfig {
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth()
}

pub async fn set_versioning(
    c: &aws_sdk_s3::Client,
    bucket: &str,
    status: aws_sdk_s3::types::BucketVersioningStatus,
) {
    c.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(status)
                .build(),
        )
        .send()
        .await
        .expect("put bucket versioning");
}

/// A client of the running server's admin API, with the test root key.
pub fn admin(server: &Server) -> hoard::client::AdminClient {
    let creds = hoard::auth::Credentials {
        access_key: ACCESS_KEY.into(),
        secret_key: SECRET_KEY.into(),
    };
    let ca = server.ca_pem();
    let ca = ca.exists().then_some(ca.as_path());
    hoard::client::AdminClient::new(&server.endpoint(), "us-east-1", creds, ca).unwrap()
}

/// Stats from the admin endpoint of a running server.
pub async fn stats(server: &Server) -> hoard::stats::StatsReport {
    admin(server).stats(None).await.expect("stats")
}

/// SigV4 headers (authorization, x-amz-date, x-amz-content-sha256) for a request
/// whose payload hash is `content_sha256` (a hex digest or a STREAMING-/UNSIGNED-
/// constant). `headers` are signed too and must be sent as given.
pub fn sigv4_headers(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    content_sha256: &str,
    secret: &str,
) -> Vec<(String, String)> {
    let creds = hoard::auth::Credentials {
        access_key: ACCESS_KEY.into(),
        secret_key: secret.into(),
    };
    hoard::signed_client::sigv4_headers(&creds, "us-east-1", method, url, headers, content_sha256)
        .expect("sign")
}

/// Sends `head` (request line and headers, without the blank line) and `body` on a
/// fresh connection and returns everything the server answers until it closes or
/// `wait` passes. The request asks the server to close the connection.
pub async fn raw_exchange(addr: SocketAddr, head: &str, body: &[u8], wait: Duration) -> String {
    raw_send(addr, head, body, false, wait).await
}

/// Like `raw_exchange`, but closes the sending side after `body`, as a client that
/// goes away mid-upload does.
pub async fn raw_send(
    addr: SocketAddr,
    head: &str,
    body: &[u8],
    half_close: bool,
    wait: Duration,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("{head}\r\nconnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    s.write_all(body).await.unwrap();
    if half_close {
        let _ = s.shutdown().await;
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A request head with SigV4 headers for `path` on the server.
pub fn signed_head(
    server: &Server,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    content_sha256: &str,
) -> String {
    let url = format!("{}{}", server.endpoint(), path);
    let host = server.addr.to_string();
    let mut signed: Vec<(&str, &str)> = vec![("host", host.as_str())];
    signed.extend_from_slice(extra);
    let auth = sigv4_headers(method, &url, &signed, content_sha256, SECRET_KEY);
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {host}");
    for (k, v) in extra {
        head.push_str(&format!("\r\n{k}: {v}"));
    }
    for (k, v) in auth {
        if k != "host" {
            head.push_str(&format!("\r\n{k}: {v}"));
        }
    }
    head
}

/// Asserts the server never panicked.
pub fn assert_no_panic(server: &Server) {
    let log = server.log();
    assert!(
        !log.contains("panicked"),
        "server log shows a panic:\n{log}"
    );
}

/// Runs the `hoard` CLI against `s` with the root keys; (exit success, stdout+stderr).
pub fn cli(s: &Server, args: &[&str]) -> (bool, String) {
    cli_with(s, &[], args)
}

/// `cli` with extra environment variables.
pub fn cli_with(s: &Server, extra: &[(&str, &str)], args: &[&str]) -> (bool, String) {
    let endpoint = s.endpoint();
    let ca = s.ca_pem().display().to_string();
    let mut env = vec![
        ("HOARD_ENDPOINT", endpoint.as_str()),
        ("HOARD_ROOT_ACCESS_KEY", ACCESS_KEY),
        ("HOARD_ROOT_SECRET_KEY", SECRET_KEY),
    ];
    if s.scheme == "https" {
        env.push(("HOARD_CA", ca.as_str()));
    }
    env.extend_from_slice(extra);
    cli_env(&env, args)
}

/// What `hoard serve` on `data_dir` (with `args` and `envs`) said on stderr when it
/// refused to start; panics if it started.
pub fn serve_refused(data_dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hoard"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(args)
        .env("HOARD_ROOT_ACCESS_KEY", ACCESS_KEY)
        .env("HOARD_ROOT_SECRET_KEY", SECRET_KEY)
        .envs(envs.iter().copied())
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "hoard serve started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs the `hoard` CLI with exactly the `HOARD_*`, `HOME` and `XDG_CONFIG_HOME`
/// variables given; (exit success, stdout+stderr).
pub fn cli_env(env: &[(&str, &str)], args: &[&str]) -> (bool, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hoard"));
    for (k, _) in std::env::vars() {
        if k.starts_with("HOARD_") || k == "HOME" || k == "XDG_CONFIG_HOME" {
            cmd.env_remove(k);
        }
    }
    let out = cmd.args(args).envs(env.iter().copied()).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The Prometheus exposition of `s`.
pub async fn metrics_text(s: &Server) -> String {
    let ca = (s.scheme == "https").then(|| s.ca_pem());
    let tls = hoard::tls::client_config(ca.as_deref()).unwrap();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .unwrap()
        .get(format!("{}/metrics", s.endpoint()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value on the first exposition line starting with `line_prefix`.
pub fn metric(text: &str, line_prefix: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(line_prefix)
            .and_then(|v| v.trim().parse().ok())
    })
}

/// A user's key pair as `hoard user add` / `rotate-key` printed it.
pub struct Key {
    pub access: String,
    pub secret: String,
}

pub fn parse_key(text: &str) -> Key {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
            .trim()
            .to_owned()
    };
    Key {
        access: field("access key:"),
        secret: field("secret key:"),
    }
}

pub fn add_user(s: &Server, name: &str, grants: &[&str]) -> Key {
    let mut args = vec!["user", "add", name];
    for g in grants {
        args.extend(["--grant", g]);
    }
    let (ok, text) = cli(s, &args);
    assert!(ok, "hoard user add {name}: {text}");
    parse_key(&text)
}

pub fn client_as(s: &Server, k: &Key) -> aws_sdk_s3::Client {
    client_for(&s.endpoint(), &k.access, &k.secret, true)
}

impl Server {
    /// Where the segment store keeps `segments/` and `quarantine/`: the data dir, or
    /// in mode "cloud" the directory of the objects' files in its s3s-fs.
    pub fn store_root(&self) -> PathBuf {
        match &self.cloud {
            Some(store) => store.bucket_dir("segments").join("hoard"),
            None => self.data_dir(),
        }
    }
}

/// Segment files by id, lowest (oldest) first (so that a test can damage them, in
/// mode "cloud" too).
pub fn segment_files(s: &Server) -> Vec<(u64, PathBuf)> {
    let mut out = Vec::new();
    for fan in std::fs::read_dir(s.store_root().join("segments")).unwrap() {
        for f in std::fs::read_dir(fan.unwrap().path()).unwrap() {
            let f = f.unwrap();
            // s3s-fs keeps files of its own beside the objects' bytes.
            if let Some(id) = f
                .file_name()
                .to_str()
                .and_then(|n| u64::from_str_radix(n, 16).ok())
            {
                out.push((id, f.path()));
            }
        }
    }
    out.sort();
    out
}

/// Opens an unsigned-payload PUT of all of `body` to `path` and sends only its
/// first `sent` bytes; the connection stays open, as a client cut off mid-body.
pub async fn start_partial_put(
    s: &Server,
    path: &str,
    body: &[u8],
    sent: usize,
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let head = signed_head(
        s,
        "PUT",
        path,
        &[("content-length", &body.len().to_string())],
        "UNSIGNED-PAYLOAD",
    );
    let mut conn = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    conn.write_all(format!("{head}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    conn.write_all(&body[..sent]).await.unwrap();
    conn.flush().await.unwrap();
    conn
}

/// Flips one bit of the byte at `offset` of a file: real corruption on disk.
pub fn flip_byte(path: &std::path::Path, offset: usize) {
    let mut data = std::fs::read(path).unwrap();
    data[offset] ^= 0x40;
    std::fs::write(path, data).unwrap();
}

/// A replica hoard (TLS) with bucket `mirror` and a key holding the replication
/// grant on it.
pub fn replica_with_key(envs: &[(&str, &str)]) -> (Server, Key) {
    let replica = Server::start_with_env(&["--tls"], envs);
    let (ok, text) = cli(&replica, &["bucket", "create", "mirror"]);
    assert!(ok, "{text}");
    let key = add_user(&replica, "from-source", &["mirror=replication"]);
    (replica, key)
}

/// `hoard replication add` on `source`'s `bucket` towards `replica`'s `mirror`,
/// with `extra` flags (the trust, at least).
pub fn add_rule_for(
    source: &Server,
    bucket: &str,
    replica: &Server,
    key: &Key,
    extra: &[&str],
) -> (bool, String) {
    let target = replica.endpoint();
    let mut args = vec![
        "replication",
        "add",
        "--bucket",
        bucket,
        "--target",
        &target,
        "--target-bucket",
        "mirror",
        "--target-access-key",
        &key.access,
        "--target-secret-key",
        &key.secret,
    ];
    args.extend_from_slice(extra);
    cli(source, &args)
}

/// Asserts an SDK call failed with `code` and HTTP `status`.
#[macro_export]
macro_rules! refused {
    ($call:expr, $code:expr, $status:expr) => {{
        let err = $call.send().await.expect_err("must be refused");
        assert_eq!(
            (code_of(&err).as_str(), status_of(&err)),
            ($code, $status),
            "{err:?}"
        );
    }};
}

/// Waits until `check` holds, for up to `secs`.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {secs} s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// (key, bytes) of every object in a bucket.
pub async fn contents(c: &aws_sdk_s3::Client, bucket: &str) -> Vec<(String, Vec<u8>)> {
    let listed = c.list_objects_v2().bucket(bucket).send().await.unwrap();
    let mut out = Vec::new();
    for o in listed.contents() {
        let key = o.key().unwrap().to_owned();
        let body = get_bytes(c, bucket, &key).await;
        out.push((key, body));
    }
    out
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    use s3s::crypto::Checksum as _;
    let mut h = s3s::crypto::Sha256::new();
    h.update(data);
    h.finalize()
}

/// Waits up to `secs` until the replica's bucket `mirror` holds exactly what the
/// source's bucket `data` holds.
pub async fn mirrored(src: &aws_sdk_s3::Client, dst: &aws_sdk_s3::Client, secs: u64, what: &str) {
    eventually(secs, what, || async {
        contents(dst, "mirror").await == contents(src, "data").await
    })
    .await;
}
