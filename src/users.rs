//! `users` owns who may sign requests and what each may do: the root user, the users
//! kept in the metadata store, their access keys, sealed secrets and per-bucket grants.
//!
//! Invariants:
//! - A secret is stored only sealed under the secrets key (`secrets`), bound to its
//!   access key as associated data. It is shown once, when it is made (`add`,
//!   `rotate_key`), and never logged.
//! - The in-memory directory (access key -> user) is rebuilt from the stored rows at
//!   start and changed only after the row change is durable, under one lock, so a
//!   request is checked against what the store says now: a disabled, removed or
//!   rotated-away key is refused from the moment the admin call returns.
//! - Root is not a row: its credentials come from `auth`, and it may do everything.
//!
//! Grants: bucket name, or `*` for every bucket (also ones created later) ->
//! `Permission`. The grant on the bucket itself wins over the one on `*`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::auth::Credentials;
use crate::meta::{MetaError, MetaStore, Permission, UserRecord};
use crate::names::{ALL_BUCKETS, valid_user_name};
use crate::secrets::{SecretBox, SecretsError};

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error(
        "the secret of user {0} cannot be opened with this secrets key; start with the key it was stored under"
    )]
    WrongKey(String),
    #[error("no user named {0}")]
    NoSuchUser(String),
    #[error("a user named {0} exists already")]
    UserExists(String),
    #[error(
        "invalid user name {0:?}: use 1 to 64 letters, digits, '.', '_', '-' or '@'; \"root\" is reserved"
    )]
    InvalidName(String),
    #[error(transparent)]
    Meta(#[from] MetaError),
}

pub type UsersResult<T> = Result<T, UsersError>;

/// A user as the directory holds it (secret in the clear, in memory only).
pub struct Entry {
    name: String,
    secret: String,
    enabled: bool,
    grants: Vec<(String, Permission)>,
}

/// Who signed a request, as far as grants go.
pub enum Principal {
    Root,
    User(Arc<Entry>),
}

impl Principal {
    /// The permission this principal holds on `bucket` (`None`: none at all).
    pub fn permission(&self, bucket: &str) -> Option<Permission> {
        match self {
            Principal::Root => Some(Permission::Admin),
            Principal::User(u) => {
                let on = |b: &str| u.grants.iter().find(|(g, _)| g == b).map(|(_, p)| *p);
                on(bucket).or_else(|| on(ALL_BUCKETS))
            }
        }
    }

    /// True for holders of the bypass-governance grant on `bucket` (or on `*`
    /// without a grant of their own on it): they may shorten or remove governance
    /// retention there. Root and admins may not.
    pub fn may_bypass_governance(&self, bucket: &str) -> bool {
        self.permission(bucket) == Some(Permission::BypassGovernance)
    }

    /// True for root and for holders of the admin grant on `*`: the admin API.
    pub fn is_admin(&self) -> bool {
        match self {
            Principal::Root => true,
            Principal::User(u) => u
                .grants
                .iter()
                .any(|(g, p)| g == ALL_BUCKETS && *p == Permission::Admin),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Principal::Root => "root",
            Principal::User(u) => &u.name,
        }
    }
}

/// A user's S3 canonical id (ACL grantees name users by it): derived from the
/// name, so it stays while keys change.
pub fn user_canonical_id(name: &str) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"hoard user\0");
    h.update(name.as_bytes());
    hex::encode(&h.finalize().as_bytes()[..16])
}

/// The store's 12-digit account id, as bucket policies' principal ARNs name it:
/// derived from the owner's canonical id.
fn account_id_of(owner_id: &str) -> String {
    let mut first = [0u8; 8];
    first.copy_from_slice(&blake3::hash(owner_id.as_bytes()).as_bytes()[..8]);
    format!("{:012}", u64::from_le_bytes(first) % 1_000_000_000_000)
}

/// A user's ARN in bucket policies: `arn:aws:iam::<account>:user/<name>`.
pub fn user_arn(account_id: &str, name: &str) -> String {
    format!("arn:aws:iam::{account_id}:user/{name}")
}

/// The SigV4 secret lookup s3s calls for every signed request.
pub struct KeyLookup(pub Arc<Users>);

#[async_trait::async_trait]
impl s3s::auth::S3Auth for KeyLookup {
    async fn get_secret_key(&self, access_key: &str) -> s3s::S3Result<s3s::auth::SecretKey> {
        let secret = match self.0.secret_for(access_key) {
            Some(s) => Some(s),
            None => {
                self.0.refresh_for_unknown_key().await;
                self.0.secret_for(access_key)
            }
        };
        secret.map(s3s::auth::SecretKey::from).ok_or_else(|| {
            s3s::s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records."
            )
        })
    }
}

