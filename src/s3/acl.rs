//! Put/Get{Bucket,Object}Acl, and the ACLs other requests give (`x-amz-acl` and
//! `x-amz-grant-*` on CreateBucket, PutObject, CopyObject, CreateMultipartUpload):
//! S3's XML and errors around `acl`. A bucket's list is its `BucketConfigKind::Acl`
//! document; an object version's is in its record.
//!
//! Every grantee id must name the owner or a hoard user (400 InvalidArgument
//! otherwise); grants by e-mail are 400 UnresolvableGrantByEmailAddress (hoard
//! knows no e-mail addresses). The owner's own full control is implicit: it is
//! answered first in every GET and never stored.

use s3s::dto::*;
use s3s::{S3Error, S3Request, S3Response, S3Result, s3_error};

use super::{HoardS3, meta_error};
use crate::acl::{self, AclError};
use crate::meta::{Acl, AclGrant, AclPermission, BucketConfigKind, Grantee as AclGrantee};

pub(super) fn acl_error(e: AclError) -> S3Error {
    match e {
        AclError::InvalidCanned(_) => s3_error!(InvalidArgument, "{}", e),
        AclError::CannedAndGrants => s3_error!(InvalidRequest, "{}", e),
        AclError::BadGrant(_) | AclError::UnknownGroup(_) => s3_error!(InvalidArgument, "{}", e),
        AclError::ByEmail => crate::s3_error::custom(
            "UnresolvableGrantByEmailAddress",
            &e.to_string(),
            http::StatusCode::BAD_REQUEST,
        ),
        AclError::Meta(m) => meta_error(m),
        AclError::Unreadable { .. } => crate::s3_error::internal("reading an ACL", &e),
    }
}

fn permission_of(p: &Permission) -> S3Result<AclPermission> {
    Ok(match p.as_str() {
        Permission::FULL_CONTROL => AclPermission::FullControl,
        Permission::READ => AclPermission::Read,
        Permission::WRITE => AclPermission::Write,
        Permission::READ_ACP => AclPermission::ReadAcp,
        Permission::WRITE_ACP => AclPermission::WriteAcp,
        other => return Err(s3_error!(MalformedACLError, "Unknown permission {}", other)),
    })
}

fn xml_permission(p: AclPermission) -> Permission {
    Permission::from_static(match p {
        AclPermission::FullControl => Permission::FULL_CONTROL,
        AclPermission::Read => Permission::READ,
        AclPermission::Write => Permission::WRITE,
        AclPermission::ReadAcp => Permission::READ_ACP,
        AclPermission::WriteAcp => Permission::WRITE_ACP,
    })
}

fn malformed_acl() -> S3Error {
    s3_error!(
        MalformedACLError,
        "The XML you provided was not well-formed or did not validate against our published schema"
    )
}

impl HoardS3 {
    /// Refuses a grantee id that names neither the owner nor a user; drops grants
    /// to the owner (its full control is implicit).
    fn checked(&self, acl: Acl) -> S3Result<Option<Acl>> {
        let owner = self.owner_id.clone();
        let mut grants = Vec::with_capacity(acl.grants.len());
        for g in acl.grants {
            match &g.grantee {
                AclGrantee::Id(id) if *id == owner => continue,
                AclGrantee::Id(id) if self.users.display_name_of(id).is_none() => {
                    return Err(s3_error!(InvalidArgument, "Invalid id"));
                }
                _ => grants.push(g),
            }
        }
        Ok((!grants.is_empty()).then_some(Acl { grants }))
    }

    /// The list a request's `x-amz-acl` or `x-amz-grant-*` headers give, checked;
    /// `None` when it gives none.
    pub(super) fn requested_acl(
        &self,
        canned: Option<&str>,
        headers: &http::HeaderMap,
        for_bucket: bool,
    ) -> S3Result<Option<Option<Acl>>> {
        match acl::from_request(canned, headers, for_bucket).map_err(acl_error)? {
            None => Ok(None),
            Some(None) => Ok(Some(None)),
            Some(Some(acl)) => self.checked(acl).map(Some),
        }
    }

