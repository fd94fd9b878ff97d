//! The source side of replication: a loop that drains the outbox towards the
//! replicas of the rules.
//!
//! In a cluster, one gateway sends each rule: it claims the rule's worker
//! (`replication:<bucket>`, `meta::gateways`), confirms it every `CLAIM_EVERY`, and
//! keeps it while its lease lives; another gateway takes it over within one lease
//! after it died, and resumes from the outbox, which only acknowledged events left.
//! The events of a rule another gateway sends stay where they are.
//!
//! Each round pages through the outbox in commit order. An event of a bucket without
//! a rule is dropped (nothing wants it). An event of a paused rule, of a rule outside
//! its windows, or of a rule in backoff after an error stays where it is. Any other
//! event makes the replica's versions of its key equal to the source's (`sync_key`):
//! the stamps of all versions are compared, each version the replica lacks is sent
//! (the chunks it lacks, as stored, then its record and manifest), and versions the
//! source no longer has are removed. Only when the replica has acknowledged all that
//! is the event removed, durably. Every step is idempotent, so an event sent twice (a
//! crash between the acknowledgement and the removal, a timeout) is harmless, and
//! events of one bucket are applied in commit order: after a failure, the bucket's
//! later events wait for the retry, with backoff (1 s doubling to 60 s, jittered).
//!
//! A failure a retry cannot mend (the replica answered 4xx other than 408, 409 or
//! 429, or a chunk cannot be read here) sets the key aside in the failed table,
//! durably, before its event is dropped: the queue moves on, the key reports FAILED,
//! and it is requeued every `FAILED_RETRY` and by `hoard replication requeue`.
//!
//! Before the outbox, each round advances the resync of a rule that has one pending:
//! the keys that existed before the rule, a page at a time in key order, the cursor
//! stored durably after each page. A manual run (`Progress::manual`) sends outside
//! the windows until neither queue nor resync has anything left.
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
use super::{Progress, wire};
use crate::meta::{
    ChunkId, ChunkRef, HoldId, ListEntry, ListQuery, MetaError, MetaStore, ObjectRecord,
    OutboxEvent, RuleRecord, VersionStamp,
};
use crate::metrics::Metrics;
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

/// The rules whose cluster-wide worker (`replication:<bucket>`) this gateway holds:
/// one sender per rule in a cluster. A rule is kept while this gateway lives; the
/// others take it over once its lease expired.
#[derive(Default)]
struct Claims {
    held: HashSet<String>,
    /// When the held rules' progress was last published for the other gateways.
    published_at: Option<Instant>,
    /// Rules another live gateway sends.
    elsewhere: HashSet<String>,
    checked_at: Option<Instant>,
}

fn rule_worker(bucket: &str) -> String {
    format!("replication:{bucket}")
}

