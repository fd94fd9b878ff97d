//! `cors` owns a bucket's cross-origin rules (S3's CORS configuration, stored as the
//! bucket's `BucketConfigKind::Cors` document) and how a browser's request is judged
//! against them: the answer to a preflight (`OPTIONS`) and the `Access-Control-*`
//! headers of an actual request.
//!
//! Matching, as S3 does it: the first rule, in the order given, whose AllowedOrigin
//! matches the request's `Origin` (a pattern holds at most one `*`, which matches
//! any run of characters), whose AllowedMethod holds the method (the preflight's
//! `Access-Control-Request-Method`, or the actual request's), and, for a preflight,
//! whose AllowedHeader patterns cover every header named in
//! `Access-Control-Request-Headers` (header names compare without case).
//!
//! Invariants:
//! - A request that matches no rule gets no `Access-Control-*` header at all.
//! - A preflight needs no signature (browsers send none) and changes nothing; it
//!   reveals only whether the bucket exists and what its rules allow.
//! - An origin matched by the rule `*` alone is answered `*` without credentials;
//!   any other match echoes the origin and allows credentials (S3's answers).

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};

use crate::meta::{BucketConfigKind, MetaError, MetaStore};

/// The methods a rule may allow.
pub const ALLOWED_METHODS: [&str; 5] = ["GET", "PUT", "HEAD", "POST", "DELETE"];

#[derive(Debug, thiserror::Error)]
pub enum CorsError {
    #[error("metadata: {0}")]
    Meta(#[from] MetaError),
    #[error("stored CORS configuration of bucket {bucket} is unreadable: {source}")]
    Unreadable {
        bucket: String,
        source: serde_json::Error,
    },
}

/// A bucket's CORS configuration, as stored (JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorsRules {
    pub rules: Vec<CorsRule>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorsRule {
    pub id: Option<String>,
    pub allowed_origins: Vec<String>,
    pub allowed_methods: Vec<String>,
    pub allowed_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age_secs: Option<i32>,
}

/// What a browser asks: its origin, the method, and (preflight only) the headers
/// the actual request will carry.
#[derive(Debug)]
pub struct CorsRequest<'a> {
    pub origin: &'a str,
    pub method: &'a str,
    pub headers: Vec<String>,
}

/// Why a preflight is refused: S3's status, code and message.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            code,
            message: message.into(),
        }
    }
}

/// Whether `value` matches `pattern`, whose one `*` (if any) matches any run.
pub fn wildcard_match(pattern: &str, value: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == value,
        Some((head, tail)) => {
            value.len() >= head.len() + tail.len()
                && value.starts_with(head)
                && value.ends_with(tail)
        }
    }
}

impl CorsRules {
    pub fn encode(&self) -> Vec<u8> {
        // A struct of strings and numbers always serialises.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bucket: &str, doc: &[u8]) -> Result<CorsRules, CorsError> {
        serde_json::from_slice(doc).map_err(|source| CorsError::Unreadable {
            bucket: bucket.to_owned(),
            source,
        })
    }

    /// `bucket`'s rules, if it has a CORS configuration.
    pub async fn load(meta: &MetaStore, bucket: &str) -> Result<Option<CorsRules>, CorsError> {
        meta.bucket_config(bucket, BucketConfigKind::Cors)
            .await?
            .map(|doc| CorsRules::decode(bucket, &doc))
            .transpose()
    }

    /// The first rule that allows `req`.
    pub fn matching(&self, req: &CorsRequest) -> Option<&CorsRule> {
        self.rules.iter().find(|r| r.allows(req))
    }
}

impl CorsRule {
    fn allows(&self, req: &CorsRequest) -> bool {
        self.allowed_origins
            .iter()
            .any(|o| wildcard_match(o, req.origin))
            && self.allowed_methods.iter().any(|m| m == req.method)
            && req.headers.iter().all(|h| {
                self.allowed_headers
                    .iter()
                    .any(|p| wildcard_match(&p.to_ascii_lowercase(), h))
            })
    }

