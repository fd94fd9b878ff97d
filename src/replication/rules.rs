//! Replication rules on a source: adding one (after a successful hello with its
//! target), listing, pausing, resuming and removing them; and `ReplicaLink`, the
//! source's signed HTTPS client of a replica.

use std::sync::Arc;

use http::StatusCode;
use s3s::{S3Error, S3ErrorCode};
use serde::{Deserialize, Serialize};

use super::{Hello, Progress, RuleProgress, SenderReport, wire};
use crate::auth::Credentials;
use crate::meta::{
    ChunkId, HoldId, MetaError, MetaStore, RuleRecord, TargetTrust, VersionDiff, VersionStamp,
};
use crate::metrics::{Metrics, SideLabels};
use crate::names::valid_bucket_name;
use crate::pace::Pacer;
use crate::s3_error::{internal, no_such_bucket};
use crate::secrets::{SecretBox, SecretsError};
use crate::signed_client::{ClientError, SignedClient};

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("no bucket named {0}")]
    NoSuchBucket(String),
    #[error("bucket {0} has no replication rule")]
    NoSuchRule(String),
    #[error("no replication target named {0} (hoard replication target add)")]
    NoSuchTarget(String),
    #[error("{0}")]
    Invalid(String),
    #[error("replication target {target}: {reason}")]
    Target { target: String, reason: String },
    /// The target answered with a 4xx status.
    #[error("replication target {target}: {reason}")]
    Refused {
        target: String,
        status: u16,
        reason: String,
    },
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error(transparent)]
    Meta(MetaError),
}

impl RulesError {
    /// The S3 error a rule change answers with.
    pub fn into_s3(self) -> S3Error {
        let (code, status) = match &self {
            RulesError::NoSuchBucket(_) => return no_such_bucket(),
            RulesError::NoSuchRule(_) => (
                "ReplicationConfigurationNotFoundError",
                StatusCode::NOT_FOUND,
            ),
            RulesError::NoSuchTarget(_) => ("NoSuchReplicationTarget", StatusCode::NOT_FOUND),
            RulesError::Invalid(_) => ("InvalidArgument", StatusCode::BAD_REQUEST),
            RulesError::Target { .. } | RulesError::Refused { .. } => {
                ("InvalidReplicationTarget", StatusCode::BAD_REQUEST)
            }
            _ => return internal("replication rule change failed", &self),
        };
        let mut err = S3Error::with_message(S3ErrorCode::Custom(code.into()), self.to_string());
        err.set_status_code(status);
        err
    }
}

impl From<MetaError> for RulesError {
    fn from(e: MetaError) -> Self {
        RulesError::Meta(e)
    }
}

/// A rule as the admin API takes it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AddRule {
    /// `https://HOST:PORT` of the replica.
    pub target: String,
    pub target_bucket: String,
    pub access_key: String,
    pub secret_key: String,
    /// CA certificates (PEM text) to trust for the target.
    pub ca_pem: Option<String>,
    /// Or: the SHA-256 fingerprint of the target's certificate.
    pub fingerprint: Option<String>,
    /// Daily windows, UTC, like "22:00-06:00"; none: continuous.
    #[serde(default)]
    pub windows: Vec<String>,
    pub connections: Option<u32>,
    /// Bytes per second; none or 0: unlimited.
    pub bandwidth: Option<u64>,
}

/// A rule as the admin API shows it: never the secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuleInfo {
    pub bucket: String,
    pub target: String,
    pub target_bucket: String,
    pub access_key: String,
    /// "ca" or "fingerprint SHA256".
    pub trust: String,
    pub windows: Vec<String>,
    pub connections: u32,
    pub bandwidth: u64,
    pub paused: bool,
    /// What the target said of itself at the hello (in the answer to `add` only).
    pub target_software: Option<String>,
}

pub struct Rules {
    meta: MetaStore,
    secrets: Arc<SecretBox>,
    metrics: Arc<Metrics>,
    progress: Arc<Progress>,
}

