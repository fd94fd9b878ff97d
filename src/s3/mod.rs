//! `s3` owns the S3 protocol surface: the `s3s::S3` implementation that maps each
//! operation onto the metadata store and the ingest/retrieve pipelines, the S3
//! semantics around them (conditions, ranges, listing rules, checksums) and the
//! mapping of internal errors to S3 error codes.
//!
//! Every operation runs through [`HoardS3::observe`], which records its count,
//! latency and error code in the metrics.

mod acl;
mod controls;
mod copy;
mod cors;
mod lifecycle;
mod list;
mod lock;
mod multipart;
mod object;
mod policy;
mod replication;
mod sosapi;
mod versioning;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use s3s::dto::*;
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

use crate::config::Config;
use crate::ingest::{Ingest, IngestError};
use crate::meta::{BucketConfigKind, BucketRecord, MetaError, MetaStore};
use crate::metrics::Metrics;
use crate::names::RESERVED_BUCKETS;
use crate::retrieve::{Retrieve, RetrieveError};
use crate::s3_error::{internal, meta_error, no_such_bucket};

pub struct HoardS3 {
    pub(crate) cfg: Arc<Config>,
    pub(crate) meta: MetaStore,
    pub(crate) ingest: Arc<Ingest>,
    pub(crate) retrieve: Arc<Retrieve>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) owner_id: String,
    pub(crate) users: Arc<crate::users::Users>,
    pub(crate) rules: Arc<crate::replication::rules::Rules>,
    pub(crate) clock: Arc<crate::retention::RetentionClock>,
}

/// S3's 400 MalformedXML, for a document that parsed but breaks the schema.
pub(super) fn malformed_xml() -> S3Error {
    s3_error!(
        MalformedXML,
        "The XML you provided was not well-formed or did not validate against our published schema"
    )
}

/// A rule's ID (lifecycle, CORS): at most 255 characters, as S3 allows.
pub(super) fn rule_id(id: String) -> S3Result<String> {
    const MAX_ID_LEN: usize = 255;
    if id.len() > MAX_ID_LEN {
        return Err(s3_error!(
            InvalidArgument,
            "ID length should not exceed allowed limit of {}",
            MAX_ID_LEN
        ));
    }
    Ok(id)
}

impl HoardS3 {
    pub fn new(
        cfg: Arc<Config>,
        meta: MetaStore,
        ingest: Arc<Ingest>,
        retrieve: Arc<Retrieve>,
        metrics: Arc<Metrics>,
        owner_id: String,
        users: Arc<crate::users::Users>,
        rules: Arc<crate::replication::rules::Rules>,
        clock: Arc<crate::retention::RetentionClock>,
    ) -> Self {
        HoardS3 {
            cfg,
            meta,
            ingest,
            retrieve,
            metrics,
            owner_id,
            users,
            rules,
            clock,
        }
    }

    /// Runs one operation, recording its count, latency and error code.
    async fn observe<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = S3Result<T>>,
    ) -> S3Result<T> {
        let t0 = Instant::now();
        let result = fut.await;
        let code = result.as_ref().err().map(|e| e.code().as_str().to_owned());
        self.metrics
            .observe(op, t0.elapsed().as_secs_f64(), code.as_deref());
        result
    }

    pub(crate) fn owner(&self) -> Owner {
        Owner {
            display_name: Some(crate::users::OWNER_DISPLAY_NAME.into()),
            id: Some(self.owner_id.clone()),
        }
    }

    /// CreateBucket of a name that exists. Its creator (root, who owns every
    /// bucket, counts as each one's creator too) gets what S3 answers an owner:
    /// in us-east-1 200 OK with the bucket's ACL reset to the request's, elsewhere
    /// 409 BucketAlreadyOwnedByYou. Anyone else gets 409 BucketAlreadyExists.
    async fn create_existing_bucket(
        &self,
        name: &str,
        requester: &str,
        acl: Option<crate::meta::Acl>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let creator = self
            .meta
            .bucket_config(name, BucketConfigKind::Creator)
            .await
            .map_err(meta_error)?
            .map_or_else(
                || "root".to_owned(),
                |b| String::from_utf8_lossy(&b).into_owned(),
            );
        if requester != "root" && requester != creator {
            tracing::info!(bucket = %name, requester, creator, "bucket name taken by another user");
            return Err(s3_error!(
                BucketAlreadyExists,
                "The requested bucket name is not available. The bucket namespace is shared by all users of the system. Please select a different name and try again."
            ));
        }
        if self.cfg.region != "us-east-1" {
            return Err(meta_error(MetaError::BucketExists));
        }
        self.check_acl_allowed(name, acl.as_ref()).await?;
        self.set_bucket_acl(name, acl).await?;
        tracing::info!(bucket = %name, "bucket created again by its owner: ACL reset");
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{name}")),
        }))
    }

    pub(crate) async fn bucket(&self, name: &str) -> S3Result<BucketRecord> {
        self.meta
            .get_bucket(name)
            .await
            .map_err(meta_error)?
            .ok_or_else(no_such_bucket)
    }
}

