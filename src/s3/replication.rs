//! S3 Put/Get/DeleteBucketReplication over hoard's replication rules. A
//! configuration holds one or more rules, each towards the replica bucket of a
//! configured target: its destination ARN `arn:aws:s3:::NAME` names it (`hoard
//! replication target add NAME`). Each rule's `ID`, `Priority`, `Filter` (`Prefix`,
//! `Tag`, `And`, or the older rule-level `Prefix`), `Status` (Disabled: stored
//! paused), `DeleteMarkerReplication` and `ExistingObjectReplication` are kept as
//! given; PutBucketReplication replaces the bucket's rules as a whole. Where S3
//! requires an element hoard falls back to what a backup target wants: a missing
//! `DeleteMarkerReplication` or `ExistingObjectReplication` means Enabled.

use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};

use super::HoardS3;
use crate::meta::RuleScope;
use crate::replication::rules::{RulesError, S3Rule, check_rule_id};

fn invalid_argument(message: String) -> S3Error {
    S3Error::with_message(S3ErrorCode::InvalidArgument, message)
}

fn malformed(message: String) -> S3Error {
    S3Error::with_message(S3ErrorCode::MalformedXML, message)
}

/// Whether an optional `Status` element says Enabled (absent: `default`).
fn enabled(status: Option<&str>, default: bool, what: &str) -> S3Result<bool> {
    match status {
        None => Ok(default),
        Some("Enabled") => Ok(true),
        Some("Disabled") => Ok(false),
        Some(other) => Err(malformed(format!(
            "{what} status {other:?} is neither Enabled nor Disabled"
        ))),
    }
}

/// One rule of a configuration as hoard keeps it.
fn s3_rule(rule: &ReplicationRule) -> S3Result<S3Rule> {
    if let Some(id) = &rule.id {
        check_rule_id(id).map_err(invalid_argument)?;
    }
    let mut scope = RuleScope {
        priority: u32::try_from(rule.priority.unwrap_or(0))
            .map_err(|_| invalid_argument("a rule's Priority must not be negative".into()))?,
        ..RuleScope::default()
    };
    let tag = |t: &Tag| {
        (
            t.key.clone().unwrap_or_default(),
            t.value.clone().unwrap_or_default(),
        )
    };
    match (&rule.filter, &rule.prefix) {
        (Some(_), Some(_)) => {
            return Err(malformed(
                "a rule has either a Filter or a Prefix, not both".into(),
            ));
        }
        (Some(f), None) => match (&f.prefix, &f.tag, &f.and) {
            (p, None, None) => scope.prefix = p.clone().unwrap_or_default(),
            (None, Some(t), None) => scope.tags = vec![tag(t)],
            (None, None, Some(and)) => {
                scope.prefix = and.prefix.clone().unwrap_or_default();
                scope.tags = and.tags.iter().flatten().map(tag).collect();
            }
            _ => {
                return Err(malformed("a Filter holds one of Prefix, Tag or And".into()));
            }
        },
        (None, p) => scope.prefix = p.clone().unwrap_or_default(),
    }
    scope.tags.sort();
    if scope.tags.iter().any(|(k, _)| k.is_empty()) {
        return Err(invalid_argument("a filter tag needs a Key".into()));
    }
    let markers = rule
        .delete_marker_replication
        .as_ref()
        .and_then(|d| d.status.as_ref());
    scope.delete_markers = enabled(markers.map(|s| s.as_str()), true, "DeleteMarkerReplication")?;
    let existing = rule
        .existing_object_replication
        .as_ref()
        .map(|e| e.status.as_str());
    scope.existing_objects = enabled(existing, true, "ExistingObjectReplication")?;
    Ok(S3Rule {
        id: rule.id.clone(),
        arn: rule.destination.bucket.clone(),
        enabled: enabled(Some(rule.status.as_str()), true, "rule")?,
        scope,
    })
}