/// `hoard replication status B`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuleStatus {
    pub rule: RuleInfo,
    #[serde(flatten)]
    pub progress: RuleProgress,
    /// Seconds since the oldest change still waiting was committed.
    pub lag_secs: Option<f64>,
    /// The objects that existed before the rule: `None` when all were sent, else the
    /// last key sent so far ("" before the first).
    pub resync_after: Option<String>,
    /// Keys whose replication failed for good, waiting for a requeue.
    pub failed: u64,
    /// The first of them (up to 20), with why.
    pub failed_keys: Vec<FailedKey>,
    /// In a cluster: the gateway that sends this rule (hex id), whose progress
    /// this is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailedKey {
    pub key: String,
    pub error: String,
    pub time_ms: i64,
}

/// A named target as the admin API shows it: never the secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetInfo {
    /// What S3 PutBucketReplication names it by.
    pub arn: String,
    /// The template; its `bucket` is the target's name.
    pub rule: RuleInfo,
}

/// The ARN of a named target.
pub fn target_arn(name: &str) -> String {
    format!("arn:aws:s3:::{name}")
}

/// The target name in `arn:aws:s3:::NAME`.
fn target_of_arn(arn: &str) -> Result<&str, RulesError> {
    arn.strip_prefix("arn:aws:s3:::")
        .filter(|n| !n.is_empty() && !n.contains(['/', ':']))
        .ok_or_else(|| {
            RulesError::Invalid(format!(
                "{arn:?} is not a target ARN; name a target as arn:aws:s3:::NAME (hoard replication target list)"
            ))
        })
}

fn target_label(name: &str) -> String {
    format!("replication-target:{name}")
}

/// What a rule's secret is bound to when sealed.
fn seal_label(bucket: &str) -> String {
    format!("replication:{bucket}")
}

impl Rules {
    pub fn new(
        meta: MetaStore,
        secrets: Arc<SecretBox>,
        metrics: Arc<Metrics>,
        progress: Arc<Progress>,
    ) -> Self {
        Rules {
            meta,
            secrets,
            metrics,
            progress,
        }
    }

    async fn rule(&self, bucket: &str) -> Result<RuleRecord, RulesError> {
        self.meta
            .rules()
            .await?
            .into_iter()
            .find_map(|(b, r)| (b == bucket).then_some(r))
            .ok_or_else(|| RulesError::NoSuchRule(bucket.to_owned()))
    }

    pub async fn status(&self, bucket: &str) -> Result<RuleStatus, RulesError> {
        let rule = self.info(bucket.to_owned(), self.rule(bucket).await?);
        let mut progress = self.progress.get(bucket);
        progress.rate_bytes_per_sec = progress.rate();
        // In a cluster another gateway may send the rule: its report is the truth.
        let report = self.meta.sender_report(bucket).await?;
        let report = report.and_then(|b| serde_json::from_slice::<SenderReport>(&b).ok());
        let me = self.meta.gateway_id().map(|g| format!("{g:016x}"));
        let sender = report.map(|r| {
            if Some(&r.gateway) != me.as_ref() {
                progress = r.progress;
            }
            r.gateway
        });
        let lag_secs = progress
            .oldest_queued_ms
            .map(|t| (crate::meta::now_ms() - t).max(0) as f64 / 1000.0);
        let (failed_keys, failed) = self.meta.failed_keys(bucket, 20).await?;
        Ok(RuleStatus {
            rule,
            progress,
            lag_secs,
            resync_after: self.meta.resync_cursor(bucket).await?,
            failed,
            failed_keys: failed_keys
                .into_iter()
                .map(|(key, f)| FailedKey {
                    key,
                    error: f.error,
                    time_ms: f.time_ms,
                })
                .collect(),
            sender,
        })
    }

    /// Puts the bucket's failed keys back into the queue; returns how many.
    pub async fn requeue(&self, bucket: &str) -> Result<usize, RulesError> {
        self.rule(bucket).await?;
        let n = self.meta.requeue_failed(bucket).await?;
        tracing::info!(bucket, keys = n, "failed replications requeued");
        Ok(n)
    }

    /// A manual run: the sender sends now, windows or not, until nothing waits.
    pub async fn run_now(&self, bucket: &str) -> Result<RuleStatus, RulesError> {
        self.rule(bucket).await?;
        // In a cluster, the gateway sending the rule takes it from the metadata.
        self.meta.ask_manual_run(bucket).await?;
        self.progress.update(bucket, |p| p.manual = true);
        tracing::info!(bucket, "manual replication run asked for");
        self.status(bucket).await
    }

