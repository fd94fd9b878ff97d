//! `hoard quota`: limits on the logical bytes of a bucket or of the whole store.

use clap::Subcommand;

use super::{Target, client, parse_size};
use hoard::admin_api::QuotaRequest;

#[derive(Subcommand)]
pub enum Command {
    /// Set the quota on logical bytes (object sizes, all versions) of a bucket, or of
    /// the whole store without --bucket. SIZE: bytes, or with KB MB GB TB (powers of
    /// 1000) or KiB MiB GiB TiB (powers of 1024); `none` removes the quota.
    Set {
        #[arg(long)]
        bucket: Option<String>,
        #[arg(value_parser = parse_quota)]
        size: Quota,
        #[command(flatten)]
        target: Target,
    },
    /// Show the quotas in force.
    Show {
        #[command(flatten)]
        target: Target,
    },
}

/// A quota argument: a size, or `none`.
#[derive(Clone, Copy)]
pub struct Quota(Option<u64>);

fn parse_quota(s: &str) -> Result<Quota, String> {
    if s.eq_ignore_ascii_case("none") {
        return Ok(Quota(None));
    }
    parse_size(s).map(|n| Quota(Some(n)))
}

pub async fn run(cmd: Command) -> Result<(), String> {
    let quotas = match cmd {
        Command::Set {
            bucket,
            size,
            target,
        } => {
            let req = QuotaRequest {
                bucket,
                bytes: size.0,
            };
            client(target)?.set_quota(&req).await
        }
        Command::Show { target } => client(target)?.quotas().await,
    }
    .map_err(|e| e.to_string())?;
    print_quotas(&quotas);
    Ok(())
}

fn print_quotas(q: &hoard::meta::Quotas) {
    let human = super::render::human;
    println!(
        "store: {}",
        q.store.map_or_else(|| "no quota".to_owned(), human)
    );
    for (b, n) in &q.buckets {
        println!("bucket {b}: {}", human(*n));
    }
}