    /// The list a new version gets: what the request's headers give (allowed by
    /// the bucket's controls), else private.
    pub(super) async fn new_version_acl(
        &self,
        bucket: &str,
        canned: Option<&ObjectCannedACL>,
        headers: &http::HeaderMap,
    ) -> S3Result<Option<Acl>> {
        let acl = self
            .requested_acl(canned.map(|c| c.as_str()), headers, false)?
            .flatten();
        self.check_acl_allowed(bucket, acl.as_ref()).await?;
        Ok(acl)
    }

    /// The list an AccessControlPolicy document gives, checked.
    fn policy_acl(&self, policy: AccessControlPolicy) -> S3Result<Option<Acl>> {
        if let Some(id) = policy.owner.and_then(|o| o.id)
            && id != self.owner_id
        {
            return Err(s3_error!(InvalidArgument, "Invalid id"));
        }
        let mut grants = Vec::new();
        for g in policy.grants.unwrap_or_default() {
            let (Some(grantee), Some(permission)) = (g.grantee, g.permission) else {
                return Err(malformed_acl());
            };
            let grantee = match grantee.type_.as_str() {
                Type::CANONICAL_USER => AclGrantee::Id(grantee.id.ok_or_else(malformed_acl)?),
                Type::GROUP => acl::group(grantee.uri.as_deref().ok_or_else(malformed_acl)?)
                    .map_err(acl_error)?,
                Type::AMAZON_CUSTOMER_BY_EMAIL => return Err(acl_error(AclError::ByEmail)),
                _ => return Err(malformed_acl()),
            };
            grants.push(AclGrant {
                grantee,
                permission: permission_of(&permission)?,
            });
        }
        self.checked(Acl { grants })
    }

    /// The list a Put*Acl request gives: its headers or its document, not both
    /// and not neither.
    fn put_acl_of(
        &self,
        canned: Option<&str>,
        policy: Option<AccessControlPolicy>,
        headers: &http::HeaderMap,
        for_bucket: bool,
    ) -> S3Result<Option<Acl>> {
        match (self.requested_acl(canned, headers, for_bucket)?, policy) {
            (Some(_), Some(_)) => Err(s3_error!(
                UnexpectedContent,
                "This request does not support content"
            )),
            (Some(acl), None) => Ok(acl),
            (None, Some(policy)) => self.policy_acl(policy),
            (None, None) => Err(s3_error!(
                MissingSecurityHeader,
                "Your request was missing a required header"
            )),
        }
    }

    /// The grants as S3 answers them: the owner's full control first.
    fn xml_grants(&self, acl: Option<&Acl>) -> Vec<Grant> {
        let canonical = |id: &str| Grantee {
            display_name: self.users.display_name_of(id),
            id: Some(id.to_owned()),
            type_: Type::from_static(Type::CANONICAL_USER),
            email_address: None,
            uri: None,
        };
        let group = |uri: &str| Grantee {
            display_name: None,
            id: None,
            type_: Type::from_static(Type::GROUP),
            email_address: None,
            uri: Some(uri.to_owned()),
        };
        let owner = Grant {
            grantee: Some(canonical(&self.owner_id)),
            permission: Some(xml_permission(AclPermission::FullControl)),
        };
        let others = acl.into_iter().flat_map(|a| &a.grants).map(|g| Grant {
            grantee: Some(match &g.grantee {
                AclGrantee::Id(id) => canonical(id),
                AclGrantee::AllUsers => group(acl::ALL_USERS_URI),
                AclGrantee::AuthenticatedUsers => group(acl::AUTHENTICATED_USERS_URI),
                AclGrantee::LogDelivery => group(acl::LOG_DELIVERY_URI),
            }),
            permission: Some(xml_permission(g.permission)),
        });
        std::iter::once(owner).chain(others).collect()
    }

