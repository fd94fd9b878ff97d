//! Put/Get/DeleteBucketLifecycleConfiguration: S3's lifecycle XML to and from
//! `lifecycle::LifecycleRules`, validated as S3 validates it. The rules run in the
//! `lifecycle` pass.
//!
//! Accepted: Expiration (Days, Date at midnight UTC, ExpiredObjectDeleteMarker),
//! NoncurrentVersionExpiration (NoncurrentDays, NewerNoncurrentVersions),
//! AbortIncompleteMultipartUpload, filters by prefix, tags, object size and And, and
//! the older top-level Prefix. Transitions are refused with 501 NotImplemented: hoard
//! has one storage class (older segments move to the cloud tier by its own policy).

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::versioning::tag_set;
use super::{HoardS3, malformed_xml, meta_error, rule_id, timestamp};
use crate::lifecycle::{
    DAY_MS, Expiration, Filter, FilterShape, LifecycleRules, NoncurrentExpiration, Rule,
};
use crate::meta::BucketConfigKind;

const MAX_RULES: usize = 1000;
const MAX_NEWER_VERSIONS: i32 = 100;

/// A count of days that must be a positive integer.
fn positive_days(days: i32, what: &str) -> S3Result<u32> {
    match u32::try_from(days) {
        Ok(d) if d > 0 => Ok(d),
        _ => Err(s3_error!(
            InvalidArgument,
            "'{}' must be a positive integer",
            what
        )),
    }
}

fn size_bound(v: Option<i64>, what: &str) -> S3Result<Option<u64>> {
    v.map(|n| {
        u64::try_from(n).map_err(|_| s3_error!(InvalidArgument, "'{}' must not be negative", what))
    })
    .transpose()
}

fn tag_pair(t: Tag) -> (String, String) {
    (t.key.unwrap_or_default(), t.value.unwrap_or_default())
}

/// The rule's filter, from `<Filter>` or the older top-level `<Prefix>` (exactly
/// one of them; a `<Filter>` names at most one condition, or `<And>`).
fn filter_of(filter: Option<LifecycleRuleFilter>, prefix: Option<String>) -> S3Result<Filter> {
    let f = match (filter, prefix) {
        (Some(_), Some(_)) | (None, None) => return Err(malformed_xml()),
        (None, Some(prefix)) => {
            return Ok(Filter {
                prefix,
                shape: FilterShape::Legacy,
                ..Default::default()
            });
        }
        (Some(f), None) => f,
    };
    let named = usize::from(f.prefix.is_some())
        + usize::from(f.tag.is_some())
        + usize::from(f.object_size_greater_than.is_some())
        + usize::from(f.object_size_less_than.is_some())
        + usize::from(f.and.is_some());
    if named > 1 {
        return Err(malformed_xml());
    }
    let filter = match f.and {
        Some(and) => Filter {
            prefix: and.prefix.unwrap_or_default(),
            tags: and
                .tags
                .unwrap_or_default()
                .into_iter()
                .map(tag_pair)
                .collect(),
            size_greater_than: size_bound(and.object_size_greater_than, "ObjectSizeGreaterThan")?,
            size_less_than: size_bound(and.object_size_less_than, "ObjectSizeLessThan")?,
            shape: FilterShape::And,
        },
        None => Filter {
            prefix: f.prefix.unwrap_or_default(),
            tags: f.tag.into_iter().map(tag_pair).collect(),
            size_greater_than: size_bound(f.object_size_greater_than, "ObjectSizeGreaterThan")?,
            size_less_than: size_bound(f.object_size_less_than, "ObjectSizeLessThan")?,
            shape: FilterShape::Single,
        },
    };
    if let (Some(gt), Some(lt)) = (filter.size_greater_than, filter.size_less_than)
        && gt >= lt
    {
        return Err(s3_error!(
            InvalidRequest,
            "ObjectSizeGreaterThan must be less than ObjectSizeLessThan"
        ));
    }
    crate::meta::check_tags(&filter.tags, 50)
        .map_err(|m| s3s::S3Error::with_message(s3s::S3ErrorCode::InvalidTag, m))?;
    Ok(filter)
}

