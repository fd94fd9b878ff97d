//! `access` owns authorisation of S3 operations: which permission each operation
//! needs, checked through s3s's access hook after the signature is verified and
//! before the operation runs. Refusals are `403 AccessDenied` and change nothing.
//!
//! | operation | needs on the bucket |
//! |---|---|
//! | ListBuckets | any signed user; lists only buckets the user holds a grant on |
//! | HeadBucket, GetBucketLocation | any grant |
//! | GetObject, HeadObject, GetObjectAttributes, GetObjectTagging, GetObjectRetention, GetObjectLegalHold, Get* of bucket settings | read (readonly, readwrite, admin, bypass-governance) |
//! | ListObjects(V2), ListObjectVersions | read |
//! | PutObject, CreateMultipartUpload, UploadPart, CompleteMultipartUpload, AbortMultipartUpload, ListParts, ListMultipartUploads, DeleteObject(s), Put/DeleteObjectTagging, PutObjectRetention | write (writeonly, readwrite, admin, bypass-governance) |
//! | CopyObject, UploadPartCopy | write on the target and read on the source bucket |
//! | CreateBucket, DeleteBucket, every Put/Delete of bucket settings (PutObjectLockConfiguration too), PutObjectLegalHold, anything else | admin on the bucket |
//! | shortening or removing governance retention (`x-amz-bypass-governance-retention`) | bypass-governance, checked by the operation (`s3/lock.rs`) |
//! | any other operation on the service root | admin on `*` |
//!
//! A replica bucket refuses everything in the write and admin rows, to everyone,
//! root included, until it is promoted (`replication`).
//!
//! When hoard's grants do not allow a request, or it is unsigned, the bucket's or
//! the object version's S3 ACL may (the permission table is in `acl`): it only ever
//! adds access. An unsigned request gets only what AllUsers grants allow, else 403
//! AccessDenied; a bucket that does not exist is 404 NoSuchBucket to it, a missing
//! key 404 NoSuchKey only where it may list the bucket, and `response-*` overrides
//! are 400 InvalidRequest, as S3 answers. ListBuckets and the service root are never
//! anonymous. Copies need a signed principal who may read the source.
//!
//! `x-amz-expected-bucket-owner` and `x-amz-source-expected-bucket-owner` must name
//! the store owner's canonical id (it owns every bucket), else 403 AccessDenied.
//!
//! ListParts and ListMultipartUploads count as writes: they show uploads in progress,
//! which a write-only backup client needs to resume, not stored objects.
//!
//! Before any grant is looked at, the signature's scope is held to S3's rules: a
//! credential scoped to another region than this server's is
//! `400 AuthorizationHeaderMalformed` (`AuthorizationQueryParametersError` for a
//! presigned URL). A presigned URL's `X-Amz-Expires` must be whole seconds from 1 to
//! 604800 (a week): `presigned_expiry_refusal`, which `server` applies before the
//! signature is checked, answers S3's AuthorizationQueryParametersError (or 403
//! AccessDenied for 0) for anything else.

use std::sync::Arc;

use s3s::access::{S3Access, S3AccessContext};
use s3s::dto::{CopyObjectInput, CopySource, UploadPartCopyInput};
use s3s::path::S3Path;
use s3s::{S3Request, S3Result, s3_error};

use crate::acl::{self, Requester};
use crate::meta::{AclPermission, MetaError, MetaStore, Permission};
use crate::replication::ReplicaBuckets;
use crate::s3_error::meta_error;
use crate::users::{Principal, Users};

/// What an operation needs on its bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    AnyGrant,
    Read,
    Write,
    Admin,
}

fn need_of(op: &str) -> Need {
    match op {
        "HeadBucket" | "GetBucketLocation" => Need::AnyGrant,
        "PutObject"
        | "CreateMultipartUpload"
        | "UploadPart"
        | "UploadPartCopy"
        | "CompleteMultipartUpload"
        | "AbortMultipartUpload"
        | "ListParts"
        | "ListMultipartUploads"
        | "DeleteObject"
        | "DeleteObjects"
        | "PutObjectTagging"
        | "DeleteObjectTagging"
        | "PutObjectRetention"
        | "CopyObject" => Need::Write,
        op if op.starts_with("Get") || op.starts_with("Head") || op.starts_with("List") => {
            Need::Read
        }
        _ => Need::Admin,
    }
}

