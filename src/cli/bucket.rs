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
            target,
        } => {
            let req = CreateBucketRequest {
                chunk_avg,
                chunk_min,
                chunk_max,
                compression_level,
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
