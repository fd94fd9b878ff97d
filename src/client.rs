//! `client` owns the admin API's client: one method per endpoint of
//! `/hoard-admin/v1/`, over a `SignedClient` (http, or https trusting a CA file).
//! The `hoard` CLI and the tests drive a server through it.

use std::collections::BTreeMap;

use crate::admin_api::{
    AddUserRequest, BucketSettings, BucketTierRequest, BucketTiers, CreateBucketRequest,
    GrantRequest, PREFIX, QuotaRequest, VerifyOutcome,
};
use crate::auth::Credentials;
use crate::meta::Permission;
use crate::names::{valid_bucket_name, valid_user_name};
use crate::replication::rules::{AddRule, RuleInfo, RuleStatus, TargetInfo};
pub use crate::signed_client::ClientError;
use crate::signed_client::SignedClient;
use crate::stats::StatsReport;
use crate::users::{NewKey, UserInfo};

/// The admin API of one hoard.
pub struct AdminClient {
    link: SignedClient,
}

impl AdminClient {
    /// A client of the admin API at `endpoint`; an https endpoint is trusted through
    /// the CA certificate file `ca` (PEM), or not at all.
    pub fn new(
        endpoint: &str,
        region: &str,
        creds: Credentials,
        ca: Option<&std::path::Path>,
    ) -> Result<AdminClient, ClientError> {
        let tls = crate::tls::client_config(ca).map_err(|e| ClientError::Tls(e.to_string()))?;
        let link = SignedClient::new(endpoint, PREFIX, region, creds, tls, true)?;
        Ok(AdminClient { link })
    }

    pub fn endpoint(&self) -> &str {
        self.link.endpoint()
    }

