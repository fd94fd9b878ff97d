//! `replication` owns one-way bucket replication between hoards: the rules on a
//! source, the replica buckets on a replica, and the protocol between them.
//!
//! Parts: rules and named targets (`rules`), the hello every rule starts with,
//! read-only replica buckets with promotion, the continuous (or windowed) transfer of
//! each changed key's versions from the outbox (`sender`) sending only the chunks the
//! replica lacks, the replica's endpoints (`receiver`), their bodies (`wire`), and
//! seeding on disk (`seed`). What is not built yet is listed in `sender`'s docs.
//!
//! Protocol (HTTPS, SigV4 with a key the replica issued, holding the `replication`
//! grant on the replica bucket; endpoints under `PREFIX` on the replica's listener):
//!
//! | method | path | does |
//! |---|---|---|
//! | POST | `missing?bucket=B` | body: chunk ids; answer: the ones the replica lacks (`wire`) |
//! | PUT | `chunks?bucket=B&hold=H` | chunk frames as stored; each verified by BLAKE3 (else `400 BadDigest`, nothing stored), new ones packed into the replica's own segments; each chunk of the batch gets one reference under hold `H` (32 hex digits) until the commit |
//! | POST | `versions?bucket=B&key=HEX` | JSON: the source's `VersionStamp`s of the key; answers `VersionDiff`: the version ids the replica lacks (or holds with other tags) and how many it holds beyond them |
//! | PUT | `part?bucket=B&key=HEX&hold=H&part=N` | the manifest of part N (from 0) of the version sent under hold `H`; takes its chunks' references and stages it (`MetaStore::stage_part`), or `409 MissingChunks` changing nothing. A source stages every part of a multipart version but the last, so no request carries more than one part's manifest |
//! | PUT | `object?bucket=B&key=HEX&hold=H` | one version: record and the manifests of the parts not staged; takes the chunks' references and stores it under the source's id and order with the staged parts, releasing hold `H` in the same transaction (`MetaStore::apply_version`); or `409 MissingChunks` changing nothing; or `400 InvalidRequest` when the staged parts do not fit the record |
//! | DELETE | `object?bucket=B&key=HEX` | JSON: the source's stamps; removes the replica's versions of the key that are not among them |
//! | POST | `hello?bucket=B` | JSON `Hello` both ways. Each side picks the highest version both speak. The replica refuses a hello with none in common (`400 IncompatibleReplicationProtocol`, logged, `hoard_replication_hello_refused_total{side="replica"}`); the source refuses such an answer the same way (`side="source"`). A successful hello makes B a replica bucket. |
//!
//! Invariants:
//! - A replica bucket refuses every S3 write and delete, root's included
//!   (`403 AccessDenied`); only promotion (`hoard bucket promote`) makes it writable,
//!   and a promoted bucket that holds objects refuses further hellos
//!   (`409 BucketNotEmpty`), so a stale source cannot overwrite it.
//! - An outbox event leaves the source's outbox only after every rule of its
//!   bucket passed it, each rule's cursor only after its replica acknowledged the
//!   commit or delete it led to; every step is idempotent (see `sender`).
//! - A rule is stored only after a hello with its target succeeded: the target was
//!   reachable, its certificate trusted, the key accepted, the protocol compatible.
//!   Its secret is stored sealed (`secrets`), never shown or logged.

pub mod chunk_runs;
pub mod receiver;
pub mod rules;
pub mod s3_target;
pub mod seed;
pub mod sender;
pub mod wire;

use std::collections::HashSet;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use crate::meta::{MetaResult, MetaStore};

/// Where a replica serves the replication endpoints.
pub const PREFIX: &str = "/hoard-replica/v1/";
/// The protocol version this build speaks. 2 added staged parts (`part`); a
/// version-1 peer would not know them, so it is refused.
pub const PROTOCOL: u32 = 2;
/// The oldest protocol version this build still speaks.
pub const MIN_PROTOCOL: u32 = 2;
/// Overrides `PROTOCOL` and `MIN_PROTOCOL` (as `N`): lets the real binary play an
/// older or newer hoard in compatibility tests.
pub const ENV_PROTOCOL: &str = "HOARD_REPLICATION_PROTOCOL";

/// What each side says of itself in the hello.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub software: String,
    pub protocol: u32,
    pub min_protocol: u32,
    pub capabilities: Vec<String>,
    /// The side's bucket has Object Lock: a source whose bucket has it needs a
    /// replica bucket that has it too (the replica refuses the hello otherwise).
    #[serde(default)]
    pub object_lock: bool,
    /// From a source: the stores (hex ids) the bucket's data comes through, the
    /// source itself first, then the stores upstream of it when its bucket is a
    /// replica too (a cascade). A replica that finds itself in it refuses the hello:
    /// the rule would close a loop.
    #[serde(default)]
    pub chain: Vec<String>,
}

impl Hello {
    /// This build's hello.
    pub fn ours() -> Hello {
        let (protocol, min_protocol) = match std::env::var(ENV_PROTOCOL)
            .ok()
            .and_then(|v| v.parse().ok())
        {
            Some(n) => (n, n),
            None => (PROTOCOL, MIN_PROTOCOL),
        };
        Hello {
            software: format!("hoard {}", env!("CARGO_PKG_VERSION")),
            protocol,
            min_protocol,
            capabilities: vec!["zstd".into(), "blake3".into()],
            object_lock: false,
            chain: Vec::new(),
        }
    }