/// The S3 shape of a rule hoard keeps.
fn replication_rule(r: S3Rule) -> ReplicationRule {
    let tag = |(k, v): (String, String)| Tag {
        key: Some(k),
        value: Some(v),
    };
    let s = r.scope;
    let filter = match s.tags.len() {
        0 => ReplicationRuleFilter {
            prefix: Some(s.prefix),
            ..Default::default()
        },
        1 if s.prefix.is_empty() => ReplicationRuleFilter {
            tag: s.tags.into_iter().next().map(tag),
            ..Default::default()
        },
        _ => ReplicationRuleFilter {
            and: Some(ReplicationRuleAndOperator {
                prefix: (!s.prefix.is_empty()).then_some(s.prefix),
                tags: Some(s.tags.into_iter().map(tag).collect()),
            }),
            ..Default::default()
        },
    };
    let status = |on: bool| if on { "Enabled" } else { "Disabled" };
    ReplicationRule {
        id: r.id,
        priority: Some(i32::try_from(s.priority).unwrap_or(i32::MAX)),
        status: ReplicationRuleStatus::from(status(r.enabled).to_owned()),
        filter: Some(filter),
        delete_marker_replication: Some(DeleteMarkerReplication {
            status: Some(DeleteMarkerReplicationStatus::from(
                status(s.delete_markers).to_owned(),
            )),
        }),
        destination: Destination {
            bucket: r.arn,
            ..Default::default()
        },
        existing_object_replication: Some(ExistingObjectReplication {
            status: ExistingObjectReplicationStatus::from(status(s.existing_objects).to_owned()),
        }),
        prefix: None,
        source_selection_criteria: None,
    }
}

impl HoardS3 {
    pub(super) async fn put_bucket_replication_impl(
        &self,
        req: S3Request<PutBucketReplicationInput>,
    ) -> S3Result<S3Response<PutBucketReplicationOutput>> {
        let input = req.input;
        self.bucket(&input.bucket).await?;
        let given = &input.replication_configuration.rules;
        if given.is_empty() {
            return Err(malformed("a replication configuration needs a Rule".into()));
        }
        let rules = given.iter().map(s3_rule).collect::<S3Result<Vec<_>>>()?;
        for (i, r) in rules.iter().enumerate() {
            let later = &rules[i + 1..];
            if r.id.is_some() && later.iter().any(|o| o.id == r.id) {
                return Err(invalid_argument(format!(
                    "rule ID {:?} appears twice",
                    r.id.as_deref().unwrap_or_default()
                )));
            }
            if rules.len() > 1 && later.iter().any(|o| o.scope.priority == r.scope.priority) {
                return Err(invalid_argument(format!(
                    "Found duplicate priority {}: each rule needs its own",
                    r.scope.priority
                )));
            }
        }
        self.rules
            .configure(&input.bucket, rules)
            .await
            .map_err(RulesError::into_s3)?;
        Ok(S3Response::new(PutBucketReplicationOutput::default()))
    }

    pub(super) async fn get_bucket_replication_impl(
        &self,
        req: S3Request<GetBucketReplicationInput>,
    ) -> S3Result<S3Response<GetBucketReplicationOutput>> {
        self.bucket(&req.input.bucket).await?;
        let rules = self
            .rules
            .configuration(&req.input.bucket)
            .await
            .map_err(RulesError::into_s3)?;
        Ok(S3Response::new(GetBucketReplicationOutput {
            replication_configuration: Some(ReplicationConfiguration {
                role: String::new(),
                rules: rules.into_iter().map(replication_rule).collect(),
            }),
        }))
    }

    pub(super) async fn delete_bucket_replication_impl(
        &self,
        req: S3Request<DeleteBucketReplicationInput>,
    ) -> S3Result<S3Response<DeleteBucketReplicationOutput>> {
        self.bucket(&req.input.bucket).await?;
        self.rules
            .remove_all(&req.input.bucket)
            .await
            .map_err(RulesError::into_s3)?;
        Ok(S3Response::new(DeleteBucketReplicationOutput::default()))
    }
}
