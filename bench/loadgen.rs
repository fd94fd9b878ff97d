//! Load generator for `bench/run.sh`: drives one S3 endpoint with SigV4-signed,
//! UNSIGNED-PAYLOAD requests (as curl would) and prints one JSON object of results.
//!
//! Measures: single-stream PUT and GET of 1 GiB of random data, the same PUT again
//! under a new key, 4 parallel 1 GiB PUT streams, a 1 GiB multipart upload of new
//! data in 4 parts sent in parallel, a CopyObject of the 1 GiB object (ms), and 10,000
//! PUTs of 4 KiB objects.
//! Usage: loadgen ENDPOINT ACCESS_KEY SECRET_KEY [SIZE_MIB]
//!        loadgen ENDPOINT ACCESS_KEY SECRET_KEY objects BUCKET COUNT SIZE_MIB SEED [get-only] [read] [delete-odd]
//!        loadgen ENDPOINT ACCESS_KEY SECRET_KEY sparse BUCKET SIZE_MIB
//! The second form PUTs COUNT objects of new random data into an existing bucket, one
//! stream at a time, then (with `read`) GETs each back, then (with `delete-odd`)
//! deletes every other one, and prints the PUT (and GET) throughput (used by
//! `bench/gc.sh`, `bench/tls.sh` and `bench/cluster.sh`); with `get-only` (and `read`)
//! it GETs the objects an earlier run with the same arguments PUT. An https endpoint is trusted through the CA
//! certificate file named by `HOARD_CA`. The third PUTs one object of SIZE_MIB, then
//! a 1 MiB slice of each 4 MiB of it as objects of their own, then deletes the big one,
//! leaving its segments about a quarter live (for compaction).

use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;

const MIB: usize = 1024 * 1024;

struct Target {
    endpoint: String,
    creds: hoard::auth::Credentials,
    http: reqwest::Client,
}

impl Target {
    fn signed(&self, method: &str, path: &str, len: Option<usize>) -> reqwest::RequestBuilder {
        self.signed_with(method, path, len, &[])
    }

    /// A request signed with `extra` headers (sent and signed as given).
    fn signed_with(
        &self,
        method: &str,
        path: &str,
        len: Option<usize>,
        extra: &[(&str, &str)],
    ) -> reqwest::RequestBuilder {
        let url = format!("{}{}", self.endpoint, path);
        let len = len.map(|n| n.to_string());
        let signed: Vec<(&str, &str)> = len
            .iter()
            .map(|n| ("content-length", n.as_str()))
            .chain(extra.iter().copied())
            .collect();
        let headers = hoard::signed_client::sigv4_headers(
            &self.creds,
            "us-east-1",
            method,
            &url,
            &signed,
            "UNSIGNED-PAYLOAD",
        )
        .unwrap();
        let mut b = self.http.request(method.parse().unwrap(), &url);
        for (k, v) in headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(signed)
        {
            b = b.header(k, v);
        }
        b
    }