    /// The protocol version both sides speak (the highest one), or why there is none.
    pub fn negotiate(&self, peer: &Hello) -> Result<u32, String> {
        let agreed = self.protocol.min(peer.protocol);
        if agreed >= self.min_protocol.max(peer.min_protocol) {
            return Ok(agreed);
        }
        Err(format!(
            "incompatible replication protocol: {} speaks {}..={}, {} speaks {}..={}",
            peer.software,
            peer.min_protocol,
            peer.protocol,
            self.software,
            self.min_protocol,
            self.protocol
        ))
    }
}

/// What the sender knows of each rule's progress (by rule key), for `hoard
/// replication status` (in memory: counters restart at 0 with the server; the queue
/// itself is durable).
#[derive(Default)]
pub struct Progress {
    rules: std::sync::Mutex<std::collections::HashMap<String, RuleProgress>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RuleProgress {
    /// Outbox events the rule has still to send (its backlog), as last counted.
    pub queued: u64,
    /// The logical bytes of the versions those events wrote.
    #[serde(default)]
    pub queued_bytes: u64,
    /// Set while the backlog passes `[replication] backlog_warn_events` or
    /// `backlog_warn_age_secs`: says which.
    #[serde(default)]
    pub warning: Option<String>,
    /// Commit time (unix ms) of the oldest of them; its age is the lag.
    pub oldest_queued_ms: Option<i64>,
    pub last_success_ms: Option<i64>,
    pub last_error: Option<String>,
    pub objects_sent: u64,
    pub logical_bytes: u64,
    pub sent_bytes: u64,
    /// A manual run was asked for: send now, windows or not, until the queue and
    /// the resync are empty.
    pub manual: bool,
    /// Logical bytes per second sent over the last minute (set by `status`).
    #[serde(default)]
    pub rate_bytes_per_sec: f64,
    /// (unix ms, logical bytes) of each version sent in the last minute.
    #[serde(skip)]
    pub recent: std::collections::VecDeque<(i64, u64)>,
}

/// What the gateway sending a rule publishes of it, every few seconds, for the other
/// gateways of a cluster to answer `hoard replication status` with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SenderReport {
    /// The sending gateway's id (hex).
    pub gateway: String,
    pub progress: RuleProgress,
}

/// The window `RuleProgress::rate_bytes_per_sec` averages over.
pub const RATE_WINDOW_MS: i64 = 60_000;

impl RuleProgress {
    /// Records logical bytes sent now, forgetting what left the rate window.
    pub fn note_sent(&mut self, logical: u64) {
        let now = crate::meta::now_ms();
        self.recent.push_back((now, logical));
        while self
            .recent
            .front()
            .is_some_and(|(t, _)| now - t > RATE_WINDOW_MS)
        {
            self.recent.pop_front();
        }
    }

    /// The logical bytes per second over the last minute.
    pub fn rate(&self) -> f64 {
        let now = crate::meta::now_ms();
        let sent: u64 = self
            .recent
            .iter()
            .filter(|(t, _)| now - t <= RATE_WINDOW_MS)
            .map(|(_, b)| b)
            .sum();
        sent as f64 * 1000.0 / RATE_WINDOW_MS as f64
    }
}

impl Progress {
    /// Applies `f` to a rule's entry (by rule key).
    pub fn update<R>(&self, bucket: &str, f: impl FnOnce(&mut RuleProgress) -> R) -> R {
        let mut rules = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        f(rules.entry(bucket.to_owned()).or_default())
    }

    pub fn get(&self, bucket: &str) -> RuleProgress {
        self.update(bucket, |p| p.clone())
    }
}

/// The replica buckets of this hoard, kept in memory for the access check and
/// changed only after the store is.
pub struct ReplicaBuckets {
    meta: MetaStore,
    names: RwLock<HashSet<String>>,
}

impl ReplicaBuckets {
    pub fn load(meta: MetaStore) -> MetaResult<ReplicaBuckets> {
        let names = meta
            .replica_buckets_blocking()?
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        Ok(ReplicaBuckets {
            meta,
            names: RwLock::new(names),
        })
    }

    pub fn contains(&self, bucket: &str) -> bool {
        self.names
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(bucket)
    }

    /// Makes `bucket` a replica of the source that said `hello`.
    pub async fn mark(&self, bucket: &str, hello: &Hello) -> MetaResult<()> {
        let rec = crate::meta::ReplicaRecord {
            source_software: hello.software.clone(),
            since_ms: crate::meta::now_ms(),
            chain: Some(hello.chain.clone()),
        };
        self.meta.mark_replica(bucket, rec).await?;
        self.names
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(bucket.to_owned());
        Ok(())
    }

    /// Promotion: the bucket becomes writable; true if it was a replica.
    pub async fn promote(&self, bucket: &str) -> MetaResult<bool> {
        let was = self.meta.unmark_replica(bucket).await?;
        self.names
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(bucket);
        Ok(was)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_common_protocol_is_chosen_or_none() {
        let ours = Hello {
            software: "hoard a".into(),
            protocol: 2,
            min_protocol: 1,
            capabilities: vec![],
            object_lock: false,
            chain: vec![],
        };
        let peer = |min, max| Hello {
            software: "hoard b".into(),
            protocol: max,
            min_protocol: min,
            capabilities: vec![],
            object_lock: false,
            chain: vec![],
        };
        assert_eq!(ours.negotiate(&peer(1, 3)), Ok(2));
        assert_eq!(ours.negotiate(&peer(2, 2)), Ok(2));
        assert_eq!(ours.negotiate(&peer(1, 1)), Ok(1));
        let err = ours.negotiate(&peer(3, 4)).unwrap_err();
        assert!(err.contains("3..=4") && err.contains("hoard b"), "{err}");
    }
}
