//! Object Lock on the S3 surface: a bucket's configuration (Get/Put
//! ObjectLockConfiguration), each version's retention and legal hold (Get/Put
//! ObjectRetention, Get/Put ObjectLegalHold, the `x-amz-object-lock-*` headers of
//! PutObject, CopyObject and CreateMultipartUpload), and the check that decides
//! whether a request may remove a protected version.
//!
//! Rules, as S3 has them:
//! - Locks exist only in lock-enabled buckets (`InvalidRequest` "Bucket is missing
//!   Object Lock Configuration" elsewhere); a lock-enabled bucket keeps versioning
//!   Enabled for good and its lock cannot be turned off.
//! - COMPLIANCE retention can only be extended, by anyone with write access, never
//!   shortened, changed to GOVERNANCE or removed, by anyone. GOVERNANCE retention
//!   can be extended likewise; shortening, removing or changing its mode needs
//!   `x-amz-bypass-governance-retention: true` from a user holding the
//!   `bypass-governance` grant. Refusals are `403 AccessDenied`.
//! - A legal hold forbids removal whatever the retention says, until it is lifted
//!   (PutObjectLegalHold, an admin's act).
//! - Expiry is judged by the retention clock (`retention`), never by the wall
//!   clock. Dates a client sends or reads are wall-clock dates.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::{HoardS3, malformed_xml, meta_error, timestamp};
use crate::meta::{
    BucketLock, BucketRecord, LockCheck, LockMode, MetaError, ObjectRecord, RetentionPeriod,
    VersionLock,
};

/// The longest default retention S3 accepts.
const MAX_DEFAULT_DAYS: i32 = 36_500;
const MAX_DEFAULT_YEARS: i32 = 100;

fn missing_lock_configuration() -> s3s::S3Error {
    s3_error!(
        InvalidRequest,
        "Bucket is missing Object Lock Configuration"
    )
}

pub(super) fn millis(t: &Timestamp) -> i64 {
    let t = time::OffsetDateTime::from(t.clone());
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// S3 requires Content-MD5 or a checksum on the lock operations' bodies and on a
/// PutObject that carries lock headers.
fn require_integrity(headers: &http::HeaderMap, what: &str) -> S3Result<()> {
    let has = headers.contains_key("content-md5")
        || headers
            .keys()
            .any(|k| k.as_str().starts_with("x-amz-checksum-"))
        || headers.contains_key("x-amz-sdk-checksum-algorithm")
        || headers.contains_key("x-amz-trailer");
    if has {
        Ok(())
    } else {
        Err(s3_error!(
            InvalidRequest,
            "Content-MD5 OR x-amz-checksum- HTTP header is required for {} requests with Object Lock parameters",
            what
        ))
    }
}

fn mode_of(s: &str) -> S3Result<LockMode> {
    LockMode::parse(s).ok_or_else(malformed_xml)
}

/// The lock headers of a PutObject, CopyObject or CreateMultipartUpload.
pub(super) struct LockHeaders<'a> {
    pub mode: Option<&'a ObjectLockMode>,
    pub until: Option<&'a Timestamp>,
    pub legal_hold: Option<&'a ObjectLockLegalHoldStatus>,
}

impl LockHeaders<'_> {
    fn any(&self) -> bool {
        self.mode.is_some() || self.until.is_some() || self.legal_hold.is_some()
    }
}

/// Builds `LockHeaders` from an input with the three `object_lock_*` fields.
macro_rules! lock_headers {
    ($i:expr) => {{
        let i = $i;
        $crate::s3::lock::LockHeaders {
            mode: i.object_lock_mode.as_ref(),
            until: i.object_lock_retain_until_date.as_ref(),
            legal_hold: i.object_lock_legal_hold_status.as_ref(),
        }
    }};
}
pub(super) use lock_headers;

/// A legal hold status as S3 spells it: `ON` or `OFF`.
fn legal_hold_on(s: &str) -> Option<bool> {
    match s {
        "ON" => Some(true),
        "OFF" => Some(false),
        _ => None,
    }
}

