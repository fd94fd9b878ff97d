//! `hoard gc`: one cleaner pass now, and its report.

use super::{Target, client, parse_duration};

#[derive(clap::Args)]
pub struct Args {
    /// Report what a pass would free without changing anything.
    #[arg(long)]
    dry_run: bool,
    /// Grace period for unreferenced chunks, e.g. 0s, 90s, 10m, 1h (default: the
    /// server's `cleaner.grace_secs`).
    #[arg(long, value_parser = parse_duration)]
    grace_period: Option<std::time::Duration>,
    #[command(flatten)]
    target: Target,
}

pub async fn run(a: Args) -> Result<(), String> {
    let client = client(a.target)?;
    eprintln!(
        "hoard gc: {} pass started on {}",
        if a.dry_run { "dry-run" } else { "cleaner" },
        client.endpoint()
    );
    let label = if a.dry_run { "gc (dry run)" } else { "gc" };
    let r = super::progress::watch_job(&client, label, client.gc(a.dry_run, a.grace_period))
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "{}segments examined {}, deleted {}, compacted {} ({} abandoned); chunks removed {}; \
         bytes freed {}, rewritten {}; orphan files {}; {:.1} s",
        if r.dry_run { "dry run: " } else { "" },
        r.segments_examined,
        r.segments_deleted,
        r.segments_compacted,
        r.compactions_abandoned,
        r.chunks_removed,
        r.bytes_freed,
        r.bytes_rewritten,
        r.orphans_removed,
        r.seconds
    );
    Ok(())
}
