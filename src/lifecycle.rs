//! Lifecycle: a bucket's expiry rules (S3's lifecycle configuration without
//! transitions: hoard has one storage class) and the background pass that carries
//! them out.
//!
//! What a pass does, per bucket with enabled rules, as S3 defines it:
//! - `Expiration` (Days, or Date): a current version older than its days, counted
//!   from its creation and rounded up to the next midnight UTC (or every current
//!   version once the date has come) expires: deleted in an unversioned bucket, given
//!   a delete marker in a versioned or suspended one. The same rule removes an expired
//!   delete marker (a current marker with no noncurrent version) once it is as old.
//! - `ExpiredObjectDeleteMarker`: removes expired delete markers at once.
//! - `NoncurrentVersionExpiration` (NoncurrentDays, NewerNoncurrentVersions): a
//!   noncurrent version is removed once it has been noncurrent (since its successor
//!   was written) for its days, rounded up to midnight, keeping the newest N.
//! - `AbortIncompleteMultipartUpload`: uploads started that many days ago are aborted.
//!
//! Invariants:
//! - A pass never removes a version Object Lock protects: its deletes go through
//!   the same lock check as a client's (judged by the retention clock, bypassing
//!   nothing); a refused one is counted as kept.
//! - A pass expires only the version it judged: the current version's expiry is a
//!   conditional delete on that version's ETag and time, so a version written after
//!   the pass read the key is never expired by it; noncurrent versions are removed by
//!   version id.
//! - Rule filters (prefix, tags, object size) are judged on the version itself.
//! - One pass at a time in a cluster: a pass claims the worker `lifecycle`
//!   (`meta::gateways`) for its turn; another gateway's timer skips meanwhile, and an
//!   admin's pass asked of it answers 409.
//!
//! Lifecycle deletes are ordinary deletes: they enter the outbox and replicate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::meta::{
    BucketConfigKind, DeleteCondition, DeleteTarget, LockCheck, MetaError, MetaStore, ObjectRecord,
    UploadEntry, UploadQuery, VersionEntry, VersionQuery, WorkerBusy,
};
use crate::metrics::Metrics;
use crate::retention::RetentionClock;

/// One day, in the milliseconds lifecycle times are kept in.
pub const DAY_MS: i64 = 86_400_000;
/// Versions read, and deletes applied, per metadata transaction.
const BATCH: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("metadata: {0}")]
    Meta(#[from] MetaError),
    /// Another gateway of the cluster runs a pass now.
    #[error("another gateway runs a lifecycle pass now ({0}); try again when it ended")]
    Busy(WorkerBusy),
    #[error("stored lifecycle configuration of bucket {bucket} is unreadable: {source}")]
    Unreadable {
        bucket: String,
        source: serde_json::Error,
    },
}

/// A bucket's lifecycle configuration, as stored (JSON in the bucket's
/// `BucketConfigKind::Lifecycle` document).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleRules {
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub id: String,
    pub enabled: bool,
    pub filter: Filter,
    pub expiration: Option<Expiration>,
    pub noncurrent: Option<NoncurrentExpiration>,
    /// `AbortIncompleteMultipartUpload`'s DaysAfterInitiation.
    pub abort_upload_days: Option<u32>,
}

