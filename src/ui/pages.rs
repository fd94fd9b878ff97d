//! The dashboard's pages as HTML (maud escapes every value it prints). Each page is
//! a `main` part inside one layout; the script asks for the part alone to refresh
//! it. Values the tests read carry a `data-field` attribute.

use std::collections::HashMap;

use maud::{DOCTYPE, Markup, html};

use super::Viewer;
use super::chart::{Series, line_chart, stamp};
use crate::board::Entry;
use crate::cleaner::GcRun;
use crate::meta::{BucketRecord, HistoryPoint, Versioning};
use crate::replication::rules::RuleStatus;
use crate::stats::{StatsReport, UsageReport, human_bytes, ratio_text};
use crate::users::UserInfo;

pub const STYLE: &str = include_str!("assets/style.css");
pub const SCRIPT: &str = include_str!("assets/app.js");

const NAV: [(&str, &str); 6] = [
    ("/ui/", "Overview"),
    ("/ui/buckets", "Buckets"),
    ("/ui/streams", "Streams"),
    ("/ui/replication", "Replication"),
    ("/ui/cleaner", "Cleaner & scrub"),
    ("/ui/users", "Users"),
];

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · hoard" }
            link rel="stylesheet" href="/ui/assets/style.css";
            script src="/ui/assets/app.js" defer {}
        }
    }
}

/// A whole page: the header with the navigation and the user, then `main`.
pub fn layout(
    viewer: &Viewer,
    path: &str,
    notice: Option<&str>,
    refresh_secs: u64,
    main: Markup,
) -> Markup {
    let title = NAV
        .iter()
        .find(|(p, _)| *p == path)
        .map_or("hoard", |(_, t)| t);
    let role = if viewer.admin { "admin" } else { "look only" };
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header {
                    a.brand href="/ui/" { "hoard" }
                    nav {
                        @for (p, t) in NAV {
                            a href=(p) aria-current=[(p == path).then_some("page")] { (t) }
                        }
                    }
                    div.who {
                        span data-field="user" { (viewer.name) } " "
                        span.role data-field="role" { (role) }
                        form method="post" action="/ui/logout" {
                            input type="hidden" name="csrf" value=(viewer.csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main #main data-refresh=(refresh_secs) {
                    (main_part(path, notice, main))
                }
            }
        }
    }
}

/// What `main` holds: the notice of the last action, then the page.
pub fn main_part(path: &str, notice: Option<&str>, main: Markup) -> Markup {
    html! {
        @if let Some(n) = notice {
            p.notice role="status" data-field="notice" { (n) }
        }
        div data-page=(path) { (main) }
    }
}

pub fn sign_in(message: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head("Sign in"))
            body.signin {
                main {
                    h1 { "hoard" }
                    p { "Sign in with an access key and its secret." }
                    @if let Some(m) = message {
                        p.error role="alert" data-field="error" { (m) }
                    }
                    form method="post" action="/ui/login" {
                        label { "Access key" input name="access_key" autocomplete="username" required; }
                        label { "Secret key" input name="secret_key" type="password" autocomplete="current-password" required; }
                        button type="submit" { "Sign in" }
                    }
                }
            }
        }
    }
}

fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body.signin { main { (body) p { a href="/ui/" { "Back to the dashboard" } } } }
        }
    }
}

pub fn not_found() -> Markup {
    bare(
        "Not found",
        html! { h1 { "Not found" } p { "The dashboard has no such page." } },
    )
}

pub fn refused(why: &str) -> Markup {
    bare(
        "Refused",
        html! { h1 { "Refused" } p.error data-field="error" { (why) } },
    )
}

pub fn failure(e: &str) -> Markup {
    html! { p.error { "This page could not be read: " (e) } }
}

pub fn confirm_gc(csrf: &str) -> Markup {
    html! {
        h1 { "Run a cleaner pass now?" }
        p { "The pass removes chunks no object needs any more and compacts sparse segments. It runs while uploads go on, at its configured share of the time." }
        form method="post" action="/ui/gc" {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="confirm" value="yes";
            button.danger type="submit" { "Yes, run gc now" }
            " "
            a href="/ui/cleaner" { "Cancel" }
        }
    }
}

/// The span of the overview's charts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    Day,
    Month,
    Year,
}

impl Range {
    pub fn from_query(q: Option<&str>) -> Range {
        match q {
            Some("1d") => Range::Day,
            Some("1y") => Range::Year,
            _ => Range::Month,
        }
    }

