//! `hoard stats`: objects, logical and stored bytes, chunks, segments and ratios.

use super::render::render_stats;
use super::{Target, client, print_report};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    bucket: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    target: Target,
}

pub async fn run(a: Args) -> Result<(), String> {
    let report = client(a.target)?
        .stats(a.bucket.as_deref())
        .await
        .map_err(|e| e.to_string())?;
    print_report(a.json, &report, |r| render_stats(r, a.bucket.is_some()))
}
