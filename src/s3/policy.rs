//! Put/Get/DeleteBucketPolicy and GetBucketPolicyStatus: the policy document to
//! and from `policy::BucketPolicy`, stored as the bucket's policy document. A
//! public policy is refused while the bucket's public access block has
//! BlockPublicPolicy. How policies are judged is `access`.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::HoardS3;
use crate::policy::{self, BucketPolicy, PolicyError, Principals};

fn policy_error(e: PolicyError) -> s3s::S3Error {
    match e {
        PolicyError::Malformed(m) => s3_error!(MalformedPolicy, "{}", m),
        e => crate::s3_error::internal("bucket policy", &e),
    }
}

impl HoardS3 {
    /// The bucket's policy, or 404 NoSuchBucketPolicy.
    async fn stored_policy(&self, bucket: &str) -> S3Result<BucketPolicy> {
        self.bucket(bucket).await?;
        policy::load(&self.meta, bucket)
            .await
            .map_err(policy_error)?
            .ok_or_else(|| s3_error!(NoSuchBucketPolicy, "The bucket policy does not exist"))
    }

    pub(super) async fn put_bucket_policy_impl(
        &self,
        req: S3Request<PutBucketPolicyInput>,
    ) -> S3Result<S3Response<PutBucketPolicyOutput>> {
        let i = req.input;
        self.bucket(&i.bucket).await?;
        let users = &self.users;
        let parsed = BucketPolicy::parse(
            &i.policy,
            &i.bucket,
            &Principals {
                account_id: users.account_id(),
                user_exists: &|name| users.has_user(name),
                arn_of_canonical_id: &|id| users.arn_of_canonical_id(id),
            },
        )
        .map_err(policy_error)?;
        if parsed.is_public()
            && self
                .controls(&i.bucket)
                .await?
                .public_access_block
                .block_public_policy
        {
            tracing::info!(bucket = %i.bucket, "public policy refused by BlockPublicPolicy");
            return Err(s3_error!(AccessDenied, "Access Denied"));
        }
        policy::store(&self.meta, &i.bucket, Some(&parsed))
            .await
            .map_err(policy_error)?;
        tracing::info!(bucket = %i.bucket, public = parsed.is_public(), "bucket policy set");
        Ok(S3Response::new(PutBucketPolicyOutput::default()))
    }

    pub(super) async fn get_bucket_policy_impl(
        &self,
        req: S3Request<GetBucketPolicyInput>,
    ) -> S3Result<S3Response<GetBucketPolicyOutput>> {
        let p = self.stored_policy(&req.input.bucket).await?;
        Ok(S3Response::new(GetBucketPolicyOutput {
            policy: Some(p.text().to_owned()),
        }))
    }

    pub(super) async fn get_bucket_policy_status_impl(
        &self,
        req: S3Request<GetBucketPolicyStatusInput>,
    ) -> S3Result<S3Response<GetBucketPolicyStatusOutput>> {
        let p = self.stored_policy(&req.input.bucket).await?;
        Ok(S3Response::new(GetBucketPolicyStatusOutput {
            policy_status: Some(PolicyStatus {
                is_public: Some(p.is_public()),
            }),
        }))
    }

    pub(super) async fn delete_bucket_policy_impl(
        &self,
        req: S3Request<DeleteBucketPolicyInput>,
    ) -> S3Result<S3Response<DeleteBucketPolicyOutput>> {
        let bucket = &req.input.bucket;
        self.bucket(bucket).await?;
        policy::store(&self.meta, bucket, None)
            .await
            .map_err(policy_error)?;
        tracing::info!(%bucket, "bucket policy removed");
        Ok(S3Response::new(DeleteBucketPolicyOutput::default()))
    }
}
