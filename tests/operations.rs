//! What an operator sees: stream limits, metrics, stats, graceful shutdown, and
//! memory that stays bounded while a 5 GiB object streams in and out.

mod common;

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use common::*;
use futures::StreamExt as _;

const MIB: usize = 1024 * 1024;

#[tokio::test]
async fn beyond_max_streams_a_put_waits_then_gets_slow_down() {
    use tokio::io::AsyncWriteExt;
    let s = Server::start_with(&["--max-streams", "1", "--stream-wait-ms", "300"]);
    let c = s.client();
    c.create_bucket().bucket("busy").send().await.unwrap();
    // Hold the only stream: a PUT whose body is still arriving.
    let head = signed_head(
        &s,
        "PUT",
        "/busy/slow",
        &[("content-length", &(4 * MIB).to_string())],
        "UNSIGNED-PAYLOAD",
    );
    let mut slow = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    slow.write_all(format!("{head}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    slow.write_all(&random_bytes(1, MIB)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        metric(&metrics_text(&s).await, "hoard_ingest_active_streams "),
        Some(1.0)
    );

    let e = c
        .put_object()
        .bucket("busy")
        .key("second")
        .body(ByteStream::from(random_bytes(2, 100_000)))
        .send()
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), 503);
    assert_eq!(code_of(&e), "SlowDown");

    // Finish the first upload; then the slot is free again.
    slow.write_all(&random_bytes(3, 3 * MIB)).await.unwrap();
    let mut resp = vec![0u8; 1024];
    let n = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::io::AsyncReadExt::read(&mut slow, &mut resp),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(String::from_utf8_lossy(&resp[..n]).starts_with("HTTP/1.1 200"));
    put_bytes(&c, "busy", "third", random_bytes(4, 100_000)).await;
    assert_eq!(
        metric(&metrics_text(&s).await, "hoard_ingest_active_streams "),
        Some(0.0)
    );
}

