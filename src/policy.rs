//! `policy` owns S3 bucket policies: a document checked as S3 checks it (400
//! MalformedPolicy with S3's messages), its principals normalised to the ARNs
//! hoard's principals carry, its verdict on a request (judged by the IAM evaluator
//! of the `iam-rs` crate), whether it is public, and its storage as the bucket's
//! policy document. Which facts a request brings and how the verdict combines with
//! grants and ACLs is `access`; the XML operations are `s3/policy.rs`.
//!
//! Invariants:
//! - A stored policy was accepted by `BucketPolicy::parse`: every principal names
//!   the store's account, its root or an existing user (or everyone), every action
//!   is an S3 action, every resource is this bucket or its objects.
//! - An explicit Deny wins over every Allow, grant and ACL; a policy that cannot be
//!   evaluated denies (fails closed).
//!
//! Principals: `*` (everyone, anonymous too), the account id or
//! `arn:aws:iam::<account>:root` (the store owner, root), and
//! `arn:aws:iam::<account>:user/<name>` (a hoard user; an empty account means this
//! one). `CanonicalUser` ids are turned into those ARNs. Service principals are
//! accepted and match no request.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::meta::{BucketConfigKind, MetaError, MetaStore};

/// What a request brings to a policy's conditions (`aws:SourceIp`, `s3:prefix`, ...).
pub type Facts = iam_rs::Context;

/// S3's size limit of a bucket policy.
pub const MAX_POLICY_BYTES: usize = 20 * 1024;

/// The principal an unsigned request is judged as: only `*` names it.
const ANONYMOUS_ARN: &str = "arn:aws:iam:::anonymous";

const STATEMENT_FIELDS: [&str; 9] = [
    "Sid",
    "Effect",
    "Principal",
    "NotPrincipal",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Condition",
];

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{0}")]
    Malformed(String),
    #[error("metadata: {0}")]
    Meta(#[from] MetaError),
    #[error("the stored policy of bucket {bucket} is unreadable: {source}")]
    Unreadable {
        bucket: String,
        source: serde_json::Error,
    },
}

fn malformed(message: impl Into<String>) -> PolicyError {
    PolicyError::Malformed(message.into())
}

/// Who a policy may name: the store's account and its users.
pub struct Principals<'a> {
    pub account_id: &'a str,
    pub user_exists: &'a dyn Fn(&str) -> bool,
    pub arn_of_canonical_id: &'a dyn Fn(&str) -> Option<String>,
}

/// A policy's verdict on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
    /// No statement applies.
    Silent,
}

/// A bucket's policy: the text as it was put (GetBucketPolicy answers it) and the
/// document normalised for evaluation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BucketPolicy {
    text: String,
    normalised: Value,
}

/// Keys that DeleteObjects may not delete under the bucket's policy: (key,
/// version), answered as AccessDenied entries in its result.
#[derive(Debug, Clone, Default)]
pub struct DeniedDeletes(pub Vec<(String, Option<String>)>);

/// Whether a resource is a bucket or an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum On {
    Bucket,
    Object,
    Service,
}

/// S3's actions and what each applies to: what a policy's actions are checked
/// against.
const ACTIONS: &[(&str, On)] = &[
    ("AbortMultipartUpload", On::Object),
    ("BypassGovernanceRetention", On::Object),
    ("DeleteObject", On::Object),
    ("DeleteObjectTagging", On::Object),
    ("DeleteObjectVersion", On::Object),
    ("DeleteObjectVersionTagging", On::Object),
    ("GetObject", On::Object),
    ("GetObjectAcl", On::Object),
    ("GetObjectAttributes", On::Object),
    ("GetObjectLegalHold", On::Object),
    ("GetObjectRetention", On::Object),
    ("GetObjectTagging", On::Object),
    ("GetObjectTorrent", On::Object),
    ("GetObjectVersion", On::Object),
    ("GetObjectVersionAcl", On::Object),
    ("GetObjectVersionAttributes", On::Object),
    ("GetObjectVersionForReplication", On::Object),
    ("GetObjectVersionTagging", On::Object),
    ("GetObjectVersionTorrent", On::Object),
    ("ListMultipartUploadParts", On::Object),
    ("ObjectOwnerOverrideToBucketOwner", On::Object),
    ("PutObject", On::Object),
    ("PutObjectAcl", On::Object),
    ("PutObjectLegalHold", On::Object),
    ("PutObjectRetention", On::Object),
    ("PutObjectTagging", On::Object),
    ("PutObjectVersionAcl", On::Object),
    ("PutObjectVersionTagging", On::Object),
    ("ReplicateDelete", On::Object),
    ("ReplicateObject", On::Object),
    ("ReplicateTags", On::Object),
    ("RestoreObject", On::Object),
    ("CreateBucket", On::Bucket),
    ("DeleteBucket", On::Bucket),
    ("DeleteBucketOwnershipControls", On::Bucket),
    ("DeleteBucketPolicy", On::Bucket),
    ("DeleteBucketWebsite", On::Bucket),
    ("GetAccelerateConfiguration", On::Bucket),
    ("GetAnalyticsConfiguration", On::Bucket),
    ("GetBucketAcl", On::Bucket),
    ("GetBucketCORS", On::Bucket),
    ("GetBucketLocation", On::Bucket),
    ("GetBucketLogging", On::Bucket),
    ("GetBucketNotification", On::Bucket),
    ("GetBucketObjectLockConfiguration", On::Bucket),
    ("GetBucketOwnershipControls", On::Bucket),
    ("GetBucketPolicy", On::Bucket),
    ("GetBucketPolicyStatus", On::Bucket),
    ("GetBucketPublicAccessBlock", On::Bucket),
    ("GetBucketRequestPayment", On::Bucket),
    ("GetBucketTagging", On::Bucket),
    ("GetBucketVersioning", On::Bucket),
    ("GetBucketWebsite", On::Bucket),
    ("GetEncryptionConfiguration", On::Bucket),
    ("GetIntelligentTieringConfiguration", On::Bucket),
    ("GetInventoryConfiguration", On::Bucket),
    ("GetLifecycleConfiguration", On::Bucket),
    ("GetMetricsConfiguration", On::Bucket),
    ("GetReplicationConfiguration", On::Bucket),
    ("ListBucket", On::Bucket),
    ("ListBucketMultipartUploads", On::Bucket),
    ("ListBucketVersions", On::Bucket),
    ("PutAccelerateConfiguration", On::Bucket),
    ("PutAnalyticsConfiguration", On::Bucket),
    ("PutBucketAcl", On::Bucket),
    ("PutBucketCORS", On::Bucket),
    ("PutBucketLogging", On::Bucket),
    ("PutBucketNotification", On::Bucket),
    ("PutBucketObjectLockConfiguration", On::Bucket),
    ("PutBucketOwnershipControls", On::Bucket),
    ("PutBucketPolicy", On::Bucket),
    ("PutBucketPublicAccessBlock", On::Bucket),
    ("PutBucketRequestPayment", On::Bucket),
    ("PutBucketTagging", On::Bucket),
    ("PutBucketVersioning", On::Bucket),
    ("PutBucketWebsite", On::Bucket),
    ("PutEncryptionConfiguration", On::Bucket),
    ("PutIntelligentTieringConfiguration", On::Bucket),
    ("PutInventoryConfiguration", On::Bucket),
    ("PutLifecycleConfiguration", On::Bucket),
    ("PutMetricsConfiguration", On::Bucket),
    ("PutReplicationConfiguration", On::Bucket),
    ("ListAllMyBuckets", On::Service),
    ("GetAccountPublicAccessBlock", On::Service),
    ("PutAccountPublicAccessBlock", On::Service),
];

