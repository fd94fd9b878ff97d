//! How the CLI prints the admin API's answers: tables (through `comfy-table`, no
//! borders, columns two spaces apart) and short reports.

use comfy_table::{CellAlignment, Table, presets::NOTHING};

use hoard::admin_api::VerifyOutcome;
use hoard::replication::rules::{RuleInfo, RuleStatus, TargetInfo};
use hoard::stats::{StatsReport, UsageReport};
use hoard::users::UserInfo;

pub use hoard::stats::human_bytes as human;
use hoard::stats::ratio_text;

/// A table without borders: the header row, then `rows`; columns two spaces apart,
/// those in `right` (numbers) aligned right.
fn table(header: &[&str], right: &[usize], rows: Vec<Vec<String>>) -> String {
    let mut t = Table::new();
    t.load_style(NOTHING)
        .set_header(header.to_vec())
        .add_rows(rows);
    let last = header.len().saturating_sub(1);
    for (i, col) in t.column_iter_mut().enumerate() {
        col.set_padding((0, if i == last { 0 } else { 2 }));
        if right.contains(&i) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    let mut out: String = t.lines().map(|l| format!("{}\n", l.trim_end())).collect();
    if out.is_empty() {
        out.push('\n');
    }
    out
}

/// The stats report as a table.
pub fn render_stats(report: &StatsReport, only_bucket: bool) -> String {
    let row = |r: &UsageReport| {
        vec![
            r.name.clone(),
            r.objects.to_string(),
            human(r.logical_bytes),
            r.quota_bytes.map_or_else(|| "-".to_owned(), human),
            human(r.stored_bytes),
            r.unique_chunks.to_string(),
            r.segments.to_string(),
            ratio_text(r.dedup_ratio),
            ratio_text(r.compression_ratio),
        ]
    };
    let mut rows: Vec<Vec<String>> = report.buckets.iter().map(row).collect();
    if !only_bucket {
        rows.push(row(&report.total));
    }
    let mut out = table(
        &[
            "BUCKET", "OBJECTS", "LOGICAL", "QUOTA", "STORED", "CHUNKS", "SEGMENTS", "DEDUP",
            "COMPR",
        ],
        &[1, 2, 3, 4, 5, 6, 7, 8],
        rows,
    );
    if !only_bucket {
        if let Some(t) = &report.tiers {
            out.push_str(&format!(
                "tiers: local {} in {} segments, cloud {} in {} segments\n",
                human(t.local_bytes),
                t.local_segments,
                human(t.cloud_bytes),
                t.cloud_segments
            ));
        }
        if let Some(d) = &report.disk {
            out.push_str(&format!(
                "disk: {} used, {} free of {}\n",
                human(d.used_bytes),
                human(d.free_bytes),
                human(d.total_bytes)
            ));
        }
        if let Some(c) = &report.retention_clock {
            out.push_str(&format!(
                "retention clock: {} (the wall clock is {} s ahead)\n",
                rfc3339_ms(c.clock_ms),
                (c.wall_ms - c.clock_ms) / 1000
            ));
        }
        for g in &report.gateways {
            out.push_str(&format!(
                "gateway {}: {} of {} ingest streams\n",
                g.id, g.streams, g.stream_limit
            ));
        }
    }
    out
}

fn rfc3339_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// The verify report as `hoard verify` prints it.
pub fn render_verify(r: &VerifyOutcome) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "checked {} segments, {} chunks, {} bytes{}",
        r.segments_checked,
        r.chunks_checked,
        r.bytes_read,
        r.bucket
            .as_deref()
            .map(|b| format!(" (bucket {b})"))
            .unwrap_or_default()
    );
    for s in &r.missing_segments {
        let _ = writeln!(out, "MISSING segment {s:016x}");
    }
    for s in &r.unreadable_segments {
        let _ = writeln!(
            out,
            "UNREADABLE segment {:016x}: {} (not repaired: fix the disk or permissions and verify again)",
            s.segment, s.error
        );
    }
    for c in &r.corrupt_chunks {
        let _ = writeln!(
            out,
            "CORRUPT chunk {} in segment {:016x}: {}",
            c.chunk, c.segment, c.reason
        );
    }
    for c in &r.trailer_problems {
        let _ = writeln!(
            out,
            "TRAILER segment {:016x} chunk {}: {}",
            c.segment, c.chunk, c.reason
        );
    }
    for c in &r.count_problems {
        let stored = c
            .stored
            .map(|s| s.to_string())
            .unwrap_or_else(|| "no index row".into());
        let _ = writeln!(
            out,
            "COUNT chunk {}: stored {stored}, manifests name it {} times",
            c.chunk, c.counted
        );
    }
    for s in &r.orphan_segments {
        let _ = writeln!(
            out,
            "DEBRIS segment file {s:016x} (no metadata names it; the cleaner removes it)"
        );
    }
    if !r.lost_chunks.is_empty() {
        let _ = writeln!(
            out,
            "LOST {} chunks with no intact copy (uploading the same data again heals their objects; --json lists them all):",
            r.lost_chunks.len()
        );
        for c in r.lost_chunks.iter().take(10) {
            let _ = writeln!(out, "  {c}");
        }
    }
    if let Some(rep) = &r.repair {
        let _ = writeln!(
            out,
            "repair: {} segments moved to quarantine ({} chunks rescued, {} lost); {} counts fixed, {} segment rows fixed; {} lost chunks found and indexed again",
            rep.segments_quarantined.len(),
            rep.chunks_rescued,
            rep.chunks_lost + rep.counts.newly_lost,
            rep.counts.fixed,
            rep.counts.segments_fixed,
            rep.chunks_reindexed
        );
    }
    for d in &r.damaged_objects {
        let _ = writeln!(
            out,
            "DAMAGED {}/{} (version {}): {} chunks",
            d.bucket, d.key, d.version, d.damaged_chunks
        );
    }
    let _ = writeln!(
        out,
        "{}",
        if r.is_clean() {
            "clean"
        } else {
            "PROBLEMS FOUND"
        }
    );
    out
}

