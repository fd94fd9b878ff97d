//! `server` owns start-up and the listener: it opens the stores, assembles the
//! services, serves HTTP on the configured address and routes each request to the
//! Prometheus exposition (`GET /metrics`, unsigned) or to the S3 service, whose
//! custom route carries the admin API. Shutdown (Ctrl-C, SIGTERM) stops accepting,
//! lets in-flight requests finish for a bounded time, then exits.
//!
//! `GET /metrics` shadows nothing: a signed `GET /metrics` is still ListObjects on a
//! bucket named `metrics`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{Body, HttpError};
use tokio::net::TcpListener;

use crate::access::HoardAccess;
use crate::admin::AdminApi;
use crate::auth::{Credentials, Origin};
use crate::cleaner::{Cleaner, CleanerSettings};
use crate::config::Config;
use crate::form_tap::{FormFields, FormTap};
use crate::idle_body::IdleTimeout;
use crate::index::ChunkIndex;
use crate::ingest::{Ingest, IngestSettings};
use crate::interim::{Continue, ContinueIo};
use crate::lifecycle::Lifecycle;
use crate::meta::{MetaError, MetaStore};
use crate::metrics::Metrics;
use crate::replication::ReplicaBuckets;
use crate::replication::receiver::{Receiver, Store as ReceiverStore};
use crate::replication::rules::Rules;
use crate::retention::RetentionClock;
use crate::retrieve::Retrieve;
use crate::s3::HoardS3;
use crate::secrets::SecretBox;
use crate::segments::{SegmentError, SegmentKey, SegmentStore};
use crate::stats;
use crate::users::{KeyLookup, Users};