    pub fn secs(self) -> u64 {
        match self {
            Range::Day => 86_400,
            Range::Month => 30 * 86_400,
            Range::Year => 365 * 86_400,
        }
    }

    fn all() -> [(Range, &'static str, &'static str); 3] {
        [
            (Range::Day, "1d", "1 day"),
            (Range::Month, "30d", "30 days"),
            (Range::Year, "1y", "1 year"),
        ]
    }
}

fn saved_percent(u: &UsageReport) -> f64 {
    if u.logical_bytes == 0 {
        return 0.0;
    }
    100.0 * (1.0 - u.stored_bytes as f64 / u.logical_bytes as f64)
}

fn card(label: &str, field: &str, value: String) -> Markup {
    html! {
        div.card { div.label { (label) } div.value data-field=(field) { (value) } }
    }
}

fn bytes_label(v: f64) -> String {
    human_bytes(v.max(0.0) as u64)
}

pub fn overview(
    report: &StatsReport,
    history: &[(u64, HistoryPoint)],
    range: Range,
    warnings: &[String],
) -> Markup {
    let t = &report.total;
    let bytes = [
        Series {
            name: "logical",
            class: "s-logical",
            points: history
                .iter()
                .map(|(at, p)| (*at, p.logical_bytes as f64))
                .collect(),
        },
        Series {
            name: "stored",
            class: "s-stored",
            points: history
                .iter()
                .map(|(at, p)| (*at, p.stored_bytes as f64))
                .collect(),
        },
    ];
    let ratio = [Series {
        name: "logical / stored",
        class: "s-ratio",
        points: history
            .iter()
            .filter(|(_, p)| p.stored_bytes > 0)
            .map(|(at, p)| (*at, p.logical_bytes as f64 / p.stored_bytes as f64))
            .collect(),
    }];
    html! {
        h1 { "Overview" }
        @if warnings.is_empty() {
            p.ok data-field="warnings" { "No warnings." }
        } @else {
            ul.warnings data-field="warnings" {
                @for w in warnings { li { (w) } }
            }
        }
        div.cards {
            (card("Logical", "logical", human_bytes(t.logical_bytes)))
            (card("Stored", "stored", human_bytes(t.stored_bytes)))
            (card("Saved", "saved", format!("{:.1}%", saved_percent(t))))
            (card("Dedup ratio", "dedup_ratio", ratio_text(t.dedup_ratio)))
            (card("Compression ratio", "compression_ratio", ratio_text(t.compression_ratio)))
            (card("Objects", "objects", t.objects.to_string()))
            @if let Some(d) = &report.disk {
                (card("Disk free", "disk_free", format!("{} of {}", human_bytes(d.free_bytes), human_bytes(d.total_bytes))))
            }
            @if let Some(tiers) = &report.tiers {
                (card("Local tier", "tier_local", format!("{} in {} segments", human_bytes(tiers.local_bytes), tiers.local_segments)))
                (card("Cloud tier", "tier_cloud", format!("{} in {} segments", human_bytes(tiers.cloud_bytes), tiers.cloud_segments)))
            }
        }
        nav.range {
            "History: "
            @for (r, q, label) in Range::all() {
                a href=(format!("/ui/?range={q}")) aria-current=[(r == range).then_some("page")] { (label) }
            }
        }
        div.charts {
            (line_chart("Logical and stored bytes", &bytes, bytes_label))
            (line_chart("Space saving (logical / stored)", &ratio, |v| format!("{v:.1}x")))
        }
    }
}

/// One row of the Buckets page.
pub struct BucketRow {
    pub usage: UsageReport,
    pub record: Option<BucketRecord>,
    pub replica: bool,
    pub rules: Vec<RuleStatus>,
}

/// The Buckets page's order: a column and a direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    pub column: &'static str,
    pub descending: bool,
}

const BUCKET_COLUMNS: [(&str, &str); 6] = [
    ("name", "Bucket"),
    ("objects", "Objects"),
    ("logical", "Logical"),
    ("stored", "Stored"),
    ("saved", "Saved"),
    ("quota", "Quota"),
];

impl Sort {
    pub fn from_query(q: &HashMap<String, String>) -> Sort {
        let column = q
            .get("sort")
            .and_then(|c| BUCKET_COLUMNS.iter().find(|(k, _)| k == c))
            .map_or("name", |(k, _)| k);
        Sort {
            column,
            descending: q.get("order").is_some_and(|o| o == "desc"),
        }
    }