/// What an operation needs of an ACL, if an ACL can give it: `(on the object
/// version rather than the bucket, permission)` (the table in `acl`).
fn acl_need(op: &str) -> Option<(bool, AclPermission)> {
    Some(match op {
        "ListObjects"
        | "ListObjectsV2"
        | "ListObjectVersions"
        | "HeadBucket"
        | "ListMultipartUploads" => (false, AclPermission::Read),
        "PutObject"
        | "DeleteObject"
        | "DeleteObjects"
        | "CreateMultipartUpload"
        | "UploadPart"
        | "CompleteMultipartUpload"
        | "AbortMultipartUpload"
        | "ListParts" => (false, AclPermission::Write),
        "GetBucketAcl" => (false, AclPermission::ReadAcp),
        "PutBucketAcl" => (false, AclPermission::WriteAcp),
        "GetObject" | "HeadObject" => (true, AclPermission::Read),
        "GetObjectAcl" => (true, AclPermission::ReadAcp),
        "PutObjectAcl" => (true, AclPermission::WriteAcp),
        _ => return None,
    })
}

/// 403 AccessDenied, logged with who asked.
fn denied(who: Option<&Principal>, bucket: &str, op: &str) -> s3s::S3Error {
    let user = who.map_or("anonymous", |w| w.name());
    tracing::info!(user, bucket, op, "access denied");
    s3_error!(AccessDenied, "Access Denied")
}

fn satisfies(p: Permission, need: Need) -> bool {
    use Permission::*;
    match need {
        Need::AnyGrant => true,
        Need::Read => matches!(p, Readonly | Readwrite | Admin | BypassGovernance),
        Need::Write => matches!(p, Writeonly | Readwrite | Admin | BypassGovernance),
        Need::Admin => p == Admin,
    }
}

/// The longest a presigned URL may live, as in S3.
const MAX_PRESIGNED_SECS: u64 = 7 * 24 * 3600;

pub struct HoardAccess {
    users: Arc<Users>,
    replicas: Arc<ReplicaBuckets>,
    meta: MetaStore,
    region: String,
}

/// The value of one query parameter, as sent (the names checked here need no
/// decoding).
fn query_value<'a>(uri: &'a http::Uri, name: &str) -> Option<&'a str> {
    uri.query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

/// A presigned URL's `X-Amz-Expires` as S3 holds it: whole seconds from 1 to
/// 604800. Judged before the signature (which s3s would refuse, for any other
/// value, with a less telling error): the refusal's status, code and message.
pub fn presigned_expiry_refusal(
    uri: &http::Uri,
) -> Option<(http::StatusCode, &'static str, &'static str)> {
    query_value(uri, "X-Amz-Credential")?;
    let expires = query_value(uri, "X-Amz-Expires")?;
    let bad = |message| {
        Some((
            http::StatusCode::BAD_REQUEST,
            "AuthorizationQueryParametersError",
            message,
        ))
    };
    let digits = !expires.is_empty() && expires.bytes().all(|b| b.is_ascii_digit());
    match expires.parse::<i64>() {
        Ok(n) if n < 0 => bad("X-Amz-Expires must be non-negative"),
        Ok(0) => Some((
            http::StatusCode::FORBIDDEN,
            "AccessDenied",
            "Request has expired",
        )),
        Ok(n) if n <= MAX_PRESIGNED_SECS as i64 => None,
        Ok(_) => bad("X-Amz-Expires must be less than a week (in seconds) that is 604800"),
        Err(_) if digits => {
            bad("X-Amz-Expires must be less than a week (in seconds) that is 604800")
        }
        Err(_) => bad("X-Amz-Expires should be a number"),
    }
}

/// Refuses a signature scoped to another region.
fn check_scope(uri: &http::Uri, headers: &http::HeaderMap, region: &str) -> S3Result<()> {
    let presigned = query_value(uri, "X-Amz-Credential");
    // Credential=KEY/DATE/REGION/SERVICE/aws4_request (the '/' may be %2F in a URL).
    let scope = match presigned {
        Some(c) => c.replace("%2F", "/").replace("%2f", "/"),
        None => match headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split("Credential=").nth(1))
        {
            Some(c) => c.split(',').next().unwrap_or_default().to_owned(),
            None => return Ok(()),
        },
    };
    let Some(signed) = scope.split('/').nth(2) else {
        return Ok(());
    };
    if signed == region {
        return Ok(());
    }
    let why = format!("the region '{signed}' is wrong; expecting '{region}'");
    Err(match presigned {
        Some(_) => s3_error!(
            AuthorizationQueryParametersError,
            "Error parsing the X-Amz-Credential parameter; {}",
            why
        ),
        None => s3_error!(
            AuthorizationHeaderMalformed,
            "The authorization header is malformed; {}",
            why
        ),
    })
}