/// The S3 condition keys a policy may name (`s3:ExistingObjectTag/<key>` and
/// `s3:RequestObjectTag/<key>` besides); any `aws:` key is accepted, those below
/// in their canonical spelling.
const CONDITION_KEYS: &[&str] = &[
    "aws:CurrentTime",
    "aws:EpochTime",
    "aws:PrincipalAccount",
    "aws:PrincipalArn",
    "aws:PrincipalType",
    "aws:Referer",
    "aws:SecureTransport",
    "aws:SourceIp",
    "aws:UserAgent",
    "aws:userid",
    "aws:username",
    "s3:authType",
    "s3:delimiter",
    "s3:max-keys",
    "s3:object-lock-legal-hold",
    "s3:object-lock-mode",
    "s3:object-lock-remaining-retention-days",
    "s3:object-lock-retain-until-date",
    "s3:prefix",
    "s3:RequestObjectTagKeys",
    "s3:ResourceAccount",
    "s3:signatureAge",
    "s3:signatureversion",
    "s3:TlsVersion",
    "s3:VersionId",
    "s3:x-amz-acl",
    "s3:x-amz-content-sha256",
    "s3:x-amz-copy-source",
    "s3:x-amz-grant-full-control",
    "s3:x-amz-grant-read",
    "s3:x-amz-grant-read-acp",
    "s3:x-amz-grant-write",
    "s3:x-amz-grant-write-acp",
    "s3:x-amz-metadata-directive",
    "s3:x-amz-server-side-encryption",
    "s3:x-amz-server-side-encryption-aws-kms-key-id",
    "s3:x-amz-storage-class",
    "s3:x-amz-website-redirect-location",
];

/// The tag condition keys: a tag key follows the slash.
pub const EXISTING_TAG: &str = "s3:ExistingObjectTag/";
pub const REQUEST_TAG: &str = "s3:RequestObjectTag/";

/// Keys whose fixed values make an Allow to everyone non-public, as S3 judges it.
const NARROWING_KEYS: &[&str] = &[
    "aws:principalaccount",
    "aws:principalarn",
    "aws:principalorgid",
    "aws:sourceaccount",
    "aws:sourcearn",
    "aws:sourceip",
    "aws:sourceowner",
    "aws:sourcevpc",
    "aws:sourcevpce",
    "aws:userid",
    "s3:dataaccesspointaccount",
    "s3:dataaccesspointarn",
];

