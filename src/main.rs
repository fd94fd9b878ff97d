//! The `hoard` binary: parses the command line and hands each verb to its module
//! under `cli/`.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use hoard::config::Overrides;

#[derive(Parser)]
#[command(
    name = "hoard",
    version,
    about = "Deduplicating S3-compatible backup target"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(Overrides),
    /// Show objects, logical and stored bytes, chunks, segments and ratios.
    Stats(cli::stats::Args),
    /// Manage buckets.
    #[command(subcommand)]
    Bucket(cli::bucket::Command),
    /// Show the TLS certificate clients and replication peers trust.
    #[command(subcommand)]
    Cert(cli::cert::Command),
    /// Limit the logical bytes of a bucket or of the whole store.
    #[command(subcommand)]
    Quota(cli::quota::Command),
    /// Manage users, their keys and their per-bucket grants.
    #[command(subcommand)]
    User(cli::user::Command),
    /// Manage replication rules (this hoard as the source).
    #[command(subcommand)]
    Replication(cli::replication::Command),
    /// Carry a bucket to its replica on disk: export on the source, import on the
    /// replica; the rule then sends only what changed since.
    #[command(subcommand)]
    Seed(cli::seed::Command),
    /// Check every chunk, trailer, reference count and segment file; name the
    /// objects any damage affects. Exits with status 1 when anything is wrong.
    Verify(cli::verify::Args),
    /// Reclaim space now: delete dead segments, compact sparse ones.
    Gc(cli::gc::Args),
    /// Carry out buckets' lifecycle rules now.
    #[command(subcommand)]
    Lifecycle(cli::lifecycle::Command),
}

async fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Serve(o) => cli::serve::run(o).await,
        Command::Stats(a) => cli::stats::run(a).await,
        Command::Bucket(c) => cli::bucket::run(c).await,
        Command::Cert(c) => cli::cert::run(c),
        Command::Quota(c) => cli::quota::run(c).await,
        Command::User(c) => cli::user::run(c).await,
        Command::Replication(c) => cli::replication::run(c).await,
        Command::Seed(c) => cli::seed::run(c).await,
        Command::Verify(a) => cli::verify::run(a).await,
        Command::Gc(a) => cli::gc::run(a).await,
        Command::Lifecycle(c) => cli::lifecycle::run(c).await,
    }
}

/// Caps glibc's malloc arenas. By default every blocking worker that handles 4 MiB
/// segment buffers may get its own arena, and freed buffers stay resident in each.
/// Measured with four parallel 1 GiB uploads: peak RSS 300 MiB with the default,
/// 227 MiB with two arenas, at the same throughput (a low fixed mmap threshold went
/// lower still, 151 MiB, but cost GET a tenth of its speed in page faults).
///
/// Buffers up to 32 MiB (segments, 8 MiB replication batches) come from the arenas
/// and freed ones are kept (trimmed past 512 MiB), so they are reused instead of
/// mapped and faulted in afresh: a replica receiving 1 GiB took 135,000 page faults
/// before, 32,000 after (bench/RESULTS.md); peak RSS in the main bench stayed at
/// 240 MiB.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
    }
}

fn main() -> ExitCode {
    tune_allocator();
    // One TLS provider for the whole process (server, CLI client).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hoard: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(run(cli.command));
    // Blocking workers of requests that were cut off must not hold the exit.
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hoard: {e}");
            ExitCode::FAILURE
        }
    }
}
