//! The `hoard` binary: `hoard serve` and the admin verbs.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use hoard::admin::CreateBucketRequest;
use hoard::client::{AdminClient, render_stats};
use hoard::config::{Config, Overrides};
use hoard::meta::Permission;
use hoard::profile::{Given, Profile};

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

/// How the admin verbs reach a running server. Unset values come from the CLI config
/// file (~/.config/hoard/cli.toml), then the defaults; see `hoard::profile`.
#[derive(clap::Args)]
struct Target {
    /// Endpoint of the running hoard [default: http://127.0.0.1:9000].
    #[arg(long, env = "HOARD_ENDPOINT")]
    endpoint: Option<String>,
    /// Access key of a user holding the admin grant on * (or root).
    #[arg(long, env = "HOARD_ACCESS_KEY")]
    access_key: Option<String>,
    #[arg(long, env = "HOARD_SECRET_KEY", hide_env_values = true)]
    secret_key: Option<String>,
    /// Data dir whose root-credentials file to use when no key is given otherwise.
    #[arg(long, env = "HOARD_DATA_DIR", default_value = "./hoard-data")]
    data_dir: PathBuf,
    /// [default: us-east-1]
    #[arg(long, env = "HOARD_REGION")]
    region: Option<String>,
    /// CA certificate (PEM) to trust for an https endpoint, e.g. the server's
    /// <data-dir>/tls/ca.pem.
    #[arg(long, env = "HOARD_CA")]
    ca: Option<PathBuf>,
    /// CLI config file [default: ~/.config/hoard/cli.toml].
    #[arg(long, env = "HOARD_CLI_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(Overrides),
    /// Show objects, logical and stored bytes, chunks, segments and ratios.
    Stats {
        #[arg(long)]
        bucket: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Manage buckets.
    #[command(subcommand)]
    Bucket(BucketCommand),
    /// Show the TLS certificate clients and replication peers trust.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Limit the logical bytes of a bucket or of the whole store.
    #[command(subcommand)]
    Quota(QuotaCommand),
    /// Manage users, their keys and their per-bucket grants.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage replication rules (this hoard as the source).
    #[command(subcommand)]
    Replication(ReplicationCommand),
    /// Carry a bucket to its replica on disk: export on the source, import on the
    /// replica; the rule then sends only what changed since.
    #[command(subcommand)]
    Seed(SeedCommand),
    /// Check every chunk, trailer, reference count and segment file; name the
    /// objects any damage affects. Exits with status 1 when anything is wrong.
    Verify {
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
    },
    /// Reclaim space now: delete dead segments, compact sparse ones.
    Gc {
        /// Report what a pass would free without changing anything.
        #[arg(long)]
        dry_run: bool,
        /// Grace period for unreferenced chunks, e.g. 0s, 90s, 10m, 1h (default: the
        /// server's `cleaner.grace_secs`).
        #[arg(long, value_parser = parse_duration)]
        grace_period: Option<std::time::Duration>,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand)]
enum CertCommand {
    /// Print the CA and server certificate paths and their SHA-256 fingerprints.
    Show {
        /// The server's data dir (its generated certificates are under tls/).
        #[arg(long, env = "HOARD_DATA_DIR", default_value = "./hoard-data")]
        data_dir: PathBuf,
        /// The server's own certificate, when it was given one with --tls-cert.
        #[arg(long, env = "HOARD_TLS_CERT")]
        tls_cert: Option<PathBuf>,
    },
}

/// `hoard cert show`.
fn show_cert(data_dir: &std::path::Path, own: Option<PathBuf>) -> Result<(), String> {
    let generated = hoard::tls::TlsFiles::generated(data_dir);
    let cert = own.unwrap_or(generated.cert);
    let chain = hoard::tls::read_certs(&cert).map_err(|e| e.to_string())?;
    if let Some(ca) = generated.ca.filter(|p| p.exists()) {
        let ca_certs = hoard::tls::read_certs(&ca).map_err(|e| e.to_string())?;
        println!("CA certificate (clients trust this file): {}", ca.display());
        if let Some(c) = ca_certs.first() {
            println!("CA SHA-256 fingerprint: {}", hoard::tls::fingerprint(c));
        }
    }
    println!("server certificate: {}", cert.display());
    if let Some(c) = chain.first() {
        println!("server SHA-256 fingerprint: {}", hoard::tls::fingerprint(c));
    }
    Ok(())
}

#[derive(Subcommand)]
enum QuotaCommand {
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
struct Quota(Option<u64>);

fn parse_quota(s: &str) -> Result<Quota, String> {
    if s.eq_ignore_ascii_case("none") {
        return Ok(Quota(None));
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("not a size: {s}"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1000u64.pow(2),
        "gb" => 1000u64.pow(3),
        "tb" => 1000u64.pow(4),
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "unknown unit in {s}: use KB MB GB TB or KiB MiB GiB TiB"
            ));
        }
    };
    n.checked_mul(mult)
        .map(|b| Quota(Some(b)))
        .ok_or_else(|| format!("size too large: {s}"))
}