/// The S3 action an operation is judged as (`versioned`: it names a version).
pub fn action_of(op: &str, versioned: bool) -> Cow<'static, str> {
    let name = match (op, versioned) {
        ("GetObject" | "HeadObject", false) => "GetObject",
        ("GetObject" | "HeadObject", true) => "GetObjectVersion",
        ("DeleteObject", true) => "DeleteObjectVersion",
        ("GetObjectAcl", true) => "GetObjectVersionAcl",
        ("PutObjectAcl", true) => "PutObjectVersionAcl",
        ("GetObjectTagging", true) => "GetObjectVersionTagging",
        ("PutObjectTagging", true) => "PutObjectVersionTagging",
        ("DeleteObjectTagging", true) => "DeleteObjectVersionTagging",
        ("GetObjectAttributes", true) => "GetObjectVersionAttributes",
        ("ListObjects" | "ListObjectsV2" | "HeadBucket", _) => "ListBucket",
        ("ListObjectVersions", _) => "ListBucketVersions",
        ("ListMultipartUploads", _) => "ListBucketMultipartUploads",
        ("ListParts", _) => "ListMultipartUploadParts",
        ("ListBuckets", _) => "ListAllMyBuckets",
        (
            "CreateMultipartUpload"
            | "UploadPart"
            | "UploadPartCopy"
            | "CompleteMultipartUpload"
            | "CopyObject"
            | "PostObject",
            _,
        ) => "PutObject",
        ("DeleteObjects", _) => "DeleteObject",
        ("GetBucketCors", _) => "GetBucketCORS",
        ("PutBucketCors" | "DeleteBucketCors", _) => "PutBucketCORS",
        ("GetBucketLifecycleConfiguration", _) => "GetLifecycleConfiguration",
        ("PutBucketLifecycleConfiguration" | "DeleteBucketLifecycle", _) => {
            "PutLifecycleConfiguration"
        }
        ("GetBucketReplication", _) => "GetReplicationConfiguration",
        ("PutBucketReplication" | "DeleteBucketReplication", _) => "PutReplicationConfiguration",
        ("GetBucketEncryption", _) => "GetEncryptionConfiguration",
        ("PutBucketEncryption" | "DeleteBucketEncryption", _) => "PutEncryptionConfiguration",
        ("GetObjectLockConfiguration", _) => "GetBucketObjectLockConfiguration",
        ("PutObjectLockConfiguration", _) => "PutBucketObjectLockConfiguration",
        ("GetPublicAccessBlock", _) => "GetBucketPublicAccessBlock",
        ("PutPublicAccessBlock" | "DeletePublicAccessBlock", _) => "PutBucketPublicAccessBlock",
        ("DeleteBucketTagging", _) => "PutBucketTagging",
        ("GetBucketNotificationConfiguration", _) => "GetBucketNotification",
        ("PutBucketNotificationConfiguration", _) => "PutBucketNotification",
        (other, _) => return Cow::Owned(format!("s3:{other}")),
    };
    Cow::Owned(format!("s3:{name}"))
}

/// The ARN of a bucket, or of one of its objects.
pub fn resource_arn(bucket: &str, key: Option<&str>) -> String {
    match key {
        Some(k) => format!("arn:aws:s3:::{bucket}/{k}"),
        None => format!("arn:aws:s3:::{bucket}"),
    }
}

fn wildcard_match(text: &str, pattern: &str) -> bool {
    iam_rs::Arn::wildcard_match(text, pattern)
}

/// One string or an array of strings, as policies give lists.
fn strings(v: Option<&Value>, problem: &str) -> Result<Vec<String>, PolicyError> {
    let one = |v: &Value| {
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| malformed(problem))
    };
    match v {
        Some(Value::Array(a)) if !a.is_empty() => a.iter().map(one).collect(),
        Some(v @ Value::String(_)) => Ok(vec![one(v)?]),
        _ => Err(malformed(problem)),
    }
}

/// What a resource pattern names, if it is this bucket or its objects.
fn resource_kind(resource: &str, bucket: &str) -> Option<On> {
    if resource == "*" {
        return Some(On::Service);
    }
    let rest = resource.strip_prefix("arn:aws:s3:::")?;
    let (bucket_part, kind) = match rest.split_once('/') {
        Some((b, _)) => (b, On::Object),
        None => (rest, On::Bucket),
    };
    wildcard_match(bucket, bucket_part).then_some(kind)
}

/// The S3 actions an action pattern matches.
fn matching_actions(pattern: &str) -> impl Iterator<Item = On> + '_ {
    let lower = pattern.to_ascii_lowercase();
    ACTIONS.iter().filter_map(move |(name, on)| {
        let full = format!("s3:{}", name.to_ascii_lowercase());
        (lower == "*" || wildcard_match(&full, &lower)).then_some(*on)
    })
}

/// Whether a resource of `kind` is one an action of `on` applies to.
fn applies(on: On, kind: On) -> bool {
    kind == On::Service || on == kind
}

/// A statement's principal, checked and turned into the ARNs requests carry.
fn principal(p: Value, known: &Principals) -> Result<Value, PolicyError> {
    let invalid = || malformed("Invalid principal in policy");
    let fields = match p {
        Value::String(s) if s == "*" => return Ok(Value::String(s)),
        Value::Object(fields) if !fields.is_empty() => fields,
        _ => return Err(invalid()),
    };
    let mut arns = Vec::new();
    let mut services = Vec::new();
    for (kind, ids) in &fields {
        let ids = strings(Some(ids), "Invalid principal in policy")?;
        for id in ids {
            match kind.as_str() {
                "AWS" if id == "*" => return Ok(Value::String(id)),
                "AWS" => arns.push(aws_principal(&id, known).ok_or_else(invalid)?),
                "CanonicalUser" => arns.push((known.arn_of_canonical_id)(&id).ok_or_else(invalid)?),
                "Service" => services.push(Value::String(id)),
                _ => return Err(invalid()),
            }
        }
    }
    let mut out = Map::new();
    if arns.is_empty() {
        out.insert("Service".into(), Value::Array(services));
    } else {
        out.insert(
            "AWS".into(),
            Value::Array(arns.into_iter().map(Value::String).collect()),
        );
    }
    Ok(Value::Object(out))
}

/// An `AWS` principal as the ARN hoard's requests carry, if it names the store's
/// account, its root or one of its users.
fn aws_principal(id: &str, known: &Principals) -> Option<String> {
    let root = format!("arn:aws:iam::{}:root", known.account_id);
    if id == known.account_id {
        return Some(root);
    }
    let rest = id.strip_prefix("arn:aws:iam::")?;
    let (account, resource) = rest.split_once(':')?;
    if !account.is_empty() && account != known.account_id {
        return None;
    }
    if resource == "root" {
        return Some(root);
    }
    let name = resource.strip_prefix("user/")?;
    (known.user_exists)(name).then(|| format!("arn:aws:iam::{}:user/{name}", known.account_id))
}

