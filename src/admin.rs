//! `admin` owns hoard's admin API: JSON over HTTP under `/hoard-admin/v1/`, on the S3
//! listener, signed with SigV4 like any S3 request (s3s verifies the signature
//! before a route runs). The `hoard` CLI is its client.
//!
//! | method | path | does |
//! |---|---|---|
//! | GET | `/hoard-admin/v1/stats[?bucket=B]` | the stats report (one bucket, or all and the total) |
//! | PUT | `/hoard-admin/v1/buckets/NAME` | creates a bucket; JSON body `{"chunk_avg", "chunk_min", "chunk_max", "compression_level", "object_lock"}`, all optional |
//! | GET | `/hoard-admin/v1/buckets/NAME` | a bucket's settings |
//! | POST | `/hoard-admin/v1/gc[?dry-run=true][&grace-secs=N]` | runs one cleaner pass (waits for one already running here; 409 OperationAborted while another gateway runs one) and returns its report |
//! | GET | `/hoard-admin/v1/jobs` | the long jobs running on this gateway (gc, verify): label, unit, start, done and total, for the CLI's progress bars |
//! | POST | `/hoard-admin/v1/lifecycle/run` | runs one lifecycle pass over the buckets with lifecycle rules now (waits for one already running) and returns its report |
//! | POST | `/hoard-admin/v1/verify[?bucket=B][&repair=true]` | checks chunks, trailers, reference counts and segment files; returns the report. With `repair` (whole store only): repairs what it found (see `repair`), then verifies again and returns that report with what repair changed |
//! | GET | `/hoard-admin/v1/quotas` | the quotas in force (logical bytes; see `meta::quota`) |
//! | PUT | `/hoard-admin/v1/quotas` | sets or removes one; JSON body `{"bucket": B or null for the store, "bytes": N or null to remove}`; returns the quotas |
//! | GET | `/hoard-admin/v1/users` | the users, their access keys, states and grants (never secrets) |
//! | POST | `/hoard-admin/v1/users/NAME` | adds a user; JSON body `{"grants": {"BUCKET or *": "readonly/writeonly/readwrite/admin"}}`, optional; returns the access key and secret, the only time the secret is shown |
//! | DELETE | `/hoard-admin/v1/users/NAME` | removes a user; its key is refused from then on |
//! | POST | `/hoard-admin/v1/users/NAME/disable`, `.../enable` | refuses, or accepts again, the user's key |
//! | POST | `/hoard-admin/v1/users/NAME/rotate-key` | replaces the key pair and returns the new one; the old one is refused from then on |
//! | PUT | `/hoard-admin/v1/users/NAME/grants/BUCKET` | sets the user's grant on a bucket (or `*`); JSON body `{"permission": P}`; returns the user |
//! | DELETE | `/hoard-admin/v1/users/NAME/grants/BUCKET` | removes that grant; returns the user |
//! | GET | `/hoard-admin/v1/replication` | the replication rules of every bucket (never secrets) |
//! | PUT | `/hoard-admin/v1/replication/BUCKET` | adds a rule to BUCKET, or replaces the one with the same `id` (without one: the rule towards the same replica bucket); JSON `replication::rules::AddRule`. The target must answer a hello first (`400 InvalidReplicationTarget` saying why not: unreachable, untrusted certificate, key refused, incompatible protocol) |
//! | DELETE | `/hoard-admin/v1/replication/BUCKET?rule=ID` | removes the rule. Here and below `rule` names one of the bucket's rules; it may be left out when the bucket has one (else `400 InvalidArgument` listing them) |
//! | POST | `/hoard-admin/v1/replication/BUCKET/pause?rule=ID`, `.../resume` | pauses or resumes it |
//! | GET | `/hoard-admin/v1/replication/BUCKET/status?rule=ID` | backlog (events, bytes, lag, warning), resync progress, bytes logical and sent, last success and error |
//! | GET | `/hoard-admin/v1/replication/BUCKET/statuses` | the status of each of the bucket's rules (a list) |
//! | POST | `/hoard-admin/v1/replication/BUCKET/run?rule=ID` | a manual run: send now, windows or not, until nothing waits |
//! | GET | `/hoard-admin/v1/replication-targets` | the named targets (never secrets), each with its ARN |
//! | PUT | `/hoard-admin/v1/replication-targets/NAME` | adds or replaces a named target: a rule template (JSON `AddRule`) checked by a hello like a rule. S3 PutBucketReplication names it as `arn:aws:s3:::NAME` |
//! | DELETE | `/hoard-admin/v1/replication-targets/NAME` | removes it (rules made from it stay) |
//! | POST | `/hoard-admin/v1/seed/export` | one step of a seed export; JSON `replication::seed::ExportRequest` (`dir` on the server's filesystem); answers the `SeedProgress` (`finished` once all keys are written). Call again to continue or resume |
//! | POST | `/hoard-admin/v1/seed/import` | loads step `step` of a finished seed into a bucket, which becomes a replica; JSON `ImportRequest`, answers `ImportProgress`. A wrong passphrase: `403 AccessDenied`; a bucket holding its own objects, an unfinished seed, an altered file: `400 InvalidArgument` |
//! | POST | `/hoard-admin/v1/replication/BUCKET/requeue?rule=ID` | puts the keys whose replication by the rule failed back into the queue; JSON `{"requeued": N}` |
//! | POST | `/hoard-admin/v1/buckets/NAME/promote` | makes a replica bucket writable (its source is lost) |
//! | PUT | `/hoard-admin/v1/buckets/NAME/tier` | sets or removes the age after which the bucket's segments move to the cloud tier; JSON `{"after_secs": N or null}`; answers every bucket's policy. `400 InvalidArgument` when the store has no tier |
//!
//! Only root and users holding the admin grant on `*` may call it (403 AccessDenied
//! otherwise). Errors come back as S3 error XML with the usual codes; user errors are
//! `404 NoSuchEntity`, `409 EntityAlreadyExists` and `400 InvalidArgument`.