impl Claims {
    /// Confirms the held rules and claims free ones every `CLAIM_EVERY`, and at once
    /// when a rule is new.
    async fn refresh(
        &mut self,
        meta: &MetaStore,
        rules: &HashMap<String, RuleRecord>,
    ) -> Result<(), MetaError> {
        for gone in self.held.iter().filter(|b| !rules.contains_key(*b)) {
            meta.release_worker(rule_worker(gone));
        }
        self.held.retain(|b| rules.contains_key(b));
        self.elsewhere.retain(|b| rules.contains_key(b));
        let known = |b: &String| self.held.contains(b) || self.elsewhere.contains(b);
        if self.checked_at.is_some_and(|t| t.elapsed() < CLAIM_EVERY) && rules.keys().all(known) {
            return Ok(());
        }
        self.checked_at = Some(Instant::now());
        let (mut held, mut elsewhere) = (HashSet::new(), HashSet::new());
        for bucket in rules.keys() {
            match meta.claim_worker(&rule_worker(bucket)).await? {
                Ok(()) => {
                    if !self.held.contains(bucket) {
                        tracing::info!(bucket, "this gateway sends the rule's replication");
                    }
                    held.insert(bucket.clone());
                }
                Err(busy) => {
                    tracing::debug!(bucket, %busy, "another gateway sends this rule");
                    elsewhere.insert(bucket.clone());
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

/// A rule's link and its retry state.
struct Peer {
    rule: RuleRecord,
    link: Arc<ReplicaLink>,
    retry_at: Option<Instant>,
    backoff: backon::ExponentialBackoff,
    /// When the failed keys were last requeued.
    requeued_at: Option<Instant>,
}

pub struct Sender {
    pub meta: MetaStore,
    pub segments: SegmentStore,
    pub secrets: Arc<SecretBox>,
    pub metrics: Arc<Metrics>,
    pub progress: Arc<Progress>,
}

/// Keys a resync sends per step (the cursor is stored after each step).
const RESYNC_PAGE: usize = 100;

impl Sender {
    /// Runs rounds until the task is dropped.
    pub async fn run(self) {
        let mut peers: HashMap<String, Peer> = HashMap::new();
        let mut claims = Claims::default();
        loop {
            let sent = match self.round(&mut peers, &mut claims).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "replication round failed");
                    0
                }
            };
            if sent == 0 {
                tokio::time::sleep(IDLE).await;
            }
        }
    }

    /// One pass over the outbox; returns how many events were acknowledged.
    async fn round(
        &self,
        peers: &mut HashMap<String, Peer>,
        claims: &mut Claims,
    ) -> Result<usize, SendError> {
        let rules: HashMap<String, RuleRecord> = self.meta.rules().await?.into_iter().collect();
        claims.refresh(&self.meta, &rules).await?;
        let mine: HashMap<String, RuleRecord> = rules
            .iter()
            .filter(|(bucket, _)| claims.held.contains(*bucket))
            .map(|(b, r)| (b.clone(), r.clone()))
            .collect();
        self.refresh_peers(peers, &mine);
        let mut acked = 0;
        for (bucket, peer) in peers.iter_mut() {
            if peer.requeued_at.is_none_or(|t| t.elapsed() >= FAILED_RETRY) {
                peer.requeued_at = Some(Instant::now());
                self.meta.requeue_failed(bucket).await?;
            }
            acked += self.resync_step(bucket, peer).await?;
        }
        let (mut waiting, mut from) = (0i64, 0u64);
        let mut queued: HashMap<String, (u64, i64)> = HashMap::new();
        loop {
            let page = self.meta.outbox_events(from, PAGE).await?;
            let Some(last) = page.last().map(|(seq, _)| *seq) else {
                break;
            };
            from = last + 1;
            let mut done = Vec::new();
            // Each bucket's events of the page, in commit order.
            let mut by_bucket: HashMap<String, Vec<(u64, OutboxEvent)>> = HashMap::new();
            for (seq, ev) in page {
                if peers.contains_key(&ev.bucket) {
                    by_bucket
                        .entry(ev.bucket.clone())
                        .or_default()
                        .push((seq, ev));
                } else if !rules.contains_key(&ev.bucket) {
                    done.push(seq); // no rule wants it
                } // else another gateway's sender (or a rule unusable here) has it
            }
            for (bucket, events) in by_bucket {
                let Some(peer) = peers.get_mut(&bucket) else {
                    continue;
                };
                let mut rest = events.as_slice();
                while !rest.is_empty() {
                    if !self.may_send(&bucket, peer) {
                        // Paused, outside its windows, or backing off: all wait.
                        waiting += rest.len() as i64;
                        let q = queued
                            .entry(bucket.clone())
                            .or_insert((0, rest[0].1.time_ms));
                        q.0 += rest.len() as u64;
                        break;
                    }
                    let (group, keys) = next_group(rest, peer.rule.connections as usize);
                    rest = &rest[group.len()..];
                    let outcomes = self.sync_group(&bucket, &keys, peer).await;
                    for (seq, ev) in group {
                        match outcomes.get(ev.key.as_str()) {
                            Some(Synced::Retry) | None => {
                                waiting += 1;
                                let q = queued.entry(bucket.clone()).or_insert((0, ev.time_ms));
                                q.0 += 1;
                            }
                            Some(s) => {
                                done.push(*seq);
                                acked += usize::from(*s == Synced::Sent);
                            }
                        }
                    }
                }
            }
            self.meta.remove_outbox(done).await?;
        }
        self.metrics.replication_events.inc_by(acked as u64);
        self.metrics.replication_queue.set(waiting);
        for bucket in peers.keys() {
            let q = queued.get(bucket).copied();
            let resyncing = self.meta.resync_cursor(bucket).await?.is_some();
            self.progress.update(bucket, |p| {
                p.queued = q.map_or(0, |(n, _)| n);
                p.oldest_queued_ms = q.map(|(_, t)| t);
                // A manual run ends once nothing waits.
                p.manual &= q.is_some() || resyncing;
            });
        }
        if self.meta.is_shared() && claims.publish_due() {
            self.publish_progress(peers.keys()).await?;
            // Manual runs asked of any gateway reach the one sending the rule.
            let held: Vec<String> = peers.keys().cloned().collect();
            for bucket in self.meta.take_manual_runs(held).await? {
                self.progress.update(&bucket, |p| p.manual = true);
            }
        }
        Ok(acked)
    }

    /// Publishes the progress of the rules this gateway sends, for `hoard replication
    /// status` asked of any gateway.
    async fn publish_progress(
        &self,
        buckets: impl Iterator<Item = &String>,
    ) -> Result<(), SendError> {
        let gateway = format!("{:016x}", self.meta.gateway_id().unwrap_or(0));
        for bucket in buckets {
            let mut progress = self.progress.get(bucket);
            progress.rate_bytes_per_sec = progress.rate();
            let report = super::SenderReport {
                gateway: gateway.clone(),
                progress,
            };
            let bytes =
                serde_json::to_vec(&report).map_err(|e| SendError::Report(e.to_string()))?;
            self.meta.publish_sender_report(bucket, bytes).await?;
        }
        Ok(())
    }

    /// Syncs several keys of a bucket at once (MultiConnect: objects side by side,
    /// the rule's connections shared among them); records each outcome, and backs
    /// the rule off once if any key must be retried.
    async fn sync_group<'k>(
        &self,
        bucket: &str,
        keys: &[&'k str],
        peer: &mut Peer,
    ) -> HashMap<&'k str, Synced> {
        let per_object = (peer.rule.connections as usize / keys.len().max(1)).max(1);
        let link = &peer.link;
        let results = futures::future::join_all(
            keys.iter()
                .map(|key| self.sync_key(link, bucket, key, per_object)),
        )
        .await;
        let mut out = HashMap::new();
        for (key, result) in keys.iter().zip(results) {
            out.insert(*key, self.record_outcome(bucket, key, result).await);
        }
        if out.values().any(|s| *s == Synced::Retry) {
            let wait = peer.backoff.next().unwrap_or(Duration::from_secs(60));
            tracing::warn!(bucket, retry_in = ?wait, "replication will retry");
            peer.retry_at = Some(Instant::now() + wait);
        } else {
            peer.backoff = backoff();
        }
        out
    }

    /// Records one key's sync: progress on success; on a failure the error, and
    /// for a lasting one the key set aside as failed, durably, before the caller
    /// drops its event.
    async fn record_outcome(
        &self,
        bucket: &str,
        key: &str,
        result: Result<(u64, u64, u64), SendError>,
    ) -> Synced {
        let e = match result {
            Ok((versions, logical, wire)) => {
                self.progress.update(bucket, |p| {
                    p.last_success_ms = Some(crate::meta::now_ms());
                    p.objects_sent += versions;
                    p.logical_bytes += logical;
                    p.sent_bytes += wire;
                    p.note_sent(logical);
                });
                if let Err(e) = self.meta.clear_failed(bucket, key).await {
                    tracing::warn!(bucket, key, error = %e, "cannot clear a replication failure");
                }
                return Synced::Sent;
            }
            Err(e) => e,
        };
        self.metrics.replication_errors.inc();
        self.progress
            .update(bucket, |p| p.last_error = Some(e.to_string()));
        if e.lasting() {
            match self.meta.mark_failed(bucket, key, e.to_string()).await {
                Ok(()) => {
                    tracing::error!(bucket, key, error = %e, "replication failed; set aside until a requeue");
                    self.metrics.replication_failed.inc();
                    return Synced::Failed;
                }
                Err(me) => {
                    tracing::warn!(bucket, key, error = %me, "cannot record a replication failure")
                }
            }
        }
        tracing::warn!(bucket, key, error = %e, "replication failed");
        Synced::Retry
    }

    /// Sends the next page of the objects that existed before the rule, and stores
    /// how far it got; returns how many keys were sent.
    async fn resync_step(&self, bucket: &str, peer: &mut Peer) -> Result<usize, SendError> {
        let Some(after) = self.meta.resync_cursor(bucket).await? else {
            return Ok(0);
        };
        if !self.may_send(bucket, peer) {
            return Ok(0);
        }
        let q = ListQuery {
            prefix: String::new(),
            delimiter: None,
            after: (!after.is_empty()).then_some(after),
            max: RESYNC_PAGE,
        };
        let page = match self.meta.list_keys_with_markers(bucket, q).await {
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
            let outcomes = self.sync_group(bucket, group, peer).await;
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
                self.meta.advance_resync(bucket, last).await?;
            }
        } else {
            self.meta.advance_resync(bucket, None).await?;
            tracing::info!(bucket, "replication resync finished");
        }
        Ok(sent)
    }