/// A condition key in its canonical spelling, if a policy may name it.
fn condition_key(key: &str) -> Option<String> {
    if let Some(k) = CONDITION_KEYS.iter().find(|k| k.eq_ignore_ascii_case(key)) {
        return Some((*k).to_owned());
    }
    for prefix in [EXISTING_TAG, REQUEST_TAG] {
        if key.len() > prefix.len()
            && key.is_char_boundary(prefix.len())
            && key[..prefix.len()].eq_ignore_ascii_case(prefix)
        {
            return Some(format!("{prefix}{}", &key[prefix.len()..]));
        }
    }
    let global = key.len() > 4 && key[..4].eq_ignore_ascii_case("aws:");
    global.then(|| key.to_owned())
}

/// A statement's Condition block, checked, its keys in canonical spelling.
fn condition(c: Value) -> Result<Value, PolicyError> {
    let Value::Object(ops) = c else {
        return Err(malformed("Policy has an invalid condition"));
    };
    let mut out = Map::new();
    for (op, keys) in ops {
        if serde_json::from_value::<iam_rs::IAMOperator>(Value::String(op.clone())).is_err() {
            return Err(malformed(format!("Invalid Condition type : {op}")));
        }
        let Value::Object(keys) = keys else {
            return Err(malformed("Policy has an invalid condition"));
        };
        let mut checked = Map::new();
        for (key, values) in keys {
            let key = condition_key(&key)
                .ok_or_else(|| malformed(format!("Policy has an invalid condition key: {key}")))?;
            let scalar =
                |v: &Value| matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_));
            let fine = match &values {
                Value::Array(a) => a.iter().all(scalar),
                v => scalar(v),
            };
            if !fine {
                return Err(malformed("Policy has an invalid condition value"));
            }
            checked.insert(key, values);
        }
        out.insert(op, Value::Object(checked));
    }
    Ok(Value::Object(out))
}

/// Exactly one of a statement's pair of fields.
fn one_of(s: &Map<String, Value>, field: &str, not_field: &str) -> Result<(), PolicyError> {
    match (s.contains_key(field), s.contains_key(not_field)) {
        (false, false) => Err(malformed(format!("Missing required field {field}"))),
        (true, true) => Err(malformed(format!(
            "A statement may not have both {field} and {not_field}"
        ))),
        _ => Ok(()),
    }
}

/// One statement, checked against S3's rules and normalised.
fn statement(s: Value, bucket: &str, known: &Principals) -> Result<Value, PolicyError> {
    let Value::Object(mut s) = s else {
        return Err(malformed("Statement must be an object"));
    };
    if let Some(k) = s.keys().find(|k| !STATEMENT_FIELDS.contains(&k.as_str())) {
        return Err(malformed(format!("Unknown field {k}")));
    }
    match s.get("Effect") {
        Some(Value::String(e)) if e == "Allow" || e == "Deny" => {}
        None => return Err(malformed("Missing required field Effect")),
        Some(other) => return Err(malformed(format!("Invalid effect: {other}"))),
    }
    one_of(&s, "Principal", "NotPrincipal")?;
    one_of(&s, "Action", "NotAction")?;
    one_of(&s, "Resource", "NotResource")?;
    for field in ["Principal", "NotPrincipal"] {
        if let Some(p) = s.get_mut(field) {
            *p = principal(p.take(), known)?;
        }
    }
    let actions = strings(
        s.get("Action").or(s.get("NotAction")),
        "Policy has invalid action",
    )?;
    let kinds: Vec<Vec<On>> = actions
        .iter()
        .map(|a| matching_actions(a).collect())
        .collect();
    if kinds.iter().any(Vec::is_empty) {
        return Err(malformed("Policy has invalid action"));
    }
    let resources = strings(
        s.get("Resource").or(s.get("NotResource")),
        "Policy has invalid resource",
    )?;
    let resource_kinds = resources
        .iter()
        .map(|r| resource_kind(r, bucket).ok_or_else(|| malformed("Policy has invalid resource")))
        .collect::<Result<Vec<_>, _>>()?;
    let applicable = kinds
        .iter()
        .flatten()
        .any(|on| resource_kinds.iter().any(|kind| applies(*on, *kind)));
    if s.contains_key("Action") && s.contains_key("Resource") && !applicable {
        return Err(malformed(
            "Action does not apply to any resource(s) in statement",
        ));
    }
    if let Some(c) = s.get_mut("Condition") {
        *c = condition(c.take())?;
    }
    Ok(Value::Object(s))
}

/// Replaces `${key}` policy variables in every string with the request's value of
/// `key` (a variable the request has no string value for stays as written).
fn substitute(v: &mut Value, facts: &Facts) {
    match v {
        Value::String(s) if s.contains("${") => {
            let mut out = String::with_capacity(s.len());
            let mut rest = s.as_str();
            while let Some(start) = rest.find("${") {
                out.push_str(&rest[..start]);
                let after = &rest[start + 2..];
                let Some(end) = after.find('}') else {
                    out.push_str(&rest[start..]);
                    rest = "";
                    break;
                };
                let name = &after[..end];
                match facts.get(name).and_then(|v| v.as_string()) {
                    Some(value) => out.push_str(value),
                    None => out.push_str(&rest[start..start + 3 + end]),
                }
                rest = &after[end + 1..];
            }
            out.push_str(rest);
            *s = out;
        }
        Value::Array(a) => a.iter_mut().for_each(|v| substitute(v, facts)),
        Value::Object(m) => m.values_mut().for_each(|v| substitute(v, facts)),
        _ => {}
    }
}