    fn order(self, a: &BucketRow, b: &BucketRow) -> std::cmp::Ordering {
        let (x, y) = (&a.usage, &b.usage);
        let o = match self.column {
            "objects" => x.objects.cmp(&y.objects),
            "logical" => x.logical_bytes.cmp(&y.logical_bytes),
            "stored" => x.stored_bytes.cmp(&y.stored_bytes),
            "saved" => saved_percent(x).total_cmp(&saved_percent(y)),
            "quota" => x.quota_bytes.cmp(&y.quota_bytes),
            _ => x.name.cmp(&y.name),
        };
        if self.descending { o.reverse() } else { o }
    }

    /// The link a column header sorts by: the other direction when it is the
    /// column in use.
    fn link(self, column: &str) -> String {
        let desc = column == self.column && !self.descending;
        format!(
            "/ui/buckets?sort={column}&order={}",
            if desc { "desc" } else { "asc" }
        )
    }
}

fn rule_state(s: &RuleStatus) -> String {
    let mut state = if s.rule.paused {
        "paused".to_owned()
    } else if s.progress.queued == 0 && s.resync_after.is_none() {
        "in sync".to_owned()
    } else {
        format!("{} queued", s.progress.queued)
    };
    if s.failed > 0 {
        state.push_str(&format!(", {} failed", s.failed));
    }
    format!("{} → {}: {state}", s.rule.id, s.rule.target_bucket)
}

