//! `client` owns the CLI side of the admin API: SigV4-signed JSON requests to a
//! running hoard, and the text rendering of their answers.

use std::time::SystemTime;

use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign,
};
use aws_sigv4::sign::v4;

use std::collections::BTreeMap;

use crate::auth::Credentials;
use crate::meta::Permission;
use crate::replication::rules::{AddRule, RuleInfo, RuleStatus, TargetInfo};
use crate::stats::{StatsReport, UsageReport};
use crate::users::{NewKey, UserInfo};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("signing the request failed: {0}")]
    Sign(String),
    #[error("cannot reach {endpoint}: {source}")]
    Http {
        endpoint: String,
        source: reqwest::Error,
    },
    #[error("hoard answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("unexpected answer: {0}")]
    Decode(String),
    #[error("TLS set-up: {0}")]
    Tls(String),
    #[error("{0}")]
    Request(String),
}

/// SigV4-signed JSON requests to one hoard, under one path prefix: the admin API
/// (`new`), or the replication endpoints of a replica (`with_tls`).
pub struct AdminClient {
    endpoint: String,
    prefix: &'static str,
    /// Hash bodies into the signature; off, requests say `UNSIGNED-PAYLOAD` (the
    /// replication link: TLS carries the bodies, and chunks are checked by BLAKE3).
    sign_payload: bool,
    region: String,
    creds: Credentials,
    http: reqwest::Client,
}

impl AdminClient {
    /// A client of the admin API at `endpoint`; an https endpoint is trusted through
    /// the CA certificate file `ca` (PEM), or not at all.
    pub fn new(
        endpoint: &str,
        region: &str,
        creds: Credentials,
        ca: Option<&std::path::Path>,
    ) -> Result<AdminClient, ClientError> {
        let tls = crate::tls::client_config(ca).map_err(|e| ClientError::Tls(e.to_string()))?;
        let mut c = Self::with_tls(endpoint, crate::admin::PREFIX, region, creds, tls)?;
        c.sign_payload = true;
        Ok(c)
    }