/// How long shutdown waits for in-flight requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// A client must finish the TLS handshake within this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("data dir {0}: {1}")]
    DataDir(std::path::PathBuf, std::io::Error),
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error(transparent)]
    Segments(#[from] SegmentError),
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
    #[error("virtual-host domain: {0}")]
    Domain(String),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Users(#[from] crate::users::UsersError),
    #[error(transparent)]
    Secrets(#[from] crate::secrets::SecretsError),
    #[error("segments.backend = \"s3\" needs a [segments.s3] table")]
    NoS3Settings,
}

/// The routes beside S3: the admin API and the replication receiver.
struct Routes {
    admin: AdminApi,
    receiver: Receiver,
}

#[async_trait::async_trait]
impl s3s::route::S3Route for Routes {
    fn is_match(
        &self,
        method: &http::Method,
        uri: &http::Uri,
        headers: &http::HeaderMap,
        ext: &mut http::Extensions,
    ) -> bool {
        uri.path().starts_with(crate::replication::PREFIX)
            || self.admin.is_match(method, uri, headers, ext)
    }

    async fn check_access(&self, req: &mut s3s::S3Request<Body>) -> s3s::S3Result<()> {
        if req.uri.path().starts_with(crate::replication::PREFIX) {
            self.receiver.check_access(req)
        } else {
            self.admin.check_access(req).await
        }
    }

    async fn call(&self, req: s3s::S3Request<Body>) -> s3s::S3Result<s3s::S3Response<Body>> {
        if req.uri.path().starts_with(crate::replication::PREFIX) {
            self.receiver.call(req).await
        } else {
            self.admin.call(req).await
        }
    }
}

/// Everything a running hoard serves from.
/// How often a gateway on shared metadata reads the users again (a key disabled on
/// another gateway is refused here within this time).
const USERS_REFRESH: Duration = Duration::from_secs(5);

pub struct Node {
    pub cfg: Arc<Config>,
    pub secrets: Arc<SecretBox>,
    pub replication: Arc<crate::replication::Progress>,
    pub meta: MetaStore,
    pub cleaner: Arc<Cleaner>,
    pub lifecycle: Arc<Lifecycle>,
    pub metrics: Arc<Metrics>,
    pub segments: SegmentStore,
    pub clock: Arc<RetentionClock>,
    /// The read path, also for replication to plain S3 buckets.
    pub retrieve: Arc<Retrieve>,
    pub s3: S3Service,
    /// Which bucket a request names, for the answers given beside S3 (CORS).
    pub hosts: crate::vhost::VirtualHosts,
    /// The web dashboard at `/ui/` (none when `[ui] enabled = false`).
    pub dashboard: Option<Arc<crate::ui::Dashboard>>,
}

impl Node {
    pub async fn open(cfg: Config) -> Result<Node, ServerError> {
        let cfg = Arc::new(cfg);
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(|e| ServerError::DataDir(cfg.data_dir.clone(), e))?;
        let (root, origin) = Credentials::load_or_generate(&cfg.data_dir)?;
        announce_root(&root, origin);
        let meta = match &cfg.meta {
            Some(url) => {
                let tls = match &cfg.meta_ca {
                    Some(ca) => Some(crate::tls::client_config(Some(ca))?),
                    None => None,
                };
                MetaStore::open_postgres(url, cfg.meta_connections, tls, cfg.meta_lease_secs)?
            }
            None => MetaStore::open(&cfg.meta_path(), cfg.meta_cache_mib * 1024 * 1024)?,
        };
        let secrets = Arc::new(SecretBox::load_or_generate(&cfg.data_dir)?);
        let users = Arc::new(Users::load(meta.clone(), secrets.clone(), root)?);
        tokio::spawn(users.clone().keep_refreshed(USERS_REFRESH));
        // After the users: a wrong secrets key is named by the first thing it fails.
        let metrics = Arc::new(Metrics::new());
        let segments = open_segments(&cfg, metrics.store_layer())?
            .bind_key(
                SegmentKey::new(secrets.derive_key("segments data key")),
                cfg.segments.encrypt,
                cfg.seals_by_default(),
            )
            .await?
            .with_cache(&cfg.data_dir.join("cache"), &cfg.segments.cache)
            .await?;
        let index = Arc::new(ChunkIndex::load(
            meta.clone(),
            cfg.filter_expected_chunks,
            cfg.locality_segments,
        )?);
        if meta.is_shared() {
            tokio::spawn(keep_filter_fresh(index.clone()));
        }
        let ingest = Arc::new(Ingest::new(
            meta.clone(),
            index.clone(),
            segments.clone(),
            metrics.clone(),
            ingest_settings(&cfg),
        ));
        let streams = ingest.streams.clone();
        let jobs = Arc::new(crate::board::Board::default());
        let cleaner = Arc::new(Cleaner::new(
            meta.clone(),
            segments.clone(),
            metrics.clone(),
            cleaner_settings(&cfg),
            jobs.clone(),
        ));
        let retrieve = Arc::new(Retrieve::new(
            meta.clone(),
            segments.clone(),
            metrics.clone(),
            cfg.get_prefetch,
            cfg.get_read_max,
        ));
        let clock = Arc::new(
            RetentionClock::open(
                &meta,
                &cfg.retention,
                Arc::new(crate::retention::SystemClocks::default()),
            )
            .await?,
        );
        let lifecycle = Arc::new(Lifecycle::new(meta.clone(), metrics.clone(), clock.clone()));
        let replicas = Arc::new(ReplicaBuckets::load(meta.clone())?);
        let progress = Arc::new(crate::replication::Progress::default());
        let rules = Arc::new(Rules::new(
            meta.clone(),
            secrets.clone(),
            metrics.clone(),
            progress.clone(),
        ));
        let s3 = HoardS3::new(
            cfg.clone(),
            meta.clone(),
            ingest,
            retrieve.clone(),
            metrics.clone(),
            users.owner_id().to_owned(),
            users.clone(),
            rules.clone(),
            clock.clone(),
        );
        let mut builder = S3ServiceBuilder::new(s3);
        builder.set_auth(KeyLookup(users.clone()));
        let mut limits = s3s::config::S3Config::default();
        limits.post_object_max_file_size = cfg.post_max_bytes;
        builder.set_config(Arc::new(s3s::config::StaticConfigProvider::new(Arc::new(
            limits,
        ))));
        builder.set_access(HoardAccess::new(
            users.clone(),
            replicas.clone(),
            meta.clone(),
            cfg.region.clone(),
        ));
        let received = Arc::new(ReceiverStore {
            meta: meta.clone(),
            segments: segments.clone(),
            index,
            segment_size: cfg.segment_size,
            clock: clock.clone(),
        });
        let dashboard = cfg.ui.enabled.then(|| {
            Arc::new(crate::ui::Dashboard::new(
                cfg.clone(),
                meta.clone(),
                users.clone(),
                rules.clone(),
                replicas.clone(),
                cleaner.clone(),
                streams,
                metrics.clone(),
                clock.clone(),
                segments.is_tiered(),
            ))
        });
        builder.set_route(Routes {
            receiver: Receiver::new(
                replicas.clone(),
                users.clone(),
                metrics.clone(),
                received.clone(),
            ),
            admin: AdminApi {
                cfg: cfg.clone(),
                meta: meta.clone(),
                segments: segments.clone(),
                cleaner: cleaner.clone(),
                lifecycle: lifecycle.clone(),
                users,
                rules,
                replicas,
                received,
                jobs,
            },
        });
        builder
            .set_host(crate::vhost::VirtualHosts::new(&cfg.domains).map_err(ServerError::Domain)?);
        let hosts = crate::vhost::VirtualHosts::new(&cfg.domains).map_err(ServerError::Domain)?;
        Ok(Node {
            cfg,
            secrets,
            replication: progress,
            meta,
            cleaner,
            lifecycle,
            metrics,
            segments,
            clock,
            retrieve,
            s3: builder.build(),
            hosts,
            dashboard,
        })
    }

    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        interim: Continue,
    ) -> Result<Response<Body>, HttpError> {
        let has_body = request_has_body(&req);
        interim.arm_for(&req, has_body);
        if let Some(d) = self.dashboard.clone().filter(|_| {
            is_unsigned(&req)
                && crate::ui::is_dashboard_path(req.uri().path())
                && !self.is_virtual_hosted(&req)
        }) {
            return Ok(self.dashboard_response(&d, req).await);
        }
        match unsigned_get_path(&req) {
            Some("/metrics") => return Ok(self.metrics_response().await),
            Some("/health") => return Ok(plain(StatusCode::OK, "ok\n".into())),
            Some("/ready") => return Ok(self.readiness().await),
            _ => {}
        }
        let mut resp = if is_oversized_xml(&req) {
            Ok(too_big())
        } else if let Some((status, code, message)) =
            crate::access::presigned_expiry_refusal(req.uri())
        {
            Ok(s3_error_response(status, code, message))
        } else if req.method() == http::Method::OPTIONS {
            Ok(self.preflight(&req).await)
        } else {
            self.call_s3(req, has_body).await
        };
        if let Ok(r) = &mut resp {
            stamp_request_id(r);
            self.metrics
                .http_responses
                .get_or_create(&crate::metrics::StatusLabels {
                    status: r.status().as_u16().to_string(),
                })
                .inc();
        }
        resp
    }

    async fn call_s3(
        &self,
        mut req: Request<Incoming>,
        has_body: bool,
    ) -> Result<Response<Body>, HttpError> {
        let cross_origin = req
            .headers()
            .get(http::header::ORIGIN)
            .and_then(|o| o.to_str().ok())
            .zip(self.bucket_of(&req))
            .map(|(origin, bucket)| (origin.to_owned(), bucket, req.method().clone()));
        let idle = Duration::from_secs(self.cfg.body_idle_timeout_secs.max(1));
        let unknown_length = is_chunked_upload(&req);
        let post = req.method() == http::Method::POST;
        let attributes = req.method() == http::Method::GET
            && req.uri().query().is_some_and(|q| {
                q.split('&')
                    .any(|kv| kv == "attributes" || kv.starts_with("attributes="))
            });
        let form = is_form_upload(&req).then(FormFields::default);
        if let Some(f) = &form {
            req.extensions_mut().insert(f.clone());
        }
        let req = req.map(|b| {
            let body = IdleTimeout::new(b, idle);
            let body = if unknown_length {
                body.unknown_length(crate::ingest::MAX_BODY_BYTES)
            } else {
                body
            };
            match &form {
                Some(f) => Body::http_body(FormTap::new(body, f.clone())),
                None => Body::http_body(body),
            }
        });
        let mut resp = self.s3.call(req).await;
        if let Ok(r) = &mut resp {
            escape_carriage_returns(r);
            if post {
                post_condition_as_s3(r);
            }
            if let Some(name) = form.as_ref().and_then(|f| f.get()) {
                name_the_posted_key(r, name);
            }
            if attributes && r.status().is_success() {
                unquote_etag(r);
            }
            // An error may be answered before the body was read (a quota, a size
            // limit); the connection then carries unread bytes and cannot serve the
            // client's next request, so tell the client not to reuse it.
            if has_body && (r.status().is_client_error() || r.status().is_server_error()) {
                r.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
            if let Some((origin, bucket, method)) = cross_origin {
                let cors =
                    crate::cors::actual_headers(&self.meta, &bucket, &origin, method.as_str())
                        .await;
                r.headers_mut().extend(cors);
            }
        }
        resp
    }

    /// A dashboard request, answered by the dashboard.
    async fn dashboard_response(
        &self,
        d: &crate::ui::Dashboard,
        req: Request<Incoming>,
    ) -> Response<Body> {
        let Some(c) = req.extensions().get::<crate::access::Connection>().copied() else {
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "no connection\n".into());
        };
        match crate::ui::read_request(req, c.peer, c.secure).await {
            Some(r) => d.handle(r).await,
            None => plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the form is too large, or its body did not arrive in time\n".into(),
            ),
        }
    }

    /// Whether `req`'s Host names a bucket (virtual-hosted style): its path is then
    /// a key, never the dashboard's.
    fn is_virtual_hosted<B>(&self, req: &Request<B>) -> bool {
        host_of(req).and_then(|h| self.hosts.bucket_of(h)).is_some()
    }

    /// The bucket `req` names, path- or virtual-hosted-style.
    fn bucket_of<B>(&self, req: &Request<B>) -> Option<String> {
        self.hosts.bucket_of_request(host_of(req), req.uri().path())
    }

    /// A CORS preflight (`OPTIONS`, unsigned), judged by the bucket's CORS rules.
    async fn preflight<B>(&self, req: &Request<B>) -> Response<Body> {
        let bucket = self.bucket_of(req);
        match crate::cors::preflight(&self.meta, bucket.as_deref(), req.headers()).await {
            Ok(headers) => {
                let mut r = plain(StatusCode::OK, String::new());
                r.headers_mut().extend(headers);
                r
            }
            Err(refusal) => s3_error_response(refusal.status, refusal.code, &refusal.message),
        }
    }

    /// `GET /ready`: 200 when the metadata engine and the segment store answer, 503
    /// naming the one that does not.
    async fn readiness(&self) -> Response<Body> {
        if let Err(e) = self.meta.ping().await {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("metadata unavailable: {e}\n"),
            );
        }
        if let Err(e) = self.segments.ping().await {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("segment store unavailable: {e}\n"),
            );
        }
        plain(StatusCode::OK, "ready\n".into())
    }

    async fn metrics_response(&self) -> Response<Body> {
        if let Some(c) = self.segments.cache_counters() {
            self.metrics.record_cache(c);
        }
        self.metrics
            .record_retention_clock(self.clock.now_ms(), self.clock.distance_ms());
        let text = match stats::collect(&self.meta, self.segments.is_tiered()).await {
            Ok(report) => self.metrics.render(&report),
            Err(e) => {
                tracing::error!(error = %e, "metrics: cannot read stats");
                return plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "stats unavailable\n".into(),
                );
            }
        };
        let mut resp = plain(StatusCode::OK, text);
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            ),
        );
        resp
    }
}