/// Which versions a rule applies to; every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    pub prefix: String,
    pub tags: Vec<(String, String)>,
    pub size_greater_than: Option<u64>,
    pub size_less_than: Option<u64>,
    /// How the rule named it, so that GetBucketLifecycleConfiguration answers in the
    /// same shape: a top-level `<Prefix>` (S3's older form), or `<Filter>` with `<And>`.
    pub shape: FilterShape,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum FilterShape {
    /// `<Filter>` naming one condition (or none).
    #[default]
    Single,
    /// `<Filter><And>…</And></Filter>`.
    And,
    /// A top-level `<Prefix>`.
    Legacy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expiration {
    Days(u32),
    /// Midnight UTC of the date, in unix milliseconds.
    Date(i64),
    /// `ExpiredObjectDeleteMarker` true.
    ExpiredDeleteMarker,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoncurrentExpiration {
    pub days: u32,
    /// Keep this many of the newest noncurrent versions whatever their age.
    pub newer_versions: Option<u32>,
}

impl LifecycleRules {
    pub fn encode(&self) -> Vec<u8> {
        // A struct of strings, numbers and enums always serialises.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bucket: &str, doc: &[u8]) -> Result<LifecycleRules, LifecycleError> {
        serde_json::from_slice(doc).map_err(|source| LifecycleError::Unreadable {
            bucket: bucket.to_owned(),
            source,
        })
    }

    fn enabled(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().filter(|r| r.enabled)
    }

    /// The longest prefix every enabled rule's prefix starts with: the part of the
    /// bucket a pass must read.
    fn common_prefix(&self) -> String {
        let mut rules = self.enabled();
        let Some(first) = rules.next() else {
            return String::new();
        };
        let mut common = first.filter.prefix.clone();
        for r in rules {
            let shared = common
                .char_indices()
                .zip(r.filter.prefix.chars())
                .find(|((_, a), b)| a != b)
                .map(|((i, _), _)| i);
            if let Some(i) = shared {
                common.truncate(i);
            } else if r.filter.prefix.len() < common.len() {
                common.truncate(r.filter.prefix.len());
            }
        }
        common
    }
}

impl Filter {
    fn matches(&self, key: &str, rec: &ObjectRecord) -> bool {
        key.starts_with(&self.prefix)
            && self.tags.iter().all(|t| rec.tags.contains(t))
            && self.size_greater_than.is_none_or(|n| rec.size > n)
            && self.size_less_than.is_none_or(|n| rec.size < n)
    }

    /// A delete marker has no tags and no size: only a rule without tag or size
    /// conditions can remove it.
    fn matches_marker(&self, key: &str) -> bool {
        key.starts_with(&self.prefix)
            && self.tags.is_empty()
            && self.size_greater_than.is_none()
            && self.size_less_than.is_none()
    }
}

/// `start` plus `days`, rounded up to the next midnight UTC, as S3 counts days.
fn due_ms(start_ms: i64, days: u32) -> i64 {
    let t = start_ms.saturating_add(i64::from(days) * DAY_MS);
    t.div_euclid(DAY_MS)
        .saturating_add(i64::from(t.rem_euclid(DAY_MS) != 0))
        * DAY_MS
}

impl Expiration {
    /// Whether a version (or marker) written at `modified_ms` has expired at `now_ms`.
    fn expired(self, modified_ms: i64, now_ms: i64) -> bool {
        match self {
            Expiration::Days(d) => due_ms(modified_ms, d) <= now_ms,
            Expiration::Date(date) => date <= now_ms,
            Expiration::ExpiredDeleteMarker => false,
        }
    }
}

/// What a pass does to one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The current version expires (deleted, or hidden by a delete marker).
    ExpireCurrent { etag: String, modified_ms: i64 },
    /// A noncurrent version is removed.
    RemoveNoncurrent { version_id: String },
    /// An expired delete marker is removed.
    RemoveMarker { version_id: String },
}

/// The actions the rules ask for on one key, given its versions newest first
/// (`has_current`: whether the first is the current version).
pub fn key_actions(
    rules: &LifecycleRules,
    key: &str,
    versions: &[ObjectRecord],
    has_current: bool,
    now_ms: i64,
) -> Vec<Action> {
    let mut out = Vec::new();
    let (current, noncurrent) = match (has_current, versions.split_first()) {
        (true, Some((c, rest))) => (Some(c), rest),
        _ => (None, versions),
    };
    if let Some(c) = current {
        if c.delete_marker {
            let expired = noncurrent.is_empty()
                && rules.enabled().any(|r| {
                    r.filter.matches_marker(key)
                        && r.expiration.is_some_and(|e| {
                            e == Expiration::ExpiredDeleteMarker || e.expired(c.modified_ms, now_ms)
                        })
                });
            if expired {
                out.push(Action::RemoveMarker {
                    version_id: c.version_id.clone(),
                });
            }
        } else if rules.enabled().any(|r| {
            r.filter.matches(key, c)
                && r.expiration
                    .is_some_and(|e| e.expired(c.modified_ms, now_ms))
        }) {
            out.push(Action::ExpireCurrent {
                etag: c.etag.clone(),
                modified_ms: c.modified_ms,
            });
        }
    }
    // A noncurrent version became noncurrent when the next newer one was written:
    // `versions[i]` is the successor of `noncurrent[i]` (or, for a key without a
    // current version, which the store never keeps, the version itself).
    for (i, v) in noncurrent.iter().enumerate() {
        let became_ms = versions[i].modified_ms;
        let matches = |r: &Rule| match v.delete_marker {
            true => r.filter.matches_marker(key),
            false => r.filter.matches(key, v),
        };
        let due = rules.enabled().any(|r| {
            r.noncurrent.is_some_and(|n| {
                matches(r)
                    && i >= n.newer_versions.unwrap_or(0) as usize
                    && due_ms(became_ms, n.days) <= now_ms
            })
        });
        if due {
            out.push(Action::RemoveNoncurrent {
                version_id: v.version_id.clone(),
            });
        }
    }
    out
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleReport {
    /// Buckets with enabled rules.
    pub buckets: u64,
    pub versions_read: u64,
    /// Current versions expired (deleted, or hidden by a delete marker).
    pub expired: u64,
    pub noncurrent_removed: u64,
    pub markers_removed: u64,
    pub uploads_aborted: u64,
    /// Versions the rules expire that Object Lock protects, left in place.
    pub kept_locked: u64,
    /// Versions that changed between the pass's read and its delete, left in place.
    pub changed_meanwhile: u64,
    /// Buckets whose stored rules could not be read: skipped (logged), the other
    /// buckets still served.
    #[serde(default)]
    pub unreadable_rules: u64,
}

/// The versions of one key read so far: (key, versions newest first, whether the
/// first is the current one).
type KeyGroup = (String, Vec<ObjectRecord>, bool);

/// One pass over every bucket with lifecycle rules, expiring what is due at
/// `now_ms`; deletes are judged by `lock`.
pub async fn run_pass(
    meta: &MetaStore,
    now_ms: i64,
    lock: LockCheck,
) -> Result<LifecycleReport, LifecycleError> {
    let mut report = LifecycleReport::default();
    for (bucket, doc) in meta.bucket_configs(BucketConfigKind::Lifecycle).await? {
        let rules = match LifecycleRules::decode(&bucket, &doc) {
            Ok(rules) => rules,
            Err(e) => {
                tracing::error!(%bucket, error = %e, "lifecycle: bucket skipped");
                report.unreadable_rules += 1;
                continue;
            }
        };
        if rules.enabled().next().is_none() {
            continue;
        }
        report.buckets += 1;
        let pass = BucketPass {
            meta,
            bucket: &bucket,
            rules: &rules,
            now_ms,
            lock,
        };
        match pass.run(&mut report).await {
            // Deleted while the pass ran.
            Err(LifecycleError::Meta(MetaError::NoSuchBucket)) => {}
            other => other?,
        }
    }
    Ok(report)
}

struct BucketPass<'a> {
    meta: &'a MetaStore,
    bucket: &'a str,
    rules: &'a LifecycleRules,
    now_ms: i64,
    lock: LockCheck,
}

impl BucketPass<'_> {
    async fn run(&self, report: &mut LifecycleReport) -> Result<(), LifecycleError> {
        let mut query = VersionQuery {
            prefix: self.rules.common_prefix(),
            max: BATCH,
            ..Default::default()
        };
        let mut group: Option<KeyGroup> = None;
        let mut pending = Vec::new();
        loop {
            let page = self.meta.list_versions(self.bucket, query.clone()).await?;
            for entry in page.entries {
                let VersionEntry::Version { key, rec, latest } = entry else {
                    continue;
                };
                report.versions_read += 1;
                query.key_marker = Some(key.clone());
                query.version_id_marker = Some(rec.version_id.clone());
                match &mut group {
                    Some((k, versions, _)) if *k == key => versions.push(rec),
                    _ => {
                        if let Some(done) = group.replace((key, vec![rec], latest)) {
                            pending.extend(self.targets(done));
                        }
                    }
                }
            }
            if pending.len() >= BATCH {
                self.apply(std::mem::take(&mut pending), report).await?;
            }
            if !page.truncated {
                break;
            }
        }
        if let Some(done) = group {
            pending.extend(self.targets(done));
        }
        self.apply(pending, report).await?;
        self.abort_uploads(report).await
    }

    /// The deletes that carry out the rules' actions on one key.
    fn targets(&self, (key, versions, has_current): KeyGroup) -> Vec<(Action, DeleteTarget)> {
        key_actions(self.rules, &key, &versions, has_current, self.now_ms)
            .into_iter()
            .map(|a| {
                let target = match &a {
                    Action::ExpireCurrent { etag, modified_ms } => DeleteTarget {
                        key: key.clone(),
                        version: None,
                        condition: DeleteCondition {
                            etag: Some(Some(etag.clone())),
                            modified_secs: Some(modified_ms.div_euclid(1000)),
                            size: None,
                        },
                    },
                    Action::RemoveNoncurrent { version_id }
                    | Action::RemoveMarker { version_id } => {
                        DeleteTarget::new(&key, Some(version_id.clone()))
                    }
                };
                (a, target)
            })
            .collect()
    }

    async fn apply(
        &self,
        actions: Vec<(Action, DeleteTarget)>,
        report: &mut LifecycleReport,
    ) -> Result<(), LifecycleError> {
        if actions.is_empty() {
            return Ok(());
        }
        let (actions, targets): (Vec<_>, Vec<_>) = actions.into_iter().unzip();
        let outcomes = self
            .meta
            .delete_objects(self.bucket, targets, self.lock)
            .await?;
        for (action, outcome) in actions.iter().zip(outcomes) {
            match outcome {
                Ok(Some(_)) => {
                    *match action {
                        Action::ExpireCurrent { .. } => &mut report.expired,
                        Action::RemoveNoncurrent { .. } => &mut report.noncurrent_removed,
                        Action::RemoveMarker { .. } => &mut report.markers_removed,
                    } += 1
                }
                Err(MetaError::ObjectLocked(_)) => report.kept_locked += 1,
                Ok(None) | Err(MetaError::PreconditionFailed | MetaError::NoSuchKey) => {
                    report.changed_meanwhile += 1
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn abort_uploads(&self, report: &mut LifecycleReport) -> Result<(), LifecycleError> {
        let rules: Vec<(&str, u32)> = self
            .rules
            .enabled()
            .filter_map(|r| Some((r.filter.prefix.as_str(), r.abort_upload_days?)))
            .collect();
        if rules.is_empty() {
            return Ok(());
        }
        let mut query = UploadQuery {
            max: BATCH,
            ..Default::default()
        };
        loop {
            let page = self.meta.list_uploads(self.bucket, query.clone()).await?;
            for entry in page.entries {
                let UploadEntry::Upload {
                    key,
                    upload_id,
                    rec,
                } = entry
                else {
                    continue;
                };
                let due = rules.iter().any(|(prefix, days)| {
                    key.starts_with(prefix) && due_ms(rec.initiated_ms, *days) <= self.now_ms
                });
                if due {
                    match self.meta.abort_upload(self.bucket, &key, &upload_id).await {
                        Ok(()) => report.uploads_aborted += 1,
                        Err(MetaError::NoSuchUpload) => report.changed_meanwhile += 1,
                        Err(e) => return Err(e.into()),
                    }
                }
                query.key_marker = Some(key);
                query.upload_id_marker = Some(upload_id);
            }
            if !page.truncated {
                return Ok(());
            }
        }
    }
}

/// The background job: a pass every `every`, and on demand (`hoard lifecycle run`).
/// The cluster-wide worker name of lifecycle passes: one at a time in a cluster.
const LIFECYCLE_WORKER: &str = "lifecycle";

pub struct Lifecycle {
    pub meta: MetaStore,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<RetentionClock>,
    /// One pass at a time.
    pub running: tokio::sync::Mutex<()>,
}

impl Lifecycle {
    pub fn new(meta: MetaStore, metrics: Arc<Metrics>, clock: Arc<RetentionClock>) -> Lifecycle {
        Lifecycle {
            meta,
            metrics,
            clock,
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// One pass now, by the wall clock; locks are judged by the retention clock.
    pub async fn run_once(&self) -> Result<LifecycleReport, LifecycleError> {
        let _one = self.running.lock().await;
        let _cluster = self
            .meta
            .worker_turn(LIFECYCLE_WORKER)
            .await?
            .map_err(LifecycleError::Busy)?;
        let started = Instant::now();
        let lock = LockCheck {
            now_ms: self.clock.now_ms(),
            bypass_governance: false,
        };
        let report = run_pass(&self.meta, crate::meta::now_ms(), lock).await?;
        self.record(&report, started.elapsed());
        tracing::info!(
            buckets = report.buckets,
            versions_read = report.versions_read,
            expired = report.expired,
            noncurrent_removed = report.noncurrent_removed,
            markers_removed = report.markers_removed,
            uploads_aborted = report.uploads_aborted,
            kept_locked = report.kept_locked,
            unreadable_rules = report.unreadable_rules,
            seconds = started.elapsed().as_secs_f64(),
            "lifecycle pass finished"
        );
        Ok(report)
    }

    fn record(&self, r: &LifecycleReport, took: Duration) {
        let m = &self.metrics;
        m.lifecycle_runs.inc();
        for (action, n) in [
            ("expired", r.expired),
            ("noncurrent", r.noncurrent_removed),
            ("delete_marker", r.markers_removed),
            ("upload", r.uploads_aborted),
        ] {
            m.lifecycle_removed
                .get_or_create(&crate::metrics::LifecycleLabels {
                    action: action.to_owned(),
                })
                .inc_by(n);
        }
        m.lifecycle_kept_locked.inc_by(r.kept_locked);
        m.lifecycle_errors.inc_by(r.unreadable_rules);
        m.lifecycle_last_run_seconds.set(took.as_secs_f64());
    }

    /// Runs a pass every `every` until the task is dropped, the first after `every`.
    pub async fn run_every(self: Arc<Self>, every: Duration) {
        loop {
            tokio::time::sleep(every).await;
            match self.run_once().await {
                Ok(_) => {}
                Err(LifecycleError::Busy(busy)) => {
                    tracing::debug!(%busy, "lifecycle pass skipped: another gateway runs one")
                }
                Err(e) => {
                    self.metrics.lifecycle_errors.inc();
                    tracing::warn!(error = %e, "lifecycle pass failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    fn version(id: &str, modified_ms: i64, size: u64, tags: &[(&str, &str)]) -> ObjectRecord {
        ObjectRecord {
            size,
            etag: format!("etag-{id}"),
            version_id: id.to_owned(),
            delete_marker: false,
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..ObjectRecord::delete_marker(modified_ms)
        }
    }

    fn marker(id: &str, modified_ms: i64) -> ObjectRecord {
        ObjectRecord {
            version_id: id.to_owned(),
            ..ObjectRecord::delete_marker(modified_ms)
        }
    }

    fn rule(filter: Filter) -> Rule {
        Rule {
            id: "r".into(),
            enabled: true,
            filter,
            ..Default::default()
        }
    }

    fn rules(r: Rule) -> LifecycleRules {
        LifecycleRules { rules: vec![r] }
    }

    fn day(n: i64) -> i64 {
        T0 + n * DAY_MS
    }

    #[test]
    fn days_count_to_the_next_midnight_utc() {
        assert_eq!(due_ms(T0, 1), day(1));
        assert_eq!(due_ms(T0 + 1, 1), day(2));
        assert_eq!(due_ms(day(3) - 1, 3), day(6));
    }

    #[test]
    fn current_versions_expire_by_days_or_date_within_their_filter() {
        let v = version("v1", T0 + 5_000, 100, &[("class", "tmp")]);
        let days = |f: Filter| {
            rules(Rule {
                expiration: Some(Expiration::Days(10)),
                ..rule(f)
            })
        };
        let expired = |r: &LifecycleRules, key: &str, now: i64| {
            key_actions(r, key, std::slice::from_ref(&v), true, now)
        };
        let all = days(Filter::default());
        assert!(
            expired(&all, "k", day(11) - 1).is_empty(),
            "due at midnight"
        );
        assert_eq!(
            expired(&all, "k", day(11)),
            [Action::ExpireCurrent {
                etag: "etag-v1".into(),
                modified_ms: T0 + 5_000
            }]
        );
        let cases: [(Filter, bool); 6] = [
            (
                Filter {
                    prefix: "k".into(),
                    ..Default::default()
                },
                true,
            ),
            (
                Filter {
                    prefix: "x".into(),
                    ..Default::default()
                },
                false,
            ),
            (
                Filter {
                    tags: vec![("class".into(), "tmp".into())],
                    ..Default::default()
                },
                true,
            ),
            (
                Filter {
                    tags: vec![("class".into(), "keep".into())],
                    ..Default::default()
                },
                false,
            ),
            (
                Filter {
                    size_greater_than: Some(100),
                    ..Default::default()
                },
                false,
            ),
            (
                Filter {
                    size_greater_than: Some(99),
                    size_less_than: Some(101),
                    ..Default::default()
                },
                true,
            ),
        ];
        for (f, hit) in cases {
            let label = format!("{f:?}");
            assert_eq!(!expired(&days(f), "k", day(20)).is_empty(), hit, "{label}");
        }
        let date = rules(Rule {
            expiration: Some(Expiration::Date(day(2))),
            ..rule(Filter::default())
        });
        assert!(expired(&date, "k", day(2) - 1).is_empty());
        assert_eq!(expired(&date, "k", day(2)).len(), 1);
        let disabled = LifecycleRules {
            rules: vec![Rule {
                enabled: false,
                ..all.rules[0].clone()
            }],
        };
        assert!(expired(&disabled, "k", day(99)).is_empty());
    }

    #[test]
    fn noncurrent_versions_expire_from_when_their_successor_came_keeping_the_newest() {
        // Newest first: current v4 (day 30), then v3 (day 20), v2 (day 10), v1 (day 0).
        let versions = [
            version("v4", day(30), 1, &[]),
            version("v3", day(20), 1, &[]),
            version("v2", day(10), 1, &[]),
            version("v1", day(0), 1, &[]),
        ];
        let nc = |days, newer| {
            rules(Rule {
                noncurrent: Some(NoncurrentExpiration {
                    days,
                    newer_versions: newer,
                }),
                ..rule(Filter::default())
            })
        };
        let removed = |r: &LifecycleRules, now| -> Vec<String> {
            key_actions(r, "k", &versions, true, now)
                .into_iter()
                .map(|a| match a {
                    Action::RemoveNoncurrent { version_id } => version_id,
                    other => panic!("{other:?}"),
                })
                .collect()
        };
        // v3 noncurrent since day 30, v2 since 20, v1 since 10.
        assert_eq!(removed(&nc(5, None), day(15)), ["v1"]);
        assert_eq!(removed(&nc(5, None), day(35)), ["v3", "v2", "v1"]);
        assert_eq!(removed(&nc(5, Some(2)), day(35)), ["v1"]);
        assert!(removed(&nc(5, Some(3)), day(99)).is_empty());
    }

    #[test]
    fn delete_markers_expire_only_when_nothing_is_behind_them() {
        let alone = [marker("m", day(1))];
        let hiding = [marker("m", day(1)), version("v1", day(0), 1, &[])];
        let edm = rules(Rule {
            expiration: Some(Expiration::ExpiredDeleteMarker),
            ..rule(Filter::default())
        });
        assert_eq!(
            key_actions(&edm, "k", &alone, true, day(1)),
            [Action::RemoveMarker {
                version_id: "m".into()
            }]
        );
        assert!(key_actions(&edm, "k", &hiding, true, day(99)).is_empty());
        // A Days expiration removes an expired marker once it is as old.
        let days = rules(Rule {
            expiration: Some(Expiration::Days(3)),
            ..rule(Filter::default())
        });
        assert!(key_actions(&days, "k", &alone, true, day(3)).is_empty());
        assert_eq!(key_actions(&days, "k", &alone, true, day(4)).len(), 1);
        // A tag filter never matches a marker.
        let tagged = rules(Rule {
            expiration: Some(Expiration::Days(1)),
            ..rule(Filter {
                tags: vec![("a".into(), "b".into())],
                ..Default::default()
            })
        });
        assert!(key_actions(&tagged, "k", &alone, true, day(99)).is_empty());
    }

    #[test]
    fn the_scanned_prefix_is_what_every_rule_shares() {
        let with = |prefixes: &[&str]| LifecycleRules {
            rules: prefixes
                .iter()
                .map(|p| {
                    rule(Filter {
                        prefix: p.to_string(),
                        ..Default::default()
                    })
                })
                .collect(),
        };
        assert_eq!(with(&["logs/a/", "logs/b/"]).common_prefix(), "logs/");
        assert_eq!(with(&["logs/", "logs/b/"]).common_prefix(), "logs/");
        assert_eq!(with(&["logs/", "tmp/"]).common_prefix(), "");
        assert_eq!(with(&["é1", "é2"]).common_prefix(), "é");
    }
}