/// `N`, `Ns`, `Nm`, `Nh` or `Nd`.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("not a duration: {s}"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(format!("unknown unit in {s}: use s, m, h or d")),
    };
    Ok(std::time::Duration::from_secs(secs))
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user and print its access key and secret (shown this once).
    Add {
        name: String,
        /// A grant, BUCKET=PERMISSION (BUCKET may be * for every bucket; PERMISSION is
        /// readonly, writeonly, readwrite or admin). Repeatable.
        #[arg(long = "grant", value_parser = parse_grant)]
        grants: Vec<(String, Permission)>,
        #[command(flatten)]
        target: Target,
    },
    /// List users, their access keys, states and grants (never secrets).
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Refuse the user's key until enabled again.
    Disable {
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Accept a disabled user's key again.
    Enable {
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Remove a user; its key is refused from then on.
    Remove {
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Replace the user's key pair and print the new one; the old one stops working.
    RotateKey {
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Set the user's permission on a bucket (or * for every bucket).
    Grant {
        name: String,
        bucket: String,
        permission: Permission,
        #[command(flatten)]
        target: Target,
    },
    /// Remove the user's grant on a bucket (or *).
    Revoke {
        name: String,
        bucket: String,
        #[command(flatten)]
        target: Target,
    },
}

/// `BUCKET=PERMISSION`.
fn parse_grant(s: &str) -> Result<(String, Permission), String> {
    let (bucket, p) = s
        .split_once('=')
        .ok_or_else(|| format!("{s}: write BUCKET=PERMISSION"))?;
    Ok((bucket.to_owned(), p.parse()?))
}

async fn run_user(cmd: UserCommand) -> Result<(), String> {
    let e = |e: hoard::client::ClientError| e.to_string();
    match cmd {
        UserCommand::Add {
            name,
            grants,
            target,
        } => {
            let key = client(target)?
                .add_user(&name, grants.into_iter().collect())
                .await
                .map_err(e)?;
            print_new_key("added", &key);
        }
        UserCommand::RotateKey { name, target } => {
            let key = client(target)?.rotate_user_key(&name).await.map_err(e)?;
            print_new_key("has a new key; the old one is refused from now on", &key);
        }
        UserCommand::List { json, target } => {
            let users = client(target)?.users().await.map_err(e)?;
            print_report(json, &users, |u| hoard::client::render_users(u))?;
        }
        UserCommand::Disable { name, target } => {
            client(target)?
                .set_user_enabled(&name, false)
                .await
                .map_err(e)?;
            println!("user {name} disabled");
        }
        UserCommand::Enable { name, target } => {
            client(target)?
                .set_user_enabled(&name, true)
                .await
                .map_err(e)?;
            println!("user {name} enabled");
        }
        UserCommand::Remove { name, target } => {
            client(target)?.remove_user(&name).await.map_err(e)?;
            println!("user {name} removed");
        }
        UserCommand::Grant {
            name,
            bucket,
            permission,
            target,
        } => {
            let u = client(target)?
                .set_grant(&name, &bucket, Some(permission))
                .await
                .map_err(e)?;
            print!("{}", hoard::client::render_users(&[u]));
        }
        UserCommand::Revoke {
            name,
            bucket,
            target,
        } => {
            let u = client(target)?
                .set_grant(&name, &bucket, None)
                .await
                .map_err(e)?;
            print!("{}", hoard::client::render_users(&[u]));
        }
    }
    Ok(())
}

fn print_new_key(what: &str, key: &hoard::users::NewKey) {
    println!("user {} {what}", key.name);
    println!("  access key: {}", key.access_key);
    println!("  secret key: {}", key.secret_key);
    println!("Store the secret key now: it is not shown again.");
}

#[derive(Subcommand)]
enum ReplicationCommand {
    /// Replicate a bucket to a bucket on another hoard. The target is contacted
    /// first; the rule is stored only if it answers (trusted certificate, accepted
    /// key, compatible protocol).
    Add {
        #[arg(long)]
        bucket: String,
        #[command(flatten)]
        rule: RuleArgs,
        #[command(flatten)]
        target_server: Target,
    },
    /// Named targets: rule templates S3 PutBucketReplication names by ARN.
    #[command(subcommand)]
    Target(TargetCommand),
    /// List the rules (never secrets).
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Remove a bucket's rule.
    Remove {
        bucket: String,
        #[command(flatten)]
        target: Target,
    },
    /// Pause a bucket's replication.
    Pause {
        bucket: String,
        #[command(flatten)]
        target: Target,
    },
    /// Resume a paused replication.
    Resume {
        bucket: String,
        #[command(flatten)]
        target: Target,
    },
    /// Queue, lag, resync progress, bytes logical and sent, last success and error.
    Status {
        bucket: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Send now, also outside the rule's windows, until nothing waits.
    Run {
        bucket: String,
        #[command(flatten)]
        target: Target,
    },
    /// Put the keys whose replication failed back into the queue.
    Requeue {
        bucket: String,
        #[command(flatten)]
        target: Target,
    },
}

/// Where and how a rule replicates (also a named target's template).
#[derive(clap::Args)]
struct RuleArgs {
    /// https://HOST:PORT of the replica.
    #[arg(long)]
    target: String,
    #[arg(long)]
    target_bucket: String,
    /// A key the replica issued with the replication grant on the target bucket.
    #[arg(long)]
    target_access_key: String,
    #[arg(long, env = "HOARD_TARGET_SECRET_KEY", hide_env_values = true)]
    target_secret_key: String,
    /// The replica's CA certificate (PEM), e.g. its <data-dir>/tls/ca.pem.
    #[arg(
        long,
        conflicts_with = "target_fingerprint",
        required_unless_present = "target_fingerprint"
    )]
    target_ca: Option<PathBuf>,
    /// Or the SHA-256 fingerprint of the replica's certificate (`hoard cert show`).
    #[arg(long)]
    target_fingerprint: Option<String>,
    /// Daily windows (UTC) to replicate in, e.g. "22:00-06:00"; repeatable.
    /// Without one, replication is continuous.
    #[arg(long = "schedule")]
    schedule: Vec<String>,
    /// Parallel HTTPS connections (1 to 64).
    #[arg(long, default_value_t = 4)]
    connections: u32,
    /// Bandwidth limit, e.g. 50MiB/s; default unlimited.
    #[arg(long, value_parser = parse_bandwidth)]
    bandwidth: Option<u64>,
}

impl RuleArgs {
    fn into_request(self) -> Result<hoard::replication::rules::AddRule, String> {
        let ca_pem = self
            .target_ca
            .map(|p| std::fs::read_to_string(&p).map_err(|err| format!("{}: {err}", p.display())))
            .transpose()?;
        Ok(hoard::replication::rules::AddRule {
            target: self.target,
            target_bucket: self.target_bucket,
            access_key: self.target_access_key,
            secret_key: self.target_secret_key,
            ca_pem,
            fingerprint: self.target_fingerprint,
            windows: self.schedule,
            connections: Some(self.connections),
            bandwidth: self.bandwidth,
        })
    }
}

#[derive(Subcommand)]
enum TargetCommand {
    /// Name a replica bucket and how to reach it; it must answer a hello. S3
    /// PutBucketReplication then names it as arn:aws:s3:::NAME.
    Add {
        name: String,
        #[command(flatten)]
        rule: RuleArgs,
        #[command(flatten)]
        target_server: Target,
    },
    /// List the named targets and their ARNs (never secrets).
    List {
        #[command(flatten)]
        target_server: Target,
    },
    Remove {
        name: String,
        #[command(flatten)]
        target_server: Target,
    },
}

/// `SIZE/s` or `SIZE`, SIZE as for quotas.
fn parse_bandwidth(s: &str) -> Result<u64, String> {
    match parse_quota(s.strip_suffix("/s").unwrap_or(s))? {
        Quota(Some(n)) if n > 0 => Ok(n),
        _ => Err(format!("not a bandwidth: {s} (e.g. 50MiB/s)")),
    }
}

async fn run_replication(cmd: ReplicationCommand) -> Result<(), String> {
    let e = |e: hoard::client::ClientError| e.to_string();
    let render = |r: hoard::replication::rules::RuleInfo| {
        print!("{}", hoard::client::render_rules(&[r]));
    };
    match cmd {
        ReplicationCommand::Add {
            bucket,
            rule,
            target_server,
        } => {
            let r = client(target_server)?
                .add_replication(&bucket, &rule.into_request()?)
                .await
                .map_err(e)?;
            render(r);
        }
        ReplicationCommand::Target(TargetCommand::Add {
            name,
            rule,
            target_server,
        }) => {
            let t = client(target_server)?
                .add_replication_target(&name, &rule.into_request()?)
                .await
                .map_err(e)?;
            print!("{}", hoard::client::render_targets(&[t]));
        }
        ReplicationCommand::Target(TargetCommand::List { target_server }) => {
            let ts = client(target_server)?
                .replication_targets()
                .await
                .map_err(e)?;
            print!("{}", hoard::client::render_targets(&ts));
        }
        ReplicationCommand::Target(TargetCommand::Remove {
            name,
            target_server,
        }) => {
            client(target_server)?
                .remove_replication_target(&name)
                .await
                .map_err(e)?;
            println!("replication target {name} removed");
        }
        ReplicationCommand::List { json, target } => {
            let rules = client(target)?.replication_rules().await.map_err(e)?;
            print_report(json, &rules, |r| hoard::client::render_rules(r))?;
        }
        ReplicationCommand::Remove { bucket, target } => {
            client(target)?
                .remove_replication(&bucket)
                .await
                .map_err(e)?;
            println!("replication of {bucket} removed");
        }
        ReplicationCommand::Pause { bucket, target } => {
            render(
                client(target)?
                    .pause_replication(&bucket, true)
                    .await
                    .map_err(e)?,
            );
        }
        ReplicationCommand::Resume { bucket, target } => {
            render(
                client(target)?
                    .pause_replication(&bucket, false)
                    .await
                    .map_err(e)?,
            );
        }
        ReplicationCommand::Status {
            bucket,
            json,
            target,
        } => {
            let s = client(target)?
                .replication_status(&bucket)
                .await
                .map_err(e)?;
            print_report(json, &s, hoard::client::render_rule_status)?;
        }
        ReplicationCommand::Run { bucket, target } => {
            let s = client(target)?.run_replication(&bucket).await.map_err(e)?;
            print!("{}", hoard::client::render_rule_status(&s));
        }
        ReplicationCommand::Requeue { bucket, target } => {
            let n = client(target)?
                .requeue_replication(&bucket)
                .await
                .map_err(e)?;
            println!("{n} failed key(s) of {bucket} queued again");
        }
    }
    Ok(())
}

#[derive(Subcommand)]
enum SeedCommand {
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

async fn run_seed(cmd: SeedCommand) -> Result<(), String> {
    use hoard::client::human;
    use hoard::replication::seed::{ExportRequest, ImportRequest};
    let e = |e: hoard::client::ClientError| e.to_string();
    match cmd {
        SeedCommand::Export {
            bucket,
            out,
            passphrase_file,
            max_steps,
            target,
        } => {
            let c = client(target)?;
            let req = ExportRequest {
                bucket,
                dir: out.clone(),
                passphrase: seed_passphrase(passphrase_file)?,
            };
            for n in 1.. {
                let p = c.seed_export(&req).await.map_err(e)?;
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
        }
        SeedCommand::Import {
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
            loop {
                let p = c.seed_import(&req).await.map_err(e)?;
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
            println!(
                "seed imported into {}: {chunks} chunk(s) stored, {versions} version(s); it is a replica bucket now",
                req.bucket
            );
        }
    }
    Ok(())
}

#[derive(Subcommand)]
enum BucketCommand {
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

fn client(t: Target) -> Result<AdminClient, String> {
    let p = Profile::resolve(Given {
        endpoint: t.endpoint,
        region: t.region,
        ca: t.ca,
        access_key: t.access_key,
        secret_key: t.secret_key,
        config: t.config,
        data_dir: t.data_dir,
    })
    .map_err(|e| e.to_string())?;
    AdminClient::new(&p.endpoint, &p.region, p.creds, p.ca.as_deref()).map_err(|e| e.to_string())
}

async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Serve(o) => {
            let cfg = Config::load(&o).map_err(|e| e.to_string())?;
            init_tracing(&cfg.log);
            let node = hoard::server::Node::open(cfg).map_err(|e| e.to_string())?;
            hoard::server::serve(node, hoard::server::shutdown_signal())
                .await
                .map_err(|e| e.to_string())
        }
        Command::Stats {
            bucket,
            json,
            target,
        } => {
            let report = client(target)?
                .stats(bucket.as_deref())
                .await
                .map_err(|e| e.to_string())?;
            print_report(json, &report, |r| render_stats(r, bucket.is_some()))
        }
        Command::Verify {
            bucket,
            repair,
            json,
            target,
        } => {
            let r = client(target)?
                .verify(bucket.as_deref(), repair)
                .await
                .map_err(|e| e.to_string())?;
            print_report(json, &r, hoard::client::render_verify)?;
            if r.is_clean() {
                Ok(())
            } else {
                Err("verify found problems".into())
            }
        }
        Command::Gc {
            dry_run,
            grace_period,
            target,
        } => {
            let client = client(target)?;
            eprintln!(
                "hoard gc: {} pass started on {} (progress in the server log and hoard_gc_* metrics)",
                if dry_run { "dry-run" } else { "cleaner" },
                client.endpoint()
            );
            let r = client
                .gc(dry_run, grace_period)
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
        Command::Bucket(BucketCommand::Create {
            name,
            chunk_avg,
            chunk_min,
            chunk_max,
            compression_level,
            target,
        }) => {
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
            Ok(())
        }
        Command::Quota(QuotaCommand::Set {
            bucket,
            size,
            target,
        }) => {
            let req = hoard::admin::QuotaRequest {
                bucket,
                bytes: size.0,
            };
            let q = client(target)?
                .set_quota(&req)
                .await
                .map_err(|e| e.to_string())?;
            print_quotas(&q);
            Ok(())
        }
        Command::Cert(CertCommand::Show { data_dir, tls_cert }) => show_cert(&data_dir, tls_cert),
        Command::User(cmd) => run_user(cmd).await,
        Command::Replication(cmd) => run_replication(cmd).await,
        Command::Seed(cmd) => run_seed(cmd).await,
        Command::Bucket(BucketCommand::Promote { name, target }) => {
            client(target)?
                .promote(&name)
                .await
                .map_err(|e| e.to_string())?;
            println!("bucket {name} is writable now; replication into it is refused from now on");
            Ok(())
        }
        Command::Quota(QuotaCommand::Show { target }) => {
            let q = client(target)?.quotas().await.map_err(|e| e.to_string())?;
            print_quotas(&q);
            Ok(())
        }
    }
}

fn print_quotas(q: &hoard::meta::Quotas) {
    let human = hoard::client::human;
    println!(
        "store: {}",
        q.store.map_or_else(|| "no quota".to_owned(), human)
    );
    for (b, n) in &q.buckets {
        println!("bucket {b}: {}", human(*n));
    }
}

/// Prints a report as JSON or as its table.
fn print_report<T: serde::Serialize>(
    json: bool,
    report: &T,
    render: impl Fn(&T) -> String,
) -> Result<(), String> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", render(report));
    }
    Ok(())
}

fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
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
    let result = rt.block_on(run(cli));
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