use std::sync::Arc;

use http::{HeaderMap, Method, StatusCode, Uri};
use s3s::route::S3Route;
use s3s::{Body, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

use crate::admin_api::{
    AddUserRequest, BucketSettings, BucketTierRequest, BucketTiers, CreateBucketRequest,
    GrantRequest, PREFIX, QuotaRequest, VerifyOutcome,
};
use crate::cleaner::{Cleaner, CleanerError, GcOptions};
use crate::config::{ChunkingConfig, Config};
use crate::http_json::{json, json_body, json_body_required, query_flag, query_param};
use crate::lifecycle::{Lifecycle, LifecycleError};
use crate::meta::MetaStore;
use crate::names::{ALL_BUCKETS, creatable_bucket_name, valid_bucket_name};
use crate::replication::ReplicaBuckets;
use crate::replication::rules::{AddRule, Rules, RulesError};
use crate::s3_error::{internal, meta_error, no_such_bucket};
use crate::segments::SegmentStore;
use crate::stats;
use crate::users::{Users, UsersError};

/// What the admin API serves from (built by `server`).
pub struct AdminApi {
    pub cfg: Arc<Config>,
    pub meta: MetaStore,
    pub segments: SegmentStore,
    pub cleaner: Arc<Cleaner>,
    pub lifecycle: Arc<Lifecycle>,
    pub users: Arc<Users>,
    pub rules: Arc<Rules>,
    pub replicas: Arc<ReplicaBuckets>,
    pub received: Arc<crate::replication::receiver::Store>,
    /// The long jobs in progress (gc, verify), for `GET jobs`.
    pub jobs: Arc<crate::board::Board>,
}

impl AdminApi {
    /// The named replication targets: `rest` is what follows `replication-targets/`.
    async fn targets(
        &self,
        method: &Method,
        rest: &[&str],
        body: Body,
    ) -> S3Result<S3Response<Body>> {
        let r = &self.rules;
        match (method, rest) {
            (&Method::GET, []) => json(
                StatusCode::OK,
                &r.targets().await.map_err(RulesError::into_s3)?,
            ),
            (&Method::PUT, [name]) => {
                let req: AddRule = json_body_required(body).await?;
                let info = r.add_target(name, req).await.map_err(RulesError::into_s3)?;
                json(StatusCode::OK, &info)
            }
            (&Method::DELETE, [name]) => {
                r.remove_target(name).await.map_err(RulesError::into_s3)?;
                json(StatusCode::OK, &serde_json::json!({ "removed": name }))
            }
            _ => Err(s3_error!(NotImplemented, "Unknown admin operation")),
        }
    }

    /// One step of a seed export or import (`replication::seed`).
    async fn seed(&self, verb: &str, body: Body) -> S3Result<S3Response<Body>> {
        use crate::replication::seed::{self, SeedError};
        let done = match verb {
            "export" => {
                let req = json_body_required(body).await?;
                seed::export_step(self.meta.clone(), self.segments.clone(), req)
                    .await
                    .map(|p| serde_json::to_value(p).unwrap_or_default())
            }
            _ => {
                let req = json_body_required(body).await?;
                seed::import_step(self.received.clone(), self.replicas.clone(), req)
                    .await
                    .map(|p| serde_json::to_value(p).unwrap_or_default())
            }
        };
        let e = match done {
            Ok(v) => return json(StatusCode::OK, &v),
            Err(e) => e,
        };
        let (code, status) = match &e {
            SeedError::WrongPassphrase => ("AccessDenied", StatusCode::FORBIDDEN),
            SeedError::Invalid(_) | SeedError::Import(_) => {
                ("InvalidArgument", StatusCode::BAD_REQUEST)
            }
            _ => return Err(internal("seed step failed", &e)),
        };
        tracing::warn!(verb, error = %e, "seed step refused");
        let mut err = S3Error::with_message(S3ErrorCode::Custom(code.into()), e.to_string());
        err.set_status_code(status);
        Err(err)
    }

    /// The replication routes: `rest` is what follows `replication/`; `?rule=ID`
    /// names one of a bucket's rules (needed when it has several).
    async fn replication(
        &self,
        method: &Method,
        rest: &[&str],
        uri: &Uri,
        body: Body,
    ) -> S3Result<S3Response<Body>> {
        let r = &self.rules;
        let id = query_param(uri, "rule");
        let id = id.as_deref();
        let e = RulesError::into_s3;
        match (method, rest) {
            (&Method::GET, []) => json(StatusCode::OK, &r.list().await.map_err(e)?),
            (&Method::PUT, [bucket]) => {
                let req: AddRule = json_body_required(body).await?;
                json(StatusCode::OK, &r.add(bucket, req).await.map_err(e)?)
            }
            (&Method::DELETE, [bucket]) => {
                r.remove(bucket, id).await.map_err(e)?;
                json(StatusCode::OK, &serde_json::json!({ "removed": bucket }))
            }
            (&Method::POST, [bucket, verb @ ("pause" | "resume")]) => {
                let info = r.set_paused(bucket, id, *verb == "pause").await;
                json(StatusCode::OK, &info.map_err(e)?)
            }
            (&Method::GET, [bucket, "status"]) => {
                json(StatusCode::OK, &r.status(bucket, id).await.map_err(e)?)
            }
            (&Method::GET, [bucket, "statuses"]) => {
                json(StatusCode::OK, &r.statuses(bucket, id).await.map_err(e)?)
            }
            (&Method::POST, [bucket, "run"]) => {
                json(StatusCode::OK, &r.run_now(bucket, id).await.map_err(e)?)
            }
            (&Method::POST, [bucket, "requeue"]) => {
                let n = r.requeue(bucket, id).await.map_err(e)?;
                json(StatusCode::OK, &serde_json::json!({ "requeued": n }))
            }
            _ => Err(s3_error!(NotImplemented, "Unknown admin operation")),
        }
    }

    /// Makes a replica bucket writable (its source is lost).
    async fn promote(&self, bucket: &str) -> S3Result<S3Response<Body>> {
        if !self.replicas.promote(bucket).await.map_err(meta_error)? {
            return Err(s3_error!(
                InvalidRequest,
                "The bucket is not a replica; it is writable already."
            ));
        }
        tracing::warn!(bucket, "replica bucket promoted to writable");
        json(StatusCode::OK, &serde_json::json!({ "promoted": bucket }))
    }

    /// The users routes: `rest` is what follows `users/`.
    async fn users(
        &self,
        method: &Method,
        rest: &[&str],
        body: Body,
    ) -> S3Result<S3Response<Body>> {
        let u = &self.users;
        match (method, rest) {
            (&Method::GET, []) => json(StatusCode::OK, &u.list().await.map_err(users_error)?),
            (&Method::POST, [name]) => {
                let req: AddUserRequest = json_body(body).await?;
                for bucket in req.grants.keys() {
                    check_grant_target(bucket)?;
                }
                json(
                    StatusCode::OK,
                    &u.add(name, req.grants).await.map_err(users_error)?,
                )
            }
            (&Method::DELETE, [name]) => {
                u.remove(name).await.map_err(users_error)?;
                json(StatusCode::OK, &serde_json::json!({ "removed": name }))
            }
            (&Method::POST, [name, verb @ ("enable" | "disable")]) => {
                u.set_enabled(name, *verb == "enable")
                    .await
                    .map_err(users_error)?;
                json(
                    StatusCode::OK,
                    &serde_json::json!({ "name": name, "enabled": *verb == "enable" }),
                )
            }
            (&Method::POST, [name, "rotate-key"]) => json(
                StatusCode::OK,
                &u.rotate_key(name).await.map_err(users_error)?,
            ),
            (&Method::PUT, [name, "grants", bucket]) => {
                check_grant_target(bucket)?;
                let req: GrantRequest = json_body_required(body).await?;
                let info = u.grant(name, bucket, Some(req.permission)).await;
                json(StatusCode::OK, &info.map_err(users_error)?)
            }
            (&Method::DELETE, [name, "grants", bucket]) => {
                let info = u.grant(name, bucket, None).await;
                json(StatusCode::OK, &info.map_err(users_error)?)
            }
            _ => Err(s3_error!(NotImplemented, "Unknown admin operation")),
        }
    }

    async fn verify(&self, uri: &Uri) -> S3Result<S3Response<Body>> {
        let bucket = query_param(uri, "bucket");
        let repair = query_flag(uri, "repair");
        if let Some(b) = &bucket {
            if repair {
                return Err(s3_error!(
                    InvalidArgument,
                    "repair works on the whole store; leave out the bucket"
                ));
            }
            self.meta
                .get_bucket(b)
                .await
                .map_err(meta_error)?
                .ok_or_else(no_such_bucket)?;
        }
        // No cleaner pass runs during a repair, and none starts.
        let _cleaner = if repair {
            Some(self.cleaner.hold_off().await.map_err(cleaner_error)?)
        } else {
            None
        };
        let verify =
            || crate::verify::verify(&self.meta, &self.segments, bucket.clone(), &self.jobs);
        let report = verify().await.map_err(|e| internal("verify failed", &e))?;
        let outcome = if repair {
            let done =
                crate::repair::repair(&self.meta, &self.segments, self.cfg.segment_size, &report)
                    .await
                    .map_err(|e| internal("repair failed", &e))?;
            VerifyOutcome {
                report: verify().await.map_err(|e| internal("verify failed", &e))?,
                repair: Some(done),
            }
        } else {
            VerifyOutcome {
                report,
                repair: None,
            }
        };
        json(StatusCode::OK, &outcome)
    }

    async fn gc(&self, uri: &Uri) -> S3Result<S3Response<Body>> {
        let dry_run = query_flag(uri, "dry-run");
        let grace = query_param(uri, "grace-secs")
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    s3_error!(
                        InvalidArgument,
                        "grace-secs must be a whole number of seconds"
                    )
                })
            })
            .transpose()?
            .map(std::time::Duration::from_secs);
        let report = self
            .cleaner
            .run(GcOptions { dry_run, grace })
            .await
            .map_err(cleaner_error)?;
        json(StatusCode::OK, &report)
    }

    async fn lifecycle(&self) -> S3Result<S3Response<Body>> {
        let report = self.lifecycle.run_once().await.map_err(|e| {
            let busy = matches!(e, LifecycleError::Busy(_));
            pass_error("lifecycle pass failed", &e, busy)
        })?;
        json(StatusCode::OK, &report)
    }

    async fn stats(&self, uri: &Uri) -> S3Result<S3Response<Body>> {
        let mut report = stats::collect(&self.meta, self.cfg.tier.is_some())
            .await
            .map_err(meta_error)?;
        report.disk = stats::disk_usage(&self.cfg.data_dir);
        let reading = self.received.clock.reading();
        report.retention_clock = Some(stats::RetentionClockReport {
            clock_ms: reading.clock_ms,
            wall_ms: reading.wall_ms,
        });
        if let Some(b) = query_param(uri, "bucket") {
            report.buckets.retain(|r| r.name == b);
            if report.buckets.is_empty() {
                return Err(no_such_bucket());
            }
        }
        json(StatusCode::OK, &report)
    }

    async fn set_quota(&self, body: Body) -> S3Result<S3Response<Body>> {
        let req: QuotaRequest = json_body(body).await?;
        self.meta
            .set_quota(req.bucket.clone(), req.bytes)
            .await
            .map_err(meta_error)?;
        tracing::info!(bucket = ?req.bucket, bytes = ?req.bytes, "quota set through the admin API");
        self.quotas().await
    }

    async fn set_bucket_tier(&self, name: &str, body: Body) -> S3Result<S3Response<Body>> {
        let req: BucketTierRequest = json_body_required(body).await?;
        if self.cfg.tier.is_none() {
            return Err(s3_error!(
                InvalidArgument,
                "This store has no cloud tier: add a [tier] section to the config."
            ));
        }
        self.meta
            .set_bucket_tier(name.to_owned(), req.after_secs)
            .await
            .map_err(meta_error)?;
        tracing::info!(bucket = name, after_secs = ?req.after_secs, "bucket tier policy set through the admin API");
        let buckets = self.meta.bucket_tiers().await.map_err(meta_error)?;
        json(StatusCode::OK, &BucketTiers { buckets })
    }

    async fn quotas(&self) -> S3Result<S3Response<Body>> {
        json(
            StatusCode::OK,
            &self.meta.quotas().await.map_err(meta_error)?,
        )
    }

    async fn create_bucket(&self, name: &str, body: Body) -> S3Result<S3Response<Body>> {
        let req: CreateBucketRequest = json_body(body).await?;
        if !creatable_bucket_name(name) {
            return Err(s3_error!(
                InvalidBucketName,
                "The specified bucket is not valid."
            ));
        }
        let chunking =
            (req.chunk_avg.is_some() || req.chunk_min.is_some() || req.chunk_max.is_some())
                .then_some(ChunkingConfig {
                    avg: req.chunk_avg,
                    min: req.chunk_min,
                    max: req.chunk_max,
                });
        let mut rec = self
            .cfg
            .bucket_record(name, chunking, req.compression_level)
            .map_err(|e| S3Error::with_message(S3ErrorCode::InvalidArgument, e.to_string()))?;
        if req.object_lock {
            rec = rec.with_object_lock();
        }
        self.meta
            .create_bucket(name, rec.clone())
            .await
            .map_err(meta_error)?;
        tracing::info!(
            bucket = name,
            avg = rec.chunking.avg,
            level = rec.compression_level,
            "bucket created through the admin API"
        );
        json(StatusCode::OK, &settings(name, &rec))
    }

    async fn get_bucket(&self, name: &str) -> S3Result<S3Response<Body>> {
        let rec = self
            .meta
            .get_bucket(name)
            .await
            .map_err(meta_error)?
            .ok_or_else(no_such_bucket)?;
        json(StatusCode::OK, &settings(name, &rec))
    }
}