fn expiration_of(e: LifecycleExpiration) -> S3Result<Option<Expiration>> {
    let timed = e.days.is_some() || e.date.is_some();
    if timed && e.expired_object_delete_marker.is_some() {
        return Err(s3_error!(
            InvalidArgument,
            "ExpiredObjectDeleteMarker cannot be specified with Days or Date in a Lifecycle Expiration Policy"
        ));
    }
    match (e.days, e.date) {
        (Some(_), Some(_)) => Err(malformed_xml()),
        (Some(days), None) => Ok(Some(Expiration::Days(positive_days(days, "Days")?))),
        (None, Some(date)) => {
            let ms = super::lock::millis(&date);
            if ms.rem_euclid(DAY_MS) != 0 {
                return Err(s3_error!(InvalidArgument, "'Date' must be at midnight GMT"));
            }
            Ok(Some(Expiration::Date(ms)))
        }
        (None, None) => match e.expired_object_delete_marker {
            Some(true) => Ok(Some(Expiration::ExpiredDeleteMarker)),
            Some(false) => Ok(None),
            None => Err(malformed_xml()),
        },
    }
}

fn noncurrent_of(n: NoncurrentVersionExpiration) -> S3Result<NoncurrentExpiration> {
    let days = positive_days(
        n.noncurrent_days.ok_or_else(malformed_xml)?,
        "NoncurrentDays",
    )?;
    let newer_versions = match n.newer_noncurrent_versions {
        None => None,
        Some(v) if (1..=MAX_NEWER_VERSIONS).contains(&v) => Some(v.unsigned_abs()),
        Some(_) => {
            return Err(s3_error!(
                InvalidArgument,
                "'NewerNoncurrentVersions' must be an integer from 1 to {}",
                MAX_NEWER_VERSIONS
            ));
        }
    };
    Ok(NoncurrentExpiration {
        days,
        newer_versions,
    })
}

/// One rule, validated; an empty ID is given one, as S3 does.
fn rule_of(r: LifecycleRule) -> S3Result<Rule> {
    if r.transitions.as_ref().is_some_and(|t| !t.is_empty())
        || r.noncurrent_version_transitions
            .as_ref()
            .is_some_and(|t| !t.is_empty())
    {
        return Err(s3_error!(
            NotImplemented,
            "Transitions are not supported: hoard has one storage class (older segments move to its cloud tier by the tier policy)"
        ));
    }
    let enabled = match r.status.as_str() {
        ExpirationStatus::ENABLED => true,
        ExpirationStatus::DISABLED => false,
        _ => return Err(malformed_xml()),
    };
    let id = match r.id.filter(|id| !id.is_empty()) {
        Some(id) => rule_id(id)?,
        None => hex::encode(rand::random::<[u8; 16]>()),
    };
    let filter = filter_of(r.filter, r.prefix)?;
    let expiration = r.expiration.map(expiration_of).transpose()?.flatten();
    let noncurrent = r
        .noncurrent_version_expiration
        .map(noncurrent_of)
        .transpose()?;
    let abort_upload_days = r
        .abort_incomplete_multipart_upload
        .map(|a| {
            positive_days(
                a.days_after_initiation.ok_or_else(malformed_xml)?,
                "DaysAfterInitiation",
            )
        })
        .transpose()?;
    if expiration.is_none() && noncurrent.is_none() && abort_upload_days.is_none() {
        return Err(s3_error!(
            InvalidRequest,
            "At least one action needs to be specified in a rule"
        ));
    }
    let sized = filter.size_greater_than.is_some() || filter.size_less_than.is_some();
    if abort_upload_days.is_some() && (!filter.tags.is_empty() || sized) {
        return Err(s3_error!(
            InvalidRequest,
            "AbortIncompleteMultipartUpload cannot be specified with Tags or object size filters"
        ));
    }
    if expiration == Some(Expiration::ExpiredDeleteMarker) && (!filter.tags.is_empty() || sized) {
        return Err(s3_error!(
            InvalidRequest,
            "ExpiredObjectDeleteMarker cannot be specified with Tags or object size filters"
        ));
    }
    Ok(Rule {
        id,
        enabled,
        filter,
        expiration,
        noncurrent,
        abort_upload_days,
    })
}

fn rules_of(config: BucketLifecycleConfiguration) -> S3Result<LifecycleRules> {
    if config.rules.is_empty() || config.rules.len() > MAX_RULES {
        return Err(malformed_xml());
    }
    let rules = config
        .rules
        .into_iter()
        .map(rule_of)
        .collect::<S3Result<Vec<_>>>()?;
    for (i, r) in rules.iter().enumerate() {
        if rules[..i].iter().any(|o| o.id == r.id) {
            return Err(s3_error!(
                InvalidArgument,
                "Rule ID must be unique. Found same ID for more than one rule"
            ));
        }
    }
    Ok(LifecycleRules { rules })
}