    /// PUTs `data` to `path`; returns the ETag header.
    async fn put(&self, path: &str, data: Bytes) -> String {
        let len = data.len();
        // Stream the body in 1 MiB frames, as a client reading a file would.
        let frames: Vec<Bytes> = (0..len.div_ceil(MIB))
            .map(|i| data.slice(i * MIB..((i + 1) * MIB).min(len)))
            .collect();
        let body = reqwest::Body::wrap_stream(futures::stream::iter(
            frames.into_iter().map(Ok::<_, std::io::Error>),
        ));
        let resp = self
            .signed("PUT", path, Some(len))
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "PUT {path}: {}", resp.status());
        let etag = header(&resp, "etag");
        let _ = resp.bytes().await;
        etag
    }

    /// Sends a body-less or small request and returns the response text.
    async fn call(&self, method: &str, path: &str, body: &str, extra: &[(&str, &str)]) -> String {
        let resp = self
            .signed_with(method, path, Some(body.len()), extra)
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        assert!(
            resp.status().is_success(),
            "{method} {path}: {}",
            resp.status()
        );
        resp.text().await.unwrap()
    }

    /// A multipart upload of `data` in `parts` parts sent in parallel.
    async fn multipart(&self, path: &str, data: Bytes, parts: usize) {
        let created = self.call("POST", &format!("{path}?uploads"), "", &[]).await;
        let id = between(&created, "<UploadId>", "</UploadId>");
        let size = data.len().div_ceil(parts);
        let uploads = (0..parts).map(|i| {
            let part = data.slice(i * size..((i + 1) * size).min(data.len()));
            let p = format!("{path}?partNumber={}&uploadId={id}", i + 1);
            async move { self.put(&p, part).await }
        });
        let etags = futures::future::join_all(uploads).await;
        let mut xml = String::from("<CompleteMultipartUpload>");
        for (i, e) in etags.iter().enumerate() {
            xml.push_str(&format!(
                "<Part><PartNumber>{}</PartNumber><ETag>{e}</ETag></Part>",
                i + 1
            ));
        }
        xml.push_str("</CompleteMultipartUpload>");
        let done = self
            .call("POST", &format!("{path}?uploadId={id}"), &xml, &[])
            .await;
        assert!(done.contains("<ETag>"), "complete: {done}");
    }

    async fn get(&self, path: &str) -> usize {
        let resp = self.signed("GET", path, None).send().await.unwrap();
        assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
        let mut n = 0;
        let mut s = resp.bytes_stream();
        while let Some(b) = s.next().await {
            n += b.unwrap().len();
        }
        n
    }
}

/// `objects BUCKET COUNT SIZE_MIB SEED [delete-odd]`.
async fn objects(t: &Target, args: &[String]) {
    let bucket = &args[0];
    let count: u64 = args[1].parse().unwrap();
    let size = args[2].parse::<usize>().unwrap() * MIB;
    let seed: u64 = args[3].parse().unwrap();
    let options = &args[4..];
    let put_too = !options.iter().any(|o| o == "get-only");
    let t0 = Instant::now();
    for i in (0..count).filter(|_| put_too) {
        t.put(
            &format!("/{bucket}/obj-{seed}-{i:05}"),
            random(seed * 1_000_000 + i, size),
        )
        .await;
    }
    let put = mbps(size * count as usize, t0.elapsed().as_secs_f64());
    let mut get = None;
    if options.iter().any(|o| o == "read") {
        let t0 = Instant::now();
        for i in 0..count {
            let n = t.get(&format!("/{bucket}/obj-{seed}-{i:05}")).await;
            assert_eq!(n, size);
        }
        get = Some(mbps(size * count as usize, t0.elapsed().as_secs_f64()));
    }
    if options.iter().any(|o| o == "delete-odd") {
        for i in (1..count).step_by(2) {
            let resp = t
                .signed("DELETE", &format!("/{bucket}/obj-{seed}-{i:05}"), None)
                .send()
                .await
                .unwrap();
            assert!(resp.status().is_success(), "DELETE: {}", resp.status());
        }
    }
    match get {
        Some(g) => println!("{{\"put_mbps\": {put:.1}, \"get_mbps\": {g:.1}}}"),
        None => println!("{{\"put_mbps\": {put:.1}}}"),
    }
}

async fn sparse(t: &Target, bucket: &str, size_mib: usize) {
    let big = random(4242, size_mib * MIB);
    t.put(&format!("/{bucket}/big"), big.clone()).await;
    for i in 0..size_mib / 4 {
        let at = i * 4 * MIB + 3 * MIB / 2;
        t.put(&format!("/{bucket}/slice-{i:05}"), big.slice(at..at + MIB))
            .await;
    }
    let resp = t
        .signed("DELETE", &format!("/{bucket}/big"), None)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "DELETE: {}", resp.status());
    println!("{{\"slices\": {}}}", size_mib / 4);
}

fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