/// A grant names a bucket by S3's rules, or `*` for every bucket.
fn check_grant_target(bucket: &str) -> S3Result<()> {
    if bucket == ALL_BUCKETS || valid_bucket_name(bucket) {
        return Ok(());
    }
    Err(S3Error::with_message(
        S3ErrorCode::InvalidArgument,
        format!("grant on {bucket:?}: name a bucket, or * for every bucket"),
    ))
}

fn users_error(e: UsersError) -> S3Error {
    let (code, status) = match &e {
        UsersError::NoSuchUser(_) => ("NoSuchEntity", StatusCode::NOT_FOUND),
        UsersError::UserExists(_) => ("EntityAlreadyExists", StatusCode::CONFLICT),
        UsersError::InvalidName(_) => ("InvalidArgument", StatusCode::BAD_REQUEST),
        _ => return internal("user change failed", &e),
    };
    let mut err = S3Error::with_message(S3ErrorCode::Custom(code.into()), e.to_string());
    err.set_status_code(status);
    err
}

fn settings(name: &str, rec: &crate::meta::BucketRecord) -> BucketSettings {
    BucketSettings {
        name: name.to_owned(),
        chunk_min: rec.chunking.min,
        chunk_avg: rec.chunking.avg,
        chunk_max: rec.chunking.max,
        compression_level: rec.compression_level,
    }
}

