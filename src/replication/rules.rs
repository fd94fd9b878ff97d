//! Replication rules on a source: adding one (after a successful hello with its
//! target), listing, pausing, resuming and removing them; and `ReplicaLink`, the
//! source's signed HTTPS client of a replica.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::StatusCode;
use s3s::{S3Error, S3ErrorCode};
use serde::{Deserialize, Serialize};

use super::s3_target::S3Target;
use super::{Hello, Progress, RuleProgress, SenderReport, wire};
use crate::auth::Credentials;
use crate::meta::{
    ChunkId, FIRST_RULE_ID, HoldId, MetaError, MetaStore, RuleRecord, RuleScope, TargetKind,
    TargetTrust, VersionDiff, VersionStamp, rule_key, split_rule_key,
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
    #[error("bucket {bucket} has no replication rule with id {id:?}")]
    NoSuchRuleId { bucket: String, id: String },
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
            RulesError::NoSuchRule(_) | RulesError::NoSuchRuleId { .. } => (
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

impl RulesError {
    /// A failed request to `target`: a 4xx answer is `Refused` (a retry cannot mend
    /// it), anything else `Target` with its causes.
    pub(super) fn of_target(target: &str, e: ClientError) -> RulesError {
        let target = target.to_owned();
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
}

/// The TLS set-up a rule's trust asks for (an empty one for a plain http target,
/// which never uses it).
pub(super) fn target_tls(rule: &RuleRecord) -> Result<rustls::ClientConfig, RulesError> {
    match &rule.trust {
        TargetTrust::Ca(pem) => {
            crate::tls::parse_certs(pem.as_bytes(), std::path::Path::new("the target CA"))
                .and_then(crate::tls::ca_client_config)
        }
        TargetTrust::Fingerprint(fp) => crate::tls::pinned_client_config(fp),
        TargetTrust::PlainHttp => crate::tls::ca_client_config(Vec::new()),
    }
    .map_err(|e| RulesError::Target {
        target: rule.target.clone(),
        reason: e.to_string(),
    })
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
    /// The rule's id among the bucket's rules; none: the bucket's rule towards the
    /// same replica bucket if there is one, else a new id.
    #[serde(default)]
    pub id: Option<String>,
    /// Decides between rules towards the same replica bucket whose filters overlap
    /// (the higher sends); default 0.
    #[serde(default)]
    pub priority: Option<u32>,
    /// Only keys starting with it; default every key.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Only versions carrying all these tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Send delete markers (default true).
    #[serde(default)]
    pub delete_markers: Option<bool>,
    /// Send the objects that exist when the rule is added (default true).
    #[serde(default)]
    pub existing_objects: Option<bool>,
    /// Store the rule paused (default false).
    #[serde(default)]
    pub paused: Option<bool>,
    /// "hoard" (default): another hoard; "s3": a plain S3 bucket, written with PUT
    /// and multipart (`replication::s3_target`).
    #[serde(default)]
    pub kind: Option<String>,
    /// The SigV4 region of an "s3" target (default us-east-1).
    #[serde(default)]
    pub region: Option<String>,
}

/// A rule as the admin API shows it: never the secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuleInfo {
    pub bucket: String,
    /// The rule's id among the bucket's rules.
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub priority: u32,
    #[serde(default)]
    pub prefix: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default = "yes")]
    pub delete_markers: bool,
    #[serde(default = "yes")]
    pub existing_objects: bool,
    /// "hoard" or "s3 REGION".
    #[serde(default)]
    pub kind: String,
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

/// What a rule's secret is bound to when sealed (by rule key).
fn seal_label(rule_key: &str) -> String {
    format!("replication:{rule_key}")
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

    /// The rules of `bucket`, by id.
    async fn bucket_rules(&self, bucket: &str) -> Result<BTreeMap<String, RuleRecord>, RulesError> {
        Ok(self
            .meta
            .rules()
            .await?
            .into_iter()
            .filter_map(|(k, r)| {
                let (b, id) = split_rule_key(&k);
                (b == bucket).then(|| (id.to_owned(), r))
            })
            .collect())
    }

    /// The rule `id` of `bucket`, or without an id the bucket's only rule: its rule
    /// key and record.
    async fn rule(
        &self,
        bucket: &str,
        id: Option<&str>,
    ) -> Result<(String, RuleRecord), RulesError> {
        let mut rules = self.bucket_rules(bucket).await?;
        let id = match id {
            Some(id) => id.to_owned(),
            None if rules.len() > 1 => {
                let ids: Vec<&str> = rules.keys().map(String::as_str).collect();
                return Err(RulesError::Invalid(format!(
                    "bucket {bucket} has {} replication rules ({}): name one with --rule",
                    ids.len(),
                    ids.join(", ")
                )));
            }
            None => rules
                .keys()
                .next()
                .cloned()
                .ok_or_else(|| RulesError::NoSuchRule(bucket.to_owned()))?,
        };
        match rules.remove(&id) {
            Some(r) => Ok((rule_key(bucket, &id), r)),
            None if rules.is_empty() => Err(RulesError::NoSuchRule(bucket.to_owned())),
            None => Err(RulesError::NoSuchRuleId {
                bucket: bucket.to_owned(),
                id,
            }),
        }
    }

    /// The status of each of `bucket`'s rules, or of rule `id`.
    pub async fn statuses(
        &self,
        bucket: &str,
        id: Option<&str>,
    ) -> Result<Vec<RuleStatus>, RulesError> {
        let ids: Vec<String> = match id {
            Some(id) => vec![id.to_owned()],
            None => self.bucket_rules(bucket).await?.into_keys().collect(),
        };
        if ids.is_empty() {
            return Err(RulesError::NoSuchRule(bucket.to_owned()));
        }
        let mut out = Vec::new();
        for id in ids {
            out.push(self.status(bucket, Some(&id)).await?);
        }
        Ok(out)
    }

    pub async fn status(&self, bucket: &str, id: Option<&str>) -> Result<RuleStatus, RulesError> {
        let (key, record) = self.rule(bucket, id).await?;
        let rule = self.info(&key, record);
        let mut progress = self.progress.get(&key);
        progress.rate_bytes_per_sec = progress.rate();
        // In a cluster another gateway may send the rule: its report is the truth.
        let report = self.meta.sender_report(&key).await?;
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
        let (failed_keys, failed) = self.meta.failed_keys(&key, 20).await?;
        Ok(RuleStatus {
            rule,
            progress,
            lag_secs,
            resync_after: self.meta.resync_cursor(&key).await?,
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

    /// Puts the rule's failed keys back into the queue; returns how many.
    pub async fn requeue(&self, bucket: &str, id: Option<&str>) -> Result<usize, RulesError> {
        let (key, _) = self.rule(bucket, id).await?;
        let n = self.meta.requeue_failed(&key).await?;
        tracing::info!(rule = key, keys = n, "failed replications requeued");
        Ok(n)
    }

    /// A manual run: the sender sends now, windows or not, until nothing waits.
    pub async fn run_now(&self, bucket: &str, id: Option<&str>) -> Result<RuleStatus, RulesError> {
        let (key, _) = self.rule(bucket, id).await?;
        // In a cluster, the gateway sending the rule takes it from the metadata.
        self.meta.ask_manual_run(&key).await?;
        self.progress.update(&key, |p| p.manual = true);
        tracing::info!(rule = key, "manual replication run asked for");
        self.status(bucket, Some(split_rule_key(&key).1)).await
    }

    /// Checks a rule and says hello to its target for `bucket` (none: a named
    /// target's template); returns the record (secret not sealed yet) and what the
    /// target said of itself.
    async fn checked_hello(
        &self,
        req: &AddRule,
        bucket: Option<&str>,
        object_lock: bool,
    ) -> Result<(RuleRecord, Hello), RulesError> {
        let rule = self.check(req.clone())?;
        if let Some(TargetKind::S3 { region }) = &rule.kind {
            // A plain S3 bucket: it answers to the key, whether it keeps locks or not.
            let mut target =
                S3Target::new(&rule, req.secret_key.clone(), region, self.metrics.clone())?;
            let found = target.check().await?;
            let theirs = Hello {
                software: found,
                object_lock,
                ..Hello::ours()
            };
            return Ok((rule, theirs));
        }
        let link = ReplicaLink::new(&rule, req.secret_key.clone(), self.metrics.clone())?;
        let theirs = link.hello(object_lock, self.chain(bucket).await?).await?;
        Ok((rule, theirs))
    }

    /// The stores `bucket`'s data comes through: this one, then (for a replica
    /// bucket: a cascade) the ones its source's hello named.
    async fn chain(&self, bucket: Option<&str>) -> Result<Vec<String>, RulesError> {
        let mut chain = vec![format!("{:016x}", self.meta.store_id().await?)];
        if let Some(b) = bucket {
            chain.extend(self.meta.replica_chain(b).await?.unwrap_or_default());
        }
        Ok(chain)
    }

    /// Stores a named target, a rule template that S3 PutBucketReplication names by
    /// its ARN (`target_arn`), once the target answered a hello.
    pub async fn add_target(&self, name: &str, req: AddRule) -> Result<TargetInfo, RulesError> {
        if !valid_bucket_name(name) {
            return Err(RulesError::Invalid(format!(
                "invalid target name {name:?}: 3 to 63 of a-z, 0-9, '-' and '.'"
            )));
        }
        let (rule, theirs) = self.checked_hello(&req, None, false).await?;
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
            rule: RuleInfo {
                id: String::new(),
                ..self.info(name, rule)
            },
        }
    }

    /// S3 PutBucketReplication: the bucket's rules become `rules` (each made from
    /// the named target its ARN names), every target answering a hello before any
    /// is stored; the bucket's rules not among them are removed.
    pub async fn configure(&self, bucket: &str, rules: Vec<S3Rule>) -> Result<(), RulesError> {
        let templates = self.target_templates().await?;
        let mut taken: Vec<String> = rules.iter().filter_map(|r| r.id.clone()).collect();
        let mut prepared = Vec::new();
        for r in rules {
            let name = target_of_arn(&r.arn)?;
            let mut req = templates
                .iter()
                .find_map(|(n, req)| (n == name).then(|| req.clone()))
                .ok_or_else(|| {
                    RulesError::Invalid(format!(
                        "{} names no replication target (hoard replication target add)",
                        r.arn
                    ))
                })?;
            let id = match r.id {
                Some(id) => id,
                None => {
                    let id = fresh_id(&taken);
                    taken.push(id.clone());
                    id
                }
            };
            req.id = Some(id);
            req.priority = Some(r.scope.priority);
            req.prefix = Some(r.scope.prefix.clone());
            req.tags = r.scope.tags.iter().cloned().collect();
            req.delete_markers = Some(r.scope.delete_markers);
            req.existing_objects = Some(r.scope.existing_objects);
            req.paused = Some(!r.enabled);
            prepared.push(self.prepare(bucket, req).await?);
        }
        let keep: Vec<String> = prepared.iter().map(|p| p.key.clone()).collect();
        for p in prepared {
            self.store(p).await?;
        }
        for id in self.bucket_rules(bucket).await?.into_keys() {
            let key = rule_key(bucket, &id);
            if !keep.contains(&key) {
                self.meta.remove_rule(&key).await?;
                tracing::info!(
                    rule = key,
                    "replication rule removed by PutBucketReplication"
                );
            }
        }
        Ok(())
    }

    /// S3 GetBucketReplication: the bucket's rules, each with the ARN of its
    /// target (the named target with the same replica bucket, else the replica
    /// bucket's own name).
    pub async fn configuration(&self, bucket: &str) -> Result<Vec<S3Rule>, RulesError> {
        let rules = self.bucket_rules(bucket).await?;
        if rules.is_empty() {
            return Err(RulesError::NoSuchRule(bucket.to_owned()));
        }
        let templates = self.target_templates().await?;
        Ok(rules
            .into_iter()
            .map(|(id, rule)| {
                let name = templates
                    .iter()
                    .find_map(|(n, t)| {
                        let same = t.target.trim_end_matches('/') == rule.target
                            && t.target_bucket == rule.target_bucket;
                        same.then(|| n.clone())
                    })
                    .unwrap_or_else(|| rule.target_bucket.clone());
                S3Rule {
                    id: Some(id),
                    arn: target_arn(&name),
                    enabled: !rule.paused,
                    scope: rule.scope(),
                }
            })
            .collect())
    }

    /// Checks the rule, says hello to its target, and stores it only if that worked.
    pub async fn add(&self, bucket: &str, req: AddRule) -> Result<RuleInfo, RulesError> {
        let prepared = self.prepare(bucket, req).await?;
        let software = prepared.software.clone();
        let key = prepared.key.clone();
        let rule = self.store(prepared).await?;
        let mut info = self.info(&key, rule);
        info.target_software = Some(software);
        Ok(info)
    }

    /// Checks a rule and says hello to its target; picks its id.
    async fn prepare(&self, bucket: &str, req: AddRule) -> Result<Prepared, RulesError> {
        let Some(source) = self.meta.get_bucket(bucket).await? else {
            return Err(RulesError::NoSuchBucket(bucket.to_owned()));
        };
        let locked = source.object_lock.is_some();
        let (rule, theirs) = self.checked_hello(&req, Some(bucket), locked).await?;
        if locked && !theirs.object_lock {
            return Err(RulesError::Invalid(format!(
                "bucket {bucket} has Object Lock, so its replica must keep the locks: create {} on the replica with Object Lock enabled (aws s3api create-bucket --object-lock-enabled-for-bucket) and add the rule again",
                rule.target_bucket
            )));
        }
        let existing = self.bucket_rules(bucket).await?;
        let destination = (rule.target.clone(), rule.target_bucket.clone());
        let same_target =
            |r: &RuleRecord| (&r.target, &r.target_bucket) == (&destination.0, &destination.1);
        let id = match &req.id {
            Some(id) => id.clone(),
            None => existing
                .iter()
                .find_map(|(id, r)| same_target(r).then(|| id.clone()))
                .unwrap_or_else(|| fresh_id(&existing.keys().cloned().collect::<Vec<_>>())),
        };
        let key = rule_key(bucket, &id);
        let mut rule = rule;
        rule.sealed_secret = self.secrets.seal(&seal_label(&key), &req.secret_key)?;
        // A new rule, or one towards another replica bucket, sends what exists too
        // (unless told not to).
        let resync =
            rule.scope().existing_objects && !existing.get(&id).is_some_and(|old| same_target(old));
        Ok(Prepared {
            key,
            rule,
            resync,
            software: theirs.software,
        })
    }

    async fn store(&self, p: Prepared) -> Result<RuleRecord, RulesError> {
        self.meta.put_rule(&p.key, &p.rule, p.resync).await?;
        tracing::info!(rule = p.key, target = %p.rule.target, target_bucket = %p.rule.target_bucket, replica = %p.software, "replication rule added");
        Ok(p.rule)
    }

    /// Validates an `AddRule` into a record (secret not yet sealed).
    fn check(&self, req: AddRule) -> Result<RuleRecord, RulesError> {
        let invalid = |m: String| RulesError::Invalid(m);
        let kind = match req.kind.as_deref() {
            None | Some("hoard") => None,
            Some("s3") => Some(TargetKind::S3 {
                region: req.region.clone().unwrap_or_else(|| "us-east-1".into()),
            }),
            Some(other) => {
                return Err(invalid(format!(
                    "a target is \"hoard\" or \"s3\", not {other:?}"
                )));
            }
        };
        let plain_http = kind.is_some() && req.target.starts_with("http://");
        if !req.target.starts_with("https://") && !plain_http {
            return Err(invalid(format!(
                "the target must be an https:// URL (or http:// for a plain S3 target), not {:?}",
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
        if let Some(id) = &req.id {
            check_rule_id(id).map_err(invalid)?;
        }
        let trust = match (req.ca_pem, req.fingerprint) {
            _ if plain_http => TargetTrust::PlainHttp,
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
        let scope = RuleScope {
            priority: req.priority.unwrap_or(0),
            prefix: req.prefix.unwrap_or_default(),
            tags: req.tags.into_iter().collect(),
            delete_markers: req.delete_markers.unwrap_or(true),
            existing_objects: req.existing_objects.unwrap_or(true),
        };
        Ok(RuleRecord {
            target: req.target.trim_end_matches('/').to_owned(),
            target_bucket: req.target_bucket,
            access_key: req.access_key,
            sealed_secret: Vec::new(),
            trust,
            windows,
            connections,
            bandwidth: req.bandwidth.unwrap_or(0),
            paused: req.paused.unwrap_or(false),
            created_ms: crate::meta::now_ms(),
            scope: (scope != RuleScope::default()).then_some(scope),
            kind,
        })
    }

    pub async fn list(&self) -> Result<Vec<RuleInfo>, RulesError> {
        Ok(self
            .meta
            .rules()
            .await?
            .into_iter()
            .map(|(k, r)| self.info(&k, r))
            .collect())
    }

    pub async fn remove(&self, bucket: &str, id: Option<&str>) -> Result<(), RulesError> {
        let (key, _) = self.rule(bucket, id).await?;
        if !self.meta.remove_rule(&key).await? {
            return Err(RulesError::NoSuchRule(bucket.to_owned()));
        }
        tracing::info!(rule = key, "replication rule removed");
        Ok(())
    }

    /// Removes all of `bucket`'s rules (S3 DeleteBucketReplication).
    pub async fn remove_all(&self, bucket: &str) -> Result<(), RulesError> {
        for id in self.bucket_rules(bucket).await?.into_keys() {
            self.remove(bucket, Some(&id)).await?;
        }
        Ok(())
    }

    pub async fn set_paused(
        &self,
        bucket: &str,
        id: Option<&str>,
        paused: bool,
    ) -> Result<RuleInfo, RulesError> {
        let (key, mut rule) = self.rule(bucket, id).await?;
        rule.paused = paused;
        self.meta.put_rule(&key, &rule, false).await?;
        tracing::info!(rule = key, paused, "replication rule paused or resumed");
        Ok(self.info(&key, rule))
    }

    fn info(&self, rule_key: &str, r: RuleRecord) -> RuleInfo {
        let (bucket, id) = split_rule_key(rule_key);
        let scope = r.scope();
        RuleInfo {
            id: id.to_owned(),
            priority: scope.priority,
            prefix: scope.prefix,
            tags: scope.tags.into_iter().collect(),
            delete_markers: scope.delete_markers,
            existing_objects: scope.existing_objects,
            kind: match &r.kind {
                None | Some(TargetKind::Hoard) => "hoard".into(),
                Some(TargetKind::S3 { region }) => format!("s3 {region}"),
            },
            target: r.target,
            target_bucket: r.target_bucket,
            access_key: r.access_key,
            trust: match r.trust {
                TargetTrust::Ca(_) => "ca".into(),
                TargetTrust::Fingerprint(f) => format!("fingerprint {f}"),
                TargetTrust::PlainHttp => "none (plain http)".into(),
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
            bucket: bucket.to_owned(),
        }
    }
}

/// A rule checked against its target, ready to store.
struct Prepared {
    key: String,
    rule: RuleRecord,
    resync: bool,
    software: String,
}

/// A rule of an S3 replication configuration, as hoard keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Rule {
    pub id: Option<String>,
    /// The destination bucket's ARN: `arn:aws:s3:::NAME` of a named target.
    pub arn: String,
    /// `Status: Enabled`; a disabled rule is stored paused.
    pub enabled: bool,
    pub scope: RuleScope,
}

/// An id for a new rule of a bucket whose rules have `taken` ids: `FIRST_RULE_ID`
/// for its first, else `rule-N`.
fn fresh_id(taken: &[String]) -> String {
    if taken.is_empty() {
        return FIRST_RULE_ID.to_owned();
    }
    (2..)
        .map(|n| format!("rule-{n}"))
        .find(|id| !taken.contains(id))
        .unwrap_or_default()
}

/// A rule id as S3 allows it: 1 to 255 characters, none a control character.
pub fn check_rule_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.chars().count() > 255 || id.chars().any(char::is_control) {
        return Err(format!(
            "invalid rule id {id:?}: 1 to 255 characters, no control characters"
        ));
    }
    Ok(())
}

fn yes() -> bool {
    true
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
        if rule.trust == TargetTrust::PlainHttp {
            return Err(target_err(
                "another hoard is reached over https only".into(),
            ));
        }
        let tls = target_tls(rule)?;
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
        RulesError::of_target(&self.target, e)
    }

    /// Exchanges hellos; refuses a replica with no protocol version in common.
    /// Says hello for a source bucket (`object_lock`: it has Object Lock, which the
    /// replica's bucket must have too; `chain`: the stores its data comes through).
    pub async fn hello(&self, object_lock: bool, chain: Vec<String>) -> Result<Hello, RulesError> {
        let ours = Hello {
            object_lock,
            chain,
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

/// A rule's secret (by rule key), opened.
pub(crate) fn open_secret(
    secrets: &SecretBox,
    rule_key: &str,
    rule: &RuleRecord,
) -> Result<String, RulesError> {
    secrets
        .open(&seal_label(rule_key), &rule.sealed_secret)
        .ok_or_else(|| {
            RulesError::Invalid(format!(
                "the secret of replication rule {rule_key} cannot be opened with this secrets key"
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
