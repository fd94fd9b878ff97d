//! `http_json` owns the small HTTP pieces the admin API and the replica endpoints
//! share: query parameters (decoded by `form_urlencoded`), JSON request bodies of
//! bounded size, and JSON answers.

use http::{HeaderValue, StatusCode, Uri};
use s3s::{Body, S3Error, S3ErrorCode, S3Response, S3Result, s3_error};
use serde::Serialize;

use crate::s3_error::internal;

/// The largest JSON request body accepted.
const MAX_BODY: usize = 64 * 1024;

/// The decoded value of `name` in the query string (the first, if it repeats).
pub(crate) fn query_param(uri: &Uri, name: &str) -> Option<String> {
    form_urlencoded::parse(uri.query()?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Whether a flag in the query string is on (`true` or `1`).
pub(crate) fn query_flag(uri: &Uri, name: &str) -> bool {
    matches!(query_param(uri, name).as_deref(), Some("true" | "1"))
}

/// A JSON request body of at most `MAX_BODY` bytes; empty reads as `T::default()`.
pub(crate) async fn json_body<T: serde::de::DeserializeOwned + Default>(body: Body) -> S3Result<T> {
    Ok(json_body_opt(body).await?.unwrap_or_default())
}

/// A JSON request body that must be there.
pub(crate) async fn json_body_required<T: serde::de::DeserializeOwned>(body: Body) -> S3Result<T> {
    json_body_opt(body)
        .await?
        .ok_or_else(|| s3_error!(InvalidArgument, "this request needs a JSON body"))
}

async fn json_body_opt<T: serde::de::DeserializeOwned>(mut body: Body) -> S3Result<Option<T>> {
    let bytes = body
        .store_all_limited(MAX_BODY)
        .await
        .map_err(|_| s3_error!(InvalidRequest, "request body too large"))?;
    if bytes.is_empty() {
        return Ok(None);
    }
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        S3Error::with_message(S3ErrorCode::InvalidArgument, format!("invalid JSON: {e}"))
    })
}

pub(crate) fn json<T: Serialize>(status: StatusCode, v: &T) -> S3Result<S3Response<Body>> {
    let text = serde_json::to_string_pretty(v).map_err(|e| internal("JSON answer", &e))?;
    let mut resp = S3Response::with_status(Body::from(text), status);
    resp.headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_percent_decoded() {
        let uri: Uri = "/x?bucket=a%2Fb&dry-run=1&note=two+words&bucket=second"
            .parse()
            .unwrap();
        assert_eq!(query_param(&uri, "bucket").as_deref(), Some("a/b"));
        assert_eq!(query_param(&uri, "note").as_deref(), Some("two words"));
        assert!(query_flag(&uri, "dry-run"));
        assert!(!query_flag(&uri, "repair"));
        assert_eq!(query_param(&uri, "dry"), None);
        let bare: Uri = "/x".parse().unwrap();
        assert_eq!(query_param(&bare, "bucket"), None);
    }
}