    /// A client of the endpoints under `prefix` at `endpoint`, with its own TLS trust;
    /// bodies are not hashed into the signature (`UNSIGNED-PAYLOAD`).
    pub fn with_tls(
        endpoint: &str,
        prefix: &'static str,
        region: &str,
        creds: Credentials,
        tls: rustls::ClientConfig,
    ) -> Result<AdminClient, ClientError> {
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        Ok(AdminClient {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            prefix,
            sign_payload: false,
            region: region.to_owned(),
            creds,
            http,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub(crate) async fn request(
        &self,
        method: http::Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<String, ClientError> {
        let bytes = self.request_bytes(method, path, body).await?;
        String::from_utf8(bytes.to_vec()).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// A signed request; the answer's body as bytes, or its status and text.
    pub(crate) async fn request_bytes(
        &self,
        method: http::Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<bytes::Bytes, ClientError> {
        let url = format!("{}{}{}", self.endpoint, self.prefix, path);
        let payload = match self.sign_payload {
            true => hex::encode(<s3s::crypto::Sha256 as s3s::crypto::Checksum>::checksum(
                &body,
            )),
            false => "UNSIGNED-PAYLOAD".to_owned(),
        };
        let mut req = http::Request::builder()
            .method(method.clone())
            .uri(&url)
            .body(body)
            .map_err(|e| ClientError::Sign(e.to_string()))?;
        for (k, v) in sigv4_headers(
            &self.creds,
            &self.region,
            method.as_str(),
            &url,
            &[],
            &payload,
        )? {
            let name = http::HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| ClientError::Sign(e.to_string()))?;
            let value =
                http::HeaderValue::from_str(&v).map_err(|e| ClientError::Sign(e.to_string()))?;
            req.headers_mut().insert(name, value);
        }
        let req = reqwest::Request::try_from(req).map_err(|e| ClientError::Sign(e.to_string()))?;
        let resp = self
            .http
            .execute(req)
            .await
            .map_err(|source| ClientError::Http {
                endpoint: self.endpoint.clone(),
                source,
            })?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|source| ClientError::Http {
            endpoint: self.endpoint.clone(),
            source,
        })?;
        if status >= 300 {
            let body = String::from_utf8_lossy(&body).into_owned();
            return Err(ClientError::Status { status, body });
        }
        Ok(body)
    }

    /// A request whose JSON answer decodes to `T`.
    pub(crate) async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: http::Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<T, ClientError> {
        let text = self.request(method, path, body).await?;
        serde_json::from_str(&text).map_err(|e| ClientError::Decode(e.to_string()))
    }

    pub async fn stats(&self, bucket: Option<&str>) -> Result<StatsReport, ClientError> {
        let path = match bucket {
            Some(b) => format!("stats?bucket={b}"),
            None => "stats".to_owned(),
        };
        self.call(http::Method::GET, &path, Vec::new()).await
    }

    /// Runs one cleaner pass on the server and returns its report.
    pub async fn gc(
        &self,
        dry_run: bool,
        grace: Option<std::time::Duration>,
    ) -> Result<crate::cleaner::GcReport, ClientError> {
        let mut path = format!("gc?dry-run={dry_run}");
        if let Some(g) = grace {
            path.push_str(&format!("&grace-secs={}", g.as_secs()));
        }
        self.call(http::Method::POST, &path, Vec::new()).await
    }

    /// Runs verify on the server (the whole store, or one bucket's objects); with
    /// `repair`, repairs what it finds and reports the store as it is afterwards.
    pub async fn verify(
        &self,
        bucket: Option<&str>,
        repair: bool,
    ) -> Result<crate::verify::VerifyReport, ClientError> {
        let mut path = format!("verify?repair={repair}");
        if let Some(b) = bucket {
            path.push_str(&format!("&bucket={b}"));
        }
        self.call(http::Method::POST, &path, Vec::new()).await
    }

    pub async fn create_bucket(
        &self,
        name: &str,
        req: &crate::admin::CreateBucketRequest,
    ) -> Result<crate::admin::BucketSettings, ClientError> {
        self.call(http::Method::PUT, &format!("buckets/{name}"), encode(req)?)
            .await
    }

    /// Sets or (with `bytes` = `None`) removes a bucket's or the store's quota;
    /// returns the quotas now in force.
    pub async fn set_quota(
        &self,
        req: &crate::admin::QuotaRequest,
    ) -> Result<crate::meta::Quotas, ClientError> {
        self.call(http::Method::PUT, "quotas", encode(req)?).await
    }

    pub async fn quotas(&self) -> Result<crate::meta::Quotas, ClientError> {
        self.call(http::Method::GET, "quotas", Vec::new()).await
    }

    pub async fn users(&self) -> Result<Vec<UserInfo>, ClientError> {
        self.call(http::Method::GET, "users", Vec::new()).await
    }

    /// Adds a user; the answer holds its secret, shown this once.
    pub async fn add_user(
        &self,
        name: &str,
        grants: BTreeMap<String, Permission>,
    ) -> Result<NewKey, ClientError> {
        let body = encode(&crate::admin::AddUserRequest { grants })?;
        self.call(http::Method::POST, &user_path(name, "")?, body)
            .await
    }

    pub async fn remove_user(&self, name: &str) -> Result<(), ClientError> {
        self.request(http::Method::DELETE, &user_path(name, "")?, Vec::new())
            .await
            .map(drop)
    }

    pub async fn set_user_enabled(&self, name: &str, enabled: bool) -> Result<(), ClientError> {
        let verb = if enabled { "enable" } else { "disable" };
        self.request(http::Method::POST, &user_path(name, verb)?, Vec::new())
            .await
            .map(drop)
    }

    pub async fn rotate_user_key(&self, name: &str) -> Result<NewKey, ClientError> {
        self.call(
            http::Method::POST,
            &user_path(name, "rotate-key")?,
            Vec::new(),
        )
        .await
    }

    /// Sets (`Some`) or removes (`None`) a user's grant on `bucket` (or `*`).
    pub async fn set_grant(
        &self,
        name: &str,
        bucket: &str,
        permission: Option<Permission>,
    ) -> Result<UserInfo, ClientError> {
        let path = user_path(name, &format!("grants/{bucket}"))?;
        match permission {
            Some(permission) => {
                let body = encode(&crate::admin::GrantRequest { permission })?;
                self.call(http::Method::PUT, &path, body).await
            }
            None => self.call(http::Method::DELETE, &path, Vec::new()).await,
        }
    }
}

impl AdminClient {
    pub async fn replication_rules(&self) -> Result<Vec<RuleInfo>, ClientError> {
        self.call(http::Method::GET, "replication", Vec::new())
            .await
    }

    /// Adds (or replaces) `bucket`'s rule; the server says hello to the target first.
    pub async fn add_replication(
        &self,
        bucket: &str,
        req: &AddRule,
    ) -> Result<RuleInfo, ClientError> {
        let path = bucket_path("replication", bucket, "")?;
        self.call(http::Method::PUT, &path, encode(req)?).await
    }

    pub async fn remove_replication(&self, bucket: &str) -> Result<(), ClientError> {
        let path = bucket_path("replication", bucket, "")?;
        self.request(http::Method::DELETE, &path, Vec::new())
            .await
            .map(drop)
    }

    pub async fn pause_replication(
        &self,
        bucket: &str,
        paused: bool,
    ) -> Result<RuleInfo, ClientError> {
        let verb = if paused { "pause" } else { "resume" };
        let path = bucket_path("replication", bucket, verb)?;
        self.call(http::Method::POST, &path, Vec::new()).await
    }

    pub async fn replication_status(&self, bucket: &str) -> Result<RuleStatus, ClientError> {
        let path = bucket_path("replication", bucket, "status")?;
        self.call(http::Method::GET, &path, Vec::new()).await
    }

    pub async fn run_replication(&self, bucket: &str) -> Result<RuleStatus, ClientError> {
        let path = bucket_path("replication", bucket, "run")?;
        self.call(http::Method::POST, &path, Vec::new()).await
    }

    /// Puts a bucket's failed replications back into the queue; returns how many.
    pub async fn requeue_replication(&self, bucket: &str) -> Result<u64, ClientError> {
        #[derive(serde::Deserialize)]
        struct Requeued {
            requeued: u64,
        }
        let path = bucket_path("replication", bucket, "requeue")?;
        let r: Requeued = self.call(http::Method::POST, &path, Vec::new()).await?;
        Ok(r.requeued)
    }

    pub async fn replication_targets(&self) -> Result<Vec<TargetInfo>, ClientError> {
        self.call(http::Method::GET, "replication-targets", Vec::new())
            .await
    }

    pub async fn add_replication_target(
        &self,
        name: &str,
        req: &AddRule,
    ) -> Result<TargetInfo, ClientError> {
        let path = bucket_path("replication-targets", name, "")?;
        self.call(http::Method::PUT, &path, encode(req)?).await
    }

    pub async fn remove_replication_target(&self, name: &str) -> Result<(), ClientError> {
        let path = bucket_path("replication-targets", name, "")?;
        let _: serde_json::Value = self.call(http::Method::DELETE, &path, Vec::new()).await?;
        Ok(())
    }

    /// One step of a seed export.
    pub async fn seed_export(
        &self,
        req: &crate::replication::seed::ExportRequest,
    ) -> Result<crate::replication::seed::SeedProgress, ClientError> {
        self.call(http::Method::POST, "seed/export", encode(req)?)
            .await
    }

    /// One step of a seed import.
    pub async fn seed_import(
        &self,
        req: &crate::replication::seed::ImportRequest,
    ) -> Result<crate::replication::seed::ImportProgress, ClientError> {
        self.call(http::Method::POST, "seed/import", encode(req)?)
            .await
    }

    /// Makes a replica bucket writable.
    pub async fn promote(&self, bucket: &str) -> Result<(), ClientError> {
        let path = bucket_path("buckets", bucket, "promote")?;
        self.request(http::Method::POST, &path, Vec::new())
            .await
            .map(drop)
    }
}

/// `area/BUCKET[/rest]` for a valid bucket name.
fn bucket_path(area: &str, bucket: &str, rest: &str) -> Result<String, ClientError> {
    if !crate::admin::valid_bucket_name(bucket) {
        return Err(ClientError::Request(format!(
            "invalid bucket name {bucket:?}"
        )));
    }
    Ok(match rest {
        "" => format!("{area}/{bucket}"),
        rest => format!("{area}/{bucket}/{rest}"),
    })
}

/// `users/NAME[/rest]`; a name the server would refuse is refused here, before it
/// can make an invalid or different path.
fn user_path(name: &str, rest: &str) -> Result<String, ClientError> {
    if !crate::users::valid_user_name(name) {
        return Err(ClientError::Request(
            crate::users::UsersError::InvalidName(name.to_owned()).to_string(),
        ));
    }
    Ok(match rest {
        "" => format!("users/{name}"),
        rest => format!("users/{name}/{rest}"),
    })
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, ClientError> {
    serde_json::to_vec(v).map_err(|e| ClientError::Decode(e.to_string()))
}

/// SigV4 (service `s3`) headers for a request: `authorization`, `x-amz-date` and
/// `x-amz-content-sha256` = `payload_sha256` (a hex digest, `UNSIGNED-PAYLOAD` or a
/// `STREAMING-…` constant). `headers` are signed as well and must be sent as given.
pub fn sigv4_headers(
    creds: &Credentials,
    region: &str,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    payload_sha256: &str,
) -> Result<Vec<(String, String)>, ClientError> {
    let sign_err = |e: &dyn std::fmt::Display| ClientError::Sign(e.to_string());
    let identity = aws_credential_types::Credentials::new(
        &creds.access_key,
        &creds.secret_key,
        None,
        None,
        "hoard",
    )
    .into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("s3")
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .map_err(|e| sign_err(&e))?
        .into();
    let signable = SignableRequest::new(
        method,
        url,
        headers.iter().copied(),
        SignableBody::Precomputed(payload_sha256.to_owned()),
    )
    .map_err(|e| sign_err(&e))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| sign_err(&e))?
        .into_parts();
    let mut req = http::Request::builder()
        .method(method)
        .uri(url)
        .body(())
        .map_err(|e| sign_err(&e))?;
    instructions.apply_to_request_http1x(&mut req);
    Ok(req
        .headers()
        .iter()
        .filter(|(k, _)| *k != http::header::HOST)
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect())
}

/// Bytes in binary units, as the CLI prints them.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

/// The stats report as a table.
pub fn render_stats(report: &StatsReport, only_bucket: bool) -> String {
    let mut out = format!(
        "{:<24} {:>10} {:>14} {:>14} {:>14} {:>12} {:>9} {:>7} {:>7}\n",
        "BUCKET", "OBJECTS", "LOGICAL", "QUOTA", "STORED", "CHUNKS", "SEGMENTS", "DEDUP", "COMPR"
    );
    let row = |r: &UsageReport| {
        format!(
            "{:<24} {:>10} {:>14} {:>14} {:>14} {:>12} {:>9} {:>6.2}x {:>6.2}x\n",
            r.name,
            r.objects,
            human(r.logical_bytes),
            r.quota_bytes.map_or_else(|| "-".to_owned(), human),
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
        if let Some(d) = &report.disk {
            out.push_str(&format!(
                "disk: {} used, {} free of {}\n",
                human(d.used_bytes),
                human(d.free_bytes),
                human(d.total_bytes)
            ));
        }
    }
    out
}

/// The verify report as `hoard verify` prints it.
pub fn render_verify(r: &crate::verify::VerifyReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "checked {} segments, {} chunks, {} bytes{}",
        r.segments_checked,
        r.chunks_checked,
        r.bytes_read,
        r.bucket
            .as_deref()
            .map(|b| format!(" (bucket {b})"))
            .unwrap_or_default()
    );
    for s in &r.missing_segments {
        let _ = writeln!(out, "MISSING segment {s:016x}");
    }
    for s in &r.unreadable_segments {
        let _ = writeln!(
            out,
            "UNREADABLE segment {:016x}: {} (not repaired: fix the disk or permissions and verify again)",
            s.segment, s.error
        );
    }
    for c in &r.corrupt_chunks {
        let _ = writeln!(
            out,
            "CORRUPT chunk {} in segment {:016x}: {}",
            c.chunk, c.segment, c.reason
        );
    }
    for c in &r.trailer_problems {
        let _ = writeln!(
            out,
            "TRAILER segment {:016x} chunk {}: {}",
            c.segment, c.chunk, c.reason
        );
    }
    for c in &r.count_problems {
        let stored = c
            .stored
            .map(|s| s.to_string())
            .unwrap_or_else(|| "no index row".into());
        let _ = writeln!(
            out,
            "COUNT chunk {}: stored {stored}, manifests name it {} times",
            c.chunk, c.counted
        );
    }
    for s in &r.orphan_segments {
        let _ = writeln!(
            out,
            "DEBRIS segment file {s:016x} (no metadata names it; the cleaner removes it)"
        );
    }
    if !r.lost_chunks.is_empty() {
        let _ = writeln!(
            out,
            "LOST {} chunks with no intact copy (uploading the same data again heals their objects; --json lists them all):",
            r.lost_chunks.len()
        );
        for c in r.lost_chunks.iter().take(10) {
            let _ = writeln!(out, "  {c}");
        }
    }
    if let Some(rep) = &r.repair {
        let _ = writeln!(
            out,
            "repair: {} segments moved to quarantine ({} chunks rescued, {} lost); {} counts fixed, {} segment rows fixed; {} lost chunks found and indexed again",
            rep.segments_quarantined.len(),
            rep.chunks_rescued,
            rep.chunks_lost + rep.counts.newly_lost,
            rep.counts.fixed,
            rep.counts.segments_fixed,
            rep.chunks_reindexed
        );
    }
    for d in &r.damaged_objects {
        let _ = writeln!(
            out,
            "DAMAGED {}/{} (version {}): {} chunks",
            d.bucket, d.key, d.version, d.damaged_chunks
        );
    }
    let _ = writeln!(
        out,
        "{}",
        if r.is_clean() {
            "clean"
        } else {
            "PROBLEMS FOUND"
        }
    );
    out
}

/// The `hoard user list` table.
pub fn render_users(users: &[UserInfo]) -> String {
    let mut out = format!(
        "{:<20} {:<22} {:<9} grants\n",
        "name", "access key", "state"
    );
    for u in users {
        let grants: Vec<String> = u.grants.iter().map(|(b, p)| format!("{b}={p}")).collect();
        out.push_str(&format!(
            "{:<20} {:<22} {:<9} {}\n",
            u.name,
            u.access_key,
            if u.enabled { "enabled" } else { "disabled" },
            if grants.is_empty() {
                "-".to_owned()
            } else {
                grants.join(" ")
            }
        ));
    }
    out
}

/// The `hoard replication list` table.
/// Each target as its template, then its ARN.
pub fn render_targets(targets: &[TargetInfo]) -> String {
    if targets.is_empty() {
        return "no replication targets\n".into();
    }
    targets
        .iter()
        .map(|t| {
            format!(
                "{}  ARN: {}\n",
                render_rules(std::slice::from_ref(&t.rule)),
                t.arn
            )
        })
        .collect()
}

pub fn render_rules(rules: &[RuleInfo]) -> String {
    let mut out = String::new();
    for r in rules {
        out.push_str(&format!(
            "{} -> {} bucket {} (key {}, trust {}){}\n  {} connection(s), bandwidth {}, schedule {}\n",
            r.bucket,
            r.target,
            r.target_bucket,
            r.access_key,
            r.trust,
            if r.paused { " PAUSED" } else { "" },
            r.connections,
            if r.bandwidth == 0 {
                "unlimited".to_owned()
            } else {
                format!("{}/s", human(r.bandwidth))
            },
            if r.windows.is_empty() {
                "continuous".to_owned()
            } else {
                r.windows.join(", ")
            },
        ));
        if let Some(sw) = &r.target_software {
            out.push_str(&format!("  replica answered: {sw}\n"));
        }
    }
    if rules.is_empty() {
        out.push_str("no replication rules\n");
    }
    out
}

/// The `hoard replication status` text.
pub fn render_rule_status(s: &RuleStatus) -> String {
    let p = &s.progress;
    let when = |ms: Option<i64>| {
        ms.map_or_else(
            || "never".to_owned(),
            |ms| {
                format!(
                    "{:.0} s ago",
                    (crate::meta::now_ms() - ms).max(0) as f64 / 1000.0
                )
            },
        )
    };
    let mut out = render_rules(std::slice::from_ref(&s.rule));
    out.push_str(&format!(
        "  queue: {} change(s) waiting, lag {}\n  resync of existing objects: {}\n  sent since start: {} object(s), {} logical, {} on the wire\n  rate: {}/s logical over the last minute\n  last success: {}{}\n",
        p.queued,
        s.lag_secs.map_or_else(|| "0 s".to_owned(), |l| format!("{l:.1} s")),
        match &s.resync_after {
            None => "done".to_owned(),
            Some(k) if k.is_empty() => "pending".to_owned(),
            Some(k) => format!("in progress, after {k:?}"),
        },
        p.objects_sent,
        human(p.logical_bytes),
        human(p.sent_bytes),
        human(p.rate_bytes_per_sec as u64),
        when(p.last_success_ms),
        if p.manual { "; manual run in progress" } else { "" },
    ));
    if let Some(e) = &p.last_error {
        out.push_str(&format!("  last error: {e}\n"));
    }
    if s.failed > 0 {
        out.push_str(&format!(
            "  failed: {} key(s), retried every 10 min or by `hoard replication requeue`\n",
            s.failed
        ));
        for f in &s.failed_keys {
            out.push_str(&format!(
                "    {:?}: {} ({})\n",
                f.key,
                f.error,
                when(Some(f.time_ms))
            ));
        }
    }
    out
}