    async fn request(
        &self,
        method: http::Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<String, ClientError> {
        self.link.request(method, path, body).await
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: http::Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<T, ClientError> {
        self.link.call(method, path, body).await
    }

    pub async fn stats(&self, bucket: Option<&str>) -> Result<StatsReport, ClientError> {
        let path = match bucket {
            Some(b) => format!("stats?bucket={b}"),
            None => "stats".to_owned(),
        };
        self.call(http::Method::GET, &path, Vec::new()).await
    }

    /// The long jobs running on the server (gc, verify), with their progress.
    pub async fn jobs(&self) -> Result<Vec<crate::board::Entry>, ClientError> {
        self.call(http::Method::GET, "jobs", Vec::new()).await
    }

    /// Runs one cleaner pass on the server and returns its report.
    pub async fn gc(
        &self,
        dry_run: bool,
        grace: Option<std::time::Duration>,
    ) -> Result<crate::cleaner::GcReport, ClientError> {
        let mut path = format!("gc?dry-run={dry_run}");
        if let Some(g) = grace {
            path.push_str(&format!("&grace-secs={}", g.as_secs()));
        }
        self.call(http::Method::POST, &path, Vec::new()).await
    }

    /// Runs one lifecycle pass on the server and returns its report.
    pub async fn lifecycle_run(&self) -> Result<crate::lifecycle::LifecycleReport, ClientError> {
        self.call(http::Method::POST, "lifecycle/run", Vec::new())
            .await
    }

    /// Runs verify on the server (the whole store, or one bucket's objects); with
    /// `repair`, repairs what it finds and reports the store as it is afterwards.
    pub async fn verify(
        &self,
        bucket: Option<&str>,
        repair: bool,
    ) -> Result<VerifyOutcome, ClientError> {
        let mut path = format!("verify?repair={repair}");
        if let Some(b) = bucket {
            path.push_str(&format!("&bucket={b}"));
        }
        self.call(http::Method::POST, &path, Vec::new()).await
    }

    pub async fn create_bucket(
        &self,
        name: &str,
        req: &CreateBucketRequest,
    ) -> Result<BucketSettings, ClientError> {
        self.call(http::Method::PUT, &format!("buckets/{name}"), encode(req)?)
            .await
    }

    /// Sets or (with `bytes` = `None`) removes a bucket's or the store's quota;
    /// returns the quotas now in force.
    pub async fn set_quota(&self, req: &QuotaRequest) -> Result<crate::meta::Quotas, ClientError> {
        self.call(http::Method::PUT, "quotas", encode(req)?).await
    }

    /// Sets (or with `None` removes) a bucket's tier policy; returns every bucket's.
    pub async fn set_bucket_tier(
        &self,
        name: &str,
        after_secs: Option<u64>,
    ) -> Result<BucketTiers, ClientError> {
        let req = BucketTierRequest { after_secs };
        self.call(
            http::Method::PUT,
            &format!("buckets/{name}/tier"),
            encode(&req)?,
        )
        .await
    }

    pub async fn quotas(&self) -> Result<crate::meta::Quotas, ClientError> {
        self.call(http::Method::GET, "quotas", Vec::new()).await
    }

    pub async fn users(&self) -> Result<Vec<UserInfo>, ClientError> {
        self.call(http::Method::GET, "users", Vec::new()).await
    }

    /// Adds a user; the answer holds its secret, shown this once.
    pub async fn add_user(
        &self,
        name: &str,
        grants: BTreeMap<String, Permission>,
    ) -> Result<NewKey, ClientError> {
        let body = encode(&AddUserRequest { grants })?;
        self.call(http::Method::POST, &user_path(name, "")?, body)
            .await
    }

    pub async fn remove_user(&self, name: &str) -> Result<(), ClientError> {
        self.request(http::Method::DELETE, &user_path(name, "")?, Vec::new())
            .await
            .map(drop)
    }

    pub async fn set_user_enabled(&self, name: &str, enabled: bool) -> Result<(), ClientError> {
        let verb = if enabled { "enable" } else { "disable" };
        self.request(http::Method::POST, &user_path(name, verb)?, Vec::new())
            .await
            .map(drop)
    }

    pub async fn rotate_user_key(&self, name: &str) -> Result<NewKey, ClientError> {
        self.call(
            http::Method::POST,
            &user_path(name, "rotate-key")?,
            Vec::new(),
        )
        .await
    }

    /// Sets (`Some`) or removes (`None`) a user's grant on `bucket` (or `*`).
    pub async fn set_grant(
        &self,
        name: &str,
        bucket: &str,
        permission: Option<Permission>,
    ) -> Result<UserInfo, ClientError> {
        let path = user_path(name, &format!("grants/{bucket}"))?;
        match permission {
            Some(permission) => {
                let body = encode(&GrantRequest { permission })?;
                self.call(http::Method::PUT, &path, body).await
            }
            None => self.call(http::Method::DELETE, &path, Vec::new()).await,
        }
    }
}

impl AdminClient {
    pub async fn replication_rules(&self) -> Result<Vec<RuleInfo>, ClientError> {
        self.call(http::Method::GET, "replication", Vec::new())
            .await
    }

    /// Adds (or replaces) `bucket`'s rule; the server says hello to the target first.
    pub async fn add_replication(
        &self,
        bucket: &str,
        req: &AddRule,
    ) -> Result<RuleInfo, ClientError> {
        let path = bucket_path("replication", bucket, "")?;
        self.call(http::Method::PUT, &path, encode(req)?).await
    }

    pub async fn remove_replication(
        &self,
        bucket: &str,
        rule: Option<&str>,
    ) -> Result<(), ClientError> {
        let path = rule_path(bucket, "", rule)?;
        self.request(http::Method::DELETE, &path, Vec::new())
            .await
            .map(drop)
    }

    pub async fn pause_replication(
        &self,
        bucket: &str,
        rule: Option<&str>,
        paused: bool,
    ) -> Result<RuleInfo, ClientError> {
        let verb = if paused { "pause" } else { "resume" };
        let path = rule_path(bucket, verb, rule)?;
        self.call(http::Method::POST, &path, Vec::new()).await
    }

    /// The status of rule `rule` of `bucket` (or of its only rule).
    pub async fn replication_status(
        &self,
        bucket: &str,
        rule: Option<&str>,
    ) -> Result<RuleStatus, ClientError> {
        let path = rule_path(bucket, "status", rule)?;
        self.call(http::Method::GET, &path, Vec::new()).await
    }

    /// The status of each of `bucket`'s rules.
    pub async fn replication_statuses(&self, bucket: &str) -> Result<Vec<RuleStatus>, ClientError> {
        let path = rule_path(bucket, "statuses", None)?;
        self.call(http::Method::GET, &path, Vec::new()).await
    }

    pub async fn run_replication(
        &self,
        bucket: &str,
        rule: Option<&str>,
    ) -> Result<RuleStatus, ClientError> {
        let path = rule_path(bucket, "run", rule)?;
        self.call(http::Method::POST, &path, Vec::new()).await
    }

    /// Puts a rule's failed replications back into the queue; returns how many.
    pub async fn requeue_replication(
        &self,
        bucket: &str,
        rule: Option<&str>,
    ) -> Result<u64, ClientError> {
        #[derive(serde::Deserialize)]
        struct Requeued {
            requeued: u64,
        }
        let path = rule_path(bucket, "requeue", rule)?;
        let r: Requeued = self.call(http::Method::POST, &path, Vec::new()).await?;
        Ok(r.requeued)
    }

    pub async fn replication_targets(&self) -> Result<Vec<TargetInfo>, ClientError> {
        self.call(http::Method::GET, "replication-targets", Vec::new())
            .await
    }

    pub async fn add_replication_target(
        &self,
        name: &str,
        req: &AddRule,
    ) -> Result<TargetInfo, ClientError> {
        let path = bucket_path("replication-targets", name, "")?;
        self.call(http::Method::PUT, &path, encode(req)?).await
    }

    pub async fn remove_replication_target(&self, name: &str) -> Result<(), ClientError> {
        let path = bucket_path("replication-targets", name, "")?;
        let _: serde_json::Value = self.call(http::Method::DELETE, &path, Vec::new()).await?;
        Ok(())
    }

    /// One step of a seed export.
    pub async fn seed_export(
        &self,
        req: &crate::replication::seed::ExportRequest,
    ) -> Result<crate::replication::seed::SeedProgress, ClientError> {
        self.call(http::Method::POST, "seed/export", encode(req)?)
            .await
    }

    /// One step of a seed import.
    pub async fn seed_import(
        &self,
        req: &crate::replication::seed::ImportRequest,
    ) -> Result<crate::replication::seed::ImportProgress, ClientError> {
        self.call(http::Method::POST, "seed/import", encode(req)?)
            .await
    }

    /// Makes a replica bucket writable.
    pub async fn promote(&self, bucket: &str) -> Result<(), ClientError> {
        let path = bucket_path("buckets", bucket, "promote")?;
        self.request(http::Method::POST, &path, Vec::new())
            .await
            .map(drop)
    }
}

/// `area/BUCKET[/rest]` for a valid bucket name.
fn bucket_path(area: &str, bucket: &str, rest: &str) -> Result<String, ClientError> {
    if !valid_bucket_name(bucket) {
        return Err(ClientError::Request(format!(
            "invalid bucket name {bucket:?}"
        )));
    }
    Ok(match rest {
        "" => format!("{area}/{bucket}"),
        rest => format!("{area}/{bucket}/{rest}"),
    })
}

/// `replication/BUCKET[/rest][?rule=ID]`.
fn rule_path(bucket: &str, rest: &str, rule: Option<&str>) -> Result<String, ClientError> {
    let path = bucket_path("replication", bucket, rest)?;
    Ok(match rule {
        None => path,
        // Every byte but the unreserved ones percent-encoded, as SigV4 canonicalises.
        Some(id) => {
            const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
                .remove(b'-')
                .remove(b'.')
                .remove(b'_')
                .remove(b'~');
            let id = percent_encoding::utf8_percent_encode(id, UNRESERVED);
            format!("{path}?rule={id}")
        }
    })
}

/// `users/NAME[/rest]`; a name the server would refuse is refused here, before it
/// can make an invalid or different path.
fn user_path(name: &str, rest: &str) -> Result<String, ClientError> {
    if !valid_user_name(name) {
        return Err(ClientError::Request(
            crate::users::UsersError::InvalidName(name.to_owned()).to_string(),
        ));
    }
    Ok(match rest {
        "" => format!("users/{name}"),
        rest => format!("users/{name}/{rest}"),
    })
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, ClientError> {
    serde_json::to_vec(v).map_err(|e| ClientError::Decode(e.to_string()))
}
