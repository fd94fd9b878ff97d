//! The replica side of the protocol: the endpoints under `replication::PREFIX`.
//! Callers must hold the `replication` grant (or admin) on the bucket they name.

use std::sync::Arc;

use http::{Method, StatusCode, Uri};
use s3s::{Body, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

use super::{Hello, ReplicaBuckets};
use crate::admin::{json, json_body_required, query_param};
use crate::meta::{MetaError, Permission};
use crate::metrics::{Metrics, SideLabels};
use crate::s3::{meta_error, no_such_bucket};
use crate::users::Users;

pub struct Receiver {
    replicas: Arc<ReplicaBuckets>,
    users: Arc<Users>,
    metrics: Arc<Metrics>,
}

impl Receiver {
    pub fn new(replicas: Arc<ReplicaBuckets>, users: Arc<Users>, metrics: Arc<Metrics>) -> Self {
        Receiver {
            replicas,
            users,
            metrics,
        }
    }

    /// The signer must hold `replication` (or `admin`) on the bucket the request names.
    pub fn check_access(&self, req: &S3Request<Body>) -> S3Result<()> {
        let who = req
            .credentials
            .as_ref()
            .and_then(|c| self.users.principal(&c.access_key))
            .ok_or_else(|| s3_error!(AccessDenied, "Access Denied"))?;
        let bucket = bucket_of(&req.uri)?;
        match who.permission(bucket) {
            Some(Permission::Replication | Permission::Admin) => Ok(()),
            _ => {
                tracing::info!(user = who.name(), bucket, "replication endpoint refused");
                Err(s3_error!(
                    AccessDenied,
                    "Replication needs a key with the replication grant on the replica bucket."
                ))
            }
        }
    }

    pub async fn call(&self, req: S3Request<Body>) -> S3Result<S3Response<Body>> {
        let path = req.uri.path().strip_prefix(super::PREFIX).unwrap_or("");
        match (&req.method, path) {
            (&Method::POST, "hello") => {
                let bucket = bucket_of(&req.uri)?.to_owned();
                self.hello(&bucket, req.input).await
            }
            _ => Err(s3_error!(NotImplemented, "Unknown replication operation")),
        }
    }

    async fn hello(&self, bucket: &str, body: Body) -> S3Result<S3Response<Body>> {
        let theirs: Hello = json_body_required(body).await?;
        let ours = Hello::ours();
        if let Err(why) = ours.negotiate(&theirs) {
            tracing::warn!(bucket, %why, "replication hello refused");
            self.metrics
                .replication_hello_refused
                .get_or_create(&SideLabels {
                    side: "replica".into(),
                })
                .inc();
            let mut e = S3Error::with_message(
                S3ErrorCode::Custom("IncompatibleReplicationProtocol".into()),
                why,
            );
            e.set_status_code(StatusCode::BAD_REQUEST);
            return Err(e);
        }
        self.replicas
            .mark(bucket, &theirs)
            .await
            .map_err(|e| match e {
                MetaError::NoSuchBucket => no_such_bucket(),
                MetaError::BucketNotEmpty => s3_error!(
                    BucketNotEmpty,
                    "The bucket holds objects of its own; replicate into an empty bucket."
                ),
                other => meta_error(other),
            })?;
        tracing::info!(bucket, source = %theirs.software, "replication hello accepted");
        json(StatusCode::OK, &ours)
    }
}

fn bucket_of(uri: &Uri) -> S3Result<&str> {
    query_param(uri, "bucket")
        .filter(|b| !b.is_empty())
        .ok_or_else(|| s3_error!(InvalidArgument, "name the replica bucket: ?bucket=B"))
}