/// A retain-until date a request sets, which must lie ahead of the retention clock.
fn future_until(until: i64, now_ms: i64) -> S3Result<i64> {
    if until > now_ms {
        Ok(until)
    } else {
        Err(s3_error!(
            InvalidArgument,
            "The retain until date must be in the future!"
        ))
    }
}

impl HoardS3 {
    /// The lock a new version gets: the one its headers name, else the bucket's
    /// default retention; `None` outside lock-enabled buckets. `headers` are the
    /// request's, for the Content-MD5 or checksum lock headers need (`None`: the
    /// operation has no body of its own, as CopyObject and CreateMultipartUpload).
    pub(super) fn new_version_lock(
        &self,
        bucket: &BucketRecord,
        h: &LockHeaders<'_>,
        headers: Option<&http::HeaderMap>,
    ) -> S3Result<Option<VersionLock>> {
        let Some(config) = bucket.object_lock else {
            return match h.any() {
                true => Err(missing_lock_configuration()),
                false => Ok(None),
            };
        };
        if h.any()
            && let Some(headers) = headers
        {
            require_integrity(headers, "Put Object")?;
        }
        let retention = match (h.mode, h.until) {
            (Some(m), Some(u)) => {
                let mode = LockMode::parse(m.as_str())
                    .ok_or_else(|| s3_error!(InvalidArgument, "Unknown wormMode directive."))?;
                Some((mode, future_until(millis(u), self.clock.now_ms())?))
            }
            (None, None) => config
                .default_retention
                .map(|d| (d.mode, crate::meta::now_ms() + d.period.millis())),
            _ => {
                return Err(s3_error!(
                    InvalidArgument,
                    "x-amz-object-lock-retain-until-date and x-amz-object-lock-mode must both be supplied"
                ));
            }
        };
        let legal_hold = h
            .legal_hold
            .map(|s| {
                legal_hold_on(s.as_str()).ok_or_else(|| {
                    s3_error!(
                        InvalidArgument,
                        "Legal Hold must be either of 'ON' or 'OFF'"
                    )
                })
            })
            .transpose()?
            .unwrap_or(false);
        Ok(Some(VersionLock {
            retention,
            legal_hold,
        }))
    }

    /// What a request may override when it removes versions of `bucket`: a
    /// governance bypass needs both the header and the grant.
    pub(super) fn lock_check(
        &self,
        creds: Option<&s3s::auth::Credentials>,
        bucket: &str,
        asked: bool,
    ) -> LockCheck {
        let granted = asked
            && creds
                .and_then(|c| self.users.principal(&c.access_key))
                .is_some_and(|p| p.may_bypass_governance(bucket));
        if asked && !granted {
            tracing::info!(bucket, "governance bypass asked for without the grant");
        }
        LockCheck {
            now_ms: self.clock.now_ms(),
            bypass_governance: granted,
        }
    }

    /// The bucket, which must be lock-enabled.
    async fn locked_bucket(&self, name: &str) -> S3Result<BucketRecord> {
        let rec = self.bucket(name).await?;
        match rec.object_lock {
            Some(_) => Ok(rec),
            None => Err(missing_lock_configuration()),
        }
    }

