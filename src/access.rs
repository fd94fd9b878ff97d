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
//! A bucket's policy (`policy`) is judged on every request to the bucket, before
//! grants: an explicit Deny refuses whatever grants and ACLs allow (root and `*`
//! admins excepted for Get/Put/DeleteBucketPolicy and GetBucketPolicyStatus, so a
//! policy can always be mended), an Allow adds access like an ACL grant. A public
//! policy's Allow counts only for signed principals when the bucket's public access
//! block has RestrictPublicBuckets. DeleteObjects is judged key by key
//! (s3:DeleteObject; refused keys are AccessDenied entries in its result) and
//! PutObjectTagging with the tags it sets, in their own hooks once s3s has parsed
//! them; a copy's source by the source bucket's policy (s3:GetObject). The facts a
//! request brings to conditions: `aws:SourceIp`, `aws:SecureTransport` (from the
//! `Connection` `server` records), `aws:Referer`, `aws:UserAgent`,
//! `aws:CurrentTime`, `aws:EpochTime`, `aws:PrincipalArn`, `aws:PrincipalAccount`,
//! `aws:PrincipalType`, `aws:userid`, `aws:username`, `s3:authType`,
//! `s3:signatureversion`, the `s3:x-amz-*` headers of `HEADER_FACTS`,
//! `s3:VersionId`, `s3:prefix`, `s3:delimiter` and `s3:max-keys` on listings,
//! `s3:RequestObjectTag/<key>` and `s3:RequestObjectTagKeys` (`x-amz-tagging`, or
//! PutObjectTagging's body), and `s3:ExistingObjectTag/<key>` (the named version's
//! tags, read only when the policy names them).
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

use std::net::SocketAddr;
use std::sync::Arc;

use iam_rs::ContextValue;
use s3s::access::{S3Access, S3AccessContext};
use s3s::dto::{
    CopyObjectInput, CopySource, DeleteObjectsInput, PostObjectInput, PutObjectTaggingInput,
    UploadPartCopyInput,
};
use s3s::path::S3Path;
use s3s::{S3Request, S3Result, s3_error};

use crate::acl::{self, Requester};
use crate::meta::{AclPermission, BucketConfigKind, MetaError, MetaStore, Permission};
use crate::policy::{self, BucketPolicy, Facts, Verdict};
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
        | "PostObject"
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
        | "PostObject"
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