pub fn buckets(mut rows: Vec<BucketRow>, sort: Sort) -> Markup {
    rows.sort_by(|a, b| sort.order(a, b));
    html! {
        h1 { "Buckets" }
        div.scroll {
            table #buckets {
                thead { tr {
                    @for (k, label) in BUCKET_COLUMNS {
                        th aria-sort=[(k == sort.column).then_some(if sort.descending { "descending" } else { "ascending" })] {
                            a href=(sort.link(k)) { (label) }
                        }
                    }
                    th { "Versioning" } th { "Object Lock" } th { "Replication" }
                } }
                tbody {
                    @for r in &rows {
                        @let u = &r.usage;
                        tr data-bucket=(u.name) {
                            td data-field="name" { (u.name) }
                            td.num data-field="objects" { (u.objects) }
                            td.num data-field="logical" { (human_bytes(u.logical_bytes)) }
                            td.num data-field="stored" { (human_bytes(u.stored_bytes)) }
                            td.num data-field="saved" { (format!("{:.1}%", saved_percent(u))) }
                            td.num data-field="quota" { (u.quota_bytes.map_or_else(|| "-".to_owned(), human_bytes)) }
                            td data-field="versioning" { (r.record.as_ref().map_or("-", |b| versioning_text(b.versioning))) }
                            td data-field="lock" { (if r.record.as_ref().is_some_and(|b| b.object_lock.is_some()) { "on" } else { "off" }) }
                            td data-field="replication" {
                                @if r.replica { "replica (read-only)" br; }
                                @for s in &r.rules { (rule_state(s)) br; }
                                @if !r.replica && r.rules.is_empty() { "-" }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn versioning_text(v: Versioning) -> &'static str {
    match v {
        Versioning::Unversioned => "off",
        Versioning::Enabled => "enabled",
        Versioning::Suspended => "suspended",
    }
}

pub fn streams(list: &[Entry], (waited, refused): (u64, u64), limit: usize, now_ms: i64) -> Markup {
    html! {
        h1 { "Streams" }
        div.cards {
            (card("Active streams", "active", format!("{} of {limit}", list.len())))
            (card("Waited for a slot", "waited", waited.to_string()))
            (card("Refused (503 SlowDown)", "refused", refused.to_string()))
        }
        @if list.is_empty() {
            p.empty data-field="no_streams" { "No upload is streaming in." }
        } @else {
            div.scroll { table #streams {
                thead { tr { th { "Bucket" } th { "Started" } th { "Received" } th { "Of" } th { "Rate" } } }
                tbody {
                    @for s in list {
                        @let secs = ((now_ms - s.started_ms).max(1) as f64) / 1000.0;
                        tr {
                            td data-field="bucket" { (s.label) }
                            td { (stamp(u64::try_from(s.started_ms / 1000).unwrap_or(0))) }
                            td.num data-field="bytes" { (human_bytes(s.done)) }
                            td.num { (if s.total > 0 { human_bytes(s.total) } else { "unknown".to_owned() }) }
                            td.num { (human_bytes((s.done as f64 / secs) as u64)) "/s" }
                        }
                    }
                }
            } }
        }
    }
}

fn when(ms: Option<i64>) -> String {
    ms.and_then(|m| u64::try_from(m / 1000).ok())
        .map_or_else(|| "never".to_owned(), stamp)
}

/// One rule's replication rate over the last hour: (unix secs, bytes per second).
pub struct RateSeries {
    /// `bucket/id`.
    pub rule: String,
    pub logical: Vec<(u64, f64)>,
    pub sent: Vec<(u64, f64)>,
}

fn rate_label(v: f64) -> String {
    format!("{}/s", human_bytes(v.max(0.0) as u64))
}

pub fn replication(statuses: &[RuleStatus], rates: &[RateSeries], viewer: &Viewer) -> Markup {
    html! {
        h1 { "Replication" }
        @if statuses.is_empty() {
            p.empty { "No replication rule. Add one with hoard replication add." }
        }
        @for s in statuses {
            @let key = format!("{}/{}", s.rule.bucket, s.rule.id);
            @let saving = if s.progress.sent_bytes > 0 { s.progress.logical_bytes as f64 / s.progress.sent_bytes as f64 } else { 0.0 };
            section.rule data-rule=(key) {
                h2 { (s.rule.bucket) " → " (s.rule.target) " / " (s.rule.target_bucket) " " span.tag { "rule " (s.rule.id) } @if s.rule.paused { " " span.tag.warn { "paused" } } }
                @if let Some(w) = &s.progress.warning { p.warn { (w) } }
                div.cards {
                    (card("Queue", "queued", format!("{} change(s), {}", s.progress.queued, human_bytes(s.progress.queued_bytes))))
                    (card("Lag", "lag", s.lag_secs.map_or_else(|| "none".to_owned(), |l| humantime::format_duration(std::time::Duration::from_secs(l as u64)).to_string())))
                    (card("Logical sent", "logical_sent", human_bytes(s.progress.logical_bytes)))
                    (card("On the wire", "wire_sent", human_bytes(s.progress.sent_bytes)))
                    (card("Wire saving", "wire_saving", if saving > 0.0 { ratio_text(saving) } else { "-".to_owned() }))
                    (card("Last success", "last_success", when(s.progress.last_success_ms)))
                    (card("Resync", "resync", match &s.resync_after { None => "done".to_owned(), Some(k) if k.is_empty() => "starting".to_owned(), Some(k) => format!("after {k}") }))
                }
                @if let Some(e) = &s.progress.last_error { p.error data-field="last_error" { "Last error: " (e) } }
                @if let Some(r) = rates.iter().find(|r| r.rule == key) {
                    div.charts {
                        (line_chart("Rate over the last hour", &[
                            Series { name: "logical", class: "s-logical", points: r.logical.clone() },
                            Series { name: "on the wire", class: "s-wire", points: r.sent.clone() },
                        ], rate_label))
                    }
                }
                @if s.failed > 0 {
                    h3 { (s.failed) " failed key(s)" }
                    div.scroll { table.failed {
                        thead { tr { th { "Key" } th { "Error" } th { "When" } } }
                        tbody { @for f in &s.failed_keys { tr { td { (f.key) } td { (f.error) } td { (when(Some(f.time_ms))) } } } }
                    } }
                    @if viewer.admin {
                        form method="post" action="/ui/replication/requeue" {
                            input type="hidden" name="csrf" value=(viewer.csrf);
                            input type="hidden" name="bucket" value=(s.rule.bucket);
                            input type="hidden" name="rule" value=(s.rule.id);
                            button type="submit" { "Requeue failed keys" }
                        }
                    }
                }
            }
        }
    }
}

/// The scrub's counters since start.
pub struct ScrubView {
    pub enabled: bool,
    pub cycles: u64,
    pub segments: u64,
    pub bytes: u64,
    pub problems: u64,
}

/// When the next daily window opens, from `now` (unix secs).
fn next_window(window: &str, now: u64) -> Option<u64> {
    let (start, _) = crate::config::parse_window(window).ok()?;
    let day = now - now % 86_400;
    let at = day + u64::from(start) * 60;
    Some(if at > now { at } else { at + 86_400 })
}

pub fn cleaner(
    runs: &[GcRun],
    window: Option<&str>,
    idle_minutes: f64,
    scrub: &ScrubView,
    viewer: &Viewer,
    now: u64,
) -> Markup {
    html! {
        h1 { "Cleaner & scrub" }
        h2 { "Cleaner" }
        p data-field="schedule" {
            @match window.and_then(|w| next_window(w, now).map(|n| (w, n))) {
                Some((w, next)) => { "Daily window " (w) " UTC; next opens " (stamp(next)) " UTC." }
                None => { "No daily window." }
            }
            @if idle_minutes > 0.0 { " A pass also runs after " (idle_minutes) " idle minute(s)." }
        }
        @if viewer.admin {
            form method="post" action="/ui/gc" {
                input type="hidden" name="csrf" value=(viewer.csrf);
                button type="submit" { "Run gc now…" }
            }
        }
        @if runs.is_empty() {
            p.empty data-field="no_runs" { "No pass has run since this gateway started." }
        } @else {
            div.scroll { table #gc-runs {
                thead { tr { th { "Finished" } th { "Freed" } th { "Segments deleted" } th { "Compacted" } th { "Chunks removed" } th { "Orphans" } th { "Seconds" } } }
                tbody {
                    @for r in runs {
                        tr {
                            td { (stamp(u64::try_from(r.finished_ms / 1000).unwrap_or(0))) @if r.report.dry_run { " (dry run)" } }
                            td.num data-field="freed" { (human_bytes(r.report.bytes_freed)) }
                            td.num { (r.report.segments_deleted) }
                            td.num { (r.report.segments_compacted) }
                            td.num { (r.report.chunks_removed) }
                            td.num { (r.report.orphans_removed) }
                            td.num { (format!("{:.1}", r.report.seconds)) }
                        }
                    }
                }
            } }
        }
        h2 { "Scrub" }
        @if scrub.enabled {
            div.cards {
                (card("Cycles finished", "scrub_cycles", scrub.cycles.to_string()))
                (card("Segments checked", "scrub_segments", scrub.segments.to_string()))
                (card("Bytes checked", "scrub_bytes", human_bytes(scrub.bytes)))
                (card("Problems found", "scrub_problems", scrub.problems.to_string()))
            }
        } @else {
            p.empty { "The scrub is off ([scrub] rate_mib = 0)." }
        }
    }
}

pub fn users(users: &[UserInfo], viewer: &Viewer) -> Markup {
    html! {
        h1 { "Users" }
        div.scroll { table #users {
            thead { tr { th { "Name" } th { "Access key" } th { "State" } th { "Grants" } @if viewer.admin { th {} } } }
            tbody {
                @for u in users {
                    tr data-user=(u.name) {
                        td data-field="name" { (u.name) }
                        td { code { (u.access_key) } }
                        td data-field="state" { (if u.enabled { "enabled" } else { "disabled" }) }
                        td { @for (b, p) in &u.grants { span.tag { (b) "=" (p) } " " } }
                        @if viewer.admin {
                            td {
                                form method="post" action=(if u.enabled { "/ui/users/disable" } else { "/ui/users/enable" }) {
                                    input type="hidden" name="csrf" value=(viewer.csrf);
                                    input type="hidden" name="name" value=(u.name);
                                    button type="submit" { (if u.enabled { "Disable" } else { "Enable" }) }
                                }
                            }
                        }
                    }
                }
            }
        } }
        p.hint { "Secrets are never shown: hoard user rotate-key makes a new one." }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_window_opens_today_or_tomorrow() {
        let day = 20_000 * 86_400;
        assert_eq!(next_window("01:00-05:00", day), Some(day + 3600));
        assert_eq!(
            next_window("01:00-05:00", day + 7200),
            Some(day + 86_400 + 3600)
        );
        assert_eq!(next_window("nonsense", day), None);
    }

    #[test]
    fn a_sort_link_flips_the_column_in_use() {
        let q: HashMap<String, String> = [("sort".into(), "stored".into())].into();
        let s = Sort::from_query(&q);
        assert_eq!(s.column, "stored");
        assert!(s.link("stored").ends_with("order=desc"));
        assert!(s.link("name").ends_with("order=asc"));
        let bogus: HashMap<String, String> = [("sort".into(), "<script>".into())].into();
        assert_eq!(Sort::from_query(&bogus).column, "name");
    }
}
