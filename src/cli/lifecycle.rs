//! `hoard lifecycle run`: one lifecycle pass now (buckets' expiry rules, set with
//! S3 PutBucketLifecycleConfiguration), and its report.

use super::{Target, client};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Run one pass over the buckets with lifecycle rules now, instead of waiting
    /// for the next one (`lifecycle.interval_secs`).
    Run {
        #[command(flatten)]
        target: Target,
    },
}

pub async fn run(c: Command) -> Result<(), String> {
    let Command::Run { target } = c;
    let client = client(target)?;
    let r = client.lifecycle_run().await.map_err(|e| e.to_string())?;
    println!(
        "buckets {}, versions read {}; expired {}, noncurrent versions removed {}, \
         delete markers removed {}, uploads aborted {}; kept by Object Lock {}, \
         changed meanwhile {}; buckets with unreadable rules {}",
        r.buckets,
        r.versions_read,
        r.expired,
        r.noncurrent_removed,
        r.markers_removed,
        r.uploads_aborted,
        r.kept_locked,
        r.changed_meanwhile,
        r.unreadable_rules
    );
    Ok(())
}