    /// Keeps one link per rule, rebuilt when the rule changed.
    fn refresh_peers(
        &self,
        peers: &mut HashMap<String, Peer>,
        rules: &HashMap<String, RuleRecord>,
    ) {
        peers.retain(|b, p| rules.get(b) == Some(&p.rule));
        for (bucket, rule) in rules {
            if peers.contains_key(bucket) {
                continue;
            }
            let link = open_secret(&self.secrets, bucket, rule)
                .and_then(|secret| ReplicaLink::new(rule, secret, self.metrics.clone()));
            match link {
                Ok(link) => {
                    peers.insert(
                        bucket.clone(),
                        Peer {
                            rule: rule.clone(),
                            link: Arc::new(link),
                            retry_at: None,
                            backoff: backoff(),
                            requeued_at: None,
                        },
                    );
                }
                Err(e) => tracing::error!(bucket, error = %e, "replication rule unusable"),
            }
        }
    }

    /// Makes the replica's versions of `key` what the source's are now: the stamps
    /// of all versions are compared, the versions the replica lacks are sent oldest
    /// first, and the ones it has beyond the source's are removed. Returns (versions
    /// sent, their logical bytes, the bytes sent).
    async fn sync_key(
        &self,
        link: &Arc<ReplicaLink>,
        bucket: &str,
        key: &str,
        connections: usize,
    ) -> Result<(u64, u64, u64), SendError> {
        let versions = self.meta.key_versions(bucket, key).await?;
        let stamps: Vec<VersionStamp> = versions.iter().map(VersionStamp::of).collect();
        let (diff, asked) = link.versions(key, &stamps).await?;
        self.metrics.replication_sent_bytes.inc_by(asked);
        let mut sent = (0, 0, asked);
        for rec in versions.into_iter().rev() {
            if diff.lacking.contains(&rec.version_id) {
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

    /// Not paused, inside a window (or continuous, or a manual run asked for), not
    /// waiting for a retry.
    fn may_send(&self, bucket: &str, peer: &Peer) -> bool {
        if peer.rule.paused || peer.retry_at.is_some_and(|t| Instant::now() < t) {
            return false;
        }
        if peer.rule.windows.is_empty() || self.progress.get(bucket).manual {
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
