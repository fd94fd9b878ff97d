//! Put/Get/DeleteBucketCors: S3's CORS XML to and from `cors::CorsRules`, validated
//! as S3 validates it. The rules are judged in `cors` (preflights and the headers
//! of actual requests, both answered by `server`).

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::{HoardS3, malformed_xml, meta_error, rule_id};
use crate::cors::{ALLOWED_METHODS, CorsRule, CorsRules};
use crate::meta::BucketConfigKind;

const MAX_RULES: usize = 100;

/// A pattern (origin or header) with more than one `*` is refused.
fn one_wildcard(patterns: &[String], what: &str) -> S3Result<()> {
    match patterns.iter().find(|p| p.matches('*').count() > 1) {
        Some(p) => Err(s3_error!(
            InvalidRequest,
            "{} \"{}\" can not have more than one wildcard.",
            what,
            p
        )),
        None => Ok(()),
    }
}

fn rule_of(r: CORSRule) -> S3Result<CorsRule> {
    if r.allowed_methods.is_empty() || r.allowed_origins.is_empty() {
        return Err(malformed_xml());
    }
    if let Some(m) = r
        .allowed_methods
        .iter()
        .find(|m| !ALLOWED_METHODS.contains(&m.as_str()))
    {
        return Err(s3_error!(
            InvalidRequest,
            "Found unsupported HTTP method in CORS config. Unsupported method is {}",
            m
        ));
    }
    let allowed_headers = r.allowed_headers.unwrap_or_default();
    one_wildcard(&r.allowed_origins, "AllowedOrigin")?;
    one_wildcard(&allowed_headers, "AllowedHeader")?;
    Ok(CorsRule {
        id: r.id.filter(|id| !id.is_empty()).map(rule_id).transpose()?,
        allowed_origins: r.allowed_origins,
        allowed_methods: r.allowed_methods,
        allowed_headers,
        expose_headers: r.expose_headers.unwrap_or_default(),
        max_age_secs: r.max_age_seconds,
    })
}

fn xml_rule(r: CorsRule) -> CORSRule {
    let some = |v: Vec<String>| (!v.is_empty()).then_some(v);
    CORSRule {
        id: r.id,
        allowed_origins: r.allowed_origins,
        allowed_methods: r.allowed_methods,
        allowed_headers: some(r.allowed_headers),
        expose_headers: some(r.expose_headers),
        max_age_seconds: r.max_age_secs,
    }
}

impl HoardS3 {
    pub(super) async fn put_bucket_cors_impl(
        &self,
        req: S3Request<PutBucketCorsInput>,
    ) -> S3Result<S3Response<PutBucketCorsOutput>> {
        let i = req.input;
        self.bucket(&i.bucket).await?;
        let given = i.cors_configuration.cors_rules;
        if given.is_empty() || given.len() > MAX_RULES {
            return Err(malformed_xml());
        }
        let rules = CorsRules {
            rules: given
                .into_iter()
                .map(rule_of)
                .collect::<S3Result<Vec<_>>>()?,
        };
        self.meta
            .set_bucket_config(&i.bucket, BucketConfigKind::Cors, Some(rules.encode()))
            .await
            .map_err(meta_error)?;
        tracing::info!(bucket = %i.bucket, rules = rules.rules.len(), "CORS configured");
        Ok(S3Response::new(PutBucketCorsOutput::default()))
    }

    pub(super) async fn get_bucket_cors_impl(
        &self,
        req: S3Request<GetBucketCorsInput>,
    ) -> S3Result<S3Response<GetBucketCorsOutput>> {
        let bucket = &req.input.bucket;
        self.bucket(bucket).await?;
        let rules = CorsRules::load(&self.meta, bucket)
            .await
            .map_err(|e| s3_error!(InternalError, "{}", e))?
            .ok_or_else(|| {
                s3_error!(
                    NoSuchCORSConfiguration,
                    "The CORS configuration does not exist"
                )
            })?;
        Ok(S3Response::new(GetBucketCorsOutput {
            cors_rules: Some(rules.rules.into_iter().map(xml_rule).collect()),
        }))
    }

    pub(super) async fn delete_bucket_cors_impl(
        &self,
        req: S3Request<DeleteBucketCorsInput>,
    ) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
        let bucket = &req.input.bucket;
        self.bucket(bucket).await?;
        self.meta
            .set_bucket_config(bucket, BucketConfigKind::Cors, None)
            .await
            .map_err(meta_error)?;
        tracing::info!(%bucket, "CORS configuration deleted");
        Ok(S3Response::new(DeleteBucketCorsOutput::default()))
    }
}
