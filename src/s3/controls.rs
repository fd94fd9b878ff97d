//! Put/Get/DeletePublicAccessBlock and Put/Get/DeleteBucketOwnershipControls: S3's
//! XML to and from `acl::PublicAccessBlock` and `acl::ObjectOwnership`, stored as
//! the bucket's documents. What they do is enforced where ACLs are set
//! (`s3/acl.rs`) and where they are consulted (`access`).

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::HoardS3;
use super::acl::acl_error;
use crate::acl::{self, ObjectOwnership as Ownership};
use crate::meta::BucketConfigKind;

/// The ownership a request names, as S3 spells it.
pub(super) fn ownership_of(o: &ObjectOwnership) -> S3Result<Ownership> {
    match o.as_str() {
        ObjectOwnership::BUCKET_OWNER_ENFORCED => Ok(Ownership::BucketOwnerEnforced),
        ObjectOwnership::BUCKET_OWNER_PREFERRED => Ok(Ownership::BucketOwnerPreferred),
        ObjectOwnership::OBJECT_WRITER => Ok(Ownership::ObjectWriter),
        other => Err(s3_error!(
            InvalidArgument,
            "Invalid x-amz-object-ownership: {}",
            other
        )),
    }
}

impl HoardS3 {
    /// Sets a bucket's ownership control; BucketOwnerEnforced only while its ACL
    /// is private, as S3 requires.
    pub(super) async fn set_ownership(&self, bucket: &str, o: Ownership) -> S3Result<()> {
        if o == Ownership::BucketOwnerEnforced && self.controls(bucket).await?.acl.is_some() {
            return Err(crate::s3_error::custom(
                "InvalidBucketAclWithObjectOwnership",
                "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting",
                http::StatusCode::BAD_REQUEST,
            ));
        }
        acl::store_doc(&self.meta, bucket, BucketConfigKind::Ownership, Some(&o))
            .await
            .map_err(acl_error)
    }

    pub(super) async fn put_public_access_block_impl(
        &self,
        req: S3Request<PutPublicAccessBlockInput>,
    ) -> S3Result<S3Response<PutPublicAccessBlockOutput>> {
        let i = req.input;
        self.bucket(&i.bucket).await?;
        let c = i.public_access_block_configuration;
        let block = acl::PublicAccessBlock {
            block_public_acls: c.block_public_acls.unwrap_or(false),
            ignore_public_acls: c.ignore_public_acls.unwrap_or(false),
            block_public_policy: c.block_public_policy.unwrap_or(false),
            restrict_public_buckets: c.restrict_public_buckets.unwrap_or(false),
        };
        acl::store_doc(
            &self.meta,
            &i.bucket,
            BucketConfigKind::PublicAccessBlock,
            Some(&block),
        )
        .await
        .map_err(acl_error)?;
        tracing::info!(bucket = %i.bucket, ?block, "public access block set");
        Ok(S3Response::new(PutPublicAccessBlockOutput::default()))
    }

    pub(super) async fn get_public_access_block_impl(
        &self,
        req: S3Request<GetPublicAccessBlockInput>,
    ) -> S3Result<S3Response<GetPublicAccessBlockOutput>> {
        let bucket = &req.input.bucket;
        self.bucket(bucket).await?;
        let block: acl::PublicAccessBlock =
            acl::load_doc(&self.meta, bucket, BucketConfigKind::PublicAccessBlock)
                .await
                .map_err(acl_error)?
                .ok_or_else(|| {
                    crate::s3_error::custom(
                        "NoSuchPublicAccessBlockConfiguration",
                        "The public access block configuration was not found",
                        http::StatusCode::NOT_FOUND,
                    )
                })?;
        Ok(S3Response::new(GetPublicAccessBlockOutput {
            public_access_block_configuration: Some(PublicAccessBlockConfiguration {
                block_public_acls: Some(block.block_public_acls),
                ignore_public_acls: Some(block.ignore_public_acls),
                block_public_policy: Some(block.block_public_policy),
                restrict_public_buckets: Some(block.restrict_public_buckets),
            }),
        }))
    }

    pub(super) async fn delete_public_access_block_impl(
        &self,
        req: S3Request<DeletePublicAccessBlockInput>,
    ) -> S3Result<S3Response<DeletePublicAccessBlockOutput>> {
        let bucket = &req.input.bucket;
        self.bucket(bucket).await?;
        acl::store_doc::<acl::PublicAccessBlock>(
            &self.meta,
            bucket,
            BucketConfigKind::PublicAccessBlock,
            None,
        )
        .await
        .map_err(acl_error)?;
        Ok(S3Response::new(DeletePublicAccessBlockOutput::default()))
    }

    pub(super) async fn put_bucket_ownership_controls_impl(
        &self,
        req: S3Request<PutBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<PutBucketOwnershipControlsOutput>> {
        let i = req.input;
        self.bucket(&i.bucket).await?;
        let [rule] = i.ownership_controls.rules.as_slice() else {
            return Err(super::malformed_xml());
        };
        self.set_ownership(&i.bucket, ownership_of(&rule.object_ownership)?)
            .await?;
        Ok(S3Response::new(PutBucketOwnershipControlsOutput::default()))
    }

    pub(super) async fn get_bucket_ownership_controls_impl(
        &self,
        req: S3Request<GetBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<GetBucketOwnershipControlsOutput>> {
        let bucket = &req.input.bucket;
        self.bucket(bucket).await?;
        let o = self.controls(bucket).await?.ownership.ok_or_else(|| {
            crate::s3_error::custom(
                "OwnershipControlsNotFoundError",
                "The bucket ownership controls were not found",
                http::StatusCode::NOT_FOUND,
            )
        })?;
        let name = match o {
            Ownership::BucketOwnerEnforced => ObjectOwnership::BUCKET_OWNER_ENFORCED,
            Ownership::BucketOwnerPreferred => ObjectOwnership::BUCKET_OWNER_PREFERRED,
            Ownership::ObjectWriter => ObjectOwnership::OBJECT_WRITER,
        };
        Ok(S3Response::new(GetBucketOwnershipControlsOutput {
            ownership_controls: Some(OwnershipControls {
                rules: vec![OwnershipControlsRule {
                    object_ownership: ObjectOwnership::from_static(name),
                }],
            }),
        }))
    }

    pub(super) async fn delete_bucket_ownership_controls_impl(
        &self,
        req: S3Request<DeleteBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<DeleteBucketOwnershipControlsOutput>> {
        let bucket = &req.input.bucket;
        self.bucket(bucket).await?;
        acl::store_doc::<Ownership>(&self.meta, bucket, BucketConfigKind::Ownership, None)
            .await
            .map_err(acl_error)?;
        Ok(S3Response::new(
            DeleteBucketOwnershipControlsOutput::default(),
        ))
    }
}