/// A user as the admin API lists it: never the secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserInfo {
    pub name: String,
    pub access_key: String,
    pub enabled: bool,
    /// Bucket (or `*`) -> permission.
    pub grants: BTreeMap<String, Permission>,
    pub created_ms: i64,
    /// The id S3 ACLs name the user by.
    #[serde(default)]
    pub canonical_id: String,
    /// The ARN bucket policies name the user by.
    #[serde(default)]
    pub arn: String,
}

impl UserInfo {
    fn new(name: String, rec: UserRecord, account_id: &str) -> UserInfo {
        UserInfo {
            canonical_id: user_canonical_id(&name),
            arn: user_arn(account_id, &name),
            name,
            access_key: rec.access_key,
            enabled: rec.enabled,
            grants: rec.grants.into_iter().collect(),
            created_ms: rec.created_ms,
        }
    }
}

/// A key pair just made: the only time the secret leaves the server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewKey {
    pub name: String,
    pub access_key: String,
    pub secret_key: String,
}

/// The owner's display name in ListBuckets, listings and ACLs.
pub const OWNER_DISPLAY_NAME: &str = "hoard";

pub struct Users {
    meta: MetaStore,
    secrets: Arc<SecretBox>,
    root: Credentials,
    /// The owner's canonical id, derived from root's access key.
    owner_id: String,
    /// The store's account id in policy ARNs, derived from `owner_id`.
    account_id: String,
    /// Access key -> user, for every stored user (enabled or not).
    directory: RwLock<HashMap<String, Arc<Entry>>>,
    /// Serialises changes: row write, then directory update.
    changes: tokio::sync::Mutex<()>,
    /// When the last read of the rows into the directory began; held while one
    /// runs, so that misses arriving together share it.
    refreshed_at: tokio::sync::Mutex<std::time::Instant>,
}

/// The directory of access keys the rows describe; a secret that does not open
/// (another secrets key) is an error naming its user.
fn directory_of(
    secrets: &SecretBox,
    rows: Vec<(String, UserRecord)>,
) -> UsersResult<HashMap<String, Arc<Entry>>> {
    let mut directory = HashMap::new();
    for (name, rec) in rows {
        let secret = secrets
            .open(&rec.access_key, &rec.sealed_secret)
            .ok_or_else(|| UsersError::WrongKey(name.clone()))?;
        directory.insert(rec.access_key.clone(), Arc::new(entry(name, secret, &rec)));
    }
    Ok(directory)
}

impl Users {
    /// Loads every stored user and opens its secret; a secret that does not open
    /// (another secrets key) stops the start with a message naming the user.
    pub fn load(meta: MetaStore, secrets: Arc<SecretBox>, root: Credentials) -> UsersResult<Users> {
        let directory = directory_of(&secrets, meta.users_blocking()?)?;
        let owner_id = hex::encode(&blake3::hash(root.access_key.as_bytes()).as_bytes()[..16]);
        Ok(Users {
            meta,
            secrets,
            account_id: account_id_of(&owner_id),
            owner_id,
            root,
            directory: RwLock::new(directory),
            changes: tokio::sync::Mutex::new(()),
            refreshed_at: tokio::sync::Mutex::new(std::time::Instant::now()),
        })
    }

    /// Reads every user row again: on PostgreSQL another gateway may have added,
    /// changed or removed users. The directory becomes what the rows say.
    pub async fn refresh(&self) -> UsersResult<()> {
        let mut refreshed_at = self.refreshed_at.lock().await;
        let started = std::time::Instant::now();
        self.reread().await?;
        *refreshed_at = started;
        Ok(())
    }

    async fn reread(&self) -> UsersResult<()> {
        let _changes = self.changes.lock().await;
        let directory = directory_of(&self.secrets, self.meta.users().await?)?;
        *self.directory.write().unwrap_or_else(|p| p.into_inner()) = directory;
        Ok(())
    }

    /// Reads the users again for an access key the directory does not know, when
    /// other gateways share them: a key made on another gateway works here at once.
    /// Misses that arrive together share one read: a miss waits for a read that
    /// began after it arrived, or makes one.
    async fn refresh_for_unknown_key(&self) {
        if !self.meta.is_shared() {
            return;
        }
        let arrived = std::time::Instant::now();
        let mut refreshed_at = self.refreshed_at.lock().await;
        if *refreshed_at > arrived {
            return;
        }
        let started = std::time::Instant::now();
        match self.reread().await {
            Ok(()) => *refreshed_at = started,
            Err(e) => tracing::warn!(error = %e, "cannot refresh the users from the metadata"),
        }
    }