/// The `hoard user list` table.
pub fn render_users(users: &[UserInfo]) -> String {
    let rows = users
        .iter()
        .map(|u| {
            let grants: Vec<String> = u.grants.iter().map(|(b, p)| format!("{b}={p}")).collect();
            vec![
                u.name.clone(),
                u.access_key.clone(),
                if u.enabled { "enabled" } else { "disabled" }.to_owned(),
                if grants.is_empty() {
                    "-".to_owned()
                } else {
                    grants.join(" ")
                },
                u.canonical_id.clone(),
                u.arn.clone(),
            ]
        })
        .collect();
    table(
        &[
            "name",
            "access key",
            "state",
            "grants",
            "canonical id (ACLs)",
            "ARN (bucket policies)",
        ],
        &[],
        rows,
    )
}

/// The `hoard replication list` table.
/// Each target as its template, then its ARN.
pub fn render_targets(targets: &[TargetInfo]) -> String {
    if targets.is_empty() {
        return "no replication targets\n".into();
    }
    targets
        .iter()
        .map(|t| {
            format!(
                "{}  ARN: {}\n",
                render_rules(std::slice::from_ref(&t.rule)),
                t.arn
            )
        })
        .collect()
}

pub fn render_rules(rules: &[RuleInfo]) -> String {
    let mut out = String::new();
    for r in rules {
        out.push_str(&format!(
            "{} -> {} bucket {} (key {}, trust {}){}\n  {} connection(s), bandwidth {}, schedule {}\n",
            r.bucket,
            r.target,
            r.target_bucket,
            r.access_key,
            r.trust,
            if r.paused { " PAUSED" } else { "" },
            r.connections,
            if r.bandwidth == 0 {
                "unlimited".to_owned()
            } else {
                format!("{}/s", human(r.bandwidth))
            },
            if r.windows.is_empty() {
                "continuous".to_owned()
            } else {
                r.windows.join(", ")
            },
        ));
        if !r.id.is_empty() {
            out.push_str(&format!("  rule {:?}, priority {}\n", r.id, r.priority));
        }
        if r.kind.starts_with("s3") {
            out.push_str(&format!(
                "  target is a plain S3 bucket ({}): versions written whole, no dedup on the wire\n",
                r.kind
            ));
        }
        let mut sends = Vec::new();
        if !r.prefix.is_empty() {
            sends.push(format!("keys under {:?}", r.prefix));
        }
        for (k, v) in &r.tags {
            sends.push(format!("tag {k}={v}"));
        }
        if !r.delete_markers {
            sends.push("no delete markers".into());
        }
        if !r.existing_objects {
            sends.push("no objects from before the rule".into());
        }
        if !sends.is_empty() {
            out.push_str(&format!("  sends only: {}\n", sends.join(", ")));
        }
        if let Some(sw) = &r.target_software {
            out.push_str(&format!("  replica answered: {sw}\n"));
        }
    }
    if rules.is_empty() {
        out.push_str("no replication rules\n");
    }
    out
}

/// The `hoard replication status` text.
pub fn render_rule_status(s: &RuleStatus) -> String {
    let p = &s.progress;
    let when = |ms: Option<i64>| {
        ms.map_or_else(
            || "never".to_owned(),
            |ms| {
                format!(
                    "{:.0} s ago",
                    (hoard::meta::now_ms() - ms).max(0) as f64 / 1000.0
                )
            },
        )
    };
    let mut out = render_rules(std::slice::from_ref(&s.rule));
    out.push_str(&format!(
        "  backlog: {} change(s), {}, lag {}\n  resync of existing objects: {}\n  sent since start: {} object(s), {} logical, {} on the wire\n  rate: {}/s logical over the last minute\n  last success: {}{}\n",
        p.queued,
        human(p.queued_bytes),
        s.lag_secs.map_or_else(|| "0 s".to_owned(), |l| format!("{l:.1} s")),
        match &s.resync_after {
            None => "done".to_owned(),
            Some(k) if k.is_empty() => "pending".to_owned(),
            Some(k) => format!("in progress, after {k:?}"),
        },
        p.objects_sent,
        human(p.logical_bytes),
        human(p.sent_bytes),
        human(p.rate_bytes_per_sec as u64),
        when(p.last_success_ms),
        if p.manual { "; manual run in progress" } else { "" },
    ));
    if let Some(g) = &s.sender {
        out.push_str(&format!("  sent by gateway {g}\n"));
    }
    if let Some(w) = &p.warning {
        out.push_str(&format!("  WARNING: {w}\n"));
    }
    if let Some(e) = &p.last_error {
        out.push_str(&format!("  last error: {e}\n"));
    }
    if s.failed > 0 {
        out.push_str(&format!(
            "  failed: {} key(s), retried every 10 min or by `hoard replication requeue`\n",
            s.failed
        ));
        for f in &s.failed_keys {
            out.push_str(&format!(
                "    {:?}: {} ({})\n",
                f.key,
                f.error,
                when(Some(f.time_ms))
            ));
        }
    }
    out
}
