//! The source side of replication: one task per rule draining the outbox towards
//! the rule's replica, and a coordinator that starts and stops those tasks.
//!
//! Fan-out: a bucket may have several rules, each with its own replica, schedule,
//! connections, bandwidth and status. Each rule keeps its own cursor into the
//! outbox (`meta::replication`): its task pages through the outbox from there, so a
//! rule that is paused, outside its windows, or whose replica is down for days holds
//! only its own cursor back, never another rule's. An event leaves the outbox when
//! the last rule of its bucket passed it, in the transaction that moves that
//! cursor; the coordinator sweeps out the events of buckets without a rule (and,
//! after a rule was removed, the events only it still held).
//!
//! In a cluster, one gateway sends each rule: it claims the rule's worker
//! (`replication:<rule key>`, `meta::gateways`), confirms it every `CLAIM_EVERY`,
//! and keeps it while its lease lives; another gateway takes it over within one lease
//! after it died, and resumes from the rule's cursor, which only acknowledged events
//! passed.
//!
//! A rule's task pages through the outbox in commit order from its cursor, taking
//! the events of its bucket. A paused rule, a rule outside its windows, or a rule in
//! backoff after an error sends nothing and its cursor stays. Any other event makes
//! the replica's versions of its key equal to what the rule sends of the source's
//! (`sync_key`): the stamps of all versions are compared, each version the replica
//! lacks that the rule's filter admits is sent (the chunks it lacks, as stored, then
//! its record and manifest), and versions the source no longer has are removed.
//! Only when the replica has acknowledged all that does the cursor pass the event,
//! durably. Every step is idempotent, so an event sent twice (a crash between the
//! acknowledgement and the cursor's move, a timeout) is harmless, and events of one
//! bucket are applied in commit order: after a failure, the cursor stops at it and
//! the bucket's later events wait for the retry, with backoff (1 s doubling to 60 s,
//! jittered).
//!
//! Filters (`RuleScope`): a key outside the rule's prefix is passed over without a
//! request; a version without the rule's tags, a delete marker of a rule with
//! `DeleteMarkerReplication: Disabled`, or a version a rule of higher priority
//! towards the same replica bucket admits, is not sent (the replica keeps what it
//! was sent before: a tag change does not delete it there). A tag change that makes
//! a version match is an event like any other, so the version goes then.
//!
//! A failure a retry cannot mend (the replica answered 4xx other than 408, 409 or
//! 429, or a chunk cannot be read here) sets the key aside in the rule's failed
//! table, durably, before the cursor passes its event: the queue moves on, the key
//! reports FAILED, and it is requeued every `FAILED_RETRY` and by `hoard replication
//! requeue`.
//!
//! Before the outbox, each round advances the rule's resync if one is pending: the
//! keys under its prefix that existed before the rule, a page at a time in key
//! order, the cursor stored durably after each page. A manual run
//! (`Progress::manual`) sends outside the windows until neither queue nor resync has
//! anything left.
//!
//! Backlog: a task that drained the outbox knows its backlog is empty; one that
//! stopped (paused, windows, backoff) counts what waits from its cursor, at most
//! every `CLAIM_EVERY` and never more often than ten times the last count took, and
//! warns once when it passes `[replication] backlog_warn_events` or
//! `backlog_warn_age_secs`.
//!
//! MultiConnect: up to the rule's `connections` keys of a bucket are synced side by
//! side (`next_group`; events of one key stay in one group, so a key is never synced
//! twice at once), and the connections left over carry more chunk batches of each
//! object in flight; each in-flight request holds its own HTTPS connection and runs
//! as a task of its own, so batches travel while the next one is read (chunks stored
//! back to back are read with one range read, `runs`). The rule's bandwidth limit
//! paces every request body (`pace::Pacer`).
//!
//! Each version's chunks travel under a fresh hold id: the replica keeps them
//! referenced until the commit releases the hold (`meta::replicated`), so a transfer
//! may take any time without the replica's cleaner collecting its early chunks.
//!
//! Memory per key synced is bounded by one part's manifest (36 bytes a chunk; a part
//! is at most 5 GiB), never by the object's size: a multipart version travels a
//! part at a time, each part but the last staged on the replica under the hold.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::chunk_runs::{ChunkReadError, Located, RUN_BYTES, read_run, runs};
use super::rules::{ReplicaLink, RulesError, open_secret};
use super::s3_target::{S3Target, part_size};
use super::{Progress, wire};
use crate::config::ReplicationConfig;
use crate::meta::{
    Backlog, ChunkId, ChunkRef, EventKind, HoldId, ListEntry, ListQuery, MetaError, MetaStore,
    ObjectRecord, OutboxEvent, RuleRecord, RuleScope, TargetKind, VersionStamp, split_rule_key,
};
use crate::metrics::{Metrics, RuleLabels};
use crate::secrets::SecretBox;
use crate::segments::SegmentStore;

/// Pause between rounds when there was nothing to send.
const IDLE: Duration = Duration::from_millis(500);
const PAGE: usize = 512;