    /// The version a Get/PutObjectRetention or LegalHold names.
    async fn lock_target(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> S3Result<ObjectRecord> {
        self.locked_bucket(bucket).await?;
        self.find_object(bucket, key, version).await
    }

    pub(super) async fn put_object_lock_configuration_impl(
        &self,
        req: S3Request<PutObjectLockConfigurationInput>,
    ) -> S3Result<S3Response<PutObjectLockConfigurationOutput>> {
        require_integrity(&req.headers, "Put Object Lock Configuration")?;
        let i = req.input;
        self.bucket(&i.bucket).await?;
        let config = i.object_lock_configuration.ok_or_else(malformed_xml)?;
        if config.object_lock_enabled.as_ref().map(|e| e.as_str()) != Some("Enabled") {
            return Err(malformed_xml());
        }
        let default_retention = match config.rule {
            None => None,
            Some(rule) => Some(default_retention(
                rule.default_retention.ok_or_else(malformed_xml)?,
            )?),
        };
        self.meta
            .set_object_lock(&i.bucket, BucketLock { default_retention })
            .await
            .map_err(meta_error)?;
        tracing::info!(bucket = %i.bucket, ?default_retention, "object lock configured");
        Ok(S3Response::new(PutObjectLockConfigurationOutput::default()))
    }

    pub(super) async fn get_object_lock_configuration_impl(
        &self,
        req: S3Request<GetObjectLockConfigurationInput>,
    ) -> S3Result<S3Response<GetObjectLockConfigurationOutput>> {
        let rec = self.bucket(&req.input.bucket).await?;
        let lock = rec.object_lock.ok_or_else(|| {
            s3_error!(
                ObjectLockConfigurationNotFoundError,
                "Object Lock configuration does not exist for this bucket"
            )
        })?;
        let rule = lock.default_retention.map(|d| {
            let (days, years) = match d.period {
                RetentionPeriod::Days(n) => (Some(n as i32), None),
                RetentionPeriod::Years(n) => (None, Some(n as i32)),
            };
            ObjectLockRule {
                default_retention: Some(DefaultRetention {
                    days,
                    years,
                    mode: Some(ObjectLockRetentionMode::from(d.mode.as_str().to_owned())),
                }),
            }
        });
        Ok(S3Response::new(GetObjectLockConfigurationOutput {
            object_lock_configuration: Some(ObjectLockConfiguration {
                object_lock_enabled: Some(ObjectLockEnabled::from_static(
                    ObjectLockEnabled::ENABLED,
                )),
                rule,
            }),
        }))
    }

    pub(super) async fn put_object_retention_impl(
        &self,
        req: S3Request<PutObjectRetentionInput>,
    ) -> S3Result<S3Response<PutObjectRetentionOutput>> {
        require_integrity(&req.headers, "Put Object Retention")?;
        let i = &req.input;
        if let Some(v) = &i.version_id {
            super::object::check_version_id(v)?;
        }
        self.locked_bucket(&i.bucket).await?;
        let wanted = match &i.retention {
            None => None,
            Some(r) => match (&r.mode, &r.retain_until_date) {
                (None, None) => None,
                (Some(m), Some(u)) => Some((mode_of(m.as_str())?, millis(u))),
                _ => return Err(malformed_xml()),
            },
        };
        let check = self.lock_check(
            req.credentials.as_ref(),
            &i.bucket,
            i.bypass_governance_retention.unwrap_or(false),
        );
        if let Some((_, until)) = wanted {
            future_until(until, check.now_ms)?;
        }
        let version = self
            .meta
            .set_version_lock(&i.bucket, &i.key, i.version_id.clone(), move |held| {
                let held = held.unwrap_or_default();
                match held.retention_change(wanted, check.now_ms, check.bypass_governance) {
                    Ok(()) => Ok(VersionLock {
                        retention: wanted,
                        ..held
                    }),
                    Err(why) => Err(MetaError::ObjectLocked(format!("Access Denied: {why}"))),
                }
            })
            .await
            .map_err(version_error)?;
        tracing::info!(bucket = %i.bucket, key = %i.key, version, ?wanted, "retention set");
        Ok(S3Response::new(PutObjectRetentionOutput::default()))
    }

    pub(super) async fn get_object_retention_impl(
        &self,
        req: S3Request<GetObjectRetentionInput>,
    ) -> S3Result<S3Response<GetObjectRetentionOutput>> {
        let i = &req.input;
        let rec = self
            .lock_target(&i.bucket, &i.key, i.version_id.as_deref())
            .await?;
        let (mode, until) = rec
            .lock
            .and_then(|l| l.retention)
            .ok_or_else(no_lock_configuration)?;
        Ok(S3Response::new(GetObjectRetentionOutput {
            retention: Some(ObjectLockRetention {
                mode: Some(ObjectLockRetentionMode::from(mode.as_str().to_owned())),
                retain_until_date: Some(timestamp(until)),
            }),
        }))
    }

    pub(super) async fn put_object_legal_hold_impl(
        &self,
        req: S3Request<PutObjectLegalHoldInput>,
    ) -> S3Result<S3Response<PutObjectLegalHoldOutput>> {
        require_integrity(&req.headers, "Put Object Legal Hold")?;
        let i = &req.input;
        if let Some(v) = &i.version_id {
            super::object::check_version_id(v)?;
        }
        self.locked_bucket(&i.bucket).await?;
        let on = i
            .legal_hold
            .as_ref()
            .and_then(|h| h.status.as_ref())
            .and_then(|s| legal_hold_on(s.as_str()))
            .ok_or_else(malformed_xml)?;
        let version = self
            .meta
            .set_version_lock(&i.bucket, &i.key, i.version_id.clone(), move |held| {
                Ok(VersionLock {
                    legal_hold: on,
                    ..held.unwrap_or_default()
                })
            })
            .await
            .map_err(version_error)?;
        tracing::info!(bucket = %i.bucket, key = %i.key, version, on, "legal hold set");
        Ok(S3Response::new(PutObjectLegalHoldOutput::default()))
    }

    pub(super) async fn get_object_legal_hold_impl(
        &self,
        req: S3Request<GetObjectLegalHoldInput>,
    ) -> S3Result<S3Response<GetObjectLegalHoldOutput>> {
        let i = &req.input;
        let rec = self
            .lock_target(&i.bucket, &i.key, i.version_id.as_deref())
            .await?;
        let lock = rec.lock.ok_or_else(no_lock_configuration)?;
        Ok(S3Response::new(GetObjectLegalHoldOutput {
            legal_hold: Some(ObjectLockLegalHold {
                status: Some(legal_hold_status(lock.legal_hold)),
            }),
        }))
    }
}

fn no_lock_configuration() -> s3s::S3Error {
    s3_error!(
        NoSuchObjectLockConfiguration,
        "The specified object does not have a ObjectLock configuration"
    )
}

fn legal_hold_status(on: bool) -> ObjectLockLegalHoldStatus {
    ObjectLockLegalHoldStatus::from_static(if on {
        ObjectLockLegalHoldStatus::ON
    } else {
        ObjectLockLegalHoldStatus::OFF
    })
}

/// A version that is not there, or a delete marker, answered as S3 does.
fn version_error(e: MetaError) -> s3s::S3Error {
    match e {
        MetaError::DeleteMarker => s3_error!(
            MethodNotAllowed,
            "The specified method is not allowed against a delete marker."
        ),
        other => meta_error(other),
    }
}

/// Checks a DefaultRetention as S3 does: a mode, and exactly one of Days and Years,
/// positive.
fn default_retention(d: DefaultRetention) -> S3Result<crate::meta::DefaultRetention> {
    let mode = mode_of(d.mode.as_ref().ok_or_else(malformed_xml)?.as_str())?;
    let invalid = || {
        let mut e = s3s::S3Error::with_message(
            s3s::S3ErrorCode::Custom("InvalidRetentionPeriod".into()),
            "Default retention period must be a positive integer value",
        );
        e.set_status_code(http::StatusCode::BAD_REQUEST);
        e
    };
    let period = match (d.days, d.years) {
        (Some(n), None) if (1..=MAX_DEFAULT_DAYS).contains(&n) => RetentionPeriod::Days(n as u32),
        (None, Some(n)) if (1..=MAX_DEFAULT_YEARS).contains(&n) => RetentionPeriod::Years(n as u32),
        (Some(_), None) | (None, Some(_)) => return Err(invalid()),
        _ => return Err(malformed_xml()),
    };
    Ok(crate::meta::DefaultRetention { mode, period })
}

/// The lock headers a GET or HEAD answers with: (mode, retain-until, legal hold
/// when on).
pub(super) fn lock_output(
    rec: &ObjectRecord,
) -> (
    Option<ObjectLockMode>,
    Option<Timestamp>,
    Option<ObjectLockLegalHoldStatus>,
) {
    let Some(lock) = rec.lock else {
        return (None, None, None);
    };
    let (mode, until) = match lock.retention {
        Some((m, u)) => (
            Some(ObjectLockMode::from(m.as_str().to_owned())),
            Some(timestamp(u)),
        ),
        None => (None, None),
    };
    // S3 leaves the legal hold header out for a version that never had one; hoard
    // does not keep whether an OFF was ever set, so it shows the header when ON.
    let hold = lock.legal_hold.then(|| legal_hold_status(true));
    (mode, until, hold)
}