    /// Keeps the directory in step with the rows other gateways change (on
    /// PostgreSQL; nothing to do on redb, where every change is made here).
    pub async fn keep_refreshed(self: Arc<Self>, every: std::time::Duration) {
        if !self.meta.is_shared() {
            return;
        }
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "cannot refresh the users from the metadata");
            }
        }
    }

    /// The secret SigV4 checks a request against: root's, or an enabled user's.
    pub fn secret_for(&self, access_key: &str) -> Option<String> {
        if access_key == self.root.access_key {
            return Some(self.root.secret_key.clone());
        }
        let dir = self.directory.read().unwrap_or_else(|p| p.into_inner());
        let user = dir.get(access_key)?;
        if !user.enabled {
            tracing::info!(user = %user.name, "request signed with a disabled user's key refused");
            return None;
        }
        Some(user.secret.clone())
    }

    /// The store owner's canonical id (root's): the owner of every bucket and
    /// object, as ListBuckets, listings and ACLs name it.
    pub fn owner_id(&self) -> &str {
        &self.owner_id
    }

    /// The canonical id ACLs know `who` by.
    pub fn canonical_id(&self, who: &Principal) -> String {
        match who {
            Principal::Root => self.owner_id.clone(),
            Principal::User(u) => user_canonical_id(&u.name),
        }
    }

    /// The store's account id, as policies' principal ARNs name it.
    pub fn account_id(&self) -> &str {
        &self.account_id
    }

    /// The ARN bucket policies know `who` by: the account's root, or a user's.
    pub fn arn(&self, who: &Principal) -> String {
        match who {
            Principal::Root => format!("arn:aws:iam::{}:root", self.account_id),
            Principal::User(u) => user_arn(&self.account_id, &u.name),
        }
    }

    /// Whether a user of that name exists (enabled or not).
    pub fn has_user(&self, name: &str) -> bool {
        let dir = self.directory.read().unwrap_or_else(|p| p.into_inner());
        dir.values().any(|u| u.name == name)
    }

    /// The ARN of the principal with canonical id `id`, if it is one.
    pub fn arn_of_canonical_id(&self, id: &str) -> Option<String> {
        if id == self.owner_id {
            return Some(self.arn(&Principal::Root));
        }
        let dir = self.directory.read().unwrap_or_else(|p| p.into_inner());
        dir.values()
            .find(|u| user_canonical_id(&u.name) == id)
            .map(|u| user_arn(&self.account_id, &u.name))
    }

    /// The display name of the principal with canonical id `id`, if it is one.
    pub fn display_name_of(&self, id: &str) -> Option<String> {
        if id == self.owner_id {
            return Some(OWNER_DISPLAY_NAME.to_owned());
        }
        let dir = self.directory.read().unwrap_or_else(|p| p.into_inner());
        dir.values()
            .find(|u| user_canonical_id(&u.name) == id)
            .map(|u| u.name.clone())
    }

    /// The principal behind a verified access key (`None`: unknown or disabled).
    pub fn principal(&self, access_key: &str) -> Option<Principal> {
        if access_key == self.root.access_key {
            return Some(Principal::Root);
        }
        let dir = self.directory.read().unwrap_or_else(|p| p.into_inner());
        dir.get(access_key)
            .filter(|u| u.enabled)
            .map(|u| Principal::User(u.clone()))
    }

    pub async fn list(&self) -> UsersResult<Vec<UserInfo>> {
        Ok(self
            .meta
            .users()
            .await?
            .into_iter()
            .map(|(name, r)| UserInfo::new(name, r, &self.account_id))
            .collect())
    }

    /// Creates a user with `grants` and returns its key pair.
    pub async fn add(
        &self,
        name: &str,
        grants: BTreeMap<String, Permission>,
    ) -> UsersResult<NewKey> {
        if !valid_user_name(name) {
            return Err(UsersError::InvalidName(name.to_owned()));
        }
        let _changing = self.changes.lock().await;
        if self.stored(name).await?.is_some() {
            return Err(UsersError::UserExists(name.to_owned()));
        }
        let mut rec = UserRecord {
            access_key: String::new(),
            sealed_secret: Vec::new(),
            enabled: true,
            grants: Vec::new(),
            created_ms: crate::meta::now_ms(),
        };
        for (bucket, p) in grants {
            set_grant(&mut rec.grants, bucket, Some(p));
        }
        let key = self.new_key(name, &mut rec)?;
        self.store(name, None, rec).await?;
        tracing::info!(user = name, access_key = %key.access_key, "user added");
        Ok(key)
    }

    /// Replaces the user's key pair; the old one is refused from now on.
    pub async fn rotate_key(&self, name: &str) -> UsersResult<NewKey> {
        let _changing = self.changes.lock().await;
        let mut rec = self.existing(name).await?;
        let old = rec.access_key.clone();
        let key = self.new_key(name, &mut rec)?;
        self.store(name, Some(&old), rec).await?;
        tracing::info!(user = name, access_key = %key.access_key, "user key rotated");
        Ok(key)
    }

    pub async fn set_enabled(&self, name: &str, enabled: bool) -> UsersResult<()> {
        self.change(name, |rec| rec.enabled = enabled).await?;
        tracing::info!(user = name, enabled, "user state changed");
        Ok(())
    }

    /// Sets (`Some`) or removes (`None`) the user's grant on `bucket`.
    pub async fn grant(
        &self,
        name: &str,
        bucket: &str,
        permission: Option<Permission>,
    ) -> UsersResult<UserInfo> {
        let rec = self
            .change(name, |rec| {
                set_grant(&mut rec.grants, bucket.to_owned(), permission)
            })
            .await?;
        tracing::info!(user = name, bucket, permission = ?permission, "grant changed");
        Ok(UserInfo::new(name.to_owned(), rec, &self.account_id))
    }

    pub async fn remove(&self, name: &str) -> UsersResult<()> {
        let _changing = self.changes.lock().await;
        let rec = self.existing(name).await?;
        self.meta.remove_user(name).await?;
        self.directory
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&rec.access_key);
        tracing::info!(user = name, "user removed");
        Ok(())
    }

    /// Applies `f` to the stored user and stores the result.
    async fn change(&self, name: &str, f: impl FnOnce(&mut UserRecord)) -> UsersResult<UserRecord> {
        let _changing = self.changes.lock().await;
        let mut rec = self.existing(name).await?;
        f(&mut rec);
        let key = rec.access_key.clone();
        self.store(name, Some(&key), rec.clone()).await?;
        Ok(rec)
    }

    /// Writes the row durably, then points the directory at it (dropping
    /// `old_access_key`'s entry). Holds `changes`.
    async fn store(
        &self,
        name: &str,
        old_access_key: Option<&str>,
        rec: UserRecord,
    ) -> UsersResult<()> {
        self.meta.put_user(name, &rec).await?;
        let secret = self
            .secrets
            .open(&rec.access_key, &rec.sealed_secret)
            .ok_or_else(|| UsersError::WrongKey(name.to_owned()))?;
        let mut dir = self.directory.write().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = old_access_key {
            dir.remove(old);
        }
        dir.insert(
            rec.access_key.clone(),
            Arc::new(entry(name.to_owned(), secret, &rec)),
        );
        Ok(())
    }

    async fn stored(&self, name: &str) -> UsersResult<Option<UserRecord>> {
        Ok(self
            .meta
            .users()
            .await?
            .into_iter()
            .find_map(|(n, r)| (n == name).then_some(r)))
    }

    async fn existing(&self, name: &str) -> UsersResult<UserRecord> {
        self.stored(name)
            .await?
            .ok_or_else(|| UsersError::NoSuchUser(name.to_owned()))
    }

    /// Generates a fresh key pair into `rec` (sealed) and returns it in the clear.
    fn new_key(&self, name: &str, rec: &mut UserRecord) -> UsersResult<NewKey> {
        let fresh = loop {
            let c = Credentials::generate();
            let taken = c.access_key == self.root.access_key
                || self
                    .directory
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .contains_key(&c.access_key);
            if !taken {
                break c;
            }
        };
        rec.sealed_secret = self.secrets.seal(&fresh.access_key, &fresh.secret_key)?;
        rec.access_key = fresh.access_key.clone();
        Ok(NewKey {
            name: name.to_owned(),
            access_key: fresh.access_key,
            secret_key: fresh.secret_key,
        })
    }
}

fn entry(name: String, secret: String, rec: &UserRecord) -> Entry {
    Entry {
        name,
        secret,
        enabled: rec.enabled,
        grants: rec.grants.clone(),
    }
}

/// Sets or removes one grant, keeping the list sorted by bucket.
fn set_grant(grants: &mut Vec<(String, Permission)>, bucket: String, p: Option<Permission>) {
    grants.retain(|(b, _)| *b != bucket);
    if let Some(p) = p {
        grants.push((bucket, p));
        grants.sort_by(|a, b| a.0.cmp(&b.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grant_on_the_bucket_wins_over_the_one_on_all_buckets() {
        let mut grants = Vec::new();
        set_grant(&mut grants, "*".into(), Some(Permission::Readonly));
        set_grant(&mut grants, "logs".into(), Some(Permission::Writeonly));
        let p = Principal::User(Arc::new(Entry {
            name: "u".into(),
            secret: String::new(),
            enabled: true,
            grants,
        }));
        assert_eq!(p.permission("logs"), Some(Permission::Writeonly));
        assert_eq!(p.permission("other"), Some(Permission::Readonly));
        assert!(!p.is_admin());
    }
}