    /// A bucket's ACL, public access block and ownership control.
    pub(super) async fn controls(&self, bucket: &str) -> S3Result<acl::BucketControls> {
        acl::bucket_controls(&self.meta, bucket)
            .await
            .map_err(acl_error)
    }

    /// Refuses to set `acl` where the bucket's controls forbid it: any ACL beyond
    /// private when ownership is BucketOwnerEnforced (400
    /// AccessControlListNotSupported), a public one under BlockPublicAcls (403).
    pub(super) async fn check_acl_allowed(&self, bucket: &str, acl: Option<&Acl>) -> S3Result<()> {
        let Some(acl) = acl else { return Ok(()) };
        let controls = self.controls(bucket).await?;
        if !controls.acls_enabled() {
            return Err(crate::s3_error::custom(
                "AccessControlListNotSupported",
                "The bucket does not allow ACLs",
                http::StatusCode::BAD_REQUEST,
            ));
        }
        if controls.public_access_block.block_public_acls && acl::is_public(acl) {
            return Err(s3_error!(AccessDenied, "Access Denied"));
        }
        Ok(())
    }

    /// Replaces a bucket's list (`None`: private).
    pub(super) async fn set_bucket_acl(&self, bucket: &str, acl: Option<Acl>) -> S3Result<()> {
        acl::store_doc(&self.meta, bucket, BucketConfigKind::Acl, acl.as_ref())
            .await
            .map_err(acl_error)
    }

    pub(super) async fn put_bucket_acl_impl(
        &self,
        req: S3Request<PutBucketAclInput>,
    ) -> S3Result<S3Response<PutBucketAclOutput>> {
        let i = req.input;
        self.bucket(&i.bucket).await?;
        let canned = i.acl.as_ref().map(|a| a.as_str());
        let acl = self.put_acl_of(canned, i.access_control_policy, &req.headers, true)?;
        self.check_acl_allowed(&i.bucket, acl.as_ref()).await?;
        self.set_bucket_acl(&i.bucket, acl).await?;
        Ok(S3Response::new(PutBucketAclOutput::default()))
    }

    pub(super) async fn get_bucket_acl_impl(
        &self,
        req: S3Request<GetBucketAclInput>,
    ) -> S3Result<S3Response<GetBucketAclOutput>> {
        let bucket = &req.input.bucket;
        self.bucket(bucket).await?;
        let controls = self.controls(bucket).await?;
        Ok(S3Response::new(GetBucketAclOutput {
            grants: Some(self.xml_grants(controls.acl.as_ref())),
            owner: Some(self.owner()),
        }))
    }

    pub(super) async fn put_object_acl_impl(
        &self,
        req: S3Request<PutObjectAclInput>,
    ) -> S3Result<S3Response<PutObjectAclOutput>> {
        let i = req.input;
        self.bucket(&i.bucket).await?;
        let canned = i.acl.as_ref().map(|a| a.as_str());
        let acl = self.put_acl_of(canned, i.access_control_policy, &req.headers, false)?;
        self.check_acl_allowed(&i.bucket, acl.as_ref()).await?;
        self.meta
            .set_object_acl(&i.bucket, &i.key, i.version_id, acl)
            .await
            .map_err(meta_error)?;
        Ok(S3Response::new(PutObjectAclOutput::default()))
    }

    pub(super) async fn get_object_acl_impl(
        &self,
        req: S3Request<GetObjectAclInput>,
    ) -> S3Result<S3Response<GetObjectAclOutput>> {
        let i = &req.input;
        let rec = self
            .find_readable(&i.bucket, &i.key, i.version_id.as_deref())
            .await?;
        Ok(S3Response::new(GetObjectAclOutput {
            grants: Some(self.xml_grants(rec.acl.as_ref())),
            owner: Some(self.owner()),
            ..Default::default()
        }))
    }
}
