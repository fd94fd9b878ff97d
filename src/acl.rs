//! `acl` owns S3 access control lists as hoard keeps them (`meta::Acl`, the grants
//! beside the owner's own full control): the canned ACLs and `x-amz-grant-*`
//! headers a request gives, and what a list allows a requester; and the bucket
//! controls that govern ACLs, stored as JSON bucket documents: the public access
//! block and object ownership (`BucketOwnerEnforced` disables ACLs). The XML of
//! Put/Get{Bucket,Object}Acl is `s3/acl.rs`; where the lists are consulted is
//! `access`.
//!
//! What a grant allows, as S3 maps ACL permissions to operations:
//!
//! | on | READ | WRITE | READ_ACP | WRITE_ACP |
//! |---|---|---|---|---|
//! | a bucket | list it (ListObjects, ListObjectVersions, HeadBucket) | write and delete its objects, multipart uploads | GetBucketAcl | PutBucketAcl |
//! | an object version | GetObject, HeadObject | (not for objects) | GetObjectAcl | PutObjectAcl |
//!
//! FULL_CONTROL is all four. Invariants: an ACL only ever adds to what hoard's own
//! grants allow (it never takes a permission away), and hoard's buckets and objects
//! all belong to the store's owner, so `bucket-owner-*` canned ACLs name the owner
//! and are private.

use http::HeaderMap;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::meta::{Acl, AclGrant, AclPermission, BucketConfigKind, Grantee, MetaError, MetaStore};

pub const ALL_USERS_URI: &str = "http://acs.amazonaws.com/groups/global/AllUsers";
pub const AUTHENTICATED_USERS_URI: &str =
    "http://acs.amazonaws.com/groups/global/AuthenticatedUsers";
pub const LOG_DELIVERY_URI: &str = "http://acs.amazonaws.com/groups/s3/LogDelivery";

/// The grant headers and the permission each gives.
const GRANT_HEADERS: [(&str, AclPermission); 5] = [
    ("x-amz-grant-read", AclPermission::Read),
    ("x-amz-grant-write", AclPermission::Write),
    ("x-amz-grant-read-acp", AclPermission::ReadAcp),
    ("x-amz-grant-write-acp", AclPermission::WriteAcp),
    ("x-amz-grant-full-control", AclPermission::FullControl),
];

#[derive(Debug, thiserror::Error)]
pub enum AclError {
    #[error("metadata: {0}")]
    Meta(#[from] MetaError),
    #[error("stored {kind} of bucket {bucket} is unreadable: {source}")]
    Unreadable {
        bucket: String,
        kind: &'static str,
        source: serde_json::Error,
    },
    #[error("invalid canned ACL {0:?}")]
    InvalidCanned(String),
    #[error("Specifying both Canned ACLs and Header Grants is not allowed")]
    CannedAndGrants,
    #[error("invalid grant {0:?}")]
    BadGrant(String),
    #[error("the group {0:?} is not one S3 defines")]
    UnknownGroup(String),
    #[error("The e-mail address you provided does not match any account on record.")]
    ByEmail,
}

/// A bucket's public access block (all false: nothing blocked).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicAccessBlock {
    /// Refuse requests that would set a public ACL.
    pub block_public_acls: bool,
    /// Public grants in ACLs count for nothing.
    pub ignore_public_acls: bool,
    /// Refuse a bucket policy that is public.
    pub block_public_policy: bool,
    /// A public policy allows only signed hoard principals.
    pub restrict_public_buckets: bool,
}

/// A bucket's object ownership control. `BucketOwnerEnforced` disables ACLs:
/// they are neither set nor consulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObjectOwnership {
    BucketOwnerEnforced,
    BucketOwnerPreferred,
    ObjectWriter,
}

/// The bucket controls an ACL decision needs.
#[derive(Debug, Clone, Default)]
pub struct BucketControls {
    pub acl: Option<Acl>,
    pub public_access_block: PublicAccessBlock,
    pub ownership: Option<ObjectOwnership>,
}

impl BucketControls {
    pub fn acls_enabled(&self) -> bool {
        self.ownership != Some(ObjectOwnership::BucketOwnerEnforced)
    }
}

fn kind_name(kind: BucketConfigKind) -> &'static str {
    match kind {
        BucketConfigKind::Acl => "ACL",
        BucketConfigKind::PublicAccessBlock => "public access block",
        BucketConfigKind::Ownership => "ownership controls",
        _ => "configuration",
    }
}

/// A bucket document stored as JSON.
pub async fn load_doc<T: DeserializeOwned>(
    meta: &MetaStore,
    bucket: &str,
    kind: BucketConfigKind,
) -> Result<Option<T>, AclError> {
    let Some(doc) = meta.bucket_config(bucket, kind).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&doc)
        .map(Some)
        .map_err(|source| AclError::Unreadable {
            bucket: bucket.to_owned(),
            kind: kind_name(kind),
            source,
        })
}