/// A key holding a carriage return would reach a client as a line feed (XML parsers
/// normalise line ends), so a listing names it `&#13;`. s3s writes no carriage
/// return of its own, so every one in an XML body is text.
fn escape_carriage_returns(r: &mut Response<Body>) {
    let xml = r
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/xml"));
    let Some(body) = r.body().bytes().filter(|b| xml && b.contains(&b'\r')) else {
        return;
    };
    let mut escaped = Vec::with_capacity(body.len() + 64);
    for &c in body.iter() {
        match c {
            b'\r' => escaped.extend_from_slice(b"&#13;"),
            c => escaped.push(c),
        }
    }
    r.headers_mut().insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from(escaped.len()),
    );
    *r.body_mut() = Body::from(escaped);
}

/// s3s answers a browser POST whose form fails an `eq` or `starts-with` condition of
/// its policy with 400 InvalidPolicyDocument; S3 answers 403 AccessDenied, "Invalid
/// according to Policy: Policy Condition failed".
fn post_condition_as_s3(r: &mut Response<Body>) {
    let Some(body) = r.body().bytes() else {
        return;
    };
    let text = String::from_utf8_lossy(&body);
    if !text.contains("<Code>InvalidPolicyDocument</Code>") {
        return;
    }
    let Some(detail) = text
        .split("<Message>Policy condition ")
        .nth(1)
        .and_then(|t| t.split("</Message>").next())
    else {
        return;
    };
    let detail = detail
        .replace("&apos;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    *r = s3_error_response(
        StatusCode::FORBIDDEN,
        "AccessDenied",
        &format!("Invalid according to Policy: Policy Condition failed: {detail}"),
    );
}