    /// The `Access-Control-*` headers answering `req`, which this rule allows; a
    /// preflight also names the headers it may send.
    pub fn headers(&self, req: &CorsRequest, preflight: bool) -> HeaderMap {
        let mut h = HeaderMap::new();
        let any_origin = self.allowed_origins.iter().all(|o| o == "*");
        let mut put = |name: HeaderName, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                h.insert(name, v);
            }
        };
        put(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            if any_origin { "*" } else { req.origin },
        );
        if !any_origin {
            put(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true");
        }
        put(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            &self.allowed_methods.join(", "),
        );
        if preflight && !req.headers.is_empty() {
            put(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                &req.headers.join(", "),
            );
        }
        if !self.expose_headers.is_empty() {
            put(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                &self.expose_headers.join(", "),
            );
        }
        if let Some(age) = self.max_age_secs {
            put(header::ACCESS_CONTROL_MAX_AGE, &age.to_string());
        }
        put(
            header::VARY,
            "Origin, Access-Control-Request-Headers, Access-Control-Request-Method",
        );
        h
    }
}

/// The request a preflight's headers describe, or S3's 400 when one is missing.
pub fn preflight_request(headers: &HeaderMap) -> Result<CorsRequest<'_>, Refusal> {
    let text = |name: HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let origin = text(header::ORIGIN).ok_or_else(|| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Insufficient information. Origin request header needed.",
        )
    })?;
    let method = text(header::ACCESS_CONTROL_REQUEST_METHOD).unwrap_or("");
    if !ALLOWED_METHODS.contains(&method) {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!(
                "Invalid Access-Control-Request-Method: {}",
                if method.is_empty() { "null" } else { method }
            ),
        ));
    }
    let requested = headers
        .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect();
    Ok(CorsRequest {
        origin,
        method,
        headers: requested,
    })
}

/// Judges a preflight against `rules` (`None`: the bucket has no CORS
/// configuration): the headers to answer 200 with, or S3's 403.
pub fn judge_preflight(rules: Option<&CorsRules>, req: &CorsRequest) -> Result<HeaderMap, Refusal> {
    let rules = rules.ok_or_else(not_enabled)?;
    let rule = rules.matching(req).ok_or_else(|| {
        Refusal::new(
            StatusCode::FORBIDDEN,
            "AccessForbidden",
            "CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.",
        )
    })?;
    Ok(rule.headers(req, true))
}

fn not_enabled() -> Refusal {
    Refusal::new(
        StatusCode::FORBIDDEN,
        "AccessForbidden",
        "CORSResponse: CORS is not enabled for this bucket.",
    )
}

/// Answers a preflight to `bucket` (`None`: the service root, which has no CORS):
/// the headers of its 200, or S3's refusal.
pub async fn preflight(
    meta: &MetaStore,
    bucket: Option<&str>,
    headers: &HeaderMap,
) -> Result<HeaderMap, Refusal> {
    let req = preflight_request(headers)?;
    let bucket = bucket.ok_or_else(not_enabled)?;
    let internal = |e: &dyn std::fmt::Display| {
        tracing::error!(%bucket, error = %e, "CORS preflight: cannot read the bucket");
        Refusal::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "We encountered an internal error. Please try again.",
        )
    };
    if meta
        .get_bucket(bucket)
        .await
        .map_err(|e| internal(&e))?
        .is_none()
    {
        return Err(Refusal::new(
            StatusCode::NOT_FOUND,
            "NoSuchBucket",
            "The specified bucket does not exist",
        ));
    }
    let rules = CorsRules::load(meta, bucket)
        .await
        .map_err(|e| internal(&e))?;
    judge_preflight(rules.as_ref(), &req)
}