/// The rule as GetBucketLifecycleConfiguration answers it, in the shape it was given.
fn xml_rule(r: Rule) -> LifecycleRule {
    let f = r.filter;
    let gt = f.size_greater_than.map(|n| n as i64);
    let lt = f.size_less_than.map(|n| n as i64);
    let (filter, prefix) = match f.shape {
        FilterShape::Legacy => (None, Some(f.prefix)),
        FilterShape::And => (
            Some(LifecycleRuleFilter {
                and: Some(LifecycleRuleAndOperator {
                    prefix: Some(f.prefix).filter(|p| !p.is_empty()),
                    tags: (!f.tags.is_empty()).then(|| tag_set(f.tags)),
                    object_size_greater_than: gt,
                    object_size_less_than: lt,
                }),
                ..Default::default()
            }),
            None,
        ),
        FilterShape::Single => {
            let named_other = !f.tags.is_empty() || gt.is_some() || lt.is_some();
            (
                Some(LifecycleRuleFilter {
                    prefix: (!named_other).then_some(f.prefix),
                    tag: tag_set(f.tags).into_iter().next(),
                    object_size_greater_than: gt,
                    object_size_less_than: lt,
                    ..Default::default()
                }),
                None,
            )
        }
    };
    let day_count = |d: u32| i32::try_from(d).unwrap_or(i32::MAX);
    LifecycleRule {
        id: Some(r.id),
        status: ExpirationStatus::from_static(if r.enabled {
            ExpirationStatus::ENABLED
        } else {
            ExpirationStatus::DISABLED
        }),
        filter,
        prefix,
        expiration: r.expiration.map(|e| match e {
            Expiration::Days(d) => LifecycleExpiration {
                days: Some(day_count(d)),
                ..Default::default()
            },
            Expiration::Date(ms) => LifecycleExpiration {
                date: Some(timestamp(ms)),
                ..Default::default()
            },
            Expiration::ExpiredDeleteMarker => LifecycleExpiration {
                expired_object_delete_marker: Some(true),
                ..Default::default()
            },
        }),
        noncurrent_version_expiration: r.noncurrent.map(|n| NoncurrentVersionExpiration {
            noncurrent_days: Some(day_count(n.days)),
            newer_noncurrent_versions: n.newer_versions.map(day_count),
        }),
        abort_incomplete_multipart_upload: r.abort_upload_days.map(|d| {
            AbortIncompleteMultipartUpload {
                days_after_initiation: Some(day_count(d)),
            }
        }),
        transitions: None,
        noncurrent_version_transitions: None,
    }
}

impl HoardS3 {
    pub(super) async fn put_bucket_lifecycle_configuration_impl(
        &self,
        req: S3Request<PutBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<PutBucketLifecycleConfigurationOutput>> {
        let i = req.input;
        self.bucket(&i.bucket).await?;
        let rules = rules_of(i.lifecycle_configuration.ok_or_else(malformed_xml)?)?;
        self.meta
            .set_bucket_config(&i.bucket, BucketConfigKind::Lifecycle, Some(rules.encode()))
            .await
            .map_err(meta_error)?;
        tracing::info!(bucket = %i.bucket, rules = rules.rules.len(), "lifecycle configured");
        Ok(S3Response::new(
            PutBucketLifecycleConfigurationOutput::default(),
        ))
    }

    pub(super) async fn get_bucket_lifecycle_configuration_impl(
        &self,
        req: S3Request<GetBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketLifecycleConfigurationOutput>> {
        let bucket = &req.input.bucket;
        self.bucket(bucket).await?;
        let doc = self
            .meta
            .bucket_config(bucket, BucketConfigKind::Lifecycle)
            .await
            .map_err(meta_error)?
            .ok_or_else(|| {
                s3_error!(
                    NoSuchLifecycleConfiguration,
                    "The lifecycle configuration does not exist"
                )
            })?;
        let rules =
            LifecycleRules::decode(bucket, &doc).map_err(|e| s3_error!(InternalError, "{}", e))?;
        Ok(S3Response::new(GetBucketLifecycleConfigurationOutput {
            rules: Some(rules.rules.into_iter().map(xml_rule).collect()),
            ..Default::default()
        }))
    }

    pub(super) async fn delete_bucket_lifecycle_impl(
        &self,
        req: S3Request<DeleteBucketLifecycleInput>,
    ) -> S3Result<S3Response<DeleteBucketLifecycleOutput>> {
        let bucket = &req.input.bucket;
        self.bucket(bucket).await?;
        self.meta
            .set_bucket_config(bucket, BucketConfigKind::Lifecycle, None)
            .await
            .map_err(meta_error)?;
        tracing::info!(%bucket, "lifecycle configuration deleted");
        Ok(S3Response::new(DeleteBucketLifecycleOutput::default()))
    }
}