impl HoardAccess {
    pub fn new(
        users: Arc<Users>,
        replicas: Arc<ReplicaBuckets>,
        meta: MetaStore,
        region: String,
    ) -> Self {
        HoardAccess {
            users,
            replicas,
            meta,
            region,
        }
    }

    /// The principal behind a request's verified credentials.
    fn principal(&self, creds: Option<&s3s::auth::Credentials>) -> S3Result<Principal> {
        creds
            .and_then(|c| self.users.principal(&c.access_key))
            .ok_or_else(|| s3_error!(AccessDenied, "Access Denied"))
    }

    /// Refuses unless `who` holds what `need` asks for on `bucket`.
    fn require(who: &Principal, bucket: &str, need: Need, op: &str) -> S3Result<()> {
        if who.permission(bucket).is_some_and(|p| satisfies(p, need)) {
            return Ok(());
        }
        Err(denied(Some(who), bucket, op))
    }

    /// `x-amz-expected-bucket-owner` (and, for copies,
    /// `x-amz-source-expected-bucket-owner`) must name the store's owner, who owns
    /// every bucket: 403 AccessDenied otherwise, as S3 answers a wrong account.
    fn check_expected_owner(
        &self,
        headers: &http::HeaderMap,
        bucket: &str,
        op: &str,
    ) -> S3Result<()> {
        let owner = self.users.owner_id();
        for name in [
            "x-amz-expected-bucket-owner",
            "x-amz-source-expected-bucket-owner",
        ] {
            if let Some(v) = headers.get(name)
                && v.as_bytes() != owner.as_bytes()
            {
                tracing::info!(
                    bucket,
                    op,
                    header = name,
                    "expected bucket owner does not match"
                );
                return Err(s3_error!(AccessDenied, "Access Denied"));
            }
        }
        Ok(())
    }

    /// What S3 tells an unsigned request before any grant is looked at: a
    /// bucket that does not exist is 404 NoSuchBucket, and `response-*`
    /// overrides are for signed GETs only.
    async fn check_anonymous(&self, bucket: &str, op: &str, uri: &http::Uri) -> S3Result<()> {
        if self
            .meta
            .get_bucket(bucket)
            .await
            .map_err(meta_error)?
            .is_none()
        {
            return Err(crate::s3_error::no_such_bucket());
        }
        let overrides = uri
            .query()
            .is_some_and(|q| q.split('&').any(|kv| kv.starts_with("response-")));
        if op == "GetObject" && overrides {
            return Err(s3_error!(
                InvalidRequest,
                "Request specific response headers cannot be used for anonymous GET requests."
            ));
        }
        Ok(())
    }

    /// Whether the bucket's or the object version's ACL allows `op` to `who`
    /// (`None`: anonymous), within the bucket's controls (ACLs disabled by
    /// BucketOwnerEnforced, public grants ignored by IgnorePublicAcls). A version
    /// that does not exist is allowed to whoever may list the bucket, so that the
    /// operation answers 404 NoSuchKey where S3 reveals it.
    async fn acl_allows(
        &self,
        who: Option<&Principal>,
        bucket: &str,
        key: Option<&str>,
        op: &str,
        uri: &http::Uri,
    ) -> S3Result<bool> {
        let Some((on_object, wanted)) = acl_need(op) else {
            return Ok(false);
        };
        let controls = match acl::bucket_controls(&self.meta, bucket).await {
            Ok(c) => c,
            Err(acl::AclError::Meta(MetaError::NoSuchBucket)) => return Ok(false),
            Err(acl::AclError::Meta(e)) => return Err(meta_error(e)),
            Err(e) => return Err(crate::s3_error::internal("reading bucket controls", &e)),
        };
        if !controls.acls_enabled() {
            return Ok(false);
        }
        let id = who.map(|w| self.users.canonical_id(w));
        let requester = id
            .as_deref()
            .map_or(Requester::Anonymous, Requester::Signed);
        let ignore_public = controls.public_access_block.ignore_public_acls;
        let bucket_allows =
            |wanted| acl::allows(controls.acl.as_ref(), requester, wanted, ignore_public);
        let (true, Some(key)) = (on_object, key) else {
            return Ok(bucket_allows(wanted));
        };
        let version = query_value(uri, "versionId").map(str::to_owned);
        match self.meta.get_version(bucket, key, version).await {
            Ok(Some(rec)) if !rec.delete_marker => Ok(acl::allows(
                rec.acl.as_ref(),
                requester,
                wanted,
                ignore_public,
            )),
            Ok(_) | Err(MetaError::NoSuchVersion) => {
                Ok(wanted == AclPermission::Read && bucket_allows(AclPermission::Read))
            }
            Err(e) => Err(meta_error(e)),
        }
    }

