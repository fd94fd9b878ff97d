//! `hoard bucket`: buckets with their own chunking, and promoting a replica bucket.

use clap::Subcommand;

use super::{Target, client};
use hoard::admin_api::CreateBucketRequest;

#[derive(Subcommand)]
pub enum Command {
    /// Create a bucket with its own chunking and compression settings.
    Create {
        name: String,
        /// Average chunk size in bytes (16 KiB to 4 MiB).
        #[arg(long)]
        chunk_avg: Option<u32>,
        #[arg(long)]
        chunk_min: Option<u32>,
        #[arg(long)]
        chunk_max: Option<u32>,
        #[arg(long)]
        compression_level: Option<i32>,
        /// Enable S3 Object Lock (versioning Enabled for good).
        #[arg(long)]
        object_lock: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Move the segments this bucket's writes store to the cloud tier once they are
    /// older than AFTER ("0s": at the mover's next pass; "30d"), whatever the store's
    /// `[tier] after`; `--after none` follows the store's setting again.
    Tier {
        name: String,
        #[arg(long, value_parser = parse_after)]
        after: After,
        #[command(flatten)]
        target: Target,
    },
    /// Make a replica bucket writable, when its source is lost. Replication into it
    /// is refused from then on.
    Promote {
        name: String,
        #[command(flatten)]
        target: Target,
    },
}

pub async fn run(cmd: Command) -> Result<(), String> {
    match cmd {
        Command::Create {
            name,
            chunk_avg,
            chunk_min,
            chunk_max,
            compression_level,
            object_lock,
            target,
        } => {
            let req = CreateBucketRequest {
                chunk_avg,
                chunk_min,
                chunk_max,
                compression_level,
                object_lock,
            };
            let s = client(target)?
                .create_bucket(&name, &req)
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "created bucket {}: chunks min {} / avg {} / max {} bytes, zstd level {}",
                s.name, s.chunk_min, s.chunk_avg, s.chunk_max, s.compression_level
            );
        }
        Command::Tier {
            name,
            after,
            target,
        } => {
            let tiers = client(target)?
                .set_bucket_tier(&name, after.0)
                .await
                .map_err(|e| e.to_string())?;
            match after.0 {
                Some(s) => println!(
                    "bucket {name}: segments move to the cloud tier after {}",
                    humantime::format_duration(std::time::Duration::from_secs(s))
                ),
                None => println!("bucket {name}: segments follow the store's [tier] after"),
            }
            for (b, s) in tiers.buckets.iter().filter(|(b, _)| *b != name) {
                println!(
                    "  {b}: after {}",
                    humantime::format_duration(std::time::Duration::from_secs(*s))
                );
            }
        }
        Command::Promote { name, target } => {
            client(target)?
                .promote(&name)
                .await
                .map_err(|e| e.to_string())?;
            println!("bucket {name} is writable now; replication into it is refused from now on");
        }
    }
    Ok(())
}

/// A tier age argument: a duration, or `none`.
#[derive(Clone, Copy)]
pub struct After(Option<u64>);

fn parse_after(s: &str) -> Result<After, String> {
    if s.eq_ignore_ascii_case("none") {
        return Ok(After(None));
    }
    humantime::parse_duration(s)
        .map(|d| After(Some(d.as_secs())))
        .map_err(|e| format!("{s:?}: {e} (say 0s, 12h, 7d or none)"))
}