    /// Checks a rule and says hello to its target; returns the record (secret not
    /// sealed yet) and what the target said of itself.
    async fn checked_hello(
        &self,
        req: &AddRule,
        object_lock: bool,
    ) -> Result<(RuleRecord, Hello), RulesError> {
        let rule = self.check(req.clone())?;
        let link = ReplicaLink::new(&rule, req.secret_key.clone(), self.metrics.clone())?;
        let theirs = link.hello(object_lock).await?;
        Ok((rule, theirs))
    }

    /// Stores a named target, a rule template that S3 PutBucketReplication names by
    /// its ARN (`target_arn`), once the target answered a hello.
    pub async fn add_target(&self, name: &str, req: AddRule) -> Result<TargetInfo, RulesError> {
        if !valid_bucket_name(name) {
            return Err(RulesError::Invalid(format!(
                "invalid target name {name:?}: 3 to 63 of a-z, 0-9, '-' and '.'"
            )));
        }
        let (rule, theirs) = self.checked_hello(&req, false).await?;
        let json = serde_json::to_vec(&req).map_err(|e| RulesError::Invalid(e.to_string()))?;
        let sealed = self.secrets.seal_bytes(&target_label(name), json)?;
        self.meta.put_target(name, sealed).await?;
        tracing::info!(name, target = %rule.target, target_bucket = %rule.target_bucket, "replication target added");
        let mut info = self.target_info(name, rule);
        info.rule.target_software = Some(theirs.software);
        Ok(info)
    }

    pub async fn targets(&self) -> Result<Vec<TargetInfo>, RulesError> {
        let mut out = Vec::new();
        for (name, req) in self.target_templates().await? {
            out.push(self.target_info(&name, self.check(req)?));
        }
        Ok(out)
    }

    pub async fn remove_target(&self, name: &str) -> Result<(), RulesError> {
        match self.meta.remove_target(name).await? {
            true => Ok(()),
            false => Err(RulesError::NoSuchTarget(name.to_owned())),
        }
    }

    /// The targets' templates, opened.
    async fn target_templates(&self) -> Result<Vec<(String, AddRule)>, RulesError> {
        let mut out = Vec::new();
        for (name, sealed) in self.meta.targets().await? {
            let req = self
                .secrets
                .open_bytes(&target_label(&name), sealed)
                .and_then(|json| serde_json::from_slice(&json).ok())
                .ok_or_else(|| {
                    RulesError::Invalid(format!(
                        "replication target {name} cannot be opened with this secrets key"
                    ))
                })?;
            out.push((name, req));
        }
        Ok(out)
    }

    fn target_info(&self, name: &str, rule: RuleRecord) -> TargetInfo {
        TargetInfo {
            arn: target_arn(name),
            rule: self.info(name.to_owned(), rule),
        }
    }

    /// S3 PutBucketReplication: the bucket's rule from the target the ARN names,
    /// paused when the configuration's rule is disabled.
    pub async fn configure(
        &self,
        bucket: &str,
        arn: &str,
        enabled: bool,
    ) -> Result<(), RulesError> {
        let name = target_of_arn(arn)?;
        let req = self
            .target_templates()
            .await?
            .into_iter()
            .find_map(|(n, req)| (n == name).then_some(req))
            .ok_or_else(|| {
                RulesError::Invalid(format!(
                    "{arn} names no replication target (hoard replication target add)"
                ))
            })?;
        self.add(bucket, req).await?;
        if !enabled {
            self.set_paused(bucket, true).await?;
        }
        Ok(())
    }

    /// S3 GetBucketReplication: the ARN of the bucket's rule's target (the named
    /// target with the same replica bucket, else the replica bucket's own name) and
    /// whether the rule is enabled.
    pub async fn configuration(&self, bucket: &str) -> Result<(String, bool), RulesError> {
        let rule = self.rule(bucket).await?;
        let name = self
            .target_templates()
            .await?
            .into_iter()
            .find_map(|(n, t)| {
                let same = t.target.trim_end_matches('/') == rule.target
                    && t.target_bucket == rule.target_bucket;
                same.then_some(n)
            })
            .unwrap_or_else(|| rule.target_bucket.clone());
        Ok((target_arn(&name), !rule.paused))
    }