/// Stores (or, `None`, removes) a bucket document as JSON.
pub async fn store_doc<T: Serialize>(
    meta: &MetaStore,
    bucket: &str,
    kind: BucketConfigKind,
    doc: Option<&T>,
) -> Result<(), AclError> {
    // The documents are structs of strings, bools and enums: they always serialise.
    let bytes = doc.map(|d| serde_json::to_vec(d).unwrap_or_default());
    Ok(meta.set_bucket_config(bucket, kind, bytes).await?)
}

/// A bucket's ACL, public access block and ownership control.
pub async fn bucket_controls(meta: &MetaStore, bucket: &str) -> Result<BucketControls, AclError> {
    Ok(BucketControls {
        acl: load_doc(meta, bucket, BucketConfigKind::Acl).await?,
        public_access_block: load_doc(meta, bucket, BucketConfigKind::PublicAccessBlock)
            .await?
            .unwrap_or_default(),
        ownership: load_doc(meta, bucket, BucketConfigKind::Ownership).await?,
    })
}

fn grant(grantee: Grantee, permission: AclPermission) -> AclGrant {
    AclGrant {
        grantee,
        permission,
    }
}

/// The list a canned ACL names (`None`: private). `log-delivery-write` is for
/// buckets only.
pub fn canned(name: &str, for_bucket: bool) -> Result<Option<Acl>, AclError> {
    use AclPermission::*;
    let grants = match name {
        "private" | "bucket-owner-read" | "bucket-owner-full-control" | "aws-exec-read" => {
            return Ok(None);
        }
        "public-read" => vec![grant(Grantee::AllUsers, Read)],
        "public-read-write" => vec![
            grant(Grantee::AllUsers, Read),
            grant(Grantee::AllUsers, Write),
        ],
        "authenticated-read" => vec![grant(Grantee::AuthenticatedUsers, Read)],
        "log-delivery-write" if for_bucket => vec![
            grant(Grantee::LogDelivery, Write),
            grant(Grantee::LogDelivery, ReadAcp),
        ],
        other => return Err(AclError::InvalidCanned(other.to_owned())),
    };
    Ok(Some(Acl { grants }))
}

/// The grantee a group URI names.
pub fn group(uri: &str) -> Result<Grantee, AclError> {
    match uri {
        ALL_USERS_URI => Ok(Grantee::AllUsers),
        AUTHENTICATED_USERS_URI => Ok(Grantee::AuthenticatedUsers),
        LOG_DELIVERY_URI => Ok(Grantee::LogDelivery),
        other => Err(AclError::UnknownGroup(other.to_owned())),
    }
}

/// One `x-amz-grant-*` value: `id="..."`, `uri="..."` or `emailAddress="..."`,
/// comma-separated.
fn parse_grantees(value: &str) -> Result<Vec<Grantee>, AclError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(|g| {
            let bad = || AclError::BadGrant(g.to_owned());
            let (kind, quoted) = g.split_once('=').ok_or_else(bad)?;
            let v = quoted
                .trim()
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .ok_or_else(bad)?;
            match kind.trim() {
                "id" if !v.is_empty() => Ok(Grantee::Id(v.to_owned())),
                "uri" => group(v),
                "emailAddress" => Err(AclError::ByEmail),
                _ => Err(bad()),
            }
        })
        .collect()
}

/// The list a request gives: its canned ACL or its grant headers (not both).
/// `None`: the request names no ACL; `Some(None)`: it names a private one.
pub fn from_request(
    canned_acl: Option<&str>,
    headers: &HeaderMap,
    for_bucket: bool,
) -> Result<Option<Option<Acl>>, AclError> {
    let mut grants = Vec::new();
    for (name, permission) in GRANT_HEADERS {
        for value in headers.get_all(name) {
            let value = value
                .to_str()
                .map_err(|_| AclError::BadGrant(name.to_owned()))?;
            grants.extend(
                parse_grantees(value)?
                    .into_iter()
                    .map(|grantee| grant(grantee, permission)),
            );
        }
    }
    let named_grants = GRANT_HEADERS.iter().any(|(h, _)| headers.contains_key(*h));
    match (canned_acl, named_grants) {
        (Some(_), true) => Err(AclError::CannedAndGrants),
        (Some(name), false) => canned(name, for_bucket).map(Some),
        (None, true) => Ok(Some((!grants.is_empty()).then_some(Acl { grants }))),
        (None, false) => Ok(None),
    }
}

