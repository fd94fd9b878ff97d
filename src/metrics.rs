//! `metrics` owns hoard's Prometheus metrics and their text exposition.
//!
//! Request counters and latency are recorded per S3 operation by the `s3` layer;
//! the storage gauges are refreshed from the stats report at every scrape.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use crate::stats::StatsReport;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    pub operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub operation: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: String,
}

/// `side`: "source" (this hoard sent the hello) or "replica" (it received it).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SideLabels {
    pub side: String,
}

/// A replication rule: its source bucket and id.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    pub bucket: String,
    pub rule: String,
}

/// `tier`: "local" or "cloud".
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TierLabels {
    pub tier: String,
}

/// `action`: what a lifecycle pass did ("expired", "noncurrent", "delete_marker",
/// "upload").
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LifecycleLabels {
    pub action: String,
}

/// `gateway`: a gateway's id in a cluster (hex, as its log prints it).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GatewayLabels {
    pub gateway: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BucketLabels {
    pub bucket: String,
}

pub type FloatGauge = Gauge<f64, AtomicU64>;
type LatencyFamily = Family<OpLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    /// OpenDAL's metrics of the calls to an object store, `hoard_store_opendal_*`.
    store_layer: opendal::layers::PrometheusClientLayer,
    pub requests: Family<OpLabels, Counter>,
    pub errors: Family<ErrorLabels, Counter>,
    pub latency: LatencyFamily,
    pub http_responses: Family<StatusLabels, Counter>,
    pub active_streams: Gauge,
    /// Writers that found every stream slot taken and waited.
    pub stream_waits: Counter,
    /// Writers refused a slot after `stream_wait_ms` (503 SlowDown).
    pub stream_refusals: Counter,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub segments_written: Counter,
    pub integrity_errors: Counter,
    /// Unix milliseconds of the last S3 request (the cleaner's idle trigger).
    pub last_request_ms: std::sync::atomic::AtomicI64,
    pub gc_running: Gauge,
    pub gc_runs: Counter,
    pub gc_freed_bytes: Counter,
    pub gc_rewritten_bytes: Counter,
    pub gc_chunks_removed: Counter,
    pub scrub_bytes: Counter,
    pub scrub_segments: Counter,
    pub scrub_problems: Counter,
    pub scrub_cycles: Counter,
    pub lifecycle_runs: Counter,
    pub lifecycle_removed: Family<LifecycleLabels, Counter>,
    pub lifecycle_kept_locked: Counter,
    pub lifecycle_errors: Counter,
    pub lifecycle_last_run_seconds: FloatGauge,
    pub replication_hello_refused: Family<SideLabels, Counter>,
    pub replication_logical_bytes: Counter,
    pub replication_sent_bytes: Counter,
    pub replication_events: Counter,
    pub replication_errors: Counter,
    pub replication_failed: Counter,
    pub replication_queue: Gauge,
    pub replication_backlog_events: Family<RuleLabels, Gauge>,
    pub replication_backlog_bytes: Family<RuleLabels, Gauge>,
    pub replication_backlog_age: Family<RuleLabels, Gauge>,
    pub tier_moved_segments: Counter,
    pub tier_moved_bytes: Counter,
    pub tier_move_errors: Counter,
    pub tier_queue: Gauge,
    cache_hits: Counter,
    cache_misses: Counter,
    cache_evicted: Counter,
    cache_fetched_bytes: Counter,
    retention_clock: Gauge,
    retention_clock_behind: Gauge,
    tier_segments: Family<TierLabels, Gauge>,
    tier_bytes: Family<TierLabels, Gauge>,
    bucket_objects: Family<BucketLabels, Gauge>,
    cluster_streams: Family<GatewayLabels, Gauge>,
    cluster_stream_limit: Family<GatewayLabels, Gauge>,
    bucket_logical: Family<BucketLabels, Gauge>,
    bucket_stored: Family<BucketLabels, Gauge>,
    objects: Gauge,
    logical: Gauge,
    unique: Gauge,
    stored: Gauge,
    chunks: Gauge,
    segments: Gauge,
    dedup_ratio: FloatGauge,
    compression_ratio: FloatGauge,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::default();
        let m = Metrics {
            requests: Family::default(),
            errors: Family::default(),
            latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            http_responses: Family::default(),
            active_streams: Gauge::default(),
            stream_waits: Counter::default(),
            stream_refusals: Counter::default(),
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            segments_written: Counter::default(),
            integrity_errors: Counter::default(),
            last_request_ms: std::sync::atomic::AtomicI64::new(0),
            gc_running: Gauge::default(),
            gc_runs: Counter::default(),
            gc_freed_bytes: Counter::default(),
            gc_rewritten_bytes: Counter::default(),
            gc_chunks_removed: Counter::default(),
            scrub_bytes: Counter::default(),
            scrub_segments: Counter::default(),
            scrub_problems: Counter::default(),
            scrub_cycles: Counter::default(),
            lifecycle_runs: Counter::default(),
            lifecycle_removed: Family::default(),
            lifecycle_kept_locked: Counter::default(),
            lifecycle_errors: Counter::default(),
            lifecycle_last_run_seconds: FloatGauge::default(),
            replication_hello_refused: Family::default(),
            replication_logical_bytes: Counter::default(),
            replication_sent_bytes: Counter::default(),
            replication_events: Counter::default(),
            replication_errors: Counter::default(),
            replication_failed: Counter::default(),
            replication_queue: Gauge::default(),
            replication_backlog_events: Family::default(),
            replication_backlog_bytes: Family::default(),
            replication_backlog_age: Family::default(),
            tier_moved_segments: Counter::default(),
            tier_moved_bytes: Counter::default(),
            tier_move_errors: Counter::default(),
            tier_queue: Gauge::default(),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            cache_evicted: Counter::default(),
            cache_fetched_bytes: Counter::default(),
            retention_clock: Gauge::default(),
            retention_clock_behind: Gauge::default(),
            tier_segments: Family::default(),
            tier_bytes: Family::default(),
            bucket_objects: Family::default(),
            cluster_streams: Family::default(),
            cluster_stream_limit: Family::default(),
            bucket_logical: Family::default(),
            bucket_stored: Family::default(),
            objects: Gauge::default(),
            logical: Gauge::default(),
            unique: Gauge::default(),
            stored: Gauge::default(),
            chunks: Gauge::default(),
            segments: Gauge::default(),
            dedup_ratio: FloatGauge::default(),
            compression_ratio: FloatGauge::default(),
            registry: Registry::default(),
            store_layer: opendal::layers::PrometheusClientLayer::builder()
                .register(r.sub_registry_with_prefix("hoard_store")),
        };
        // Counters get their `_total` suffix from the encoder.
        r.register(
            "hoard_s3_requests",
            "S3 requests by operation",
            m.requests.clone(),
        );
        r.register(
            "hoard_s3_errors",
            "S3 error responses by operation and code",
            m.errors.clone(),
        );
        r.register(
            "hoard_s3_request_duration_seconds",
            "S3 request latency by operation",
            m.latency.clone(),
        );
        r.register(
            "hoard_http_responses",
            "HTTP responses by status",
            m.http_responses.clone(),
        );
        r.register(
            "hoard_gc_running",
            "1 while a cleaner pass runs",
            m.gc_running.clone(),
        );
        r.register(
            "hoard_gc_runs",
            "Cleaner passes completed",
            m.gc_runs.clone(),
        );
        r.register(
            "hoard_gc_freed_bytes",
            "Stored bytes the cleaner gave back",
            m.gc_freed_bytes.clone(),
        );
        r.register(
            "hoard_gc_rewritten_bytes",
            "Bytes of kept chunks compaction copied",
            m.gc_rewritten_bytes.clone(),
        );
        r.register(
            "hoard_gc_chunks_removed",
            "Dead chunks the cleaner removed from the index",
            m.gc_chunks_removed.clone(),
        );
        r.register(
            "hoard_scrub_read_bytes",
            "Segment bytes the background scrub read and verified",
            m.scrub_bytes.clone(),
        );
        r.register(
            "hoard_scrub_segments",
            "Segments the background scrub checked",
            m.scrub_segments.clone(),
        );
        r.register(
            "hoard_scrub_problems",
            "Corrupt chunks, trailer mismatches and missing segments the scrub found",
            m.scrub_problems.clone(),
        );
        r.register(
            "hoard_scrub_cycles",
            "Scrub cycles over the whole store completed",
            m.scrub_cycles.clone(),
        );
        r.register(
            "hoard_lifecycle_runs",
            "Lifecycle passes completed",
            m.lifecycle_runs.clone(),
        );
        r.register(
            "hoard_lifecycle_removed",
            "What lifecycle passes removed: expired current versions, noncurrent versions, expired delete markers, aborted uploads",
            m.lifecycle_removed.clone(),
        );
        r.register(
            "hoard_lifecycle_kept_locked",
            "Versions lifecycle rules expire that Object Lock kept",
            m.lifecycle_kept_locked.clone(),
        );
        r.register(
            "hoard_lifecycle_errors",
            "Lifecycle passes that failed",
            m.lifecycle_errors.clone(),
        );
        r.register(
            "hoard_lifecycle_last_run_seconds",
            "How long the last lifecycle pass took",
            m.lifecycle_last_run_seconds.clone(),
        );
        r.register(
            "hoard_replication_hello_refused",
            "Replication hellos refused for incompatible protocol versions, by side",
            m.replication_hello_refused.clone(),
        );
        r.register(
            "hoard_replication_logical_bytes",
            "Object bytes replicated (the sizes of the objects sent)",
            m.replication_logical_bytes.clone(),
        );
        r.register(
            "hoard_replication_sent_bytes",
            "Bytes sent to replicas: chunks the replicas lacked, as stored, and manifests",
            m.replication_sent_bytes.clone(),
        );
        r.register(
            "hoard_replication_events",
            "Outbox events the replicas acknowledged",
            m.replication_events.clone(),
        );
        r.register(
            "hoard_replication_errors",
            "Failed attempts to replicate an event (retried with backoff)",
            m.replication_errors.clone(),
        );
        r.register(
            "hoard_replication_failed",
            "Keys set aside as FAILED: the replica refused them or a chunk could not be read",
            m.replication_failed.clone(),
        );
        r.register(
            "hoard_replication_queue_events",
            "Outbox events waiting for a replica at the last sender round",
            m.replication_queue.clone(),
        );
        r.register(
            "hoard_replication_backlog_events",
            "Changes a replication rule has still to send",
            m.replication_backlog_events.clone(),
        );
        r.register(
            "hoard_replication_backlog_bytes",
            "Logical bytes of the versions written that a replication rule has still to send",
            m.replication_backlog_bytes.clone(),
        );
        r.register(
            "hoard_replication_backlog_age_seconds",
            "Age of the oldest change a replication rule has still to send",
            m.replication_backlog_age.clone(),
        );
        r.register(
            "hoard_tier_moved_segments",
            "Segments the mover copied to the cloud tier and removed locally",
            m.tier_moved_segments.clone(),
        );
        r.register(
            "hoard_tier_moved_bytes",
            "Bytes of the segments the mover moved to the cloud tier",
            m.tier_moved_bytes.clone(),
        );
        r.register(
            "hoard_tier_move_errors",
            "Mover passes stopped by an error (the tier unreachable, a failed read-back)",
            m.tier_move_errors.clone(),
        );
        r.register(
            "hoard_tier_queue_segments",
            "Segments due to move at the mover's last look",
            m.tier_queue.clone(),
        );
        r.register(
            "hoard_cache_hits",
            "Segment reads the restore cache answered without a fetch of their own",
            m.cache_hits.clone(),
        );
        r.register(
            "hoard_cache_misses",
            "Segments the restore cache fetched from the object store (concurrent misses of one segment are one fetch)",
            m.cache_misses.clone(),
        );
        r.register(
            "hoard_cache_evicted",
            "Segments the restore cache evicted from memory to make room (they may stay in its disk files)",
            m.cache_evicted.clone(),
        );
        r.register(
            "hoard_cache_fetched_bytes",
            "Bytes fetched from the object store into the restore cache",
            m.cache_fetched_bytes.clone(),
        );
        r.register(
            "hoard_retention_clock_seconds",
            "The retention clock Object Lock judges expiry by, seconds since the epoch",
            m.retention_clock.clone(),
        );
        r.register(
            "hoard_retention_clock_behind_seconds",
            "How far the wall clock is ahead of the retention clock (negative: behind)",
            m.retention_clock_behind.clone(),
        );
        r.register(
            "hoard_cluster_streams_active",
            "Ingest streams in progress on each live gateway of the cluster, as of its last lease renewal",
            m.cluster_streams.clone(),
        );
        r.register(
            "hoard_cluster_streams_limit",
            "The ingest stream limit (max_streams) of each live gateway of the cluster",
            m.cluster_stream_limit.clone(),
        );
        r.register(
            "hoard_tier_segments",
            "Segments per tier (local, cloud) in a tiered store",
            m.tier_segments.clone(),
        );
        r.register(
            "hoard_tier_stored_bytes",
            "Segment bytes per tier (local, cloud) in a tiered store",
            m.tier_bytes.clone(),
        );
        r.register(
            "hoard_ingest_active_streams",
            "Ingest streams in progress",
            m.active_streams.clone(),
        );
        r.register(
            "hoard_ingest_stream_waits",
            "Writers that found every ingest stream slot taken and waited",
            m.stream_waits.clone(),
        );
        r.register(
            "hoard_ingest_stream_refusals",
            "Writers refused an ingest stream slot after waiting stream_wait_ms (503 SlowDown)",
            m.stream_refusals.clone(),
        );
        r.register(
            "hoard_s3_received_bytes",
            "Object bytes received",
            m.bytes_in.clone(),
        );
        r.register(
            "hoard_s3_sent_bytes",
            "Object bytes sent",
            m.bytes_out.clone(),
        );
        r.register(
            "hoard_segments_written",
            "Segments written to the segment store",
            m.segments_written.clone(),
        );
        r.register(
            "hoard_integrity_errors",
            "Chunks that failed verification on read",
            m.integrity_errors.clone(),
        );
        r.register(
            "hoard_refcount_underflow",
            "Releases refused because a chunk's reference count would have fallen below zero",
            crate::meta::REFCOUNT_UNDERFLOWS.clone(),
        );
        r.register(
            "hoard_bucket_objects",
            "Objects per bucket",
            m.bucket_objects.clone(),
        );
        r.register(
            "hoard_bucket_logical_bytes",
            "Logical bytes per bucket",
            m.bucket_logical.clone(),
        );
        r.register(
            "hoard_bucket_stored_bytes",
            "Stored bytes a bucket's writes added",
            m.bucket_stored.clone(),
        );
        r.register("hoard_objects", "Objects in all buckets", m.objects.clone());
        r.register(
            "hoard_logical_bytes",
            "Logical bytes in all buckets",
            m.logical.clone(),
        );
        r.register(
            "hoard_unique_bytes",
            "Raw bytes of distinct chunks and inline bodies",
            m.unique.clone(),
        );
        r.register(
            "hoard_stored_bytes",
            "Bytes in the segment store plus inline bodies",
            m.stored.clone(),
        );
        r.register(
            "hoard_unique_chunks",
            "Distinct chunks indexed",
            m.chunks.clone(),
        );
        r.register("hoard_segments", "Segments written", m.segments.clone());
        r.register(
            "hoard_dedup_ratio",
            "Logical bytes / unique bytes",
            m.dedup_ratio.clone(),
        );
        r.register(
            "hoard_compression_ratio",
            "Unique bytes / stored bytes",
            m.compression_ratio.clone(),
        );
        Metrics { registry: r, ..m }
    }

    /// Records one finished S3 operation.
    pub fn observe(&self, operation: &str, seconds: f64, error_code: Option<&str>) {
        self.last_request_ms
            .store(crate::meta::now_ms(), std::sync::atomic::Ordering::Relaxed);
        let op = OpLabels {
            operation: operation.to_owned(),
        };
        self.requests.get_or_create(&op).inc();
        self.latency.get_or_create(&op).observe(seconds);
        if let Some(code) = error_code {
            self.errors
                .get_or_create(&ErrorLabels {
                    operation: operation.to_owned(),
                    code: code.to_owned(),
                })
                .inc();
        }
    }

    /// The OpenDAL layer that records every call to an object store (operation,
    /// bytes, duration, errors, HTTP requests) into these metrics.
    pub fn store_layer(&self) -> &opendal::layers::PrometheusClientLayer {
        &self.store_layer
    }

    /// Brings the cache counters up to what the segment store counted.
    pub fn record_cache(&self, c: crate::segments::CacheCounters) {
        for (counter, value) in [
            (&self.cache_hits, c.hits),
            (&self.cache_misses, c.misses),
            (&self.cache_evicted, c.evicted),
            (&self.cache_fetched_bytes, c.fetched_bytes),
        ] {
            counter.inc_by(value.saturating_sub(counter.get()));
        }
    }

    /// The retention clock's reading and its distance from the wall clock, ms.
    pub fn record_retention_clock(&self, clock_ms: i64, behind_ms: i64) {
        self.retention_clock.set(clock_ms / 1000);
        self.retention_clock_behind.set(behind_ms / 1000);
    }

    /// The text exposition, with storage gauges taken from `stats`.
    pub fn render(&self, stats: &StatsReport) -> String {
        self.bucket_objects.clear();
        self.bucket_logical.clear();
        self.bucket_stored.clear();
        for b in &stats.buckets {
            let l = BucketLabels {
                bucket: b.name.clone(),
            };
            self.bucket_objects.get_or_create(&l).set(b.objects as i64);
            self.bucket_logical
                .get_or_create(&l)
                .set(b.logical_bytes as i64);
            self.bucket_stored
                .get_or_create(&l)
                .set(b.stored_bytes as i64);
        }
        self.cluster_streams.clear();
        self.cluster_stream_limit.clear();
        for g in &stats.gateways {
            let l = GatewayLabels {
                gateway: g.id.clone(),
            };
            self.cluster_streams.get_or_create(&l).set(g.streams as i64);
            self.cluster_stream_limit
                .get_or_create(&l)
                .set(g.stream_limit as i64);
        }
        let t = &stats.total;
        self.objects.set(t.objects as i64);
        self.logical.set(t.logical_bytes as i64);
        self.unique.set(t.unique_bytes as i64);
        self.stored.set(t.stored_bytes as i64);
        self.chunks.set(t.unique_chunks as i64);
        self.segments.set(t.segments as i64);
        self.dedup_ratio.set(t.dedup_ratio);
        self.compression_ratio.set(t.compression_ratio);
        if let Some(tiers) = &stats.tiers {
            for (tier, segments, bytes) in [
                ("local", tiers.local_segments, tiers.local_bytes),
                ("cloud", tiers.cloud_segments, tiers.cloud_bytes),
            ] {
                let l = TierLabels { tier: tier.into() };
                self.tier_segments.get_or_create(&l).set(segments as i64);
                self.tier_bytes.get_or_create(&l).set(bytes as i64);
            }
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
