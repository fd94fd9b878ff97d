//! `ui` owns the web dashboard at `/ui/` on the S3 listener (HTTPS when TLS is on):
//! server-rendered pages (maud) with a little script that refreshes the open page,
//! charts drawn as SVG on the server (`chart`), assets embedded in the binary and
//! nothing loaded from elsewhere. It reads what the CLI reads (stats, replication
//! status, the cleaner's and scrub's runs, users) and acts as the admin API acts.
//!
//! | method | path | does |
//! |---|---|---|
//! | GET | `/ui/login` | the sign-in form |
//! | POST | `/ui/login` | signs in with an access key and its secret (rate-limited per client address) |
//! | POST | `/ui/logout` | ends the session |
//! | GET | `/ui/`, `/ui/buckets`, `/ui/streams`, `/ui/replication`, `/ui/cleaner`, `/ui/users` | the pages |
//! | POST | `/ui/replication/requeue` | requeues a rule's failed keys (admin) |
//! | POST | `/ui/gc` | runs a cleaner pass, after a confirmation page (admin) |
//! | POST | `/ui/users/enable`, `/ui/users/disable` | accepts or refuses a user's key (admin) |
//! | GET | `/ui/assets/…` | the style sheet and the script |
//!
//! Invariants:
//! - It shadows nothing of S3: only unsigned, path-style requests under `/ui` reach
//!   it (`server` routes here only those, by `is_dashboard_path`, and leaves
//!   virtual-hosted ones to S3, whose keys may start with `ui/`); a bucket named `ui` cannot exist (S3's names have at
//!   least 3 characters), so a signed request there gets S3's `InvalidBucketName`.
//! - Who may look: root and users holding any grant on `*` (the dashboard shows the
//!   whole store). Who may act: root and users holding the admin grant on `*`,
//!   exactly those the admin API admits; a look-only user's action is refused with
//!   403 and changes nothing. Every action needs the session's CSRF token, and
//!   writes one audit line (log target `audit`), as do sign-ins and sign-outs.
//! - It never shows a secret, and never puts one in a URL or a log line.
//! - It adds no work to the data path: it reads counters and tables on request; the
//!   sampler records one history point per `[ui] sample_secs` (one gateway of a
//!   cluster does) and the replication rates once a minute, in memory.

mod chart;
mod pages;
mod session;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use s3s::Body;

use crate::board::Board;
use crate::cleaner::{Cleaner, GcOptions};
use crate::config::Config;
use crate::meta::{HistoryPoint, MetaStore, unix_secs};
use crate::metrics::Metrics;
use crate::names::ALL_BUCKETS;
use crate::replication::ReplicaBuckets;
use crate::replication::rules::{RuleStatus, Rules};
use crate::retention::RetentionClock;
use crate::users::Users;
use session::{Sessions, cookie_token, same_secret, set_cookie};

/// Where the dashboard lives on the listener.
pub const PREFIX: &str = "/ui";
/// The largest form a page posts, and how long its body may take to arrive.
const MAX_FORM: usize = 16 * 1024;
const FORM_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the replication rate chart looks back.
const RATE_WINDOW_SECS: u64 = 3600;
/// The history worker's name among a cluster's gateways.
const HISTORY_WORKER: &str = "stats-history";

/// What the dashboard serves from (built by `server`).
pub struct Dashboard {
    pub cfg: Arc<Config>,
    pub meta: MetaStore,
    pub users: Arc<Users>,
    pub rules: Arc<Rules>,
    pub replicas: Arc<ReplicaBuckets>,
    pub cleaner: Arc<Cleaner>,
    pub streams: Arc<Board>,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<RetentionClock>,
    pub tiered: bool,
    sessions: Sessions,
    /// The replication counters sampled over the last hour, oldest first.
    rates: Mutex<VecDeque<RateSample>>,
}

/// At a unix second, each rule's (by `bucket/id`) logical and sent bytes so far.
type RateSample = (u64, HashMap<String, (u64, u64)>);

/// The signed-in user of a request.
pub struct Viewer {
    pub name: String,
    /// May act (the admin grant on `*`), not only look.
    pub admin: bool,
    pub csrf: String,
    token: String,
}

/// A request as the dashboard sees it.
pub struct UiRequest {
    pub method: Method,
    pub path: String,
    pub query: HashMap<String, String>,
    pub headers: HeaderMap,
    pub peer: SocketAddr,
    pub secure: bool,
    pub body: Bytes,
}

