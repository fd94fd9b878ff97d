//! S3 Put/Get/DeleteBucketReplication over hoard's replication rules. hoard keeps
//! one rule per bucket towards one replica bucket, so a configuration holds exactly
//! one rule; its destination ARN `arn:aws:s3:::NAME` names a configured target
//! (`hoard replication target add NAME`), and `Status: Disabled` pauses the rule.
//! The whole bucket replicates, delete markers included: a filter narrowing it or
//! `DeleteMarkerReplication: Disabled` is refused rather than ignored.

use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};

use super::HoardS3;
use crate::replication::rules::RulesError;

fn invalid_request(message: &str) -> S3Error {
    S3Error::with_message(S3ErrorCode::InvalidRequest, message.to_owned())
}

impl HoardS3 {
    pub(super) async fn put_bucket_replication_impl(
        &self,
        req: S3Request<PutBucketReplicationInput>,
    ) -> S3Result<S3Response<PutBucketReplicationOutput>> {
        let input = req.input;
        self.bucket(&input.bucket).await?;
        let [rule] = input.replication_configuration.rules.as_slice() else {
            return Err(invalid_request(
                "hoard replicates a bucket to one target: give exactly one rule",
            ));
        };
        let narrowed = rule.prefix.as_deref().is_some_and(|p| !p.is_empty())
            || rule.filter.as_ref().is_some_and(|f| {
                f.and.is_some()
                    || f.tag.is_some()
                    || f.prefix.as_deref().is_some_and(|p| !p.is_empty())
            });
        if narrowed {
            return Err(invalid_request(
                "hoard replicates whole buckets: a prefix or tag filter is not supported",
            ));
        }
        let markers_off = rule
            .delete_marker_replication
            .as_ref()
            .and_then(|d| d.status.as_ref())
            .is_some_and(|s| s.as_str() == DeleteMarkerReplicationStatus::DISABLED);
        if markers_off {
            return Err(invalid_request(
                "hoard always replicates delete markers: DeleteMarkerReplication must be Enabled",
            ));
        }
        let enabled = match rule.status.as_str() {
            ReplicationRuleStatus::ENABLED => true,
            ReplicationRuleStatus::DISABLED => false,
            other => {
                return Err(S3Error::with_message(
                    S3ErrorCode::MalformedXML,
                    format!("rule status {other:?} is neither Enabled nor Disabled"),
                ));
            }
        };
        self.rules
            .configure(&input.bucket, &rule.destination.bucket, enabled)
            .await
            .map_err(RulesError::into_s3)?;
        Ok(S3Response::new(PutBucketReplicationOutput::default()))
    }

    pub(super) async fn get_bucket_replication_impl(
        &self,
        req: S3Request<GetBucketReplicationInput>,
    ) -> S3Result<S3Response<GetBucketReplicationOutput>> {
        self.bucket(&req.input.bucket).await?;
        let (arn, enabled) = self
            .rules
            .configuration(&req.input.bucket)
            .await
            .map_err(RulesError::into_s3)?;
        let status = match enabled {
            true => ReplicationRuleStatus::ENABLED,
            false => ReplicationRuleStatus::DISABLED,
        };
        let rule = ReplicationRule {
            id: Some("hoard".into()),
            priority: Some(1),
            status: ReplicationRuleStatus::from_static(status),
            filter: Some(ReplicationRuleFilter {
                prefix: Some(String::new()),
                ..Default::default()
            }),
            delete_marker_replication: Some(DeleteMarkerReplication {
                status: Some(DeleteMarkerReplicationStatus::from_static(
                    DeleteMarkerReplicationStatus::ENABLED,
                )),
            }),
            destination: Destination {
                bucket: arn,
                ..Default::default()
            },
            existing_object_replication: Some(ExistingObjectReplication {
                status: ExistingObjectReplicationStatus::from_static(
                    ExistingObjectReplicationStatus::ENABLED,
                ),
            }),
            prefix: None,
            source_selection_criteria: None,
        };
        Ok(S3Response::new(GetBucketReplicationOutput {
            replication_configuration: Some(ReplicationConfiguration {
                role: String::new(),
                rules: vec![rule],
            }),
        }))
    }

    pub(super) async fn delete_bucket_replication_impl(
        &self,
        req: S3Request<DeleteBucketReplicationInput>,
    ) -> S3Result<S3Response<DeleteBucketReplicationOutput>> {
        self.bucket(&req.input.bucket).await?;
        match self.rules.remove(&req.input.bucket).await {
            Ok(()) | Err(RulesError::NoSuchRule(_)) => {
                Ok(S3Response::new(DeleteBucketReplicationOutput::default()))
            }
            Err(e) => Err(e.into_s3()),
        }
    }
}