#[async_trait::async_trait]
impl S3Route for AdminApi {
    fn is_match(
        &self,
        _method: &Method,
        uri: &Uri,
        _headers: &HeaderMap,
        _ext: &mut http::Extensions,
    ) -> bool {
        uri.path().starts_with(PREFIX)
    }

    /// Root, or a user holding the admin grant on `*`; s3s has verified the signature.
    async fn check_access(&self, req: &mut S3Request<Body>) -> S3Result<()> {
        let who = req
            .credentials
            .as_ref()
            .and_then(|c| self.users.principal(&c.access_key));
        match who {
            Some(p) if p.is_admin() => Ok(()),
            Some(p) => {
                tracing::info!(user = p.name(), path = %req.uri.path(), "admin API refused");
                Err(s3_error!(
                    AccessDenied,
                    "The admin API needs the admin grant on *."
                ))
            }
            None => Err(s3_error!(AccessDenied, "Access Denied")),
        }
    }

    async fn call(&self, req: S3Request<Body>) -> S3Result<S3Response<Body>> {
        let path = req.uri.path().strip_prefix(PREFIX).unwrap_or("").to_owned();
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        match (&req.method, segments.as_slice()) {
            (&Method::GET, ["stats"]) => self.stats(&req.uri).await,
            (&Method::GET, ["jobs"]) => json(StatusCode::OK, &self.jobs.list()),
            (&Method::PUT, ["buckets", name]) => self.create_bucket(name, req.input).await,
            (&Method::GET, ["buckets", name]) => self.get_bucket(name).await,
            (&Method::POST, ["gc"]) => self.gc(&req.uri).await,
            (&Method::POST, ["lifecycle", "run"]) => self.lifecycle().await,
            (&Method::POST, ["verify"]) => self.verify(&req.uri).await,
            (&Method::GET, ["quotas"]) => self.quotas().await,
            (&Method::PUT, ["quotas"]) => self.set_quota(req.input).await,
            (m, ["users", rest @ ..]) => self.users(m, rest, req.input).await,
            (m, ["replication", rest @ ..]) => self.replication(m, rest, &req.uri, req.input).await,
            (m, ["replication-targets", rest @ ..]) => self.targets(m, rest, req.input).await,
            (&Method::POST, ["buckets", name, "promote"]) => self.promote(name).await,
            (&Method::PUT, ["buckets", name, "tier"]) => {
                self.set_bucket_tier(name, req.input).await
            }
            (&Method::POST, ["seed", verb @ ("export" | "import")]) => {
                self.seed(verb, req.input).await
            }
            _ => Err(s3_error!(NotImplemented, "Unknown admin operation")),
        }
    }
}

/// A pass that did not run: 409 OperationAborted while another gateway of the
/// cluster runs the same worker (`busy`), else as any internal failure.
fn pass_error(what: &str, e: &(dyn std::error::Error + 'static), busy: bool) -> S3Error {
    if busy {
        return S3Error::with_message(S3ErrorCode::OperationAborted, e.to_string());
    }
    internal(what, e)
}

fn cleaner_error(e: CleanerError) -> S3Error {
    pass_error(
        "cleaner pass failed",
        &e,
        matches!(e, CleanerError::Busy(_)),
    )
}