/// A browser POST: `multipart/form-data` to a bucket.
fn is_form_upload<B>(req: &Request<B>) -> bool {
    req.method() == http::Method::POST
        && req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"multipart/form-data"))
}

/// s3s answers a browser POST with the form's key as sent; where it named
/// `${filename}`, the stored key holds the file's name, and so does the answer
/// (the 201 document, or the redirect's `key`).
fn name_the_posted_key(r: &mut Response<Body>, name: &str) {
    let encoded_variable = "%24%7Bfilename%7D";
    if let Some(location) = r
        .headers()
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .filter(|l| l.contains(encoded_variable))
    {
        let fixed = location.replace(
            encoded_variable,
            &form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>(),
        );
        if let Ok(v) = http::HeaderValue::from_str(&fixed) {
            r.headers_mut().insert(http::header::LOCATION, v);
        }
    }
    let Some(body) = r.body().bytes() else {
        return;
    };
    let text = String::from_utf8_lossy(&body);
    if !text.contains(crate::form_tap::FILENAME_VARIABLE) {
        return;
    }
    let fixed = text.replace(crate::form_tap::FILENAME_VARIABLE, &xml_text(name));
    r.headers_mut().insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from(fixed.len()),
    );
    *r.body_mut() = Body::from(fixed.into_bytes());
}

