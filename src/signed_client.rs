//! `signed_client` owns hoard's one outgoing HTTP client: SigV4-signed requests
//! (service `s3`) to another hoard under one path prefix, with the TLS trust the
//! caller gives. The CLI's admin client (`client`) and the replication link
//! (`replication::rules::ReplicaLink`) are both built on it.

use std::time::SystemTime;

use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign,
};
use aws_sigv4::sign::v4;

use crate::auth::Credentials;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("signing the request failed: {0}")]
    Sign(String),
    #[error("cannot reach {endpoint}: {source}")]
    Http {
        endpoint: String,
        source: reqwest::Error,
    },
    #[error("hoard answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("unexpected answer: {0}")]
    Decode(String),
    #[error("TLS set-up: {0}")]
    Tls(String),
    #[error("{0}")]
    Request(String),
}

/// SigV4-signed requests to one hoard (or, for replication to a plain S3 bucket, to
/// any S3 endpoint), under one path prefix, over http or https with the TLS trust
/// it is given.
pub struct SignedClient {
    endpoint: String,
    prefix: &'static str,
    /// Hash bodies into the signature; off, requests say `UNSIGNED-PAYLOAD` (the
    /// replication link: TLS carries the bodies, and chunks are checked by BLAKE3).
    sign_payload: bool,
    region: String,
    creds: Credentials,
    http: reqwest::Client,
}

impl SignedClient {
    /// A client of the endpoints under `prefix` at `endpoint`, with its own TLS trust;
    /// `sign_payload` hashes bodies into the signature, otherwise requests say
    /// `UNSIGNED-PAYLOAD`.
    pub fn new(
        endpoint: &str,
        prefix: &'static str,
        region: &str,
        creds: Credentials,
        tls: rustls::ClientConfig,
        sign_payload: bool,
    ) -> Result<SignedClient, ClientError> {
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        Ok(SignedClient {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            prefix,
            sign_payload,
            region: region.to_owned(),
            creds,
            http,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub async fn request(
        &self,
        method: http::Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<String, ClientError> {
        let bytes = self.request_bytes(method, path, body).await?;
        String::from_utf8(bytes.to_vec()).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// A signed request; the answer's body as bytes, or its status and text.
    pub async fn request_bytes(
        &self,
        method: http::Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<bytes::Bytes, ClientError> {
        Ok(self.send(method, path, &[], body).await?.1)
    }

    /// A signed request with `headers` (signed too); the answer's headers and body,
    /// or its status and text. `path` is sent as given (already percent-encoded).
    pub async fn send(
        &self,
        method: http::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<(http::HeaderMap, bytes::Bytes), ClientError> {
        let url = format!("{}{}{}", self.endpoint, self.prefix, path);
        let payload = match self.sign_payload {
            true => hex::encode(<s3s::crypto::Sha256 as s3s::crypto::Checksum>::checksum(
                &body,
            )),
            false => "UNSIGNED-PAYLOAD".to_owned(),
        };
        let mut req = http::Request::builder()
            .method(method.clone())
            .uri(&url)
            .body(body)
            .map_err(|e| ClientError::Sign(e.to_string()))?;
        let signed = sigv4_headers(
            &self.creds,
            &self.region,
            method.as_str(),
            &url,
            headers,
            &payload,
        )?;
        let given = headers.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        for (k, v) in given.chain(signed) {
            let name = http::HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| ClientError::Sign(e.to_string()))?;
            let value =
                http::HeaderValue::from_str(&v).map_err(|e| ClientError::Sign(e.to_string()))?;
            req.headers_mut().insert(name, value);
        }
        let req = reqwest::Request::try_from(req).map_err(|e| ClientError::Sign(e.to_string()))?;
        let resp = self
            .http
            .execute(req)
            .await
            .map_err(|source| ClientError::Http {
                endpoint: self.endpoint.clone(),
                source,
            })?;
        let status = resp.status().as_u16();
        let answer_headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(|source| ClientError::Http {
            endpoint: self.endpoint.clone(),
            source,
        })?;
        if status >= 300 {
            let body = String::from_utf8_lossy(&body).into_owned();
            return Err(ClientError::Status { status, body });
        }
        Ok((answer_headers, body))
    }

    /// A request whose JSON answer decodes to `T`.
    pub async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: http::Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<T, ClientError> {
        let text = self.request(method, path, body).await?;
        serde_json::from_str(&text).map_err(|e| ClientError::Decode(e.to_string()))
    }
}

/// SigV4 (service `s3`) headers for a request: `authorization`, `x-amz-date` and
/// `x-amz-content-sha256` = `payload_sha256` (a hex digest, `UNSIGNED-PAYLOAD` or a
/// `STREAMING-…` constant). `headers` are signed as well and must be sent as given.
pub fn sigv4_headers(
    creds: &Credentials,
    region: &str,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    payload_sha256: &str,
) -> Result<Vec<(String, String)>, ClientError> {
    let sign_err = |e: &dyn std::fmt::Display| ClientError::Sign(e.to_string());
    let identity = aws_credential_types::Credentials::new(
        &creds.access_key,
        &creds.secret_key,
        None,
        None,
        "hoard",
    )
    .into();
    // As S3 signs: the path as sent (already percent-encoded once), not normalised.
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    settings.percent_encoding_mode = aws_sigv4::http_request::PercentEncodingMode::Single;
    settings.uri_path_normalization_mode =
        aws_sigv4::http_request::UriPathNormalizationMode::Disabled;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("s3")
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .map_err(|e| sign_err(&e))?
        .into();
    let signable = SignableRequest::new(
        method,
        url,
        headers.iter().copied(),
        SignableBody::Precomputed(payload_sha256.to_owned()),
    )
    .map_err(|e| sign_err(&e))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| sign_err(&e))?
        .into_parts();
    let mut req = http::Request::builder()
        .method(method)
        .uri(url)
        .body(())
        .map_err(|e| sign_err(&e))?;
    instructions.apply_to_request_http1x(&mut req);
    Ok(req
        .headers()
        .iter()
        .filter(|(k, _)| *k != http::header::HOST)
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect())
}