pub(crate) fn ingest_error(e: IngestError) -> S3Error {
    match e {
        IngestError::SlowDown => s3_error!(
            SlowDown,
            "Too many concurrent uploads; please reduce your request rate."
        ),
        IngestError::Body(source) => body_error(source),
        IngestError::Incomplete { got, expected } => S3Error::with_message(
            S3ErrorCode::IncompleteBody,
            format!("The request body had {got} bytes, but {expected} were declared."),
        ),
        IngestError::TooLarge => s3_error!(
            EntityTooLarge,
            "Your proposed upload exceeds the maximum allowed object size."
        ),
        IngestError::Meta(e) => meta_error(e),
        IngestError::Segment(e) if e.is_unavailable() => {
            tracing::warn!(error = %e, "upload refused: the segment store is unavailable");
            s3_error!(
                SlowDown,
                "The segment store is unavailable; nothing was stored. Please retry."
            )
        }
        other => internal("upload failed", &other),
    }
}

/// Maps a failure while reading a request body. s3s's body decoders are private
/// types, so their errors are told apart by their text.
fn body_error(source: s3s::StdError) -> S3Error {
    let source = match source.downcast::<S3Error>() {
        Ok(s3) => return *s3,
        Err(other) => other,
    };
    let text = source.to_string();
    tracing::info!(error = %text, "upload body failed");
    if text.contains("RequestTimeout") {
        // An aws-chunked body wraps the idle timeout's error in its own.
        crate::idle_body::request_timeout()
    } else if text.contains("SignatureMismatch") {
        s3_error!(
            SignatureDoesNotMatch,
            "The chunk signature does not match the signing key and data."
        )
    } else if text.contains("Sha256Mismatch") {
        let mut e = S3Error::with_message(
            S3ErrorCode::Custom("XAmzContentSHA256Mismatch".into()),
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        );
        e.set_status_code(http::StatusCode::BAD_REQUEST);
        e
    } else if text.contains("FormatError") || text.contains("TooLarge") || text.contains("TooMany")
    {
        s3_error!(InvalidRequest, "The aws-chunked body is malformed.")
    } else {
        s3_error!(
            IncompleteBody,
            "You did not provide the number of bytes specified by the Content-Length HTTP header."
        )
    }
}

pub(crate) fn retrieve_error(e: RetrieveError) -> S3Error {
    match e {
        RetrieveError::Segment(e) if e.is_unavailable() => {
            tracing::warn!(error = %e, "read failed: the segment store is unavailable");
            s3_error!(
                ServiceUnavailable,
                "The segment store is unavailable. Please retry."
            )
        }
        other => internal("read failed", &other),
    }
}