    /// Checks the rule, says hello to its target, and stores it only if that worked.
    pub async fn add(&self, bucket: &str, req: AddRule) -> Result<RuleInfo, RulesError> {
        let Some(source) = self.meta.get_bucket(bucket).await? else {
            return Err(RulesError::NoSuchBucket(bucket.to_owned()));
        };
        let locked = source.object_lock.is_some();
        let (rule, theirs) = self.checked_hello(&req, locked).await?;
        if locked && !theirs.object_lock {
            return Err(RulesError::Invalid(format!(
                "bucket {bucket} has Object Lock, so its replica must keep the locks: create {} on the replica with Object Lock enabled (aws s3api create-bucket --object-lock-enabled-for-bucket) and add the rule again",
                rule.target_bucket
            )));
        }
        let mut rule = rule;
        rule.sealed_secret = self.secrets.seal(&seal_label(bucket), &req.secret_key)?;
        // A new rule, or one towards another replica bucket, sends what exists too.
        let same_target = self.rule(bucket).await.ok().is_some_and(|old| {
            (old.target.as_str(), old.target_bucket.as_str())
                == (rule.target.as_str(), rule.target_bucket.as_str())
        });
        self.meta.put_rule(bucket, &rule, !same_target).await?;
        tracing::info!(bucket, target = %rule.target, target_bucket = %rule.target_bucket, replica = %theirs.software, "replication rule added");
        let mut info = self.info(bucket.to_owned(), rule);
        info.target_software = Some(theirs.software);
        Ok(info)
    }

    /// Validates an `AddRule` into a record (secret not yet sealed).
    fn check(&self, req: AddRule) -> Result<RuleRecord, RulesError> {
        let invalid = |m: String| RulesError::Invalid(m);
        if !req.target.starts_with("https://") {
            return Err(invalid(format!(
                "the target must be an https:// URL, not {:?}",
                req.target
            )));
        }
        if !valid_bucket_name(&req.target_bucket) {
            return Err(invalid(format!(
                "invalid target bucket {:?}",
                req.target_bucket
            )));
        }
        if req.access_key.is_empty() || req.secret_key.is_empty() {
            return Err(invalid(
                "give the target's access key and secret key".into(),
            ));
        }
        let trust = match (req.ca_pem, req.fingerprint) {
            (Some(pem), None) => {
                crate::tls::parse_certs(pem.as_bytes(), std::path::Path::new("the target CA"))
                    .map_err(|e| invalid(e.to_string()))?;
                TargetTrust::Ca(pem)
            }
            (None, Some(fp)) => TargetTrust::Fingerprint(
                crate::tls::normalize_fingerprint(&fp).ok_or_else(|| {
                    invalid(format!(
                        "{fp:?} is not a SHA-256 fingerprint (64 hex digits)"
                    ))
                })?,
            ),
            _ => {
                return Err(invalid(
                    "trust the target through a CA file or a certificate fingerprint (one of them)"
                        .into(),
                ));
            }
        };
        let windows = req
            .windows
            .iter()
            .map(|w| crate::config::parse_window(w))
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid)?;
        let connections = req.connections.unwrap_or(4);
        if !(1..=64).contains(&connections) {
            return Err(invalid(format!(
                "connections must be 1 to 64, not {connections}"
            )));
        }
        Ok(RuleRecord {
            target: req.target.trim_end_matches('/').to_owned(),
            target_bucket: req.target_bucket,
            access_key: req.access_key,
            sealed_secret: Vec::new(),
            trust,
            windows,
            connections,
            bandwidth: req.bandwidth.unwrap_or(0),
            paused: false,
            created_ms: crate::meta::now_ms(),
        })
    }

    pub async fn list(&self) -> Result<Vec<RuleInfo>, RulesError> {
        Ok(self
            .meta
            .rules()
            .await?
            .into_iter()
            .map(|(b, r)| self.info(b, r))
            .collect())
    }

    pub async fn remove(&self, bucket: &str) -> Result<(), RulesError> {
        if !self.meta.remove_rule(bucket).await? {
            return Err(RulesError::NoSuchRule(bucket.to_owned()));
        }
        tracing::info!(bucket, "replication rule removed");
        Ok(())
    }

    pub async fn set_paused(&self, bucket: &str, paused: bool) -> Result<RuleInfo, RulesError> {
        let mut rule = self.rule(bucket).await?;
        rule.paused = paused;
        self.meta.put_rule(bucket, &rule, false).await?;
        tracing::info!(bucket, paused, "replication rule paused or resumed");
        Ok(self.info(bucket.to_owned(), rule))
    }

    fn info(&self, bucket: String, r: RuleRecord) -> RuleInfo {
        RuleInfo {
            target: r.target,
            target_bucket: r.target_bucket,
            access_key: r.access_key,
            trust: match r.trust {
                TargetTrust::Ca(_) => "ca".into(),
                TargetTrust::Fingerprint(f) => format!("fingerprint {f}"),
            },
            windows: r
                .windows
                .iter()
                .map(|(a, b)| format!("{:02}:{:02}-{:02}:{:02}", a / 60, a % 60, b / 60, b % 60))
                .collect(),
            connections: r.connections,
            bandwidth: r.bandwidth,
            paused: r.paused,
            target_software: None,
            bucket,
        }
    }
}