/// A policy made ready to judge one request's actions.
pub struct Judge {
    evaluator: Option<iam_rs::PolicyEvaluator>,
    principal: iam_rs::Principal,
    facts: Facts,
}

impl Judge {
    /// The verdict on `action` on `resource` (an ARN).
    pub fn verdict(&self, action: &str, resource: &str) -> Verdict {
        let Some(evaluator) = &self.evaluator else {
            return Verdict::Deny;
        };
        let Ok(resource) = iam_rs::Arn::parse(resource) else {
            return Verdict::Deny;
        };
        let request = iam_rs::IAMRequest::new_with_context(
            self.principal.clone(),
            action,
            resource,
            self.facts.clone(),
        );
        match evaluator.evaluate(&request) {
            Ok(r) => match r.decision {
                iam_rs::Decision::Allow => Verdict::Allow,
                iam_rs::Decision::Deny => Verdict::Deny,
                iam_rs::Decision::NotApplicable => Verdict::Silent,
            },
            Err(e) => {
                tracing::warn!(error = %e, action, "a bucket policy could not be evaluated; denied");
                Verdict::Deny
            }
        }
    }
}

impl BucketPolicy {
    /// A policy document as PutBucketPolicy gives it, for `bucket`.
    pub fn parse(text: &str, bucket: &str, known: &Principals) -> Result<Self, PolicyError> {
        if text.len() > MAX_POLICY_BYTES {
            return Err(malformed("Policies must not exceed 20 KB"));
        }
        let not_json = || malformed("Policies must be valid JSON and the first byte must be '{'");
        if !text.starts_with('{') {
            return Err(not_json());
        }
        let Ok(Value::Object(mut top)) = serde_json::from_str::<Value>(text) else {
            return Err(not_json());
        };
        if let Some(k) = top
            .keys()
            .find(|k| !matches!(k.as_str(), "Version" | "Id" | "Statement"))
        {
            return Err(malformed(format!("Unknown field {k}")));
        }
        match top.get("Version") {
            None => {
                top.insert("Version".into(), Value::String("2008-10-17".into()));
            }
            Some(Value::String(v)) if v == "2012-10-17" || v == "2008-10-17" => {}
            Some(_) => return Err(malformed("Invalid policy version")),
        }
        let statements = match top.remove("Statement") {
            Some(Value::Array(a)) if !a.is_empty() => a,
            Some(o @ Value::Object(_)) => vec![o],
            _ => return Err(malformed("Missing required field Statement")),
        };
        let statements = statements
            .into_iter()
            .map(|s| statement(s, bucket, known))
            .collect::<Result<Vec<_>, _>>()?;
        top.insert("Statement".into(), Value::Array(statements));
        let policy = BucketPolicy {
            text: text.to_owned(),
            normalised: Value::Object(top),
        };
        policy
            .document(&Facts::new())
            .map_err(|e| malformed(format!("Policy has an invalid element: {e}")))?;
        Ok(policy)
    }

    /// The text as it was put.
    pub fn text(&self) -> &str {
        &self.text
    }

    fn document(&self, facts: &Facts) -> Result<iam_rs::IAMPolicy, serde_json::Error> {
        let mut doc = self.normalised.clone();
        substitute(&mut doc, facts);
        serde_json::from_value(doc)
    }

    /// The policy ready to judge a request of `principal` (an ARN; `None`:
    /// anonymous) that brings `facts`.
    pub fn judge(&self, principal: Option<&str>, facts: Facts) -> Judge {
        let evaluator = match self.document(&facts) {
            Ok(doc) => Some(iam_rs::PolicyEvaluator::with_policies(vec![doc])),
            Err(e) => {
                tracing::warn!(error = %e, "a stored bucket policy does not parse; denied");
                None
            }
        };
        Judge {
            evaluator,
            principal: iam_rs::Principal::Aws(iam_rs::PrincipalId::String(
                principal.unwrap_or(ANONYMOUS_ARN).to_owned(),
            )),
            facts,
        }
    }

    fn statements(&self) -> impl Iterator<Item = &Map<String, Value>> {
        self.normalised
            .get("Statement")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object)
    }

    /// Whether a condition names `key_prefix` (case as normalised).
    pub fn conditions_name(&self, key_prefix: &str) -> bool {
        self.statements().any(|s| {
            s.get("Condition")
                .and_then(Value::as_object)
                .is_some_and(|ops| {
                    ops.values()
                        .filter_map(Value::as_object)
                        .any(|keys| keys.keys().any(|k| k.starts_with(key_prefix)))
                })
        })
    }

    /// Whether the policy allows something to everyone, as S3 judges it: an Allow
    /// to `*` (or with NotPrincipal) that no condition narrows to fixed accounts,
    /// sources or addresses.
    pub fn is_public(&self) -> bool {
        self.statements().any(|s| {
            let allow = s.get("Effect").and_then(Value::as_str) == Some("Allow");
            let everyone = s.contains_key("NotPrincipal")
                || s.get("Principal").is_some_and(|p| {
                    p.as_str() == Some("*") || p.get("AWS").and_then(Value::as_str) == Some("*")
                });
            allow && everyone && !narrowed(s.get("Condition"))
        })
    }
}