    /// A copy's source bucket must be readable by whoever signed the copy.
    fn check_copy_source(
        &self,
        creds: Option<&s3s::auth::Credentials>,
        source: &CopySource,
        op: &str,
    ) -> S3Result<()> {
        let who = self.principal(creds)?;
        match source {
            CopySource::Bucket { bucket, .. } => Self::require(&who, bucket, Need::Read, op),
            _ => Err(s3_error!(AccessDenied, "Access Denied")),
        }
    }
}

#[async_trait::async_trait]
impl S3Access for HoardAccess {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        check_scope(cx.uri(), cx.headers(), &self.region)?;
        let who = match cx.credentials() {
            Some(c) => Some(self.principal(Some(c))?),
            None => None,
        };
        let op = cx.s3_op().name();
        let (bucket, key) = match cx.s3_path() {
            S3Path::Root => {
                return match &who {
                    Some(w) if op == "ListBuckets" || w.is_admin() => Ok(()),
                    _ => Err(denied(who.as_ref(), "", op)),
                };
            }
            S3Path::Bucket { bucket } => (bucket, None),
            S3Path::Object { bucket, key } => (bucket, Some(key.as_ref())),
        };
        self.check_expected_owner(cx.headers(), bucket, op)?;
        let need = need_of(op);
        if matches!(need, Need::Write | Need::Admin) && self.replicas.contains(bucket) {
            tracing::info!(
                user = who.as_ref().map_or("anonymous", |w| w.name()),
                bucket,
                op,
                "write to a replica bucket refused"
            );
            return Err(s3_error!(
                AccessDenied,
                "The bucket is a read-only replica; only replication writes to it."
            ));
        }
        if let Some(w) = &who
            && w.permission(bucket).is_some_and(|p| satisfies(p, need))
        {
            return Ok(());
        }
        if who.is_none() {
            self.check_anonymous(bucket, op, cx.uri()).await?;
        }
        if self
            .acl_allows(who.as_ref(), bucket, key, op, cx.uri())
            .await?
        {
            return Ok(());
        }
        Err(denied(who.as_ref(), bucket, op))
    }

    async fn copy_object(&self, req: &mut S3Request<CopyObjectInput>) -> S3Result<()> {
        self.check_copy_source(
            req.credentials.as_ref(),
            &req.input.copy_source,
            "CopyObject",
        )
    }

    async fn upload_part_copy(&self, req: &mut S3Request<UploadPartCopyInput>) -> S3Result<()> {
        self.check_copy_source(
            req.credentials.as_ref(),
            &req.input.copy_source,
            "UploadPartCopy",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_permission_allows_what_its_name_says() {
        use Permission::*;
        let allowed = |p, op| satisfies(p, need_of(op));
        for op in [
            "GetObject",
            "HeadObject",
            "ListObjectsV2",
            "ListObjectVersions",
        ] {
            assert!(allowed(Readonly, op) && allowed(Readwrite, op) && allowed(Admin, op));
            assert!(!allowed(Writeonly, op), "{op}");
        }
        for op in [
            "PutObject",
            "DeleteObject",
            "DeleteObjects",
            "UploadPart",
            "ListParts",
        ] {
            assert!(allowed(Writeonly, op) && allowed(Readwrite, op) && allowed(Admin, op));
            assert!(!allowed(Readonly, op), "{op}");
        }
        for op in [
            "DeleteBucket",
            "PutBucketVersioning",
            "CreateBucket",
            "PutBucketPolicy",
        ] {
            assert!(allowed(Admin, op));
            assert!(!allowed(Readwrite, op), "{op}");
        }
        assert!(allowed(Writeonly, "HeadBucket") && allowed(Readonly, "HeadBucket"));
    }
}