/// Whether `path` is the dashboard's (`/ui` and below).
pub fn is_dashboard_path(path: &str) -> bool {
    path == PREFIX || path.starts_with("/ui/")
}

/// Reads a dashboard request from the listener's: `None` when its body is larger
/// than a form or does not arrive within `FORM_TIMEOUT` (a stalled client holds
/// nothing for long).
pub async fn read_request(
    req: Request<hyper::body::Incoming>,
    peer: SocketAddr,
    secure: bool,
) -> Option<UiRequest> {
    let (parts, body) = req.into_parts();
    let read = http_body_util::Limited::new(body, MAX_FORM).collect();
    let body = tokio::time::timeout(FORM_TIMEOUT, read)
        .await
        .ok()?
        .ok()?
        .to_bytes();
    let query = parts
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    Some(UiRequest {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query,
        headers: parts.headers,
        peer,
        secure,
        body,
    })
}

/// A page or redirect with the dashboard's headers.
fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        content_type
            .parse()
            .unwrap_or_else(|_| header::HeaderValue::from_static("text/plain")),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("same-origin"),
    );
    h.insert("x-frame-options", header::HeaderValue::from_static("DENY"));
    r
}

fn html(status: StatusCode, page: maud::Markup) -> Response<Body> {
    respond(status, "text/html; charset=utf-8", page.into_string())
}

/// 303 to `to` (a path of the dashboard), with `cookie` set if given.
fn see_other(to: &str, cookie: Option<String>) -> Response<Body> {
    let mut r = respond(
        StatusCode::SEE_OTHER,
        "text/plain; charset=utf-8",
        String::new(),
    );
    if let Ok(v) = header::HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    if let Some(c) = cookie.and_then(|c| header::HeaderValue::from_str(&c).ok()) {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    r
}

/// A warning when the server certificate expiring at `at` (unix secs) has expired or
/// will within 30 days of `now`.
fn certificate_warning(at: i64, now: u64) -> Option<String> {
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    let date = chart::stamp(u64::try_from(at).unwrap_or(0));
    if at <= now {
        return Some(format!(
            "The server certificate expired on {date} UTC: clients refuse it. Replace it (SIGHUP reloads it)."
        ));
    }
    let days = (at - now) / 86_400;
    (days < 30).then(|| {
        format!(
            "The server certificate expires on {date} UTC, in {days} day(s): renew it (SIGHUP reloads it)."
        )
    })
}

/// `path` with a notice for the page to show.
fn with_notice(path: &str, notice: &str) -> String {
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("notice", notice)
        .finish();
    format!("{path}?{q}")
}

impl UiRequest {
    fn form(&self) -> HashMap<String, String> {
        form_urlencoded::parse(&self.body).into_owned().collect()
    }

    /// A form posted from a page of this listener: a browser names the page's
    /// origin, whose host must be the one the request went to (`null`, sent for a
    /// page whose referrer policy hides it, is not; ours is `same-origin`).
    fn same_origin(&self) -> bool {
        let Some(origin) = self
            .headers
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok())
        else {
            return true;
        };
        let host = self.headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let origin_host = origin.split_once("://").map(|(_, h)| h);
        origin_host.is_some() && origin_host == host
    }

    /// Asked by the page's script for the page's main part only.
    fn fragment(&self) -> bool {
        self.headers.contains_key("x-hoard-fragment")
    }
}