/// Whether a condition block holds a statement to fixed values of a narrowing key.
fn narrowed(condition: Option<&Value>) -> bool {
    let Some(ops) = condition.and_then(Value::as_object) else {
        return false;
    };
    ops.iter().any(|(op, keys)| {
        let positive = !op.contains("Not") && !op.starts_with("Null") && !op.ends_with("IfExists");
        positive
            && keys.as_object().is_some_and(|keys| {
                keys.iter().any(|(key, values)| {
                    let key = key.to_ascii_lowercase();
                    NARROWING_KEYS.contains(&key.as_str()) && fixed_values(&key, values)
                })
            })
    })
}

fn fixed_values(key: &str, values: &Value) -> bool {
    let fixed = |v: &Value| {
        v.as_str().is_some_and(|s| {
            !s.contains(['*', '?'])
                && !(key == "aws:sourceip" && (s.ends_with("/0") || s.is_empty()))
        })
    };
    match values {
        Value::Array(a) => !a.is_empty() && a.iter().all(fixed),
        v => fixed(v),
    }
}

/// The bucket's policy, if it has one.
pub async fn load(meta: &MetaStore, bucket: &str) -> Result<Option<BucketPolicy>, PolicyError> {
    let Some(doc) = meta.bucket_config(bucket, BucketConfigKind::Policy).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&doc)
        .map(Some)
        .map_err(|source| PolicyError::Unreadable {
            bucket: bucket.to_owned(),
            source,
        })
}