/// Waits between a rule's retries: 1 s doubling to 60 s, with jitter so that rules
/// failing together do not retry together.
fn backoff() -> backon::ExponentialBackoff {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(Duration::from_secs(60))
        .with_jitter()
        .without_max_times()
        .build()
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Link(#[from] RulesError),
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("a chunk batch's task failed: {0}")]
    Task(String),
    #[error(transparent)]
    Chunk(#[from] ChunkReadError),
    #[error("cannot encode the sender's report: {0}")]
    Report(String),
    #[error("cannot read the version back: {0}")]
    Read(#[from] crate::retrieve::RetrieveError),
}

impl SendError {
    /// A retry cannot mend it: the replica refused the key (a 4xx other than a
    /// timeout, a conflict or throttling), or a chunk of it cannot be read here.
    fn lasting(&self) -> bool {
        match self {
            SendError::Link(RulesError::Refused { status, .. }) => {
                !matches!(status, 408 | 409 | 429)
            }
            SendError::Chunk(_) => true,
            SendError::Read(e) => matches!(
                e,
                crate::retrieve::RetrieveError::Missing { .. }
                    | crate::retrieve::RetrieveError::Corrupt { .. }
            ),
            _ => false,
        }
    }
}

/// What became of one key's sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Synced {
    Sent,
    /// Set aside as failed (durably): the queue moves on.
    Failed,
    /// Try again after the backoff; the bucket's later changes wait.
    Retry,
}

/// The next events of a bucket to send together: as many as name up to
/// `connections` distinct keys (events of a key already in the group join it), and
/// those keys.
fn next_group(
    events: &[(u64, OutboxEvent)],
    connections: usize,
) -> (&[(u64, OutboxEvent)], Vec<&str>) {
    let mut keys: Vec<&str> = Vec::new();
    let mut take = 0;
    for (_, ev) in events {
        if !keys.contains(&ev.key.as_str()) {
            if keys.len() == connections.max(1) {
                break;
            }
            keys.push(&ev.key);
        }
        take += 1;
    }
    (&events[..take], keys)
}

/// How often a rule's failed keys are put back into the queue by themselves.
const FAILED_RETRY: Duration = Duration::from_secs(600);

/// How often the sender confirms its rules' leases and claims free ones.
const CLAIM_EVERY: Duration = Duration::from_secs(5);

/// The rules whose cluster-wide worker (`replication:<rule key>`) this gateway
/// holds: one sender per rule in a cluster. A rule is kept while this gateway
/// lives; the others take it over once its lease expired.
#[derive(Default)]
struct Claims {
    held: HashSet<String>,
    /// When the held rules' progress was last published for the other gateways.
    published_at: Option<Instant>,
    /// Rules another live gateway sends.
    elsewhere: HashSet<String>,
    checked_at: Option<Instant>,
}

fn rule_worker(rule_key: &str) -> String {
    format!("replication:{rule_key}")
}

impl Claims {
    /// Confirms the held rules and claims free ones every `CLAIM_EVERY`, and at once
    /// when a rule is new.
    async fn refresh(
        &mut self,
        meta: &MetaStore,
        rules: &HashMap<String, RuleRecord>,
    ) -> Result<(), MetaError> {
        for gone in self.held.iter().filter(|k| !rules.contains_key(*k)) {
            meta.release_worker(rule_worker(gone));
        }
        self.held.retain(|k| rules.contains_key(k));
        self.elsewhere.retain(|k| rules.contains_key(k));
        let known = |k: &String| self.held.contains(k) || self.elsewhere.contains(k);
        if self.checked_at.is_some_and(|t| t.elapsed() < CLAIM_EVERY) && rules.keys().all(known) {
            return Ok(());
        }
        self.checked_at = Some(Instant::now());
        let (mut held, mut elsewhere) = (HashSet::new(), HashSet::new());
        for rule in rules.keys() {
            match meta.claim_worker(&rule_worker(rule)).await? {
                Ok(()) => {
                    if !self.held.contains(rule) {
                        tracing::info!(rule, "this gateway sends the rule's replication");
                    }
                    held.insert(rule.clone());
                }
                Err(busy) => {
                    tracing::debug!(rule, %busy, "another gateway sends this rule");
                    elsewhere.insert(rule.clone());
                }
            }
        }
        (self.held, self.elsewhere) = (held, elsewhere);
        Ok(())
    }

    /// Whether the held rules' progress is due to be published again (every
    /// `CLAIM_EVERY`), noting that it is.
    fn publish_due(&mut self) -> bool {
        let due = self.published_at.is_none_or(|t| t.elapsed() >= CLAIM_EVERY);
        if due {
            self.published_at = Some(Instant::now());
        }
        due
    }
}

/// What the coordinator hands a rule's task: the rule, and the scopes of the rules
/// of its bucket towards the same replica bucket with a higher priority.
#[derive(Debug, Clone, PartialEq)]
struct RuleView {
    rule: RuleRecord,
    outranked_by: Vec<RuleScope>,
}

impl RuleView {
    fn of(rule_key: &str, rules: &HashMap<String, RuleRecord>) -> Option<RuleView> {
        let rule = rules.get(rule_key)?.clone();
        let (bucket, priority) = (split_rule_key(rule_key).0, rule.scope().priority);
        let outranked_by = rules
            .iter()
            .filter(|(k, r)| {
                split_rule_key(k).0 == bucket
                    && (r.target.as_str(), r.target_bucket.as_str())
                        == (rule.target.as_str(), rule.target_bucket.as_str())
                    && r.scope().priority > priority
            })
            .map(|(_, r)| r.scope())
            .collect();
        Some(RuleView { rule, outranked_by })
    }
}

/// A running rule task; dropping it stops the task.
struct RuleTask {
    view: tokio::sync::watch::Sender<RuleView>,
    handle: tokio::task::JoinHandle<()>,
}

impl Drop for RuleTask {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// The coordinator's state between rounds.
#[derive(Default)]
struct Coordinator {
    claims: Claims,
    tasks: HashMap<String, RuleTask>,
    /// Every outbox event below it was swept once.
    swept: u64,
    /// The rule keys of the last round.
    known: HashSet<String>,
}

/// How a rule reaches its target.
enum Link {
    /// Another hoard: the replication protocol.
    Hoard(Arc<ReplicaLink>),
    /// A plain S3 bucket.
    S3(Arc<S3Target>),
}

/// A rule's link, filter and retry state.
struct Peer {
    /// The rule key.
    key: String,
    bucket: String,
    rule: RuleRecord,
    scope: RuleScope,
    outranked_by: Vec<RuleScope>,
    labels: RuleLabels,
    link: Link,
    retry_at: Option<Instant>,
    backoff: backon::ExponentialBackoff,
    /// When the failed keys were last requeued.
    requeued_at: Option<Instant>,
    /// When the backlog was last counted by a scan, and how long that took.
    counted: Option<(Instant, Duration)>,
    /// The backlog passed a warning threshold (warned once until it is back under).
    warned: bool,
}

impl Peer {
    /// Whether the rule sends this version of `key`: its filter admits it, it is no
    /// delete marker the rule leaves out, and no rule that outranks it sends it.
    fn sends(&self, key: &str, rec: &ObjectRecord) -> bool {
        self.scope.admits(key, &rec.tags)
            && (!rec.delete_marker || self.scope.delete_markers)
            && !self.outranked_by.iter().any(|s| s.admits(key, &rec.tags))
    }
}

pub struct Sender {
    pub meta: MetaStore,
    pub segments: SegmentStore,
    pub secrets: Arc<SecretBox>,
    pub metrics: Arc<Metrics>,
    pub progress: Arc<Progress>,
    pub settings: ReplicationConfig,
    /// Reads versions back whole, for targets that are plain S3 buckets.
    pub retrieve: Arc<crate::retrieve::Retrieve>,
}

/// Keys a resync sends per step (the cursor is stored after each step).
const RESYNC_PAGE: usize = 100;

impl Sender {
    /// Runs the coordinator (and through it the rules' tasks) until dropped.
    pub async fn run(self) {
        let sender = Arc::new(self);
        let mut state = Coordinator::default();
        loop {
            if let Err(e) = sender.coordinate(&mut state).await {
                tracing::warn!(error = %e, "replication round failed");
            }
            tokio::time::sleep(IDLE).await;
        }
    }

    /// Starts a task for each rule this gateway (newly) holds, hands the running
    /// ones their rule's changes, stops the others; sweeps; publishes progress.
    async fn coordinate(self: &Arc<Self>, c: &mut Coordinator) -> Result<(), SendError> {
        let rules: HashMap<String, RuleRecord> = self.meta.rules().await?.into_iter().collect();
        c.claims.refresh(&self.meta, &rules).await?;
        let held = &c.claims.held;
        c.tasks.retain(|key, _| {
            let keep = held.contains(key);
            if !keep {
                self.forget_metrics(key);
            }
            keep
        });
        for key in held {
            let Some(view) = RuleView::of(key, &rules) else {
                continue;
            };
            match c.tasks.get(key) {
                Some(task) => {
                    task.view.send_if_modified(|v| {
                        let changed = *v != view;
                        *v = view;
                        changed
                    });
                }
                None => {
                    let (tx, rx) = tokio::sync::watch::channel(view);
                    let handle = tokio::spawn(self.clone().run_rule(key.clone(), rx));
                    c.tasks.insert(key.clone(), RuleTask { view: tx, handle });
                }
            }
        }
        // A rule gone: the events only it still held are swept from the start.
        let recheck = c.known.iter().any(|k| !rules.contains_key(k));
        c.known = rules.keys().cloned().collect();
        let buckets: HashSet<&str> = rules.keys().map(|k| split_rule_key(k).0).collect();
        c.swept = self
            .sweep(if recheck { 0 } else { c.swept }, recheck, &buckets)
            .await?;
        let queued: u64 = c.tasks.keys().map(|k| self.progress.get(k).queued).sum();
        self.metrics.replication_queue.set(queued as i64);
        if self.meta.is_shared() && c.claims.publish_due() {
            self.publish_progress(c.tasks.keys()).await?;
            // Manual runs asked of any gateway reach the one sending the rule.
            let held: Vec<String> = c.tasks.keys().cloned().collect();
            for key in self.meta.take_manual_runs(held).await? {
                self.progress.update(&key, |p| p.manual = true);
            }
        }
        Ok(())
    }

    /// Removes, from `from` on, the events of buckets without a rule (all events
    /// every rule of their bucket passed, with `recheck`); returns where it ended.
    async fn sweep(
        &self,
        mut from: u64,
        recheck: bool,
        ruled: &HashSet<&str>,
    ) -> Result<u64, SendError> {
        loop {
            let page = self.meta.outbox_events(from, PAGE).await?;
            let Some(last) = page.last().map(|(seq, _)| *seq) else {
                return Ok(from);
            };
            let seqs: Vec<u64> = page
                .iter()
                .filter(|(_, ev)| recheck || !ruled.contains(ev.bucket.as_str()))
                .map(|(seq, _)| *seq)
                .collect();
            if !seqs.is_empty() {
                self.meta.settle_outbox(None, seqs).await?;
            }
            from = last + 1;
        }
    }

    fn forget_metrics(&self, rule_key: &str) {
        let (bucket, rule) = split_rule_key(rule_key);
        let labels = RuleLabels {
            bucket: bucket.to_owned(),
            rule: rule.to_owned(),
        };
        self.metrics.replication_backlog_events.remove(&labels);
        self.metrics.replication_backlog_bytes.remove(&labels);
        self.metrics.replication_backlog_age.remove(&labels);
    }

    /// A rule's task: rounds until the coordinator drops it.
    async fn run_rule(
        self: Arc<Self>,
        key: String,
        mut view: tokio::sync::watch::Receiver<RuleView>,
    ) {
        let mut peer: Option<Peer> = None;
        loop {
            let current = view.borrow_and_update().clone();
            let sent = match self.rule_round(&key, current, &mut peer).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(rule = key, error = %e, "replication round failed");
                    0
                }
            };
            if sent == 0 {
                tokio::time::sleep(IDLE).await;
            }
        }
    }

    /// One round of a rule: its resync's next page, then the outbox from its
    /// cursor; returns how many keys were acknowledged.
    async fn rule_round(
        &self,
        key: &str,
        view: RuleView,
        peer: &mut Option<Peer>,
    ) -> Result<usize, SendError> {
        if peer.as_ref().is_none_or(|p| p.rule != view.rule) {
            *peer = Some(self.open_peer(key, &view.rule).await?);
        }
        let Some(peer) = peer.as_mut() else {
            return Ok(0);
        };
        peer.outranked_by = view.outranked_by;
        if peer.requeued_at.is_none_or(|t| t.elapsed() >= FAILED_RETRY) {
            peer.requeued_at = Some(Instant::now());
            self.meta.requeue_failed(&peer.key).await?;
        }
        let mut acked = self.resync_step(peer).await?;
        acked += self.drain(peer).await?;
        self.metrics.replication_events.inc_by(acked as u64);
        Ok(acked)
    }

    async fn open_peer(&self, key: &str, rule: &RuleRecord) -> Result<Peer, SendError> {
        let secret = open_secret(&self.secrets, key, rule)?;
        let link = match &rule.kind {
            Some(TargetKind::S3 { region }) => {
                let mut target = S3Target::new(rule, secret, region, self.metrics.clone())?;
                target.check().await?;
                Link::S3(Arc::new(target))
            }
            None | Some(TargetKind::Hoard) => Link::Hoard(Arc::new(ReplicaLink::new(
                rule,
                secret,
                self.metrics.clone(),
            )?)),
        };
        let (bucket, id) = split_rule_key(key);
        Ok(Peer {
            key: key.to_owned(),
            bucket: bucket.to_owned(),
            scope: rule.scope(),
            rule: rule.clone(),
            outranked_by: Vec::new(),
            labels: RuleLabels {
                bucket: bucket.to_owned(),
                rule: id.to_owned(),
            },
            link,
            retry_at: None,
            backoff: backoff(),
            requeued_at: None,
            counted: None,
            warned: false,
        })
    }

    /// Sends the rule's events from its cursor on, a page at a time, moving the
    /// cursor (and settling the events every rule passed) after each page, until
    /// the outbox is drained or the rule must stop; then notes the backlog.
    async fn drain(&self, peer: &mut Peer) -> Result<usize, SendError> {
        let mut cursor = self.meta.rule_cursor(&peer.key).await?;
        let mut acked = 0;
        let stopped = loop {
            if !self.may_send(peer) {
                break true;
            }
            let page = self.meta.outbox_events(cursor, PAGE).await?;
            let Some(last) = page.last().map(|(seq, _)| *seq) else {
                break false;
            };
            let seqs: Vec<u64> = page.iter().map(|(seq, _)| *seq).collect();
            let mine: Vec<(u64, OutboxEvent)> = page
                .into_iter()
                .filter(|(_, ev)| ev.bucket == peer.bucket)
                .collect();
            let (passed, sent, stopped) = self.send_events(peer, &mine, last + 1).await;
            acked += sent;
            let settled = seqs.into_iter().filter(|s| *s < passed).collect();
            self.meta
                .settle_outbox(Some((peer.key.clone(), passed)), settled)
                .await?;
            cursor = passed;
            if stopped {
                break true;
            }
        };
        self.note_backlog(peer, stopped.then_some(cursor)).await?;
        Ok(acked)
    }

    /// Sends `events` (one page's events of the bucket) group by group; returns
    /// where the cursor may go (`end` when all went, else the first event to send
    /// again), how many keys were acknowledged, and whether the rule must stop.
    async fn send_events(
        &self,
        peer: &mut Peer,
        events: &[(u64, OutboxEvent)],
        end: u64,
    ) -> (u64, usize, bool) {
        let (mut rest, mut acked) = (events, 0);
        while let Some((first, _)) = rest.first() {
            if !self.may_send(peer) {
                // Paused, outside its windows, or backing off: all wait.
                return (*first, acked, true);
            }
            let (group, keys) = next_group(rest, peer.rule.connections as usize);
            let outcomes = self.sync_group(peer, &keys, group).await;
            acked += outcomes.values().filter(|s| **s == Synced::Sent).count();
            let retry = group.iter().find(|(_, ev)| {
                matches!(outcomes.get(ev.key.as_str()), Some(Synced::Retry) | None)
            });
            if let Some((seq, _)) = retry {
                return (*seq, acked, true);
            }
            rest = &rest[group.len()..];
        }
        (end, acked, false)
    }

    /// Records the rule's backlog in its progress and metrics: none after a drain
    /// (`stopped_at` None), else what waits from the cursor, counted at most every
    /// `CLAIM_EVERY` and at most a tenth of the time; warns when it is too big or
    /// too old.
    async fn note_backlog(
        &self,
        peer: &mut Peer,
        stopped_at: Option<u64>,
    ) -> Result<(), SendError> {
        let backlog = match stopped_at {
            None => Backlog::default(),
            Some(from) => {
                let due = peer
                    .counted
                    .is_none_or(|(at, took)| at.elapsed() >= CLAIM_EVERY.max(took * 10));
                if !due {
                    return Ok(());
                }
                let started = Instant::now();
                let b = self
                    .meta
                    .outbox_backlog(&peer.bucket, &peer.scope.prefix, from)
                    .await?;
                peer.counted = Some((Instant::now(), started.elapsed()));
                b
            }
        };
        let age_secs = backlog
            .oldest_ms
            .map_or(0, |t| (crate::meta::now_ms() - t).max(0) / 1000);
        let m = &self.metrics;
        m.replication_backlog_events
            .get_or_create(&peer.labels)
            .set(backlog.events as i64);
        m.replication_backlog_bytes
            .get_or_create(&peer.labels)
            .set(backlog.bytes as i64);
        m.replication_backlog_age
            .get_or_create(&peer.labels)
            .set(age_secs);
        let warning = backlog_warning(&self.settings, &backlog, age_secs);
        match (&warning, peer.warned) {
            (Some(w), false) => tracing::warn!(rule = peer.key, "{w}"),
            (None, true) => tracing::info!(
                rule = peer.key,
                "replication backlog back under its warning thresholds"
            ),
            _ => {}
        }
        peer.warned = warning.is_some();
        let resyncing = self.meta.resync_cursor(&peer.key).await?.is_some();
        self.progress.update(&peer.key, |p| {
            p.queued = backlog.events;
            p.queued_bytes = backlog.bytes;
            p.oldest_queued_ms = backlog.oldest_ms;
            p.warning = warning;
            // A manual run ends once nothing waits.
            p.manual &= backlog.events > 0 || resyncing;
        });
        Ok(())
    }

    /// Publishes the progress of the rules this gateway sends, for `hoard replication
    /// status` asked of any gateway.
    async fn publish_progress(
        &self,
        rules: impl Iterator<Item = &String>,
    ) -> Result<(), SendError> {
        let gateway = format!("{:016x}", self.meta.gateway_id().unwrap_or(0));
        for key in rules {
            let mut progress = self.progress.get(key);
            progress.rate_bytes_per_sec = progress.rate();
            let report = super::SenderReport {
                gateway: gateway.clone(),
                progress,
            };
            let bytes =
                serde_json::to_vec(&report).map_err(|e| SendError::Report(e.to_string()))?;
            self.meta.publish_sender_report(key, bytes).await?;
        }
        Ok(())
    }

    /// Syncs several keys of a bucket at once (MultiConnect: objects side by side,
    /// the rule's connections shared among them); records each outcome, and backs
    /// the rule off once if any key must be retried.
    async fn sync_group<'k>(
        &self,
        peer: &mut Peer,
        keys: &[&'k str],
        events: &[(u64, OutboxEvent)],
    ) -> HashMap<&'k str, Synced> {
        let per_object = (peer.rule.connections as usize / keys.len().max(1)).max(1);
        let shared: &Peer = peer;
        let results = futures::future::join_all(keys.iter().map(|key| {
            let of_key = events.iter().map(|(_, ev)| ev).filter(|ev| ev.key == *key);
            self.sync_key(shared, key, per_object, of_key.collect())
        }))
        .await;
        let mut out = HashMap::new();
        for (key, result) in keys.iter().zip(results) {
            out.insert(*key, self.record_outcome(peer, key, result).await);
        }
        if out.values().any(|s| *s == Synced::Retry) {
            let wait = peer.backoff.next().unwrap_or(Duration::from_secs(60));
            tracing::warn!(rule = peer.key, retry_in = ?wait, "replication will retry");
            peer.retry_at = Some(Instant::now() + wait);
        } else {
            peer.backoff = backoff();
        }
        out
    }

    /// Records one key's sync: progress on success; on a failure the error, and
    /// for a lasting one the key set aside as failed, durably, before the caller
    /// passes its event.
    async fn record_outcome(
        &self,
        peer: &Peer,
        key: &str,
        result: Result<(u64, u64, u64), SendError>,
    ) -> Synced {
        let rule = peer.key.as_str();
        let e = match result {
            Ok((versions, logical, wire)) => {
                self.progress.update(rule, |p| {
                    p.last_success_ms = Some(crate::meta::now_ms());
                    p.objects_sent += versions;
                    p.logical_bytes += logical;
                    p.sent_bytes += wire;
                    p.note_sent(logical);
                });
                if let Err(e) = self.meta.clear_failed(rule, key).await {
                    tracing::warn!(rule, key, error = %e, "cannot clear a replication failure");
                }
                return Synced::Sent;
            }
            Err(e) => e,
        };
        self.metrics.replication_errors.inc();
        self.progress
            .update(rule, |p| p.last_error = Some(e.to_string()));
        if e.lasting() {
            match self.meta.mark_failed(rule, key, e.to_string()).await {
                Ok(()) => {
                    tracing::error!(rule, key, error = %e, "replication failed; set aside until a requeue");
                    self.metrics.replication_failed.inc();
                    return Synced::Failed;
                }
                Err(me) => {
                    tracing::warn!(rule, key, error = %me, "cannot record a replication failure")
                }
            }
        }
        tracing::warn!(rule, key, error = %e, "replication failed");
        Synced::Retry
    }

    /// Sends the next page of the objects under the rule's prefix that existed
    /// before the rule, and stores how far it got; returns how many keys were sent.
    async fn resync_step(&self, peer: &mut Peer) -> Result<usize, SendError> {
        let Some(after) = self.meta.resync_cursor(&peer.key).await? else {
            return Ok(0);
        };
        if !self.may_send(peer) {
            return Ok(0);
        }
        let q = ListQuery {
            prefix: peer.scope.prefix.clone(),
            delimiter: None,
            after: (!after.is_empty()).then_some(after),
            max: RESYNC_PAGE,
        };
        let page = match self.meta.list_keys_with_markers(&peer.bucket, q).await {
            Ok(p) => p,
            Err(MetaError::NoSuchBucket) => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        let keys: Vec<&str> = page
            .entries
            .iter()
            .filter_map(|e| match e {
                ListEntry::Object(key, _) => Some(key.as_str()),
                ListEntry::Prefix(_) => None,
            })
            .collect();
        let (mut last, mut failed, mut sent) = (None, false, 0);
        for group in keys.chunks(peer.rule.connections.max(1) as usize) {
            let outcomes = self.sync_group(peer, group, &[]).await;
            // The cursor stops before the first key to retry; later keys of the
            // group that went are sent again, which is harmless.
            for key in group {
                if outcomes.get(key) == Some(&Synced::Retry) {
                    failed = true;
                    break;
                }
                last = Some((*key).to_owned());
                sent += 1;
            }
            if failed {
                break;
            }
        }
        if failed || page.truncated {
            if last.is_some() {
                self.meta.advance_resync(&peer.key, last).await?;
            }
        } else {
            self.meta.advance_resync(&peer.key, None).await?;
            tracing::info!(rule = peer.key, "replication resync finished");
        }
        Ok(sent)
    }

    /// Makes the target's versions of `key` what the rule sends of the source's
    /// (`events`: the key's outbox events at hand, none for a resync). A key outside
    /// the rule's prefix costs no request. Returns (versions sent, their logical
    /// bytes, the bytes sent).
    async fn sync_key(
        &self,
        peer: &Peer,
        key: &str,
        connections: usize,
        events: Vec<&OutboxEvent>,
    ) -> Result<(u64, u64, u64), SendError> {
        if !peer.scope.admits_key(key) {
            return Ok((0, 0, 0));
        }
        match &peer.link {
            Link::Hoard(link) => self.sync_hoard_key(peer, link, key, connections).await,
            Link::S3(target) => self.sync_s3_key(peer, target, key, events).await,
        }
    }

    /// Towards another hoard: the stamps of all versions are compared, the versions
    /// the replica lacks that the rule sends go oldest first, and the ones it has
    /// beyond the source's are removed.
    async fn sync_hoard_key(
        &self,
        peer: &Peer,
        link: &Arc<ReplicaLink>,
        key: &str,
        connections: usize,
    ) -> Result<(u64, u64, u64), SendError> {
        let versions = self.meta.key_versions(&peer.bucket, key).await?;
        let stamps: Vec<VersionStamp> = versions.iter().map(VersionStamp::of).collect();
        let (diff, asked) = link.versions(key, &stamps).await?;
        self.metrics.replication_sent_bytes.inc_by(asked);
        let mut sent = (0, 0, asked);
        for rec in versions.into_iter().rev() {
            if diff.lacking.contains(&rec.version_id) && peer.sends(key, &rec) {
                let size = rec.size;
                sent.2 += self.send_version(link, key, rec, connections).await?;
                sent.0 += 1;
                sent.1 += size;
            }
        }
        if diff.extra > 0 {
            link.prune(key, &stamps).await?;
        }
        Ok(sent)
    }

    /// Towards a plain S3 bucket: the versions the events wrote go in commit order
    /// (for a resync or a requeue: all the key's versions), each written whole; a
    /// delete marker, or the removal of an unversioned key, becomes a DELETE. The
    /// newest version the target has is recorded (`MetaStore::target_seq`) once it
    /// acknowledged it, so a version it has, or one older, is not written again; a
    /// tag change of the version it has is a PutObjectTagging. A version removed by
    /// id is not removed there (as S3's own replication does).
    async fn sync_s3_key(
        &self,
        peer: &Peer,
        target: &S3Target,
        key: &str,
        events: Vec<&OutboxEvent>,
    ) -> Result<(u64, u64, u64), SendError> {
        let versions = self.meta.key_versions(&peer.bucket, key).await?;
        let whole = events.is_empty() || events.iter().any(|e| e.kind == EventKind::Requeued);
        let mut todo: Vec<&ObjectRecord> = Vec::new();
        if whole {
            todo.extend(versions.iter().rev());
        } else {
            for ev in &events {
                let named = versions.iter().find(|v| v.version_id == ev.version_id);
                if let Some(v) = named.filter(|v| !todo.iter().any(|t| t.seq == v.seq)) {
                    todo.push(v);
                }
            }
            todo.sort_by_key(|v| v.seq);
        }
        let mut held = self.meta.target_seq(&peer.key, key).await?;
        let mut sent = (0, 0, 0);
        for rec in todo {
            if !peer.sends(key, rec) {
                continue;
            }
            if rec.seq <= held {
                let retagged = events
                    .iter()
                    .any(|e| e.kind == EventKind::Tags && e.version_id == rec.version_id);
                if rec.seq == held && retagged && !rec.delete_marker {
                    target.put_tags(key, &rec.tags).await?;
                }
                continue;
            }
            if rec.delete_marker {
                if held > 0 {
                    target.delete(key).await?;
                }
            } else {
                sent.2 += self.write_s3_version(target, key, rec).await?;
                sent.0 += 1;
                sent.1 += rec.size;
            }
            held = rec.seq;
            self.meta.set_target_seq(&peer.key, key, held).await?;
        }
        // An unversioned key removed: no version is left to name it.
        let removed = whole || events.iter().any(|e| e.kind == EventKind::Delete);
        if versions.is_empty() && removed && target.holds(key).await? {
            target.delete(key).await?;
        }
        Ok(sent)
    }

    /// Writes one version to a plain S3 bucket, read back through the read path (so
    /// verified): one PUT up to a part's size, else a multipart upload that resumes
    /// with the parts the target already took. Returns the bytes sent.
    async fn write_s3_version(
        &self,
        target: &S3Target,
        key: &str,
        rec: &ObjectRecord,
    ) -> Result<u64, SendError> {
        let part = part_size(rec.size);
        let sent = if rec.size <= part {
            let body = self.read_back(rec, 0..rec.size).await?;
            target.put(key, rec, body).await?
        } else {
            let (id, done) = target.parts_done(key, rec).await?;
            let parts = rec.size.div_ceil(part) as u32;
            let mut sent = 0;
            for n in done + 1..=parts {
                let start = u64::from(n - 1) * part;
                let body = self
                    .read_back(rec, start..(start + part).min(rec.size))
                    .await?;
                sent += target.put_part(key, rec, &id, n, body).await?;
            }
            sent + target.complete(key, rec).await?
        };
        self.metrics.replication_logical_bytes.inc_by(rec.size);
        Ok(sent)
    }

    /// The verified bytes of `range` of a version.
    async fn read_back(
        &self,
        rec: &ObjectRecord,
        range: std::ops::Range<u64>,
    ) -> Result<Vec<u8>, SendError> {
        use futures::StreamExt as _;
        let mut out = Vec::with_capacity((range.end - range.start) as usize);
        let mut body = self.retrieve.open(rec, range).await?;
        while let Some(bytes) = body.next().await {
            out.extend_from_slice(&bytes?);
        }
        Ok(out)
    }

    /// Not paused, inside a window (or continuous, or a manual run asked for), not
    /// waiting for a retry.
    fn may_send(&self, peer: &Peer) -> bool {
        if peer.rule.paused || peer.retry_at.is_some_and(|t| Instant::now() < t) {
            return false;
        }
        if peer.rule.windows.is_empty() || self.progress.get(&peer.key).manual {
            return true;
        }
        let minute = ((crate::meta::unix_secs() % 86_400) / 60) as u32;
        peer.rule
            .windows
            .iter()
            .any(|w| crate::config::in_window(*w, minute))
    }

    /// Sends one version a part at a time, so that only one part's manifest is held:
    /// the chunks of the part the replica lacks, then (for each part but the last)
    /// the part's manifest to stage; then the record with the last part's manifest.
    async fn send_version(
        &self,
        link: &Arc<ReplicaLink>,
        key: &str,
        rec: ObjectRecord,
        connections: usize,
    ) -> Result<u64, SendError> {
        // The replica holds the chunks and parts sent under this id until the commit.
        let hold = crate::meta::new_hold_id()?;
        let pieces = rec.manifests();
        let (mut sent, mut last) = (0u64, Vec::new());
        for (i, (manifest, _)) in pieces.iter().enumerate() {
            let refs = self.meta.get_manifest(*manifest).await?;
            sent += self.send_lacking(link, &refs, connections, &hold).await?;
            if i + 1 == pieces.len() {
                last = refs;
            } else {
                let body = crate::meta::encode_manifest(&refs);
                sent += body.len() as u64;
                link.stage_part(key, i as u32, body, &hold).await?;
            }
        }
        let object =
            wire::encode_object(&rec, &last).map_err(|e| SendError::Meta(MetaError::Corrupt(e)))?;
        sent += object.len() as u64;
        link.commit(key, object, &hold).await?;
        self.metrics.replication_logical_bytes.inc_by(rec.size);
        self.metrics.replication_sent_bytes.inc_by(sent);
        Ok(sent)
    }

    /// Sends the chunks of `refs` the replica lacks; returns the bytes sent.
    async fn send_lacking(
        &self,
        link: &Arc<ReplicaLink>,
        refs: &[ChunkRef],
        connections: usize,
        hold: &HoldId,
    ) -> Result<u64, SendError> {
        let mut seen = HashSet::new();
        let ids: Vec<ChunkId> = refs
            .iter()
            .map(|r| r.id)
            .filter(|id| seen.insert(*id))
            .collect();
        let mut sent = 0u64;
        for batch in ids.chunks(wire::MAX_IDS / 4) {
            let lacking = link.missing(batch).await?;
            sent += (batch.len() * 32) as u64;
            sent += self.send_chunks(link, lacking, connections, hold).await?;
        }
        Ok(sent)
    }

    /// Sends `ids` as stored, in batches of about `wire::BATCH_BYTES`, with up to
    /// `connections` batches in flight (MultiConnect: each in-flight request holds
    /// its own HTTPS connection); returns the bytes sent. Each batch is a task of
    /// its own, so batches travel while the next one is read.
    async fn send_chunks(
        &self,
        link: &Arc<ReplicaLink>,
        ids: Vec<ChunkId>,
        connections: usize,
        hold: &HoldId,
    ) -> Result<u64, SendError> {
        let locs = self.meta.chunk_locations(ids.clone()).await?;
        let located: Vec<Located> = ids.into_iter().zip(locs).collect();
        // Sized for a full batch and one more run, so that it never grows by copying.
        let fresh_body = || Vec::with_capacity(wire::BATCH_BYTES + 2 * RUN_BYTES as usize);
        let (mut body, mut sent) = (fresh_body(), 0u64);
        // Dropped on an error: the batches still in flight are cancelled.
        let mut in_flight = tokio::task::JoinSet::new();
        let runs = runs(&located);
        for (i, run) in runs.iter().enumerate() {
            for frame in read_run(&self.segments, run).await? {
                wire::push_frame(&mut body, &frame);
            }
            if body.len() >= wire::BATCH_BYTES || (i + 1 == runs.len() && !body.is_empty()) {
                if in_flight.len() >= connections.max(1) {
                    batch_done(in_flight.join_next().await)?;
                }
                sent += body.len() as u64;
                let full = std::mem::replace(&mut body, fresh_body());
                let (link, hold) = (link.clone(), *hold);
                in_flight.spawn(async move { link.chunks(full, &hold).await });
            }
        }
        while let Some(done) = in_flight.join_next().await {
            batch_done(Some(done))?;
        }
        Ok(sent)
    }
}

/// The outcome of one chunk batch's task.
fn batch_done(
    joined: Option<Result<Result<(), RulesError>, tokio::task::JoinError>>,
) -> Result<(), SendError> {
    match joined {
        Some(Ok(result)) => Ok(result?),
        Some(Err(e)) => Err(SendError::Task(e.to_string())),
        None => Ok(()),
    }
}

/// Why a rule's backlog deserves a warning, if it does.
fn backlog_warning(s: &ReplicationConfig, b: &Backlog, age_secs: i64) -> Option<String> {
    if s.backlog_warn_events > 0 && b.events > s.backlog_warn_events {
        return Some(format!(
            "replication backlog of {} change(s) passes the warning threshold of {} ([replication] backlog_warn_events)",
            b.events, s.backlog_warn_events
        ));
    }
    let age = u64::try_from(age_secs).unwrap_or(0);
    if s.backlog_warn_age_secs > 0 && b.events > 0 && age > s.backlog_warn_age_secs {
        return Some(format!(
            "the oldest change waiting for the replica is {age} s old, past the warning threshold of {} s ([replication] backlog_warn_age_secs)",
            s.backlog_warn_age_secs
        ));
    }
    None
}