/// GetObjectAttributes answers its ETag unquoted, as S3 does (s3s quotes every ETag
/// it writes).
fn unquote_etag(r: &mut Response<Body>) {
    let Some(body) = r.body().bytes() else {
        return;
    };
    let text = String::from_utf8_lossy(&body);
    let fixed = text
        .replacen("<ETag>\"", "<ETag>", 1)
        .replacen("\"</ETag>", "</ETag>", 1);
    r.headers_mut().insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from(fixed.len()),
    );
    *r.body_mut() = Body::from(fixed.into_bytes());
}

fn plain(status: StatusCode, text: String) -> Response<Body> {
    let mut r = Response::new(Body::from(text));
    *r.status_mut() = status;
    r
}

/// The largest XML request body (DeleteObjects, CompleteMultipartUpload, bucket and
/// object settings) hoard reads: s3s's own limit, which it reports as a 500.
const MAX_XML_BODY: u64 = 20 * 1024 * 1024;

/// PUT sub-resources whose body is an XML document rather than object data.
const XML_PUT_SUBRESOURCES: &[&str] = &[
    "tagging",
    "versioning",
    "acl",
    "policy",
    "cors",
    "lifecycle",
    "replication",
    "encryption",
    "object-lock",
    "website",
    "notification",
    "logging",
    "ownershipControls",
    "publicAccessBlock",
    "accelerate",
    "requestPayment",
    "retention",
    "legal-hold",
    "intelligent-tiering",
    "analytics",
    "inventory",
    "metrics",
];

/// A request whose XML body declares more than `MAX_XML_BODY` bytes.
fn is_oversized_xml<B>(req: &Request<B>) -> bool {
    let xml = match *req.method() {
        http::Method::POST => true,
        http::Method::PUT => names_xml_subresource(req),
        _ => false,
    };
    xml && req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
        .is_some_and(|n| n > MAX_XML_BODY)
}

/// A PutObject or UploadPart body sent with plain `Transfer-Encoding: chunked` and
/// no `Content-Length` (an XML body of a settings PUT is not one).
fn is_chunked_upload<B>(req: &Request<B>) -> bool {
    let h = req.headers();
    req.method() == http::Method::PUT
        && !h.contains_key(http::header::CONTENT_LENGTH)
        && h.get(http::header::TRANSFER_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
        && !names_xml_subresource(req)
}

/// A query naming a sub-resource whose PUT body is an XML document.
fn names_xml_subresource<B>(req: &Request<B>) -> bool {
    req.uri().query().is_some_and(|q| {
        q.split('&')
            .any(|kv| XML_PUT_SUBRESOURCES.contains(&kv.split('=').next().unwrap_or("")))
    })
}

/// 400 MaxMessageLengthExceeded, closing the connection (the body stays unread).
fn too_big() -> Response<Body> {
    let mut r = s3_error_response(
        StatusCode::BAD_REQUEST,
        "MaxMessageLengthExceeded",
        "Your request was too big.",
    );
    r.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    r
}

/// An S3 error answer given beside s3s (its request id is stamped later).
fn s3_error_response(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let mut r = plain(
        status,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{}</Message></Error>",
            xml_text(message)
        ),
    );
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    r
}

fn xml_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Gives every answer S3's request ids (`x-amz-request-id`, `x-amz-id-2`), and an
/// XML error body the same `<RequestId>` and `<HostId>` (and S3's `<Message>` where
/// s3s gave none), as S3 does.
fn stamp_request_id(r: &mut Response<Body>) {
    let id = format!("{:016X}", rand::random::<u64>());
    let host_id = hex::encode(rand::random::<[u8; 24]>());
    let is_error_xml = r.status().as_u16() >= 300
        && r.headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/xml"));
    let completed = r
        .body()
        .bytes()
        .filter(|_| is_error_xml)
        .and_then(|b| complete_error(&b, &id, &host_id));
    if let Some(body) = completed {
        r.headers_mut().insert(
            http::header::CONTENT_LENGTH,
            http::HeaderValue::from(body.len()),
        );
        *r.body_mut() = Body::from(body);
    }
    let h = r.headers_mut();
    if let Ok(v) = http::HeaderValue::from_str(&id) {
        h.insert("x-amz-request-id", v);
    }
    if let Ok(v) = http::HeaderValue::from_str(&host_id) {
        h.insert("x-amz-id-2", v);
    }
}

