//! Load generator for `bench/run.sh`: drives one S3 endpoint with SigV4-signed,
//! UNSIGNED-PAYLOAD requests (as curl would) and prints one JSON object of results.
//!
//! Measures: single-stream PUT and GET of 1 GiB of random data, the same PUT again
//! under a new key, 4 parallel 1 GiB PUT streams, and 10,000 PUTs of 4 KiB objects.
//! Usage: loadgen ENDPOINT ACCESS_KEY SECRET_KEY [SIZE_MIB]

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
        let url = format!("{}{}", self.endpoint, path);
        let len = len.map(|n| n.to_string());
        let signed: Vec<(&str, &str)> =
            len.iter().map(|n| ("content-length", n.as_str())).collect();
        let headers = hoard::client::sigv4_headers(
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

    async fn put(&self, path: &str, data: Bytes) {
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
        let _ = resp.bytes().await;
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
    let size = args
        .get(4)
        .map(|s| s.parse::<usize>().unwrap())
        .unwrap_or(1024)
        * MIB;
    let creds = hoard::auth::Credentials {
        access_key: args[2].clone(),
        secret_key: args[3].clone(),
    };
    let t = Target {
        endpoint: args[1].clone(),
        creds,
        http: reqwest::Client::new(),
    };
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

    let small: Vec<Bytes> = (0..10_000u64)
        .map(|i| random(1_000_000 + i, 4096))
        .collect();
    let t0 = Instant::now();
    futures::stream::iter(small.into_iter().enumerate())
        .for_each_concurrent(16, |(i, d)| {
            let t = &t;
            async move { t.put(&format!("/bench/small/{i:05}"), d).await }
        })
        .await;
    let small_ops = 10_000.0 / t0.elapsed().as_secs_f64();

    println!(
        "{{\"put_unique_mbps\": {put_unique:.1}, \"get_mbps\": {get:.1}, \"put_again_mbps\": {put_again:.1}, \"put_4_streams_mbps\": {put_parallel:.1}, \"small_put_ops\": {small_ops:.1}}}"
    );
}
