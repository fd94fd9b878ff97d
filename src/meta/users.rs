//! User rows: one per user, keyed by name. The secret is stored sealed (see
//! `users::SecretBox`); this module never sees it in the clear.
//!
//! A user row is written whole in one transaction, so a user's key, state and grants
//! change together. The access-key index is built in memory from these rows at start.

use super::kv::TableDefinition;
use serde::{Deserialize, Serialize};

use super::{MetaResult, MetaStore, all_rows, encode_record};

/// User name -> `UserRecord` (format-versioned postcard).
pub(super) const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");

/// What a grant lets its holder do in a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// Read and list.
    Readonly,
    /// Write (put, multipart, delete) without read or list.
    Writeonly,
    /// Read, list and write.
    Readwrite,
    /// Everything, including the bucket's configuration, creating and deleting it;
    /// on `*`, the admin API as well.
    Admin,
    /// The replication endpoints of a replica bucket (a source hoard's key); no S3
    /// reads or writes.
    Replication,
    /// Read, list and write, and shortening or removing governance retention with
    /// `x-amz-bypass-governance-retention: true`. No other grant (not admin, not
    /// root's) bypasses governance.
    #[serde(rename = "bypass-governance")]
    BypassGovernance,
}

impl std::str::FromStr for Permission {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "readonly" => Ok(Permission::Readonly),
            "writeonly" => Ok(Permission::Writeonly),
            "readwrite" => Ok(Permission::Readwrite),
            "admin" => Ok(Permission::Admin),
            "replication" => Ok(Permission::Replication),
            "bypass-governance" => Ok(Permission::BypassGovernance),
            other => Err(format!(
                "unknown permission {other:?}: use readonly, writeonly, readwrite, admin, replication or bypass-governance"
            )),
        }
    }
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Permission::Readonly => "readonly",
            Permission::Writeonly => "writeonly",
            Permission::Readwrite => "readwrite",
            Permission::Admin => "admin",
            Permission::Replication => "replication",
            Permission::BypassGovernance => "bypass-governance",
        })
    }
}

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub access_key: String,
    /// The secret, sealed with the store's secrets key (nonce, ciphertext, tag).
    pub sealed_secret: Vec<u8>,
    pub enabled: bool,
    /// Bucket name (or `*` for every bucket) -> permission, sorted by bucket.
    pub grants: Vec<(String, Permission)>,
    pub created_ms: i64,
}

impl MetaStore {
    /// Writes (creates or replaces) a user row, durably.
    pub async fn put_user(&self, name: &str, rec: &UserRecord) -> MetaResult<()> {
        let name = name.to_owned();
        let bytes = encode_record(rec)?;
        self.write(true, move |txn| {
            txn.open_table(USERS)?
                .insert(name.as_str(), bytes.as_slice())?;
            Ok(())
        })
        .await
    }

    /// Removes a user row; true if it existed.
    pub async fn remove_user(&self, name: &str) -> MetaResult<bool> {
        let name = name.to_owned();
        self.write(true, move |txn| {
            Ok(txn.open_table(USERS)?.remove(name.as_str())?.is_some())
        })
        .await
    }

    /// Every user row, by name.
    pub async fn users(&self) -> MetaResult<Vec<(String, UserRecord)>> {
        self.read(|txn| all_rows(txn, USERS)).await
    }

    /// `users`, on the calling thread (start-up).
    pub fn users_blocking(&self) -> MetaResult<Vec<(String, UserRecord)>> {
        self.read_blocking(|txn| all_rows(txn, USERS))
    }
}