/// An S3 error body with what it lacks of `<Message>`, `<RequestId>`, `<HostId>`.
fn complete_error(body: &[u8], id: &str, host_id: &str) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(body).ok()?;
    let end = text.find("</Error>")?;
    let mut out = String::with_capacity(body.len() + 160);
    match (text.contains("<Message>"), text.find("</Code>")) {
        (false, Some(code_end)) => {
            let code_start = text.find("<Code>")? + "<Code>".len();
            let code = text.get(code_start..code_end)?;
            let after_code = code_end + "</Code>".len();
            out.push_str(&text[..after_code]);
            out.push_str("<Message>");
            out.push_str(crate::s3_error::standard_message(code));
            out.push_str("</Message>");
            out.push_str(&text[after_code..end]);
        }
        _ => out.push_str(&text[..end]),
    }
    if !text.contains("<RequestId>") {
        out.push_str(&format!(
            "<RequestId>{id}</RequestId><HostId>{host_id}</HostId>"
        ));
    }
    out.push_str(&text[end..]);
    Some(out.into_bytes())
}

/// The host a request went to: its Host header, else the URI's.
fn host_of<B>(req: &Request<B>) -> Option<&str> {
    req.headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or(req.uri().host())
}

/// Whether `req` carries no signature (neither an Authorization header nor a
/// presigned query).
fn is_unsigned<B>(req: &Request<B>) -> bool {
    !req.headers().contains_key(http::header::AUTHORIZATION)
        && !req
            .uri()
            .query()
            .is_some_and(|q| q.contains("X-Amz-Signature") || q.contains("Signature="))
}

/// The path of an unsigned `GET` (`/metrics`, `/health` and `/ready` are answered
/// before S3 routing; a signed request to the same path is S3's).
fn unsigned_get_path<B>(req: &Request<B>) -> Option<&str> {
    (req.method() == http::Method::GET && is_unsigned(req)).then(|| req.uri().path())
}

/// Serves until `shutdown` resolves, then drains.
pub async fn serve(
    node: Node,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServerError> {
    let tls = start_tls(&node.cfg)?;
    let listener = bind(node.cfg.listen).await?;
    let plain = match node.cfg.listen_plain {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    announce_listeners(&node.cfg, &listener, plain.as_ref(), tls.is_some())?;
    let acceptor = tls
        .as_ref()
        .map(|store| store.server_config().map(tokio_rustls::TlsAcceptor::from))
        .transpose()?;
    let mut background = start_background(&node);
    if let Some(store) = tls.clone() {
        background.push(tokio::spawn(reload_on_sighup(store)));
    }
    let node = Arc::new(node);
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(node.cfg.header_timeout_secs.max(1)))
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (accepted, secure) = tokio::select! {
            a = listener.accept() => (a, acceptor.is_some()),
            a = accept_plain(plain.as_ref()) => (a, false),
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let node = node.clone();
        let http = http.clone();
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone().filter(|_| secure);
        tokio::spawn(serve_connection(
            node, http, watcher, acceptor, stream, peer,
        ));
    }
    drop(listener);
    drop(plain);
    for task in background {
        task.abort();
    }
    if let Err(e) = node.meta.save_retention_clock(node.clock.reading()).await {
        tracing::warn!(error = %e, "could not save the retention clock at shutdown");
    }
    tracing::info!("shutting down: draining in-flight requests");
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some requests did not finish within the drain timeout");
    }
    tracing::info!("hoard stopped");
    Ok(())
}

/// Prints where hoard listens (and logs it).
fn announce_listeners(
    cfg: &Config,
    listener: &TcpListener,
    plain: Option<&TcpListener>,
    secure: bool,
) -> Result<(), ServerError> {
    for (l, secure) in [(Some(listener), secure), (plain, false)] {
        if let Some(l) = l {
            let local = l
                .local_addr()
                .map_err(|e| ServerError::Listen(cfg.listen, e))?;
            let scheme = if secure { "https" } else { "http" };
            println!("hoard: listening on {scheme}://{local}");
            tracing::info!(%local, scheme, data_dir = %cfg.data_dir.display(), "hoard is serving S3");
        }
    }
    Ok(())
}

