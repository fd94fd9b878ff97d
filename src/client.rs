//! `client` owns the CLI side of the admin API: SigV4-signed JSON requests to a
//! running hoard, and the text rendering of their answers.

use std::time::SystemTime;

use aws_sigv4::http_request::{PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;

use crate::auth::Credentials;
use crate::stats::{StatsReport, UsageReport};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("signing the request failed: {0}")]
    Sign(String),
    #[error("cannot reach {endpoint}: {source}")]
    Http { endpoint: String, source: reqwest::Error },
    #[error("hoard answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("unexpected answer: {0}")]
    Decode(String),
}

pub struct AdminClient {
    endpoint: String,
    region: String,
    creds: Credentials,
    http: reqwest::Client,
}

impl AdminClient {
    pub fn new(endpoint: &str, region: &str, creds: Credentials) -> AdminClient {
        AdminClient {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            region: region.to_owned(),
            creds,
            http: reqwest::Client::new(),
        }
    }

    async fn request(&self, method: http::Method, path: &str, body: Vec<u8>) -> Result<String, ClientError> {
        let url = format!("{}{}{}", self.endpoint, crate::admin::PREFIX, path);
        let mut req = http::Request::builder().method(method.clone()).uri(&url).body(body.clone()).map_err(|e| ClientError::Sign(e.to_string()))?;
        let identity = aws_credential_types::Credentials::new(&self.creds.access_key, &self.creds.secret_key, None, None, "hoard").into();
        let mut settings = SigningSettings::default();
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| ClientError::Sign(e.to_string()))?
            .into();
        let headers = req.headers().iter().filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)));
        let signable = SignableRequest::new(method.as_str(), &url, headers, SignableBody::Bytes(&body)).map_err(|e| ClientError::Sign(e.to_string()))?;
        let (instructions, _) = sign(signable, &params).map_err(|e| ClientError::Sign(e.to_string()))?.into_parts();
        instructions.apply_to_request_http1x(&mut req);
        let req = reqwest::Request::try_from(req).map_err(|e| ClientError::Sign(e.to_string()))?;
        let resp = self.http.execute(req).await.map_err(|source| ClientError::Http { endpoint: self.endpoint.clone(), source })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|source| ClientError::Http { endpoint: self.endpoint.clone(), source })?;
        if status >= 300 {
            return Err(ClientError::Status { status, body: text });
        }
        Ok(text)
    }

    pub async fn stats(&self, bucket: Option<&str>) -> Result<StatsReport, ClientError> {
        let path = match bucket {
            Some(b) => format!("stats?bucket={b}"),
            None => "stats".to_owned(),
        };
        let text = self.request(http::Method::GET, &path, Vec::new()).await?;
        serde_json::from_str(&text).map_err(|e| ClientError::Decode(e.to_string()))
    }

    pub async fn create_bucket(&self, name: &str, req: &crate::admin::CreateBucketRequest) -> Result<crate::admin::BucketSettings, ClientError> {
        let body = serde_json::to_vec(req).map_err(|e| ClientError::Decode(e.to_string()))?;
        let text = self.request(http::Method::PUT, &format!("buckets/{name}"), body).await?;
        serde_json::from_str(&text).map_err(|e| ClientError::Decode(e.to_string()))
    }
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{bytes} B") } else { format!("{v:.2} {}", UNITS[u]) }
}

/// The stats report as a table.
pub fn render_stats(report: &StatsReport, only_bucket: bool) -> String {
    let mut out = format!(
        "{:<24} {:>10} {:>14} {:>14} {:>12} {:>9} {:>7} {:>7}\n",
        "BUCKET", "OBJECTS", "LOGICAL", "STORED", "CHUNKS", "SEGMENTS", "DEDUP", "COMPR"
    );
    let row = |r: &UsageReport| {
        format!(
            "{:<24} {:>10} {:>14} {:>14} {:>12} {:>9} {:>6.2}x {:>6.2}x\n",
            r.name,
            r.objects,
            human(r.logical_bytes),
            human(r.stored_bytes),
            r.unique_chunks,
            r.segments,
            r.dedup_ratio,
            r.compression_ratio
        )
    };
    for b in &report.buckets {
        out.push_str(&row(b));
    }
    if !only_bucket {
        out.push_str(&row(&report.total));
    }
    out
}