/// The source's client of one replica bucket: HTTPS trusting only the rule's CA or
/// pinned certificate, requests signed with the rule's key.
pub struct ReplicaLink {
    client: SignedClient,
    target: String,
    bucket: String,
    metrics: Arc<Metrics>,
    /// The rule's bandwidth limit, over every request body.
    bandwidth: Pacer,
}

impl ReplicaLink {
    pub fn new(
        rule: &RuleRecord,
        secret_key: String,
        metrics: Arc<Metrics>,
    ) -> Result<ReplicaLink, RulesError> {
        let target_err = |reason: String| RulesError::Target {
            target: rule.target.clone(),
            reason,
        };
        let tls = match &rule.trust {
            TargetTrust::Ca(pem) => {
                crate::tls::parse_certs(pem.as_bytes(), std::path::Path::new("the target CA"))
                    .and_then(crate::tls::ca_client_config)
            }
            TargetTrust::Fingerprint(fp) => crate::tls::pinned_client_config(fp),
        }
        .map_err(|e| target_err(e.to_string()))?;
        let creds = Credentials {
            access_key: rule.access_key.clone(),
            secret_key,
        };
        let client = SignedClient::new(&rule.target, super::PREFIX, "us-east-1", creds, tls, false)
            .map_err(|e| target_err(e.to_string()))?;
        Ok(ReplicaLink {
            client,
            target: rule.target.clone(),
            bucket: rule.target_bucket.clone(),
            metrics,
            bandwidth: Pacer::new(rule.bandwidth),
        })
    }

    fn error(&self, e: ClientError) -> RulesError {
        let target = self.target.clone();
        match e {
            ClientError::Status { status, .. } if (400..500).contains(&status) => {
                RulesError::Refused {
                    target,
                    status,
                    reason: e.to_string(),
                }
            }
            // The causes one after the other: TLS failures hide in them.
            e => RulesError::Target {
                target,
                reason: format!("{:#}", anyhow::Error::new(e)),
            },
        }
    }

    /// Exchanges hellos; refuses a replica with no protocol version in common.
    /// Says hello for a source bucket (`object_lock`: it has Object Lock, which the
    /// replica's bucket must have too).
    pub async fn hello(&self, object_lock: bool) -> Result<Hello, RulesError> {
        let ours = Hello {
            object_lock,
            ..Hello::ours()
        };
        let body = serde_json::to_vec(&ours).map_err(|e| RulesError::Invalid(e.to_string()))?;
        let path = format!("hello?bucket={}", self.bucket);
        let answer = self.client.call(http::Method::POST, &path, body).await;
        let why = match answer {
            Ok(theirs) => match ours.negotiate(&theirs) {
                Ok(_) => return Ok(theirs),
                Err(why) => why,
            },
            // The replica found no common version: refused on both sides.
            Err(ClientError::Status { status: 400, body })
                if body.contains("IncompatibleReplicationProtocol") =>
            {
                s3_error_message(&body)
            }
            Err(e) => return Err(self.error(e)),
        };
        tracing::warn!(target = %self.target, %why, "replication hello refused");
        self.metrics
            .replication_hello_refused
            .get_or_create(&SideLabels {
                side: "source".into(),
            })
            .inc();
        Err(RulesError::Target {
            target: self.target.clone(),
            reason: why,
        })
    }
}