/// Stores (or, `None`, removes) the bucket's policy.
pub async fn store(
    meta: &MetaStore,
    bucket: &str,
    policy: Option<&BucketPolicy>,
) -> Result<(), PolicyError> {
    // A string and a JSON value: serialising them cannot fail.
    let doc = policy.map(|p| serde_json::to_vec(p).unwrap_or_default());
    Ok(meta
        .set_bucket_config(bucket, BucketConfigKind::Policy, doc)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCOUNT: &str = "123456789012";
    const ALICE: &str = "arn:aws:iam::123456789012:user/alice";
    const BOB: &str = "arn:aws:iam::123456789012:user/bob";

    fn parse(text: &str) -> Result<BucketPolicy, PolicyError> {
        let exists = |name: &str| name == "alice" || name == "bob";
        let canonical = |id: &str| (id == "a1a1").then(|| ALICE.to_owned());
        BucketPolicy::parse(
            text,
            "photos",
            &Principals {
                account_id: ACCOUNT,
                user_exists: &exists,
                arn_of_canonical_id: &canonical,
            },
        )
    }

    fn policy(statements: &str) -> BucketPolicy {
        let text = format!(r#"{{"Version":"2012-10-17","Statement":[{statements}]}}"#);
        parse(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    fn message(text: &str) -> String {
        match parse(text) {
            Err(PolicyError::Malformed(m)) => m,
            other => panic!("{text} was not refused: {other:?}"),
        }
    }

    fn facts(pairs: &[(&str, &str)]) -> Facts {
        let mut f = Facts::new();
        for (k, v) in pairs {
            f.insert(
                (*k).to_owned(),
                iam_rs::ContextValue::String((*v).to_owned()),
            );
        }
        f
    }

    fn obj(key: &str) -> String {
        resource_arn("photos", Some(key))
    }

    const BUCKET: &str = "arn:aws:s3:::photos";

    #[test]
    fn malformed_policies_get_s3s_messages() {
        let table = [
            (
                "",
                "Policies must be valid JSON and the first byte must be '{'",
            ),
            (
                "[1]",
                "Policies must be valid JSON and the first byte must be '{'",
            ),
            (
                "{not json",
                "Policies must be valid JSON and the first byte must be '{'",
            ),
            (
                r#"{"Version":"2012-10-17"}"#,
                "Missing required field Statement",
            ),
            (r#"{"Statement":[]}"#, "Missing required field Statement"),
            (
                r#"{"Version":"2011","Statement":[]}"#,
                "Invalid policy version",
            ),
            (r#"{"Statment":[]}"#, "Unknown field Statment"),
            (
                r#"{"Statement":{"Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::photos/*"}}"#,
                "Missing required field Effect",
            ),
            (
                r#"{"Statement":{"Effect":"Allo","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::photos/*"}}"#,
                "Invalid effect: \"Allo\"",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::photos/*"}}"#,
                "Missing required field Principal",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Resource":"arn:aws:s3:::photos/*"}}"#,
                "Missing required field Action",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:GetObject"}}"#,
                "Missing required field Resource",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:GetObjekt","Resource":"arn:aws:s3:::photos/*"}}"#,
                "Policy has invalid action",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"ec2:RunInstances","Resource":"arn:aws:s3:::photos/*"}}"#,
                "Policy has invalid action",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::other/*"}}"#,
                "Policy has invalid resource",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::photos"}}"#,
                "Action does not apply to any resource(s) in statement",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:ListBucket","Resource":"arn:aws:s3:::photos/*"}}"#,
                "Action does not apply to any resource(s) in statement",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:user/carol"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::photos/*"}}"#,
                "Invalid principal in policy",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::999999999999:user/alice"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::photos/*"}}"#,
                "Invalid principal in policy",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":{"Federated":"cognito-identity.amazonaws.com"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::photos/*"}}"#,
                "Invalid principal in policy",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::photos/*","Condition":{"StringEqualz":{"s3:prefix":"a"}}}}"#,
                "Invalid Condition type : StringEqualz",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::photos/*","Condition":{"StringEquals":{"s3:bogus":"a"}}}}"#,
                "Policy has an invalid condition key: s3:bogus",
            ),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::photos/*","Extra":1}}"#,
                "Unknown field Extra",
            ),
        ];
        for (text, expected) in table {
            assert_eq!(message(text), expected, "{text}");
        }
        let big = format!(
            r#"{{"Statement":{{"Sid":"{}","Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::photos/*"}}}}"#,
            "x".repeat(MAX_POLICY_BYTES)
        );
        assert_eq!(message(&big), "Policies must not exceed 20 KB");
    }

    #[test]
    fn principals_actions_and_resources_match_as_iam_matches_them() {
        let p = policy(
            r#"{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::photos/public/*"},
               {"Effect":"Allow","Principal":{"AWS":["arn:aws:iam:::user/alice"]},"Action":["s3:Get*","s3:List*"],"Resource":["arn:aws:s3:::photos","arn:aws:s3:::photos/*"]},
               {"Effect":"Allow","Principal":{"CanonicalUser":"a1a1"},"Action":"s3:PutObject","Resource":"arn:aws:s3:::photos/uploads/*"},
               {"Effect":"Allow","Principal":{"AWS":"123456789012"},"Action":"s3:*","Resource":"arn:aws:s3:::photos/root/*"},
               {"Effect":"Allow","NotPrincipal":{"AWS":"arn:aws:iam::123456789012:user/bob"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::photos/not-bob/*"},
               {"Effect":"Allow","Principal":"*","NotAction":"s3:Delete*","NotResource":"arn:aws:s3:::photos/private/*","Condition":{"StringEquals":{"aws:Referer":"https://photos.example/"}}}"#,
        );
        let root = "arn:aws:iam::123456789012:root";
        let table: &[(Option<&str>, &str, String, Verdict)] = &[
            (None, "s3:GetObject", obj("public/a.jpg"), Verdict::Allow),
            (None, "s3:GetObject", obj("secret/a.jpg"), Verdict::Silent),
            (None, "s3:PutObject", obj("public/a.jpg"), Verdict::Silent),
            (
                Some(ALICE),
                "s3:ListBucket",
                BUCKET.to_owned(),
                Verdict::Allow,
            ),
            (Some(ALICE), "s3:GetObjectTagging", obj("x"), Verdict::Allow),
            (
                Some(BOB),
                "s3:ListBucket",
                BUCKET.to_owned(),
                Verdict::Silent,
            ),
            (
                Some(ALICE),
                "s3:PutObject",
                obj("uploads/x"),
                Verdict::Allow,
            ),
            (Some(BOB), "s3:PutObject", obj("uploads/x"), Verdict::Silent),
            (Some(root), "s3:DeleteObject", obj("root/x"), Verdict::Allow),
            (
                Some(ALICE),
                "s3:DeleteObject",
                obj("root/x"),
                Verdict::Silent,
            ),
            (
                Some(ALICE),
                "s3:GetObject",
                obj("not-bob/x"),
                Verdict::Allow,
            ),
            (None, "s3:GetObject", obj("not-bob/x"), Verdict::Allow),
            (Some(BOB), "s3:GetObject", obj("not-bob/x"), Verdict::Silent),
        ];
        for (who, action, resource, expected) in table {
            let verdict = p.judge(*who, Facts::new()).verdict(action, resource);
            assert_eq!(verdict, *expected, "{who:?} {action} {resource}");
        }
        let referred = facts(&[("aws:Referer", "https://photos.example/")]);
        let j = p.judge(Some(BOB), referred);
        assert_eq!(j.verdict("s3:PutObject", &obj("any")), Verdict::Allow);
        assert_eq!(j.verdict("s3:DeleteObject", &obj("any")), Verdict::Silent);
        assert_eq!(
            j.verdict("s3:PutObject", &obj("private/x")),
            Verdict::Silent
        );
    }

    #[test]
    fn conditions_judge_the_facts_a_request_brings() {
        let p = policy(
            r#"{"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":["arn:aws:s3:::photos","arn:aws:s3:::photos/*"],"Condition":{"Bool":{"aws:SecureTransport":"false"}}},
               {"Effect":"Allow","Principal":"*","Action":"s3:ListBucket","Resource":"arn:aws:s3:::photos","Condition":{"StringLike":{"s3:prefix":"home/${aws:username}/*"},"NumericLessThanEquals":{"s3:max-keys":"100"}}},
               {"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::photos/*","Condition":{"IpAddress":{"aws:SourceIp":["10.0.0.0/8","2001:db8::/32"]}}},
               {"Effect":"Deny","Principal":"*","Action":"s3:PutObject","Resource":"arn:aws:s3:::photos/*","Condition":{"StringNotEquals":{"s3:x-amz-acl":["private","bucket-owner-full-control"]}}},
               {"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::photos/*","Condition":{"StringEquals":{"s3:ExistingObjectTag/share":"yes"}}},
               {"Effect":"Deny","Principal":"*","Action":"s3:PutObjectTagging","Resource":"arn:aws:s3:::photos/*","Condition":{"StringEquals":{"s3:RequestObjectTag/share":"yes"}}}"#,
        );
        assert!(p.conditions_name(EXISTING_TAG));
        let secure = |pairs: &[(&str, &str)]| {
            let mut f = facts(pairs);
            f.insert(
                "aws:SecureTransport".into(),
                iam_rs::ContextValue::Boolean(true),
            );
            f
        };
        let with_max_keys = |mut f: Facts, n: f64| {
            f.insert("s3:max-keys".into(), iam_rs::ContextValue::Number(n));
            f
        };
        let mut plain = Facts::new();
        plain.insert(
            "aws:SecureTransport".into(),
            iam_rs::ContextValue::Boolean(false),
        );
        let home = secure(&[("aws:username", "alice"), ("s3:prefix", "home/alice/2026")]);
        let others = secure(&[("aws:username", "alice"), ("s3:prefix", "home/bob/")]);
        let table: Vec<(Facts, &str, String, Verdict)> = vec![
            (plain.clone(), "s3:GetObjectAcl", obj("x"), Verdict::Deny),
            // A condition on a key the request lacks (s3:max-keys) does not hold.
            (
                home.clone(),
                "s3:ListBucket",
                BUCKET.into(),
                Verdict::Silent,
            ),
            (
                with_max_keys(home.clone(), 1000.0),
                "s3:ListBucket",
                BUCKET.into(),
                Verdict::Silent,
            ),
            (
                with_max_keys(home, 10.0),
                "s3:ListBucket",
                BUCKET.into(),
                Verdict::Allow,
            ),
            (others, "s3:ListBucket", BUCKET.into(), Verdict::Silent),
            (
                secure(&[("aws:SourceIp", "10.9.8.7")]),
                "s3:GetObject",
                obj("x"),
                Verdict::Allow,
            ),
            (
                secure(&[("aws:SourceIp", "2001:db8::1")]),
                "s3:GetObject",
                obj("x"),
                Verdict::Allow,
            ),
            (
                secure(&[("aws:SourceIp", "192.0.2.1")]),
                "s3:GetObject",
                obj("x"),
                Verdict::Silent,
            ),
            (
                secure(&[("s3:x-amz-acl", "public-read")]),
                "s3:PutObject",
                obj("x"),
                Verdict::Deny,
            ),
            (secure(&[]), "s3:PutObject", obj("x"), Verdict::Deny),
            (
                secure(&[("s3:x-amz-acl", "private")]),
                "s3:PutObject",
                obj("x"),
                Verdict::Silent,
            ),
            (
                secure(&[("s3:ExistingObjectTag/share", "yes")]),
                "s3:GetObject",
                obj("x"),
                Verdict::Allow,
            ),
            (
                secure(&[("s3:ExistingObjectTag/share", "no")]),
                "s3:GetObject",
                obj("x"),
                Verdict::Silent,
            ),
            (
                secure(&[("s3:RequestObjectTag/share", "yes")]),
                "s3:PutObjectTagging",
                obj("x"),
                Verdict::Deny,
            ),
            (
                secure(&[("s3:RequestObjectTag/share", "no")]),
                "s3:PutObjectTagging",
                obj("x"),
                Verdict::Silent,
            ),
        ];
        for (f, action, resource, expected) in table {
            let shown = format!("{f:?}");
            assert_eq!(
                p.judge(Some(ALICE), f).verdict(action, &resource),
                expected,
                "{action} {shown}"
            );
        }
    }

    #[test]
    fn condition_keys_are_matched_in_any_case_and_stored_canonically() {
        let p = policy(
            r#"{"Effect":"Deny","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::photos/*","Condition":{"Bool":{"AWS:securetransport":"false"}}}"#,
        );
        let mut f = Facts::new();
        f.insert(
            "aws:SecureTransport".into(),
            iam_rs::ContextValue::Boolean(false),
        );
        assert_eq!(
            p.judge(None, f).verdict("s3:GetObject", &obj("x")),
            Verdict::Deny
        );
    }

    #[test]
    fn public_policies_are_told_from_narrowed_ones() {
        let allow = |principal: &str, condition: &str| {
            policy(&format!(
                r#"{{"Effect":"Allow","Principal":{principal},"Action":"s3:GetObject","Resource":"arn:aws:s3:::photos/*"{condition}}}"#
            ))
            .is_public()
        };
        assert!(allow(r#""*""#, ""));
        assert!(allow(r#"{"AWS":"*"}"#, ""));
        assert!(!allow(
            r#"{"AWS":"arn:aws:iam::123456789012:user/alice"}"#,
            ""
        ));
        assert!(!allow(
            r#""*""#,
            r#","Condition":{"IpAddress":{"aws:SourceIp":"10.1.0.0/16"}}"#
        ));
        assert!(allow(
            r#""*""#,
            r#","Condition":{"IpAddress":{"aws:SourceIp":"0.0.0.0/0"}}"#
        ));
        assert!(allow(
            r#""*""#,
            r#","Condition":{"StringLike":{"aws:Referer":"https://x/*"}}"#
        ));
        assert!(!allow(
            r#""*""#,
            r#","Condition":{"StringEquals":{"aws:SourceVpce":"vpce-1a2b"}}"#
        ));
        let deny = policy(
            r#"{"Effect":"Deny","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::photos/*"}"#,
        );
        assert!(!deny.is_public());
    }

    #[test]
    fn actions_of_operations_follow_s3s_names() {
        let table = [
            ("GetObject", false, "s3:GetObject"),
            ("HeadObject", true, "s3:GetObjectVersion"),
            ("DeleteObject", true, "s3:DeleteObjectVersion"),
            ("ListObjectsV2", false, "s3:ListBucket"),
            ("HeadBucket", false, "s3:ListBucket"),
            ("ListObjectVersions", false, "s3:ListBucketVersions"),
            ("UploadPart", false, "s3:PutObject"),
            ("GetBucketCors", false, "s3:GetBucketCORS"),
            (
                "DeleteBucketLifecycle",
                false,
                "s3:PutLifecycleConfiguration",
            ),
            ("GetBucketPolicy", false, "s3:GetBucketPolicy"),
            ("PutBucketVersioning", false, "s3:PutBucketVersioning"),
        ];
        for (op, versioned, expected) in table {
            assert_eq!(action_of(op, versioned), expected, "{op}");
            let name = expected.trim_start_matches("s3:");
            assert!(
                ACTIONS.iter().any(|(a, _)| *a == name),
                "{expected} is in the action table"
            );
        }
    }
}