/// 403 AccessDenied from an operation's own hook, logged with the principal's ARN.
fn refused_by_policy(principal: Option<&str>, bucket: &str, op: &str) -> s3s::S3Error {
    let principal = principal.unwrap_or("anonymous");
    tracing::info!(principal, bucket, op, "access denied");
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

/// The connection a request came on, put in its extensions by `server`: a bucket
/// policy's `aws:SourceIp` and `aws:SecureTransport`.
#[derive(Debug, Clone, Copy)]
pub struct Connection {
    pub peer: SocketAddr,
    pub secure: bool,
}

/// The request headers a policy's conditions may name, and their keys.
const HEADER_FACTS: [(&str, &str); 16] = [
    ("x-amz-acl", "s3:x-amz-acl"),
    ("x-amz-grant-read", "s3:x-amz-grant-read"),
    ("x-amz-grant-write", "s3:x-amz-grant-write"),
    ("x-amz-grant-read-acp", "s3:x-amz-grant-read-acp"),
    ("x-amz-grant-write-acp", "s3:x-amz-grant-write-acp"),
    ("x-amz-grant-full-control", "s3:x-amz-grant-full-control"),
    ("x-amz-copy-source", "s3:x-amz-copy-source"),
    ("x-amz-metadata-directive", "s3:x-amz-metadata-directive"),
    (
        "x-amz-server-side-encryption",
        "s3:x-amz-server-side-encryption",
    ),
    ("x-amz-storage-class", "s3:x-amz-storage-class"),
    ("x-amz-content-sha256", "s3:x-amz-content-sha256"),
    (
        "x-amz-website-redirect-location",
        "s3:x-amz-website-redirect-location",
    ),
    ("x-amz-object-lock-mode", "s3:object-lock-mode"),
    (
        "x-amz-object-lock-retain-until-date",
        "s3:object-lock-retain-until-date",
    ),
    ("x-amz-object-lock-legal-hold", "s3:object-lock-legal-hold"),
    ("referer", "aws:Referer"),
];

/// What the access hook leaves for an operation whose policy verdict needs its
/// parsed input (`judged_after_parsing`): its hook judges with it.
#[derive(Clone)]
struct PolicyGate {
    policy: BucketPolicy,
    principal: Option<String>,
    facts: Facts,
    /// Whether grants or ACLs allow the operation, so that a silent policy does.
    allowed_otherwise: bool,
}

/// Whether a policy's verdict lets an operation through: an Allow, or a silent
/// policy where grants or ACLs allow it.
fn admitted(verdict: Verdict, allowed_otherwise: bool) -> bool {
    match verdict {
        Verdict::Allow => true,
        Verdict::Silent => allowed_otherwise,
        Verdict::Deny => false,
    }
}

impl PolicyGate {
    /// The policy's verdict on the operation's `action` on `bucket/key`; 403
    /// AccessDenied unless it is admitted.
    fn require(self, action: &str, bucket: &str, key: &str, op: &str) -> S3Result<()> {
        let verdict = self
            .policy
            .judge(self.principal.as_deref(), self.facts)
            .verdict(action, &policy::resource_arn(bucket, Some(key)));
        match admitted(verdict, self.allowed_otherwise) {
            true => Ok(()),
            false => Err(refused_by_policy(self.principal.as_deref(), bucket, op)),
        }
    }
}

/// The tags of an `x-amz-tagging` value (URL-encoded pairs).
fn url_tags(tagging: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(tagging.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// DeleteObjects is judged key by key, PutObjectTagging by the tags it sets, a
/// browser POST by the key and fields of its form.
fn judged_after_parsing(op: &str) -> bool {
    matches!(op, "DeleteObjects" | "PutObjectTagging" | "PostObject")
}

/// What root and `*` admins may do whatever the bucket's policy says, so that a
/// policy can always be mended (S3 keeps this for the account's root).
fn mends_policy(op: &str) -> bool {
    matches!(
        op,
        "GetBucketPolicy" | "PutBucketPolicy" | "DeleteBucketPolicy" | "GetBucketPolicyStatus"
    )
}

/// The part of a request a policy's facts come from.
struct RequestView<'a> {
    op: &'a str,
    uri: &'a http::Uri,
    headers: &'a http::HeaderMap,
    connection: Option<Connection>,
}

/// A request's query parameters, decoded.
fn query_pairs(uri: &http::Uri) -> impl Iterator<Item = (String, String)> + '_ {
    form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
}

fn text(facts: &mut Facts, key: &str, value: &str) {
    facts.insert(key.to_owned(), ContextValue::String(value.to_owned()));
}

/// `s3:RequestObjectTag/<key>` for each tag a request sets, and
/// `s3:RequestObjectTagKeys`.
fn add_request_tags<'a>(facts: &mut Facts, tags: impl Iterator<Item = (&'a str, &'a str)>) {
    let mut keys = Vec::new();
    for (k, v) in tags {
        text(facts, &format!("{}{k}", policy::REQUEST_TAG), v);
        keys.push(k.to_owned());
    }
    if !keys.is_empty() {
        facts.insert(
            "s3:RequestObjectTagKeys".into(),
            ContextValue::StringList(keys),
        );
    }
}

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

    /// A copy's source must be readable by whoever signed the copy: by a grant or
    /// the source bucket's policy, which may also deny it.
    async fn check_copy_source<T: Sync>(
        &self,
        req: &S3Request<T>,
        source: &CopySource,
        op: &str,
    ) -> S3Result<()> {
        let who = self.principal(req.credentials.as_ref())?;
        let CopySource::Bucket {
            bucket,
            key,
            version_id,
        } = source
        else {
            return Err(denied(Some(&who), "", op));
        };
        let granted = who
            .permission(bucket)
            .is_some_and(|p| satisfies(p, Need::Read));
        let Some(policy) = self.policy_of(bucket).await? else {
            return match granted {
                true => Ok(()),
                false => Err(denied(Some(&who), bucket, op)),
            };
        };
        let view = RequestView {
            op: "GetObject",
            uri: &req.uri,
            headers: &req.headers,
            connection: req.extensions.get::<Connection>().copied(),
        };
        let version = version_id.as_deref();
        let facts = self
            .facts(&view, Some(&who), &policy, bucket, Some(key), version)
            .await?;
        let verdict = policy.judge(Some(&self.users.arn(&who)), facts).verdict(
            &policy::action_of("GetObject", version.is_some()),
            &policy::resource_arn(bucket, Some(key)),
        );
        match admitted(verdict, granted) {
            true => Ok(()),
            false => Err(denied(Some(&who), bucket, op)),
        }
    }

    /// The bucket's policy, if it has one.
    async fn policy_of(&self, bucket: &str) -> S3Result<Option<BucketPolicy>> {
        policy::load(&self.meta, bucket)
            .await
            .map_err(|e| crate::s3_error::internal("reading the bucket policy", &e))
    }

    /// Whether the bucket's public access block restricts its public policy to
    /// signed principals (RestrictPublicBuckets).
    async fn restricts(&self, bucket: &str, policy: &BucketPolicy) -> S3Result<bool> {
        if !policy.is_public() {
            return Ok(false);
        }
        let block: Option<acl::PublicAccessBlock> =
            acl::load_doc(&self.meta, bucket, BucketConfigKind::PublicAccessBlock)
                .await
                .map_err(|e| crate::s3_error::internal("reading the public access block", &e))?;
        Ok(block.is_some_and(|b| b.restrict_public_buckets))
    }

    /// The facts a request brings to a policy's conditions: who, from where, over
    /// what; its headers and listing parameters; the tags it sets; the tags of the
    /// version it names when the policy asks about them.
    async fn facts(
        &self,
        view: &RequestView<'_>,
        who: Option<&Principal>,
        policy: &BucketPolicy,
        bucket: &str,
        key: Option<&str>,
        version: Option<&str>,
    ) -> S3Result<Facts> {
        let mut f = self.request_facts(view, who);
        if let Some(key) = key
            && policy.conditions_name(policy::EXISTING_TAG)
        {
            match self
                .meta
                .get_version(bucket, key, version.map(str::to_owned))
                .await
            {
                Ok(Some(rec)) if !rec.delete_marker => {
                    for (k, v) in &rec.tags {
                        text(&mut f, &format!("{}{k}", policy::EXISTING_TAG), v);
                    }
                }
                Ok(_) | Err(MetaError::NoSuchVersion) => {}
                Err(e) => return Err(meta_error(e)),
            }
        }
        Ok(f)
    }

    fn request_facts(&self, view: &RequestView<'_>, who: Option<&Principal>) -> Facts {
        let mut f = Facts::new();
        if let Some(c) = view.connection {
            f.insert(
                "aws:SecureTransport".into(),
                ContextValue::Boolean(c.secure),
            );
            text(
                &mut f,
                "aws:SourceIp",
                &c.peer.ip().to_canonical().to_string(),
            );
        }
        let now = time::OffsetDateTime::now_utc();
        if let Ok(t) = now.format(&time::format_description::well_known::Rfc3339) {
            text(&mut f, "aws:CurrentTime", &t);
        }
        f.insert(
            "aws:EpochTime".into(),
            ContextValue::Number(now.unix_timestamp() as f64),
        );
        let header = |name: &str| view.headers.get(name).and_then(|v| v.to_str().ok());
        if let Some(agent) = header("user-agent") {
            text(&mut f, "aws:UserAgent", agent);
        }
        for (name, key) in HEADER_FACTS {
            if let Some(v) = header(name) {
                text(&mut f, key, v);
            }
        }
        match who {
            None => text(&mut f, "aws:PrincipalType", "Anonymous"),
            Some(w) => {
                text(&mut f, "aws:PrincipalArn", &self.users.arn(w));
                text(&mut f, "aws:PrincipalAccount", self.users.account_id());
                text(&mut f, "aws:userid", &self.users.canonical_id(w));
                match w {
                    Principal::Root => text(&mut f, "aws:PrincipalType", "Account"),
                    Principal::User(_) => {
                        text(&mut f, "aws:PrincipalType", "User");
                        text(&mut f, "aws:username", w.name());
                    }
                }
                let presigned = query_value(view.uri, "X-Amz-Credential").is_some();
                let auth = if presigned {
                    "REST-QUERY-STRING"
                } else {
                    "REST-HEADER"
                };
                text(&mut f, "s3:authType", auth);
                text(&mut f, "s3:signatureversion", "AWS4-HMAC-SHA256");
            }
        }
        let listing = view.op.starts_with("List");
        for (name, value) in query_pairs(view.uri) {
            match name.as_str() {
                "versionId" => text(&mut f, "s3:VersionId", &value),
                "prefix" | "delimiter" if listing => text(&mut f, &format!("s3:{name}"), &value),
                "max-keys" | "max-uploads" if listing => {
                    if let Ok(n) = value.parse::<f64>() {
                        f.insert("s3:max-keys".into(), ContextValue::Number(n));
                    }
                }
                _ => {}
            }
        }
        if let Some(tagging) = header("x-amz-tagging") {
            let tags = url_tags(tagging);
            add_request_tags(&mut f, tags.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        }
        f
    }
}

