//! `hoard seed`: carrying a bucket to its replica on disk.

use std::path::PathBuf;

use clap::Subcommand;

use super::{Target, client};

#[derive(Subcommand)]
pub enum Command {
    /// Write a bucket's versions and unique chunks to DIR on the server's host;
    /// run again to resume an interrupted export.
    Export {
        #[arg(long)]
        bucket: String,
        #[arg(long)]
        out: String,
        /// Encrypt the seed (AES-256-GCM) with the passphrase in this file; or set
        /// HOARD_SEED_PASSPHRASE.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        /// Stop after this many steps (of 100 keys); run again to go on.
        #[arg(long)]
        max_steps: Option<u64>,
        #[command(flatten)]
        target: Target,
    },
    /// Load a seed from DIR on the server's host into an empty bucket, which
    /// becomes a replica bucket. Every chunk is verified; running it again is safe.
    Import {
        #[arg(long = "in")]
        dir: String,
        #[arg(long)]
        bucket: String,
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        #[command(flatten)]
        target: Target,
    },
}

/// The passphrase from its file (first line), else from HOARD_SEED_PASSPHRASE.
fn seed_passphrase(file: Option<PathBuf>) -> Result<Option<String>, String> {
    if let Some(f) = file {
        let text = std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        let line = text.lines().next().unwrap_or("").to_owned();
        if line.is_empty() {
            return Err(format!("{} holds no passphrase", f.display()));
        }
        return Ok(Some(line));
    }
    Ok(std::env::var("HOARD_SEED_PASSPHRASE")
        .ok()
        .filter(|p| !p.is_empty()))
}

pub async fn run(cmd: Command) -> Result<(), String> {
    use super::render::human;
    use hoard::replication::seed::{ExportRequest, ImportRequest};
    let e = |e: hoard::client::ClientError| e.to_string();
    match cmd {
        Command::Export {
            bucket,
            out,
            passphrase_file,
            max_steps,
            target,
        } => {
            let c = client(target)?;
            let objects = c
                .stats(Some(&bucket))
                .await
                .map_err(e)?
                .buckets
                .first()
                .map_or(0, |b| b.objects);
            let mut meter = super::progress::Meter::new("seed export");
            let req = ExportRequest {
                bucket,
                dir: out.clone(),
                passphrase: seed_passphrase(passphrase_file)?,
            };
            for n in 1.. {
                let p = c.seed_export(&req).await.map_err(e)?;
                meter.update(p.versions, objects.max(p.versions), "version(s)");
                println!(
                    "step {}: {} key(s), {} version(s), {} logical; {} chunk(s), {} stored",
                    p.steps,
                    p.keys,
                    p.versions,
                    human(p.logical_bytes),
                    p.chunks,
                    human(p.chunk_bytes)
                );
                if p.finished {
                    println!("seed of {} complete in {out}", req.bucket);
                    break;
                }
                if max_steps.is_some_and(|m| n >= m) {
                    println!("stopped after {n} step(s); run again to go on");
                    break;
                }
            }
            meter.finish();
        }
        Command::Import {
            dir,
            bucket,
            passphrase_file,
            target,
        } => {
            let c = client(target)?;
            let mut req = ImportRequest {
                bucket,
                dir,
                passphrase: seed_passphrase(passphrase_file)?,
                step: 0,
            };
            let (mut chunks, mut versions) = (0, 0);
            let mut meter = super::progress::Meter::new("seed import");
            loop {
                let p = c.seed_import(&req).await.map_err(e)?;
                meter.update(p.step + 1, p.steps, "step(s)");
                chunks += p.chunks_stored;
                versions += p.versions;
                println!(
                    "step {}/{}: {} chunk(s) stored, {} version(s)",
                    p.step + 1,
                    p.steps,
                    p.chunks_stored,
                    p.versions
                );
                req.step += 1;
                if req.step >= p.steps {
                    break;
                }
            }
            meter.finish();
            println!(
                "seed imported into {}: {chunks} chunk(s) stored, {versions} version(s); it is a replica bucket now",
                req.bucket
            );
        }
    }
    Ok(())
}