impl ReplicaLink {
    /// Which of `ids` the replica lacks.
    pub async fn missing(&self, ids: &[ChunkId]) -> Result<Vec<ChunkId>, RulesError> {
        let path = format!("missing?bucket={}", self.bucket);
        self.bandwidth.pass(ids.len() as u64 * 32).await;
        let body = self
            .client
            .request_bytes(http::Method::POST, &path, wire::encode_ids(ids))
            .await
            .map_err(|e| self.error(e))?;
        wire::decode_ids(&body).map_err(|why| RulesError::Target {
            target: self.target.clone(),
            reason: why,
        })
    }

    /// Sends chunk frames (`wire::push_frame`).
    pub async fn chunks(&self, frames: Vec<u8>, hold: &HoldId) -> Result<(), RulesError> {
        let path = format!("chunks?bucket={}&hold={}", self.bucket, hex::encode(hold));
        self.put(&path, frames).await
    }

    /// Stages part `part` of the version sent under `hold`: its manifest
    /// (`meta::encode_manifest`).
    pub async fn stage_part(
        &self,
        key: &str,
        part: u32,
        manifest: Vec<u8>,
        hold: &HoldId,
    ) -> Result<(), RulesError> {
        let path = format!("{}&part={part}", self.held_path("part", key, hold));
        self.put(&path, manifest).await
    }

    /// Commits an object (`wire::encode_object`) under `key`.
    pub async fn commit(
        &self,
        key: &str,
        object: Vec<u8>,
        hold: &HoldId,
    ) -> Result<(), RulesError> {
        self.put(&self.held_path("object", key, hold), object).await
    }

    /// `op` on `key` of the replica bucket, under `hold`.
    fn held_path(&self, op: &str, key: &str, hold: &HoldId) -> String {
        format!(
            "{op}?bucket={}&key={}&hold={}",
            self.bucket,
            hex::encode(key),
            hex::encode(hold)
        )
    }

    async fn put(&self, path: &str, body: Vec<u8>) -> Result<(), RulesError> {
        self.bandwidth.pass(body.len() as u64).await;
        self.client
            .request_bytes(http::Method::PUT, path, body)
            .await
            .map(drop)
            .map_err(|e| self.error(e))
    }

    /// How the replica's versions of `key` differ from the source's `stamps`, and
    /// the bytes the question took.
    pub async fn versions(
        &self,
        key: &str,
        stamps: &[VersionStamp],
    ) -> Result<(VersionDiff, u64), RulesError> {
        self.call_json(http::Method::POST, "versions", key, stamps)
            .await
    }

    /// Removes the replica's versions of `key` that are not among `keep`.
    pub async fn prune(&self, key: &str, keep: &[VersionStamp]) -> Result<(), RulesError> {
        let _: (serde_json::Value, u64) = self
            .call_json(http::Method::DELETE, "object", key, keep)
            .await?;
        Ok(())
    }

    /// A JSON request about `key`; the answer and the request body's size.
    async fn call_json<T: serde::de::DeserializeOwned>(
        &self,
        method: http::Method,
        op: &str,
        key: &str,
        body: &[VersionStamp],
    ) -> Result<(T, u64), RulesError> {
        let path = format!("{op}?bucket={}&key={}", self.bucket, hex::encode(key));
        let body = serde_json::to_vec(body).map_err(|e| RulesError::Invalid(e.to_string()))?;
        let size = body.len() as u64;
        self.bandwidth.pass(body.len() as u64).await;
        let answer = self.client.call(method, &path, body).await;
        Ok((answer.map_err(|e| self.error(e))?, size))
    }
}

/// A rule's secret, opened.
pub(crate) fn open_secret(
    secrets: &SecretBox,
    bucket: &str,
    rule: &RuleRecord,
) -> Result<String, RulesError> {
    secrets
        .open(&seal_label(bucket), &rule.sealed_secret)
        .ok_or_else(|| {
            RulesError::Invalid(format!(
                "the secret of {bucket}'s replication rule cannot be opened with this secrets key"
            ))
        })
}

/// The `<Message>` of an S3 error body, or the body.
fn s3_error_message(body: &str) -> String {
    #[derive(Deserialize)]
    struct ErrorXml {
        #[serde(rename = "Message")]
        message: Option<String>,
    }
    quick_xml::de::from_str::<ErrorXml>(body)
        .ok()
        .and_then(|e| e.message)
        .unwrap_or_else(|| body.to_owned())
}