fn between(text: &str, start: &str, end: &str) -> String {
    let from = text.find(start).map(|i| i + start.len()).unwrap_or(0);
    let to = text[from..]
        .find(end)
        .map(|i| from + i)
        .unwrap_or(text.len());
    text[from..to].to_owned()
}

fn random(seed: u64, len: usize) -> Bytes {
    let mut out = vec![0u8; len];
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for c in out.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
    }
    Bytes::from(out)
}

fn mbps(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let creds = hoard::auth::Credentials {
        access_key: args[2].clone(),
        secret_key: args[3].clone(),
    };
    // An https endpoint is trusted through the CA file in HOARD_CA.
    let ca = std::env::var("HOARD_CA").ok().filter(|c| !c.is_empty());
    let tls = hoard::tls::client_config(ca.as_deref().map(std::path::Path::new)).unwrap();
    let t = Target {
        endpoint: args[1].clone(),
        creds,
        http: reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .build()
            .unwrap(),
    };
    match args.get(4).map(String::as_str) {
        Some("objects") => return objects(&t, &args[5..]).await,
        Some("sparse") => return sparse(&t, &args[5], args[6].parse().unwrap()).await,
        _ => {}
    }
    let size = args
        .get(4)
        .map(|s| s.parse::<usize>().unwrap())
        .unwrap_or(1024)
        * MIB;
    let resp = t.signed("PUT", "/bench", Some(0)).send().await.unwrap();
    assert!(
        resp.status().is_success(),
        "create bucket: {}",
        resp.status()
    );

    let data = random(1, size);
    let t0 = Instant::now();
    t.put("/bench/unique", data.clone()).await;
    let put_unique = mbps(size, t0.elapsed().as_secs_f64());

    let t0 = Instant::now();
    let n = t.get("/bench/unique").await;
    assert_eq!(n, size);
    let get = mbps(size, t0.elapsed().as_secs_f64());

    let t0 = Instant::now();
    t.put("/bench/again", data.clone()).await;
    let put_again = mbps(size, t0.elapsed().as_secs_f64());
    drop(data);

    let streams: Vec<Bytes> = (0..4).map(|i| random(100 + i, size)).collect();
    let t0 = Instant::now();
    let puts = streams.iter().enumerate().map(|(i, d)| {
        let t = &t;
        let d = d.clone();
        async move { t.put(&format!("/bench/parallel-{i}"), d).await }
    });
    futures::future::join_all(puts).await;
    let put_parallel = mbps(4 * size, t0.elapsed().as_secs_f64());
    drop(streams);

    let fresh = random(200, size);
    let t0 = Instant::now();
    t.multipart("/bench/multipart", fresh, 4).await;
    let multipart = mbps(size, t0.elapsed().as_secs_f64());

    let t0 = Instant::now();
    t.call(
        "PUT",
        "/bench/copied",
        "",
        &[("x-amz-copy-source", "/bench/unique")],
    )
    .await;
    let copy_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let n = t.get("/bench/copied").await;
    assert_eq!(n, size, "the copy reads back whole");

    let small: Vec<Bytes> = (0..10_000u64)
        .map(|i| random(1_000_000 + i, 4096))
        .collect();
    let t0 = Instant::now();
    futures::stream::iter(small.into_iter().enumerate())
        .for_each_concurrent(16, |(i, d)| {
            let t = &t;
            async move {
                t.put(&format!("/bench/small/{i:05}"), d).await;
            }
        })
        .await;
    let small_ops = 10_000.0 / t0.elapsed().as_secs_f64();

    println!(
        "{{\"put_unique_mbps\": {put_unique:.1}, \"get_mbps\": {get:.1}, \"put_again_mbps\": {put_again:.1}, \"put_4_streams_mbps\": {put_parallel:.1}, \"small_put_ops\": {small_ops:.1}, \"multipart_4_parts_mbps\": {multipart:.1}, \"copy_ms\": {copy_ms:.1}}}"
    );
}