#[tokio::test]
async fn metrics_and_stats_report_operations_and_space() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("seen").send().await.unwrap();
    let data = random_bytes(9, 3 * MIB);
    put_bytes(&c, "seen", "one", data.clone()).await;
    put_bytes(&c, "seen", "two", data.clone()).await;
    get_bytes(&c, "seen", "one").await;
    let _ = c.get_object().bucket("seen").key("missing").send().await;
    let m = metrics_text(&s).await;
    assert_eq!(
        metric(&m, "hoard_s3_requests_total{operation=\"PutObject\"} "),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "hoard_s3_errors_total{operation=\"GetObject\",code=\"NoSuchKey\"} "
        ),
        Some(1.0),
        "{m}"
    );
    assert!(
        m.contains("hoard_s3_request_duration_seconds_bucket{le="),
        "{m}"
    );
    assert!(metric(&m, "hoard_s3_received_bytes_total ").unwrap() >= (2 * data.len()) as f64);
    assert!(metric(&m, "hoard_s3_sent_bytes_total ").unwrap() >= data.len() as f64);
    assert_eq!(
        metric(&m, "hoard_bucket_objects{bucket=\"seen\"} "),
        Some(2.0)
    );
    assert_eq!(
        metric(&m, "hoard_logical_bytes "),
        Some((2 * data.len()) as f64)
    );
    assert!(metric(&m, "hoard_dedup_ratio ").unwrap() > 1.9);
    assert!(metric(&m, "hoard_http_responses_total{status=\"404\"} ").unwrap() >= 1.0);

    // The CLI is a client of the admin endpoint.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hoard"))
        .args(["stats", "--endpoint", &s.endpoint()])
        .env("HOARD_ROOT_ACCESS_KEY", ACCESS_KEY)
        .env("HOARD_ROOT_SECRET_KEY", SECRET_KEY)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = text
        .lines()
        .find(|l| l.starts_with("seen "))
        .expect("a row for the bucket");
    assert!(row.contains(" 2 ") && row.contains("2.00x"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("total ")), "{text}");
    let disk = text
        .lines()
        .find(|l| l.starts_with("disk: "))
        .expect("the local store's space");
    assert!(
        disk.contains(" used, ") && disk.contains(" free of "),
        "{text}"
    );
    let json = std::process::Command::new(env!("CARGO_BIN_EXE_hoard"))
        .args([
            "stats",
            "--json",
            "--bucket",
            "seen",
            "--endpoint",
            &s.endpoint(),
        ])
        .env("HOARD_ROOT_ACCESS_KEY", ACCESS_KEY)
        .env("HOARD_ROOT_SECRET_KEY", SECRET_KEY)
        .output()
        .unwrap();
    let report: hoard::stats::StatsReport = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report.buckets.len(), 1);
    assert_eq!(report.buckets[0].objects, 2);
    let disk = report.disk.expect("disk usage in the JSON report");
    assert!(disk.total_bytes > 0 && disk.free_bytes <= disk.total_bytes);
    assert!(disk.used_bytes + disk.free_bytes <= disk.total_bytes);
    // A wrong key is refused by the admin API too.
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_hoard"))
        .args(["stats", "--endpoint", &s.endpoint()])
        .env("HOARD_ROOT_ACCESS_KEY", ACCESS_KEY)
        .env("HOARD_ROOT_SECRET_KEY", "wrong")
        .output()
        .unwrap();
    assert!(!refused.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_running_put_finish_or_fail_cleanly() {
    let mut s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("term").send().await.unwrap();
    let data = random_bytes(11, 24 * MIB);
    let put = {
        let c = c.clone();
        let data = data.clone();
        tokio::spawn(async move {
            c.put_object()
                .bucket("term")
                .key("k")
                .body(ByteStream::from(data))
                .send()
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(s.stop(), "hoard exits cleanly on SIGTERM");
    let acknowledged = put.await.unwrap().is_ok();
    s.restart();
    let c = s.client();
    match c.get_object().bucket("term").key("k").send().await {
        Ok(out) => assert!(out.body.collect().await.unwrap().into_bytes() == data),
        Err(e) => {
            assert!(!acknowledged, "an acknowledged PUT must survive shutdown");
            assert_eq!(status_of(&e), 404);
        }
    }
}

#[tokio::test]
async fn generated_root_credentials_are_private_and_stable() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let run = || {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hoard"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                data.to_str().unwrap(),
            ])
            .env_remove("HOARD_ROOT_ACCESS_KEY")
            .env_remove("HOARD_ROOT_SECRET_KEY")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut lines =
            std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
        let mut printed = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            let done = line.starts_with("hoard: listening");
            printed.push(line);
            if done {
                break;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        printed
    };
    let first = run();
    assert!(first.iter().any(|l| l.contains("access key:")), "{first:?}");
    let creds = hoard::auth::Credentials::from_data_dir(&data)
        .unwrap()
        .unwrap();
    assert!(
        first.iter().any(|l| l.contains(&creds.secret_key)),
        "printed once, on first start"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("root-credentials"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let second = run();
    assert!(
        !second.iter().any(|l| l.contains(&creds.secret_key)),
        "not printed again: {second:?}"
    );
    assert_eq!(
        hoard::auth::Credentials::from_data_dir(&data)
            .unwrap()
            .unwrap(),
        creds
    );
}

/// A body of `len` pseudo-random bytes produced on the fly.
fn generated_body(seed: u64, len: u64) -> ByteStream {
    use http_body_util::StreamBody;
    let chunk = 4 * MIB as u64;
    let stream = futures::stream::unfold(0u64, move |sent| async move {
        if sent >= len {
            return None;
        }
        let n = chunk.min(len - sent) as usize;
        let mut buf = vec![0u8; n];
        fill_random(seed ^ sent, &mut buf);
        Some((
            Ok::<_, std::io::Error>(http_body::Frame::data(bytes::Bytes::from(buf))),
            sent + n as u64,
        ))
    })
    .fuse();
    ByteStream::from_body_1_x(StreamBody::new(stream))
}

#[tokio::test]
async fn memory_stays_bounded_while_5_gib_streams_in_and_out() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("huge").send().await.unwrap();
    let len: u64 = 5 * 1024 * 1024 * 1024;
    c.put_object()
        .bucket("huge")
        .key("5g")
        .content_length(len as i64)
        .body(generated_body(42, len))
        .send()
        .await
        .unwrap();
    let mut out = c
        .get_object()
        .bucket("huge")
        .key("5g")
        .send()
        .await
        .unwrap();
    let mut got = 0u64;
    let mut expect = vec![0u8; 4 * MIB];
    let mut pending: Vec<u8> = Vec::new();
    while let Some(bytes) = out.body.try_next().await.unwrap() {
        pending.extend_from_slice(&bytes);
        while pending.len() >= 4 * MIB || (got + pending.len() as u64 == len && !pending.is_empty())
        {
            let n = (4 * MIB).min(pending.len());
            fill_random(42 ^ got, &mut expect[..n]);
            assert!(pending[..n] == expect[..n], "bytes differ at offset {got}");
            pending.drain(..n);
            got += n as u64;
        }
    }
    assert_eq!(got, len);
    let peak = s.peak_rss();
    eprintln!(
        "server peak RSS while 5 GiB streamed in and out: {} MiB",
        peak / MIB as u64
    );
    assert!(
        peak > 0 && peak < 256 * MIB as u64,
        "server peak RSS {} MiB",
        peak / MIB as u64
    );
}