/// The `Access-Control-*` headers for an actual request from `origin` to
/// `bucket`: none when no rule allows it (or the rules cannot be read, which is
/// logged; the request itself is answered as if CORS were off).
pub async fn actual_headers(
    meta: &MetaStore,
    bucket: &str,
    origin: &str,
    method: &str,
) -> HeaderMap {
    let rules = match CorsRules::load(meta, bucket).await {
        Ok(Some(rules)) => rules,
        Ok(None) => return HeaderMap::new(),
        Err(e) => {
            tracing::warn!(%bucket, error = %e, "CORS: cannot read the bucket's rules");
            return HeaderMap::new();
        }
    };
    let req = CorsRequest {
        origin,
        method,
        headers: Vec::new(),
    };
    rules
        .matching(&req)
        .map(|rule| rule.headers(&req, false))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(origins: &[&str], methods: &[&str], headers: &[&str]) -> CorsRule {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        CorsRule {
            allowed_origins: own(origins),
            allowed_methods: own(methods),
            allowed_headers: own(headers),
            ..Default::default()
        }
    }

    fn ask<'a>(origin: &'a str, method: &'a str, headers: &[&str]) -> CorsRequest<'a> {
        CorsRequest {
            origin,
            method,
            headers: headers.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn one_wildcard_matches_any_run_and_nothing_else_is_loose() {
        let cases = [
            ("*", "https://a.example", true),
            ("https://*.example", "https://a.b.example", true),
            ("https://*.example", "https://.example", true),
            ("https://*.example", "https://example", false),
            ("https://a.example", "https://a.example", true),
            ("https://a.example", "https://A.example", false),
            ("https://a.example", "https://a.example:8443", false),
            ("http://*", "https://a", false),
            ("x-amz-*", "x-amz-date", true),
            ("x-amz-*", "x-am", false),
        ];
        for (pattern, value, expected) in cases {
            assert_eq!(
                wildcard_match(pattern, value),
                expected,
                "{pattern} vs {value}"
            );
        }
    }

    #[test]
    fn the_first_rule_allowing_origin_method_and_every_header_answers() {
        let rules = CorsRules {
            rules: vec![
                rule(&["https://app.example"], &["PUT"], &["content-type"]),
                rule(&["https://*.example"], &["GET", "PUT"], &["X-Amz-*"]),
                rule(&["*"], &["GET"], &[]),
            ],
        };
        let which = |req: CorsRequest| {
            rules
                .matching(&req)
                .and_then(|m| rules.rules.iter().position(|r| r == m))
        };
        assert_eq!(
            which(ask("https://app.example", "PUT", &["content-type"])),
            Some(0)
        );
        // A header the first rule does not allow moves on to the second.
        assert_eq!(
            which(ask("https://app.example", "PUT", &["x-amz-date"])),
            Some(1)
        );
        assert_eq!(
            which(ask(
                "https://app.example",
                "PUT",
                &["content-type", "x-amz-date"]
            )),
            None
        );
        assert_eq!(which(ask("https://other.org", "GET", &[])), Some(2));
        assert_eq!(which(ask("https://other.org", "PUT", &[])), None);
        assert_eq!(which(ask("https://other.org", "GET", &["range"])), None);
    }

    #[test]
    fn answers_echo_the_origin_unless_the_rule_allows_any() {
        let mut specific = rule(&["https://app.example"], &["GET", "PUT"], &["*"]);
        specific.expose_headers = vec!["ETag".into(), "x-amz-version-id".into()];
        specific.max_age_secs = Some(600);
        let req = ask(
            "https://app.example",
            "PUT",
            &["content-type", "x-amz-date"],
        );
        let h = specific.headers(&req, true);
        assert_eq!(h["access-control-allow-origin"], "https://app.example");
        assert_eq!(h["access-control-allow-credentials"], "true");
        assert_eq!(h["access-control-allow-methods"], "GET, PUT");
        assert_eq!(
            h["access-control-allow-headers"],
            "content-type, x-amz-date"
        );
        assert_eq!(h["access-control-expose-headers"], "ETag, x-amz-version-id");
        assert_eq!(h["access-control-max-age"], "600");
        // An actual request is not told which headers it may send.
        assert!(
            !specific
                .headers(&req, false)
                .contains_key("access-control-allow-headers")
        );

        let any = rule(&["*"], &["GET"], &[]);
        let h = any.headers(&ask("https://x.org", "GET", &[]), false);
        assert_eq!(h["access-control-allow-origin"], "*");
        assert!(!h.contains_key("access-control-allow-credentials"));
        assert!(!h.contains_key("access-control-max-age"));
    }

    #[test]
    fn preflights_without_origin_or_method_are_bad_requests() {
        let mut h = HeaderMap::new();
        let refused = preflight_request(&h).unwrap_err();
        assert_eq!(
            (refused.status, refused.code),
            (StatusCode::BAD_REQUEST, "BadRequest")
        );
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://a.example"),
        );
        assert!(preflight_request(&h).unwrap_err().message.ends_with("null"));
        h.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("PATCH"),
        );
        assert!(
            preflight_request(&h)
                .unwrap_err()
                .message
                .ends_with("PATCH")
        );
        h.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("PUT"),
        );
        h.insert(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            HeaderValue::from_static("Content-Type, X-Amz-Date"),
        );
        let req = preflight_request(&h).unwrap();
        assert_eq!(req.headers, ["content-type", "x-amz-date"]);
        assert_eq!(
            judge_preflight(None, &req).unwrap_err().message,
            "CORSResponse: CORS is not enabled for this bucket."
        );
    }
}