/// The tasks that run beside the listener until shutdown: expiry of abandoned
/// uploads, the cleaner's schedule, lifecycle passes, the scrub, the replication
/// sender.
fn start_background(node: &Node) -> Vec<tokio::task::JoinHandle<()>> {
    let cfg = &node.cfg;
    let mut tasks = vec![
        tokio::spawn(node.clock.clone().keep_saved(node.meta.clone())),
        tokio::spawn(expire_uploads(
            node.meta.clone(),
            Duration::from_secs(cfg.multipart_max_age_secs),
        )),
        tokio::spawn(
            crate::replication::sender::Sender {
                meta: node.meta.clone(),
                segments: node.segments.clone(),
                secrets: node.secrets.clone(),
                metrics: node.metrics.clone(),
                progress: node.replication.clone(),
                settings: cfg.replication.clone(),
                retrieve: node.retrieve.clone(),
            }
            .run(),
        ),
    ];
    if node.meta.is_shared() {
        tasks.push(tokio::spawn(report_streams(
            node.meta.clone(),
            node.metrics.clone(),
            cfg.max_streams as u64,
        )));
    }
    let schedule = crate::cleaner::Schedule {
        window: cfg
            .cleaner
            .window
            .as_deref()
            .and_then(|w| crate::config::parse_window(w).ok()),
        idle: (cfg.cleaner.idle_minutes > 0.0)
            .then(|| Duration::from_secs_f64(cfg.cleaner.idle_minutes * 60.0)),
        check: Duration::from_secs(cfg.cleaner.check_secs.max(1)),
    };
    if schedule.window.is_some() || schedule.idle.is_some() {
        tasks.push(tokio::spawn(node.cleaner.clone().run_on_schedule(schedule)));
    }
    if let Some(t) = &cfg.tier {
        tasks.push(tokio::spawn(
            crate::tier::Mover {
                meta: node.meta.clone(),
                segments: node.segments.clone(),
                metrics: node.metrics.clone(),
                settings: crate::tier::TierSettings {
                    // Validated at start-up.
                    after: t.after_secs().ok().flatten().map(Duration::from_secs),
                    min_free_percent: t.min_free_percent,
                    interval: Duration::from_secs(t.interval_secs.max(1)),
                    data_dir: cfg.data_dir.clone(),
                },
            }
            .run(),
        ));
    }
    if let Some(d) = &node.dashboard {
        tasks.push(tokio::spawn(d.clone().run_sampler()));
    }
    if cfg.lifecycle.interval_secs > 0 {
        let every = Duration::from_secs(cfg.lifecycle.interval_secs);
        tasks.push(tokio::spawn(node.lifecycle.clone().run_every(every)));
    }
    if cfg.scrub.rate_mib > 0.0 {
        let bytes_per_sec = (cfg.scrub.rate_mib * 1024.0 * 1024.0).max(1.0) as u64;
        tasks.push(tokio::spawn(
            crate::scrub::Scrub {
                meta: node.meta.clone(),
                segments: node.segments.clone(),
                metrics: node.metrics.clone(),
                rate: crate::pace::Pacer::new(bytes_per_sec),
                cycle: Duration::from_secs(cfg.scrub.cycle_secs),
            }
            .run(),
        ));
    }
    tasks
}