/// Whether a list grants anything to everyone or to every signed key.
pub fn is_public(acl: &Acl) -> bool {
    acl.grants
        .iter()
        .any(|g| matches!(g.grantee, Grantee::AllUsers | Grantee::AuthenticatedUsers))
}

/// Who asks, as an ACL sees it: nobody, or a signed principal's canonical id.
#[derive(Debug, Clone, Copy)]
pub enum Requester<'a> {
    Anonymous,
    Signed(&'a str),
}

/// Whether `acl` gives `requester` the permission `wanted` (FULL_CONTROL gives
/// every one). `ignore_public`: grants to everyone and to every signed key count
/// for nothing (a public access block's IgnorePublicAcls).
pub fn allows(
    acl: Option<&Acl>,
    requester: Requester,
    wanted: AclPermission,
    ignore_public: bool,
) -> bool {
    let Some(acl) = acl else { return false };
    acl.grants.iter().any(|g| {
        let names_requester = match (&g.grantee, requester) {
            (Grantee::AllUsers, _) => !ignore_public,
            (Grantee::AuthenticatedUsers, Requester::Signed(_)) => !ignore_public,
            (Grantee::Id(id), Requester::Signed(me)) => id == me,
            _ => false,
        };
        names_requester && (g.permission == wanted || g.permission == AclPermission::FullControl)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use AclPermission::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, http::HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn canned_acls_name_s3s_grants_and_unknown_ones_are_refused() {
        assert_eq!(canned("private", false).unwrap(), None);
        assert_eq!(canned("bucket-owner-full-control", false).unwrap(), None);
        let public = canned("public-read-write", true).unwrap().unwrap();
        assert_eq!(public.grants.len(), 2);
        assert!(is_public(&public));
        assert!(canned("log-delivery-write", true).unwrap().is_some());
        assert!(matches!(
            canned("log-delivery-write", false),
            Err(AclError::InvalidCanned(_))
        ));
        assert!(matches!(
            canned("public", false),
            Err(AclError::InvalidCanned(_))
        ));
    }

    #[test]
    fn grant_headers_parse_ids_and_groups_and_refuse_emails_and_mixing() {
        let h = headers(&[
            (
                "x-amz-grant-read",
                "id=\"abc\", uri=\"http://acs.amazonaws.com/groups/global/AllUsers\"",
            ),
            ("x-amz-grant-write-acp", "id=\"def\""),
        ]);
        let acl = from_request(None, &h, false).unwrap().unwrap().unwrap();
        assert_eq!(
            acl.grants,
            [
                grant(Grantee::Id("abc".into()), Read),
                grant(Grantee::AllUsers, Read),
                grant(Grantee::Id("def".into()), WriteAcp),
            ]
        );
        assert!(matches!(
            from_request(Some("private"), &h, false),
            Err(AclError::CannedAndGrants)
        ));
        let email = headers(&[("x-amz-grant-read", "emailAddress=\"a@b.example\"")]);
        assert!(matches!(
            from_request(None, &email, false),
            Err(AclError::ByEmail)
        ));
        let unquoted = headers(&[("x-amz-grant-read", "id=abc")]);
        assert!(matches!(
            from_request(None, &unquoted, false),
            Err(AclError::BadGrant(_))
        ));
        let group = headers(&[(
            "x-amz-grant-read",
            "uri=\"http://acs.amazonaws.com/groups/x\"",
        )]);
        assert!(matches!(
            from_request(None, &group, false),
            Err(AclError::UnknownGroup(_))
        ));
        assert_eq!(from_request(None, &HeaderMap::new(), false).unwrap(), None);
    }

    #[test]
    fn grants_allow_their_grantee_their_permission_and_full_control_all() {
        let acl = Acl {
            grants: vec![
                grant(Grantee::AllUsers, Read),
                grant(Grantee::AuthenticatedUsers, ReadAcp),
                grant(Grantee::Id("u1".into()), FullControl),
            ],
        };
        let anon = Requester::Anonymous;
        let u1 = Requester::Signed("u1");
        let u2 = Requester::Signed("u2");
        let table = [
            (anon, Read, false, true),
            (anon, Read, true, false),
            (anon, ReadAcp, false, false),
            (u2, ReadAcp, false, true),
            (u2, ReadAcp, true, false),
            (u2, Write, false, false),
            (u1, Write, true, true),
            (u1, WriteAcp, false, true),
        ];
        for (who, wanted, ignore_public, expected) in table {
            assert_eq!(
                allows(Some(&acl), who, wanted, ignore_public),
                expected,
                "{who:?} {wanted:?} ignore_public={ignore_public}"
            );
        }
        assert!(!allows(None, u1, Read, false), "no list: private");
    }
}
