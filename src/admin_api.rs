//! `admin_api` owns the admin API's shape as both ends see it: the path prefix and
//! the request and answer types of `/hoard-admin/v1/`. The server (`admin`) and the
//! client (`client`) both import it; the endpoint table is in `admin`'s docs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::meta::Permission;
use crate::repair::RepairReport;
use crate::verify::VerifyReport;

pub const PREFIX: &str = "/hoard-admin/v1/";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CreateBucketRequest {
    pub chunk_avg: Option<u32>,
    pub chunk_min: Option<u32>,
    pub chunk_max: Option<u32>,
    pub compression_level: Option<i32>,
    /// Object Lock enabled from the start (versioning Enabled for good).
    #[serde(default)]
    pub object_lock: bool,
}

/// Sets (`bytes`) or removes (`bytes: null`) the quota of `bucket`, or of the whole
/// store when `bucket` is null.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct QuotaRequest {
    pub bucket: Option<String>,
    pub bytes: Option<u64>,
}

/// Body of a bucket's tier policy (`PUT /hoard-admin/v1/buckets/NAME/tier`):
/// seconds after which the segments its writes stored move to the cloud tier, or
/// `null` to follow the store's `[tier] after` again. Answers every bucket's policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketTierRequest {
    pub after_secs: Option<u64>,
}

/// Each bucket's tier policy, in seconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketTiers {
    pub buckets: Vec<(String, u64)>,
}

/// Body of a user creation.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AddUserRequest {
    #[serde(default)]
    pub grants: BTreeMap<String, Permission>,
}

/// Body of a grant change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GrantRequest {
    pub permission: Permission,
}

impl Default for GrantRequest {
    fn default() -> Self {
        GrantRequest {
            permission: Permission::Readonly,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BucketSettings {
    pub name: String,
    pub chunk_min: u32,
    pub chunk_avg: u32,
    pub chunk_max: u32,
    pub compression_level: i32,
}

/// The answer of `POST verify`: the report, and with `repair=true` what the repair
/// changed before that report was taken. It reads as the report it carries (the
/// repair's part is the one field it adds), and its JSON is the report's fields and
/// `repair`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifyOutcome {
    #[serde(flatten)]
    pub report: VerifyReport,
    #[serde(default)]
    pub repair: Option<RepairReport>,
}

impl std::ops::Deref for VerifyOutcome {
    type Target = VerifyReport;

    fn deref(&self) -> &VerifyReport {
        &self.report
    }
}