/// Serves one accepted connection (after its TLS handshake, when it is a TLS one)
/// until it ends or the graceful shutdown closes it.
async fn serve_connection(
    node: Arc<Node>,
    http: auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
) {
    let interim = Continue::default();
    let flag = interim.clone();
    let connection = crate::access::Connection {
        peer,
        secure: acceptor.is_some(),
    };
    let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(connection);
        node.clone().handle(req, flag.clone())
    });
    let result = match acceptor {
        Some(acceptor) => {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let io = TokioIo::new(ContinueIo::new(tls, interim));
            let conn = http.serve_connection_with_upgrades(io, svc);
            watcher.watch(conn.into_owned()).await
        }
        None => {
            let io = TokioIo::new(ContinueIo::new(stream, interim));
            let conn = http.serve_connection_with_upgrades(io, svc);
            watcher.watch(conn.into_owned()).await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Prints generated root credentials once; logs where they came from otherwise.
fn announce_root(root: &Credentials, origin: Origin) {
    match origin {
        Origin::Generated(path) => {
            println!(
                "hoard: generated root credentials (stored in {}, mode 0600):",
                path.display()
            );
            println!("  access key: {}", root.access_key);
            println!("  secret key: {}", root.secret_key);
        }
        Origin::Environment => {
            tracing::info!(access_key = %root.access_key, "root credentials from the environment")
        }
        Origin::File => {
            tracing::info!(access_key = %root.access_key, "root credentials from the data dir")
        }
    }
}

/// The segment store the config names; `observe` records the calls to an object store.
fn open_segments(
    cfg: &Config,
    observe: &opendal::layers::PrometheusClientLayer,
) -> Result<SegmentStore, ServerError> {
    let store = match cfg.segments.backend {
        crate::config::Backend::Fs => match &cfg.tier {
            Some(t) => {
                tracing::info!(endpoint = ?t.s3.endpoint, bucket = %t.s3.bucket, prefix = %t.s3.prefix, "local segments with a cloud tier");
                SegmentStore::open_local(&cfg.data_dir)?.with_tier(&t.s3, observe)?
            }
            None => SegmentStore::open_local(&cfg.data_dir)?,
        },
        crate::config::Backend::S3 => {
            // Never fall back to the local disk: a config without the table is refused.
            let s3 = cfg.segments.s3.as_ref().ok_or(ServerError::NoS3Settings)?;
            tracing::info!(endpoint = ?s3.endpoint, bucket = %s3.bucket, prefix = %s3.prefix, "segments in an S3 bucket");
            SegmentStore::open_s3(s3, observe)?
        }
    };
    Ok(store)
}

fn ingest_settings(cfg: &Config) -> IngestSettings {
    IngestSettings {
        max_streams: cfg.max_streams,
        stream_wait: cfg.stream_wait(),
        segment_size: cfg.segment_size,
        inline_max: cfg.inline_max,
    }
}

fn cleaner_settings(cfg: &Config) -> CleanerSettings {
    CleanerSettings {
        grace: Duration::from_secs(cfg.cleaner.grace_secs),
        sparse_percent: cfg.cleaner.sparse_percent,
        orphan_grace: Duration::from_secs(cfg.cleaner.orphan_grace_secs),
        segment_size: cfg.segment_size,
        busy_percent: cfg.cleaner.busy_percent,
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| ServerError::Listen(addr, e))
}

/// The next connection on the plain listener; never, without one.
async fn accept_plain(
    l: Option<&TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// The certificate store when TLS is on, generating the CA and certificate first if
/// hoard's own are used and do not exist yet.
fn start_tls(cfg: &Config) -> Result<Option<Arc<crate::tls::CertStore>>, ServerError> {
    let Some(files) = cfg.tls.files(&cfg.data_dir) else {
        return Ok(None);
    };
    if files.ca.is_some() {
        let mut names = cfg.tls.hostnames.clone();
        names.extend(cfg.domains.iter().cloned());
        if crate::tls::ensure_generated(&cfg.data_dir, &names, cfg.tls.key_type)? {
            println!(
                "hoard: generated a private CA; clients trust {}",
                cfg.data_dir.join("tls").join("ca.pem").display()
            );
        }
    }
    Ok(Some(crate::tls::CertStore::load(files)?))
}

/// Reloads the certificate and key on every SIGHUP.
async fn reload_on_sighup(store: Arc<crate::tls::CertStore>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot watch SIGHUP; certificate reload is off");
        return;
    };
    while hup.recv().await.is_some() {
        if let Err(e) = store.reload() {
            tracing::error!(error = %e, "TLS reload failed; the certificate in use stays");
        }
    }
}

/// How often a gateway's chunk filter reads the segments other gateways sealed.
const FILTER_REFRESH: Duration = Duration::from_secs(2);

/// Keeps the chunk filter of a gateway sharing the metadata up with the chunks the
/// other gateways store (`ChunkIndex::refresh_blocking`), so dedup works across
/// gateways.
async fn keep_filter_fresh(index: Arc<ChunkIndex>) {
    loop {
        tokio::time::sleep(FILTER_REFRESH).await;
        let index = index.clone();
        match tokio::task::spawn_blocking(move || index.refresh_blocking()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot refresh the chunk filter"),
            Err(e) => tracing::warn!(error = %e, "the chunk filter refresh failed"),
        }
    }
}

/// Hands this gateway's ingest streams and limit to the metadata every second; its
/// lease renewals make them visible cluster-wide (`hoard_cluster_streams_active`).
async fn report_streams(meta: MetaStore, metrics: Arc<crate::metrics::Metrics>, limit: u64) {
    loop {
        let active = u64::try_from(metrics.active_streams.get()).unwrap_or(0);
        meta.report_streams(active, limit);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Aborts multipart uploads older than `max_age`, checking every quarter of it (at
/// most hourly); in a cluster, one gateway at a time (the worker `upload-expiry`).
async fn expire_uploads(meta: MetaStore, max_age: Duration) {
    let every = (max_age / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    let max_age_ms = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
    loop {
        tokio::time::sleep(every).await;
        let Ok(Ok(_turn)) = meta.worker_turn("upload-expiry").await else {
            continue;
        };
        let cutoff = crate::meta::now_ms().saturating_sub(max_age_ms);
        if let Err(e) = meta.abort_uploads_before(cutoff).await {
            tracing::warn!(error = %e, "cannot abort stale multipart uploads");
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// Whether a request declares a body (a non-zero length, or chunked transfer).
fn request_has_body<B>(req: &Request<B>) -> bool {
    let h = req.headers();
    h.contains_key(http::header::TRANSFER_ENCODING)
        || h.get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}
