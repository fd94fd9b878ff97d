//! `hoard verify`: checks the store, optionally repairs it; fails when anything is
//! wrong.

use super::render::render_verify;
use super::{Target, client, print_report};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    bucket: Option<String>,
    /// Then repair what was found (whole store): move damaged segments aside
    /// keeping their intact chunks, fix reference counts, index lost chunks found
    /// in segment files; damaged objects are reported, never dropped.
    #[arg(long, conflicts_with = "bucket")]
    repair: bool,
    /// Print the JSON report.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    target: Target,
}

pub async fn run(a: Args) -> Result<(), String> {
    let c = client(a.target)?;
    let r = super::progress::watch_job(&c, "verify", c.verify(a.bucket.as_deref(), a.repair))
        .await
        .map_err(|e| e.to_string())?;
    print_report(a.json, &r, render_verify)?;
    if r.is_clean() {
        Ok(())
    } else {
        Err("verify found problems".into())
    }
}