#[async_trait::async_trait]
impl S3Access for HoardAccess {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        check_scope(cx.uri(), cx.headers(), &self.region)?;
        let connection = cx.extensions_mut().get::<Connection>().copied();
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
        let granted = who
            .as_ref()
            .is_some_and(|w| w.permission(bucket).is_some_and(|p| satisfies(p, need)));
        let exempt = who.as_ref().is_some_and(|w| w.is_admin()) && mends_policy(op);
        let policy = match exempt {
            true => None,
            false => self.policy_of(bucket).await?,
        };
        let mut verdict = Verdict::Silent;
        if let Some(policy) = policy {
            let principal = who.as_ref().map(|w| self.users.arn(w));
            let view = RequestView {
                op,
                uri: cx.uri(),
                headers: cx.headers(),
                connection,
            };
            let version = query_value(view.uri, "versionId");
            let facts = self
                .facts(&view, who.as_ref(), &policy, bucket, key, version)
                .await?;
            if judged_after_parsing(op) {
                if who.is_none() {
                    self.check_anonymous(bucket, op, cx.uri()).await?;
                }
                let allowed_otherwise = granted
                    || self
                        .acl_allows(who.as_ref(), bucket, key, op, cx.uri())
                        .await?;
                cx.extensions_mut().insert(PolicyGate {
                    policy,
                    principal,
                    facts,
                    allowed_otherwise,
                });
                return Ok(());
            }
            let action = policy::action_of(op, version.is_some());
            verdict = policy
                .judge(principal.as_deref(), facts)
                .verdict(&action, &policy::resource_arn(bucket, key));
            if verdict == Verdict::Deny {
                return Err(denied(who.as_ref(), bucket, op));
            }
            if verdict == Verdict::Allow && who.is_none() && self.restricts(bucket, &policy).await?
            {
                verdict = Verdict::Silent;
            }
        }
        if granted {
            return Ok(());
        }
        if who.is_none() {
            self.check_anonymous(bucket, op, cx.uri()).await?;
        }
        if verdict == Verdict::Allow
            || self
                .acl_allows(who.as_ref(), bucket, key, op, cx.uri())
                .await?
        {
            return Ok(());
        }
        Err(denied(who.as_ref(), bucket, op))
    }

    async fn copy_object(&self, req: &mut S3Request<CopyObjectInput>) -> S3Result<()> {
        self.check_copy_source(req, &req.input.copy_source, "CopyObject")
            .await
    }

    async fn upload_part_copy(&self, req: &mut S3Request<UploadPartCopyInput>) -> S3Result<()> {
        self.check_copy_source(req, &req.input.copy_source, "UploadPartCopy")
            .await
    }

    async fn delete_objects(&self, req: &mut S3Request<DeleteObjectsInput>) -> S3Result<()> {
        let Some(gate) = req.extensions.remove::<PolicyGate>() else {
            return Ok(());
        };
        let judge = gate.policy.judge(gate.principal.as_deref(), gate.facts);
        let input = &mut req.input;
        let bucket = &input.bucket;
        let mut refused = Vec::new();
        input.delete.objects.retain(|o| {
            let action = policy::action_of("DeleteObject", o.version_id.is_some());
            let verdict = judge.verdict(&action, &policy::resource_arn(bucket, Some(&o.key)));
            let allowed = admitted(verdict, gate.allowed_otherwise);
            if !allowed {
                refused.push((o.key.clone(), o.version_id.clone()));
            }
            allowed
        });
        if !refused.is_empty() {
            tracing::info!(bucket = %input.bucket, keys = refused.len(), "deletes refused by the bucket policy");
            req.extensions.insert(policy::DeniedDeletes(refused));
        }
        Ok(())
    }

    async fn post_object(&self, req: &mut S3Request<PostObjectInput>) -> S3Result<()> {
        let Some(mut gate) = req.extensions.remove::<PolicyGate>() else {
            return Ok(());
        };
        let i = &req.input;
        if let Some(acl) = &i.acl {
            text(&mut gate.facts, "s3:x-amz-acl", acl.as_str());
        }
        let form = req.extensions.get::<crate::form_tap::FormFields>();
        let tags = match (&i.tagging, form.and_then(|f| f.tagging())) {
            (Some(tagging), _) => url_tags(tagging),
            (None, Some(xml)) => crate::form_tap::tags_of(xml).unwrap_or_default(),
            (None, None) => Vec::new(),
        };
        add_request_tags(
            &mut gate.facts,
            tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        let key = form
            .and_then(|f| f.substitute(&i.key))
            .unwrap_or_else(|| i.key.clone());
        gate.require("s3:PutObject", &i.bucket, &key, "PostObject")
    }

    async fn put_object_tagging(&self, req: &mut S3Request<PutObjectTaggingInput>) -> S3Result<()> {
        let Some(mut gate) = req.extensions.remove::<PolicyGate>() else {
            return Ok(());
        };
        let i = &req.input;
        add_request_tags(
            &mut gate.facts,
            i.tagging.tag_set.iter().map(|t| {
                (
                    t.key.as_deref().unwrap_or_default(),
                    t.value.as_deref().unwrap_or_default(),
                )
            }),
        );
        let action = policy::action_of("PutObjectTagging", i.version_id.is_some());
        gate.require(&action, &i.bucket, &i.key, "PutObjectTagging")
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