#[async_trait::async_trait]
impl S3 for HoardS3 {
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        self.observe("CreateBucket", async {
            let name = req.input.bucket;
            if RESERVED_BUCKETS.contains(&name.as_str()) {
                return Err(s3_error!(
                    InvalidBucketName,
                    "This bucket name is reserved by hoard"
                ));
            }
            let mut rec = self
                .cfg
                .bucket_record(&name, None, None)
                .map_err(|e| internal("bucket settings", &e))?;
            if req.input.object_lock_enabled_for_bucket == Some(true) {
                rec = rec.with_object_lock();
            }
            let canned = req.input.acl.as_ref().map(|a| a.as_str());
            let acl = self.requested_acl(canned, &req.headers, true)?.flatten();
            let ownership = req
                .input
                .object_ownership
                .as_ref()
                .map(controls::ownership_of)
                .transpose()?;
            if acl.is_some() && ownership == Some(crate::acl::ObjectOwnership::BucketOwnerEnforced)
            {
                return Err(crate::s3_error::custom(
            "InvalidBucketAclWithObjectOwnership",
            "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting",
            http::StatusCode::BAD_REQUEST,
        ));
            }
            let creator = req
                .credentials
                .as_ref()
                .and_then(|c| self.users.principal(&c.access_key))
                .map_or_else(|| "root".to_owned(), |p| p.name().to_owned());
            match self.meta.create_bucket(&name, rec).await {
                Ok(()) => {}
                Err(MetaError::BucketExists) => {
                    return self.create_existing_bucket(&name, &creator, acl).await;
                }
                Err(e) => return Err(meta_error(e)),
            }
            self.meta
                .set_bucket_config(
                    &name,
                    BucketConfigKind::Creator,
                    Some(creator.into_bytes()),
                )
                .await
                .map_err(meta_error)?;
            if let Some(o) = ownership {
                self.set_ownership(&name, o).await?;
            }
            if acl.is_some() {
                self.set_bucket_acl(&name, acl).await?;
            }
            tracing::info!(bucket = %name, "bucket created");
            Ok(S3Response::new(CreateBucketOutput {
                location: Some(format!("/{name}")),
            }))
        })
        .await
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.observe("DeleteBucket", async {
            self.meta
                .delete_bucket(&req.input.bucket)
                .await
                .map_err(meta_error)?;
            tracing::info!(bucket = %req.input.bucket, "bucket deleted");
            Ok(S3Response::new(DeleteBucketOutput::default()))
        })
        .await
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.observe("HeadBucket", async {
            self.bucket(&req.input.bucket).await?;
            Ok(S3Response::new(HeadBucketOutput {
                bucket_region: Some(self.cfg.region.clone()),
                ..Default::default()
            }))
        })
        .await
    }

    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        self.observe("ListBuckets", async {
            // Only the buckets the signer holds a grant on.
            let who = req
                .credentials
                .as_ref()
                .and_then(|c| self.users.principal(&c.access_key))
                .ok_or_else(|| s3_error!(AccessDenied, "Access Denied"))?;
            let buckets = self.meta.list_buckets().await.map_err(meta_error)?;
            let buckets = buckets
                .into_iter()
                .filter(|(name, _)| who.permission(name).is_some())
                .map(|(name, rec)| Bucket {
                    name: Some(name),
                    creation_date: Some(timestamp(rec.created_ms)),
                    bucket_region: Some(self.cfg.region.clone()),
                })
                .collect();
            Ok(S3Response::new(ListBucketsOutput {
                buckets: Some(buckets),
                owner: Some(self.owner()),
                ..Default::default()
            }))
        })
        .await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.observe("GetBucketLocation", async {
            self.bucket(&req.input.bucket).await?;
            // us-east-1 is reported as an empty constraint, as S3 does.
            let location_constraint = (self.cfg.region != "us-east-1")
                .then(|| BucketLocationConstraint::from(self.cfg.region.clone()));
            Ok(S3Response::new(GetBucketLocationOutput {
                location_constraint,
            }))
        })
        .await
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        self.observe("PutObject", self.put_object_impl(req)).await
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        self.observe("GetObject", self.get_object_impl(req)).await
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        self.observe("HeadObject", self.head_object_impl(req)).await
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.observe("DeleteObject", async {
            let i = &req.input;
            if let Some(v) = &i.version_id {
                object::check_version_id(v)?;
            }
            let lock = self.lock_check(
                req.credentials.as_ref(),
                &i.bucket,
                i.bypass_governance_retention.unwrap_or(false),
            );
            let target = crate::meta::DeleteTarget {
                key: i.key.clone(),
                version: i.version_id.clone(),
                condition: object::delete_condition(
                    i.if_match.as_ref().map(|c| match c {
                        ETagCondition::Any => "*",
                        ETagCondition::ETag(e) => e.value(),
                    }),
                    i.if_match_last_modified_time.as_ref(),
                    i.if_match_size,
                )?,
            };
            let outcome = self
                .meta
                .delete_object(&i.bucket, target, lock)
                .await
                .map_err(meta_error)?;
            let Some(outcome) = outcome else {
                return Ok(S3Response::new(DeleteObjectOutput::default()));
            };
            tracing::debug!(bucket = %i.bucket, key = %i.key, version = ?outcome.version_id, "object deleted");
            Ok(S3Response::new(DeleteObjectOutput {
                delete_marker: outcome.delete_marker.then_some(true),
                version_id: outcome.version_id.as_deref().and_then(object::reported_version),
                ..Default::default()
            }))
        })
        .await
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        self.observe("CopyObject", self.copy_object_impl(req)).await
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        self.observe("UploadPartCopy", self.upload_part_copy_impl(req))
            .await
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        self.observe("DeleteObjects", self.delete_objects_impl(req))
            .await
    }

    async fn put_bucket_replication(
        &self,
        req: S3Request<PutBucketReplicationInput>,
    ) -> S3Result<S3Response<PutBucketReplicationOutput>> {
        self.observe(
            "PutBucketReplication",
            self.put_bucket_replication_impl(req),
        )
        .await
    }

    async fn get_bucket_replication(
        &self,
        req: S3Request<GetBucketReplicationInput>,
    ) -> S3Result<S3Response<GetBucketReplicationOutput>> {
        self.observe(
            "GetBucketReplication",
            self.get_bucket_replication_impl(req),
        )
        .await
    }

    async fn delete_bucket_replication(
        &self,
        req: S3Request<DeleteBucketReplicationInput>,
    ) -> S3Result<S3Response<DeleteBucketReplicationOutput>> {
        self.observe(
            "DeleteBucketReplication",
            self.delete_bucket_replication_impl(req),
        )
        .await
    }

    async fn put_bucket_versioning(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        self.observe("PutBucketVersioning", self.put_bucket_versioning_impl(req))
            .await
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        self.observe("GetBucketVersioning", self.get_bucket_versioning_impl(req))
            .await
    }

    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        self.observe("ListObjectVersions", self.list_object_versions_impl(req))
            .await
    }

    async fn put_object_tagging(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        self.observe("PutObjectTagging", self.put_object_tagging_impl(req))
            .await
    }

    async fn get_object_tagging(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        self.observe("GetObjectTagging", self.get_object_tagging_impl(req))
            .await
    }

    async fn delete_object_tagging(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        self.observe("DeleteObjectTagging", self.delete_object_tagging_impl(req))
            .await
    }

    async fn put_bucket_tagging(
        &self,
        req: S3Request<PutBucketTaggingInput>,
    ) -> S3Result<S3Response<PutBucketTaggingOutput>> {
        self.observe("PutBucketTagging", self.put_bucket_tagging_impl(req))
            .await
    }

    async fn get_bucket_tagging(
        &self,
        req: S3Request<GetBucketTaggingInput>,
    ) -> S3Result<S3Response<GetBucketTaggingOutput>> {
        self.observe("GetBucketTagging", self.get_bucket_tagging_impl(req))
            .await
    }

    async fn delete_bucket_tagging(
        &self,
        req: S3Request<DeleteBucketTaggingInput>,
    ) -> S3Result<S3Response<DeleteBucketTaggingOutput>> {
        self.observe("DeleteBucketTagging", self.delete_bucket_tagging_impl(req))
            .await
    }

    async fn get_object_attributes(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        self.observe("GetObjectAttributes", self.get_object_attributes_impl(req))
            .await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        self.observe(
            "CreateMultipartUpload",
            self.create_multipart_upload_impl(req),
        )
        .await
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        self.observe("UploadPart", self.upload_part_impl(req)).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        self.observe(
            "CompleteMultipartUpload",
            self.complete_multipart_upload_impl(req),
        )
        .await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.observe(
            "AbortMultipartUpload",
            self.abort_multipart_upload_impl(req),
        )
        .await
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        self.observe("ListParts", self.list_parts_impl(req)).await
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        self.observe(
            "ListMultipartUploads",
            self.list_multipart_uploads_impl(req),
        )
        .await
    }

    async fn put_bucket_acl(
        &self,
        req: S3Request<PutBucketAclInput>,
    ) -> S3Result<S3Response<PutBucketAclOutput>> {
        self.observe("PutBucketAcl", self.put_bucket_acl_impl(req))
            .await
    }

    async fn get_bucket_acl(
        &self,
        req: S3Request<GetBucketAclInput>,
    ) -> S3Result<S3Response<GetBucketAclOutput>> {
        self.observe("GetBucketAcl", self.get_bucket_acl_impl(req))
            .await
    }

    async fn put_object_acl(
        &self,
        req: S3Request<PutObjectAclInput>,
    ) -> S3Result<S3Response<PutObjectAclOutput>> {
        self.observe("PutObjectAcl", self.put_object_acl_impl(req))
            .await
    }

    async fn get_object_acl(
        &self,
        req: S3Request<GetObjectAclInput>,
    ) -> S3Result<S3Response<GetObjectAclOutput>> {
        self.observe("GetObjectAcl", self.get_object_acl_impl(req))
            .await
    }

    async fn put_bucket_policy(
        &self,
        req: S3Request<PutBucketPolicyInput>,
    ) -> S3Result<S3Response<PutBucketPolicyOutput>> {
        self.observe("PutBucketPolicy", self.put_bucket_policy_impl(req))
            .await
    }

    async fn get_bucket_policy(
        &self,
        req: S3Request<GetBucketPolicyInput>,
    ) -> S3Result<S3Response<GetBucketPolicyOutput>> {
        self.observe("GetBucketPolicy", self.get_bucket_policy_impl(req))
            .await
    }

    async fn get_bucket_policy_status(
        &self,
        req: S3Request<GetBucketPolicyStatusInput>,
    ) -> S3Result<S3Response<GetBucketPolicyStatusOutput>> {
        self.observe(
            "GetBucketPolicyStatus",
            self.get_bucket_policy_status_impl(req),
        )
        .await
    }

    async fn delete_bucket_policy(
        &self,
        req: S3Request<DeleteBucketPolicyInput>,
    ) -> S3Result<S3Response<DeleteBucketPolicyOutput>> {
        self.observe("DeleteBucketPolicy", self.delete_bucket_policy_impl(req))
            .await
    }

    async fn put_public_access_block(
        &self,
        req: S3Request<PutPublicAccessBlockInput>,
    ) -> S3Result<S3Response<PutPublicAccessBlockOutput>> {
        self.observe(
            "PutPublicAccessBlock",
            self.put_public_access_block_impl(req),
        )
        .await
    }

    async fn get_public_access_block(
        &self,
        req: S3Request<GetPublicAccessBlockInput>,
    ) -> S3Result<S3Response<GetPublicAccessBlockOutput>> {
        self.observe(
            "GetPublicAccessBlock",
            self.get_public_access_block_impl(req),
        )
        .await
    }

    async fn delete_public_access_block(
        &self,
        req: S3Request<DeletePublicAccessBlockInput>,
    ) -> S3Result<S3Response<DeletePublicAccessBlockOutput>> {
        self.observe(
            "DeletePublicAccessBlock",
            self.delete_public_access_block_impl(req),
        )
        .await
    }

    async fn put_bucket_ownership_controls(
        &self,
        req: S3Request<PutBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<PutBucketOwnershipControlsOutput>> {
        self.observe(
            "PutBucketOwnershipControls",
            self.put_bucket_ownership_controls_impl(req),
        )
        .await
    }

    async fn get_bucket_ownership_controls(
        &self,
        req: S3Request<GetBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<GetBucketOwnershipControlsOutput>> {
        self.observe(
            "GetBucketOwnershipControls",
            self.get_bucket_ownership_controls_impl(req),
        )
        .await
    }

    async fn delete_bucket_ownership_controls(
        &self,
        req: S3Request<DeleteBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<DeleteBucketOwnershipControlsOutput>> {
        self.observe(
            "DeleteBucketOwnershipControls",
            self.delete_bucket_ownership_controls_impl(req),
        )
        .await
    }

    async fn put_bucket_cors(
        &self,
        req: S3Request<PutBucketCorsInput>,
    ) -> S3Result<S3Response<PutBucketCorsOutput>> {
        self.observe("PutBucketCors", self.put_bucket_cors_impl(req))
            .await
    }

    async fn get_bucket_cors(
        &self,
        req: S3Request<GetBucketCorsInput>,
    ) -> S3Result<S3Response<GetBucketCorsOutput>> {
        self.observe("GetBucketCors", self.get_bucket_cors_impl(req))
            .await
    }

    async fn delete_bucket_cors(
        &self,
        req: S3Request<DeleteBucketCorsInput>,
    ) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
        self.observe("DeleteBucketCors", self.delete_bucket_cors_impl(req))
            .await
    }

    async fn put_bucket_lifecycle_configuration(
        &self,
        req: S3Request<PutBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<PutBucketLifecycleConfigurationOutput>> {
        self.observe(
            "PutBucketLifecycleConfiguration",
            self.put_bucket_lifecycle_configuration_impl(req),
        )
        .await
    }

    async fn get_bucket_lifecycle_configuration(
        &self,
        req: S3Request<GetBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketLifecycleConfigurationOutput>> {
        self.observe(
            "GetBucketLifecycleConfiguration",
            self.get_bucket_lifecycle_configuration_impl(req),
        )
        .await
    }

    async fn delete_bucket_lifecycle(
        &self,
        req: S3Request<DeleteBucketLifecycleInput>,
    ) -> S3Result<S3Response<DeleteBucketLifecycleOutput>> {
        self.observe(
            "DeleteBucketLifecycle",
            self.delete_bucket_lifecycle_impl(req),
        )
        .await
    }

    async fn put_object_lock_configuration(
        &self,
        req: S3Request<PutObjectLockConfigurationInput>,
    ) -> S3Result<S3Response<PutObjectLockConfigurationOutput>> {
        self.observe(
            "PutObjectLockConfiguration",
            self.put_object_lock_configuration_impl(req),
        )
        .await
    }

    async fn get_object_lock_configuration(
        &self,
        req: S3Request<GetObjectLockConfigurationInput>,
    ) -> S3Result<S3Response<GetObjectLockConfigurationOutput>> {
        self.observe(
            "GetObjectLockConfiguration",
            self.get_object_lock_configuration_impl(req),
        )
        .await
    }

    async fn put_object_retention(
        &self,
        req: S3Request<PutObjectRetentionInput>,
    ) -> S3Result<S3Response<PutObjectRetentionOutput>> {
        self.observe("PutObjectRetention", self.put_object_retention_impl(req))
            .await
    }

    async fn get_object_retention(
        &self,
        req: S3Request<GetObjectRetentionInput>,
    ) -> S3Result<S3Response<GetObjectRetentionOutput>> {
        self.observe("GetObjectRetention", self.get_object_retention_impl(req))
            .await
    }

    async fn put_object_legal_hold(
        &self,
        req: S3Request<PutObjectLegalHoldInput>,
    ) -> S3Result<S3Response<PutObjectLegalHoldOutput>> {
        self.observe("PutObjectLegalHold", self.put_object_legal_hold_impl(req))
            .await
    }

    async fn get_object_legal_hold(
        &self,
        req: S3Request<GetObjectLegalHoldInput>,
    ) -> S3Result<S3Response<GetObjectLegalHoldOutput>> {
        self.observe("GetObjectLegalHold", self.get_object_legal_hold_impl(req))
            .await
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        self.observe("ListObjects", self.list_objects_v1(req.input))
            .await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.observe("ListObjectsV2", self.list_objects_v2_impl(req.input))
            .await
    }
}

pub(crate) fn timestamp(ms: i64) -> Timestamp {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    Timestamp::from(t)
}