impl Dashboard {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: Arc<Config>,
        meta: MetaStore,
        users: Arc<Users>,
        rules: Arc<Rules>,
        replicas: Arc<ReplicaBuckets>,
        cleaner: Arc<Cleaner>,
        streams: Arc<Board>,
        metrics: Arc<Metrics>,
        clock: Arc<RetentionClock>,
        tiered: bool,
    ) -> Dashboard {
        let sessions = Sessions::new(
            Duration::from_secs(cfg.ui.session_secs.max(1)),
            cfg.ui.signins_per_minute,
        );
        Dashboard {
            cfg,
            meta,
            users,
            rules,
            replicas,
            cleaner,
            streams,
            metrics,
            clock,
            tiered,
            sessions,
            rates: Mutex::new(VecDeque::new()),
        }
    }

    /// Answers one dashboard request.
    pub async fn handle(&self, req: UiRequest) -> Response<Body> {
        match (&req.method, req.path.as_str()) {
            (&Method::GET, "/ui") => return see_other("/ui/", None),
            (&Method::GET, "/ui/assets/style.css") => {
                return respond(
                    StatusCode::OK,
                    "text/css; charset=utf-8",
                    pages::STYLE.into(),
                );
            }
            (&Method::GET, "/ui/assets/app.js") => {
                return respond(
                    StatusCode::OK,
                    "text/javascript; charset=utf-8",
                    pages::SCRIPT.into(),
                );
            }
            (&Method::POST, _) if !req.same_origin() => {
                tracing::warn!(target: "audit", peer = %req.peer.ip(), path = %req.path, "dashboard form from another site refused");
                return html(
                    StatusCode::FORBIDDEN,
                    pages::refused("This form came from another site."),
                );
            }
            (&Method::GET, "/ui/login") => return html(StatusCode::OK, pages::sign_in(None)),
            (&Method::POST, "/ui/login") => return self.sign_in(&req),
            _ => {}
        }
        let Some(viewer) = self.viewer(&req.headers) else {
            if req.method == Method::GET {
                return see_other("/ui/login", None);
            }
            return html(
                StatusCode::UNAUTHORIZED,
                pages::sign_in(Some("Your session has ended: sign in again.")),
            );
        };
        if req.method == Method::POST {
            return self.act(&req, &viewer).await;
        }
        let notice = req.query.get("notice").map(String::as_str);
        let main = match req.path.as_str() {
            "/ui/" => self.overview(&req).await,
            "/ui/buckets" => self.buckets(&req).await,
            "/ui/streams" => Ok(pages::streams(
                &self.streams.list(),
                (
                    self.metrics.stream_waits.get(),
                    self.metrics.stream_refusals.get(),
                ),
                self.cfg.max_streams,
                crate::meta::now_ms(),
            )),
            "/ui/replication" => self.replication(&viewer).await,
            "/ui/cleaner" => Ok(self.cleaner_page(&viewer)),
            "/ui/users" => self.users_page(&viewer).await,
            _ => return html(StatusCode::NOT_FOUND, pages::not_found()),
        };
        let main = match main {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, path = %req.path, "dashboard page failed");
                pages::failure(&e)
            }
        };
        if req.fragment() {
            return html(StatusCode::OK, pages::main_part(&req.path, notice, main));
        }
        html(
            StatusCode::OK,
            pages::layout(&viewer, &req.path, notice, self.cfg.ui.refresh_secs, main),
        )
    }

    /// The signed-in user of a request, if its session is live and its key still
    /// admitted.
    fn viewer(&self, headers: &HeaderMap) -> Option<Viewer> {
        let token = cookie_token(headers)?;
        let session = self.sessions.get(&token)?;
        let Some(who) = self.users.principal(&session.access_key) else {
            self.sessions.close(&token);
            return None;
        };
        if who.permission(ALL_BUCKETS).is_none() {
            self.sessions.close(&token);
            return None;
        }
        Some(Viewer {
            name: who.name().to_owned(),
            admin: who.is_admin(),
            csrf: session.csrf,
            token,
        })
    }

    fn sign_in(&self, req: &UiRequest) -> Response<Body> {
        let form = req.form();
        let key = form.get("access_key").map(|k| k.trim()).unwrap_or("");
        let secret = form.get("secret_key").map(String::as_str).unwrap_or("");
        let peer = req.peer.ip();
        if !self.sessions.may_try(peer) {
            tracing::warn!(target: "audit", %peer, access_key = key, "dashboard sign-in refused: too many attempts");
            return html(
                StatusCode::TOO_MANY_REQUESTS,
                pages::sign_in(Some(
                    "Too many sign-in attempts from your address: wait a minute.",
                )),
            );
        }
        let ok = self
            .users
            .secret_for(key)
            .is_some_and(|s| same_secret(&s, secret));
        let who = self.users.principal(key).filter(|_| ok);
        let Some(who) = who else {
            tracing::warn!(target: "audit", %peer, access_key = key, "dashboard sign-in failed: wrong access key or secret");
            return html(
                StatusCode::UNAUTHORIZED,
                pages::sign_in(Some("Wrong access key or secret key.")),
            );
        };
        if who.permission(ALL_BUCKETS).is_none() {
            tracing::warn!(target: "audit", %peer, user = who.name(), "dashboard sign-in refused: no grant on *");
            return html(
                StatusCode::FORBIDDEN,
                pages::sign_in(Some(
                    "The dashboard shows the whole store: your user needs a grant on * (readonly is enough to look).",
                )),
            );
        }
        let (token, _) = self.sessions.open(key);
        tracing::info!(target: "audit", %peer, user = who.name(), admin = who.is_admin(), "dashboard sign-in");
        let cookie = set_cookie(Some(&token), self.sessions.lifetime_secs(), req.secure);
        see_other("/ui/", Some(cookie))
    }

    /// A POST of a signed-in user: the CSRF token first, then the grant.
    async fn act(&self, req: &UiRequest, viewer: &Viewer) -> Response<Body> {
        let form = req.form();
        let csrf_ok = form
            .get("csrf")
            .is_some_and(|t| same_secret(t, &viewer.csrf));
        let peer = req.peer.ip();
        if !csrf_ok {
            tracing::warn!(target: "audit", %peer, user = %viewer.name, path = %req.path, "dashboard action refused: missing or wrong CSRF token");
            return html(
                StatusCode::FORBIDDEN,
                pages::refused(
                    "This form is out of date (its CSRF token does not match your session): reload the page and try again.",
                ),
            );
        }
        if req.path == "/ui/logout" {
            self.sessions.close(&viewer.token);
            tracing::info!(target: "audit", %peer, user = %viewer.name, "dashboard sign-out");
            return see_other("/ui/login", Some(set_cookie(None, 0, req.secure)));
        }
        if !viewer.admin {
            tracing::warn!(target: "audit", %peer, user = %viewer.name, path = %req.path, "dashboard action refused: not an admin");
            return html(
                StatusCode::FORBIDDEN,
                pages::refused(
                    "Your user may look but not act: actions need the admin grant on *.",
                ),
            );
        }
        let (back, outcome) = match req.path.as_str() {
            "/ui/replication/requeue" => ("/ui/replication", self.requeue(&form).await),
            "/ui/gc" if form.get("confirm").map(String::as_str) != Some("yes") => {
                return html(
                    StatusCode::OK,
                    pages::layout(
                        viewer,
                        "/ui/cleaner",
                        None,
                        0,
                        pages::confirm_gc(&viewer.csrf),
                    ),
                );
            }
            "/ui/gc" => ("/ui/cleaner", self.gc().await),
            "/ui/users/enable" => ("/ui/users", self.set_enabled(&form, true).await),
            "/ui/users/disable" => ("/ui/users", self.set_enabled(&form, false).await),
            _ => return html(StatusCode::NOT_FOUND, pages::not_found()),
        };
        match outcome {
            Ok(done) => {
                tracing::info!(target: "audit", %peer, user = %viewer.name, action = %req.path, outcome = %done, "dashboard action");
                see_other(&with_notice(back, &done), None)
            }
            Err(why) => {
                tracing::warn!(target: "audit", %peer, user = %viewer.name, action = %req.path, error = %why, "dashboard action failed");
                see_other(&with_notice(back, &format!("Failed: {why}")), None)
            }
        }
    }

    async fn requeue(&self, form: &HashMap<String, String>) -> Result<String, String> {
        let bucket = form.get("bucket").ok_or("no bucket named")?;
        let rule = form.get("rule").map(String::as_str);
        let n = self
            .rules
            .requeue(bucket, rule)
            .await
            .map_err(|e| e.to_string())?;
        Ok(format!("Requeued {n} key(s) of {bucket}."))
    }

    async fn gc(&self) -> Result<String, String> {
        let r = self
            .cleaner
            .run(GcOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        Ok(format!(
            "gc pass done: {} freed, {} segment(s) deleted, {} compacted.",
            crate::stats::human_bytes(r.bytes_freed),
            r.segments_deleted,
            r.segments_compacted
        ))
    }

    async fn set_enabled(
        &self,
        form: &HashMap<String, String>,
        enabled: bool,
    ) -> Result<String, String> {
        let name = form.get("name").ok_or("no user named")?;
        self.users
            .set_enabled(name, enabled)
            .await
            .map_err(|e| e.to_string())?;
        let state = if enabled { "enabled" } else { "disabled" };
        Ok(format!("User {name} {state}."))
    }

    async fn overview(&self, req: &UiRequest) -> Result<maud::Markup, String> {
        let mut report = crate::stats::collect(&self.meta, self.tiered)
            .await
            .map_err(|e| e.to_string())?;
        report.disk = crate::stats::disk_usage(&self.cfg.data_dir);
        let range = pages::Range::from_query(req.query.get("range").map(String::as_str));
        let since = unix_secs().saturating_sub(range.secs());
        let history = self.meta.history(since).await.map_err(|e| e.to_string())?;
        let statuses = self.all_statuses().await;
        let warnings = self.warnings(&report, &statuses);
        Ok(pages::overview(&report, &history, range, &warnings))
    }

    async fn buckets(&self, req: &UiRequest) -> Result<maud::Markup, String> {
        let report = crate::stats::collect(&self.meta, self.tiered)
            .await
            .map_err(|e| e.to_string())?;
        let records: HashMap<String, crate::meta::BucketRecord> = self
            .meta
            .list_buckets()
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .collect();
        let statuses = self.all_statuses().await;
        let rows = report
            .buckets
            .iter()
            .map(|u| pages::BucketRow {
                usage: u.clone(),
                record: records.get(&u.name).cloned(),
                replica: self.replicas.contains(&u.name),
                rules: statuses
                    .iter()
                    .filter(|s| s.rule.bucket == u.name)
                    .cloned()
                    .collect(),
            })
            .collect();
        let sort = pages::Sort::from_query(&req.query);
        Ok(pages::buckets(rows, sort))
    }

    async fn replication(&self, viewer: &Viewer) -> Result<maud::Markup, String> {
        let statuses = self.all_statuses().await;
        let rates = self.rate_series();
        Ok(pages::replication(&statuses, &rates, viewer))
    }

    fn cleaner_page(&self, viewer: &Viewer) -> maud::Markup {
        let scrub = pages::ScrubView {
            enabled: self.cfg.scrub.rate_mib > 0.0,
            cycles: self.metrics.scrub_cycles.get(),
            segments: self.metrics.scrub_segments.get(),
            bytes: self.metrics.scrub_bytes.get(),
            problems: self.metrics.scrub_problems.get(),
        };
        pages::cleaner(
            &self.cleaner.recent_runs(),
            self.cfg.cleaner.window.as_deref(),
            self.cfg.cleaner.idle_minutes,
            &scrub,
            viewer,
            unix_secs(),
        )
    }

    async fn users_page(&self, viewer: &Viewer) -> Result<maud::Markup, String> {
        let users = self.users.list().await.map_err(|e| e.to_string())?;
        Ok(pages::users(&users, viewer))
    }

    /// Every rule's status (a rule whose status cannot be read is left out, logged).
    async fn all_statuses(&self) -> Vec<RuleStatus> {
        let rules = match self.rules.list().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "dashboard: cannot list replication rules");
                return Vec::new();
            }
        };
        let mut buckets: Vec<String> = rules.into_iter().map(|r| r.bucket).collect();
        buckets.dedup();
        let mut out = Vec::new();
        for b in buckets {
            match self.rules.statuses(&b, None).await {
                Ok(s) => out.extend(s),
                Err(e) => {
                    tracing::warn!(bucket = %b, error = %e, "dashboard: cannot read replication status")
                }
            }
        }
        out
    }

    /// What needs an admin's eye.
    fn warnings(&self, report: &crate::stats::StatsReport, statuses: &[RuleStatus]) -> Vec<String> {
        let mut w = Vec::new();
        let problems = self.metrics.scrub_problems.get();
        if problems > 0 {
            w.push(format!(
                "The scrub found {problems} problem(s): run hoard verify --repair."
            ));
        }
        for s in statuses {
            if s.failed > 0 {
                w.push(format!(
                    "Replication of {} (rule {}): {} key(s) failed; requeue them on the Replication page.",
                    s.rule.bucket, s.rule.id, s.failed
                ));
            }
            if let Some(warning) = &s.progress.warning {
                w.push(format!(
                    "Replication of {} (rule {}): {warning}",
                    s.rule.bucket, s.rule.id
                ));
            }
        }
        for u in report.buckets.iter().chain([&report.total]) {
            if let Some(q) = u
                .quota_bytes
                .filter(|&q| q > 0 && u.logical_bytes * 10 >= q * 9)
            {
                let pct = u.logical_bytes.saturating_mul(100) / q;
                w.push(format!(
                    "{} is at {pct}% of its quota ({}).",
                    u.name,
                    crate::stats::human_bytes(q)
                ));
            }
        }
        if let Some(d) = &report.disk
            && d.total_bytes > 0
            && d.free_bytes * 10 < d.total_bytes
        {
            w.push(format!(
                "The data disk has only {} free.",
                crate::stats::human_bytes(d.free_bytes)
            ));
        }
        if let Some(files) = self.cfg.tls.files(&self.cfg.data_dir) {
            match crate::tls::expiry(&files.cert) {
                Ok(at) => w.extend(certificate_warning(at, unix_secs())),
                Err(e) => w.push(format!("The server certificate cannot be read: {e}")),
            }
        }
        let distance = self.clock.distance_ms();
        if distance > crate::retention::WARN_DISTANCE_MS {
            w.push(format!(
                "The retention clock is {} behind the wall clock (hoard was stopped, or the clock was moved ahead): locks expire by the retention clock.",
                humantime::format_duration(Duration::from_secs((distance / 1000) as u64))
            ));
        } else if distance < -crate::retention::WARN_DISTANCE_MS {
            w.push(format!(
                "The wall clock is {} behind the retention clock: check this machine's time (NTP).",
                humantime::format_duration(Duration::from_secs((-distance / 1000) as u64))
            ));
        }
        w
    }

    /// Each rule's logical and sent bytes per second over the last hour.
    fn rate_series(&self) -> Vec<pages::RateSeries> {
        let Ok(rates) = self.rates.lock() else {
            return Vec::new();
        };
        let mut out: HashMap<String, pages::RateSeries> = HashMap::new();
        for (a, b) in rates.iter().zip(rates.iter().skip(1)) {
            let secs = (b.0.saturating_sub(a.0)).max(1) as f64;
            for (rule, &(logical, sent)) in &b.1 {
                let Some(&(l0, s0)) = a.1.get(rule) else {
                    continue;
                };
                let e = out
                    .entry(rule.clone())
                    .or_insert_with(|| pages::RateSeries {
                        rule: rule.clone(),
                        logical: Vec::new(),
                        sent: Vec::new(),
                    });
                e.logical
                    .push((b.0, logical.saturating_sub(l0) as f64 / secs));
                e.sent.push((b.0, sent.saturating_sub(s0) as f64 / secs));
            }
        }
        let mut out: Vec<_> = out.into_values().collect();
        out.sort_by(|a, b| a.rule.cmp(&b.rule));
        out
    }

    /// Records the replication counters once (for the rate chart).
    async fn sample_rates(&self) {
        let now = unix_secs();
        let point: HashMap<String, (u64, u64)> = self
            .all_statuses()
            .await
            .into_iter()
            .map(|s| {
                let key = format!("{}/{}", s.rule.bucket, s.rule.id);
                (key, (s.progress.logical_bytes, s.progress.sent_bytes))
            })
            .collect();
        if let Ok(mut rates) = self.rates.lock() {
            rates.push_back((now, point));
            while rates
                .front()
                .is_some_and(|(t, _)| now.saturating_sub(*t) > RATE_WINDOW_SECS)
            {
                rates.pop_front();
            }
        }
    }

    /// Records one point of the storage history.
    async fn sample_history(&self) {
        if !self.meta.runs_worker(HISTORY_WORKER).await {
            return;
        }
        let report = match crate::stats::collect(&self.meta, self.tiered).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "dashboard: cannot read stats for the history");
                return;
            }
        };
        let point = HistoryPoint {
            logical_bytes: report.total.logical_bytes,
            unique_bytes: report.total.unique_bytes,
            stored_bytes: report.total.stored_bytes,
        };
        if let Err(e) = self.meta.record_history(unix_secs(), point).await {
            tracing::warn!(error = %e, "dashboard: cannot record the storage history");
        }
    }

    /// Samples until the task is dropped: the storage history every
    /// `[ui] sample_secs` (first at start), the replication rates every minute (or
    /// every `sample_secs`, when shorter).
    pub async fn run_sampler(self: Arc<Self>) {
        let history_every = self.cfg.ui.sample_secs.max(1);
        let rate_every = history_every.min(60);
        let mut last_history: Option<u64> = None;
        loop {
            let now = unix_secs();
            if last_history.is_none_or(|t| now.saturating_sub(t) >= history_every) {
                self.sample_history().await;
                last_history = Some(now);
            }
            self.sample_rates().await;
            tokio::time::sleep(Duration::from_secs(rate_every)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_is_warned_about_within_30_days_of_expiry() {
        let now = 1_800_000_000;
        assert_eq!(certificate_warning(now as i64 + 31 * 86_400, now), None);
        let soon = certificate_warning(now as i64 + 10 * 86_400, now).unwrap();
        assert!(soon.contains("in 10 day(s)"), "{soon}");
        let gone = certificate_warning(now as i64 - 1, now).unwrap();
        assert!(gone.contains("expired"), "{gone}");
    }
}
