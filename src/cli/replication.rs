//! `hoard replication`: rules that replicate a bucket to another hoard, and the
//! named targets S3 PutBucketReplication refers to.

use std::path::PathBuf;

use clap::Subcommand;

use super::render::{render_rule_status, render_rules, render_targets};
use super::{Target, client, parse_size, print_report};

#[derive(Subcommand)]
pub enum Command {
    /// Replicate a bucket to a bucket on another hoard. The target is contacted
    /// first; the rule is stored only if it answers (trusted certificate, accepted
    /// key, compatible protocol).
    Add {
        #[arg(long)]
        bucket: String,
        #[command(flatten)]
        rule: RuleArgs,
        #[command(flatten)]
        scope: ScopeArgs,
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
    /// Remove a rule of a bucket.
    Remove {
        bucket: String,
        #[command(flatten)]
        rule: RuleId,
        #[command(flatten)]
        target: Target,
    },
    /// Pause a bucket's replication.
    Pause {
        bucket: String,
        #[command(flatten)]
        rule: RuleId,
        #[command(flatten)]
        target: Target,
    },
    /// Resume a paused replication.
    Resume {
        bucket: String,
        #[command(flatten)]
        rule: RuleId,
        #[command(flatten)]
        target: Target,
    },
    /// Backlog (changes, bytes, lag), resync progress, bytes logical and sent, last
    /// success and error, of each of the bucket's rules.
    Status {
        bucket: String,
        /// One rule; default every rule of the bucket.
        #[arg(long = "rule")]
        id: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Send now, also outside the rule's windows, until nothing waits.
    Run {
        bucket: String,
        #[command(flatten)]
        rule: RuleId,
        /// Wait until the queue and the resync are empty, showing progress.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Put the keys whose replication failed back into the queue.
    Requeue {
        bucket: String,
        #[command(flatten)]
        rule: RuleId,
        #[command(flatten)]
        target: Target,
    },
}

/// Which of a bucket's rules: needed when it has several.
#[derive(clap::Args)]
pub struct RuleId {
    /// The rule's id (`hoard replication list`); may be left out when the bucket
    /// has one rule.
    #[arg(long = "rule")]
    id: Option<String>,
}

/// Which rule of the bucket this is and what it sends.
#[derive(clap::Args)]
pub struct ScopeArgs {
    /// The rule's id; a rule of the bucket with this id is replaced. Default: the
    /// bucket's rule towards the same replica bucket, else a new id.
    #[arg(long = "rule")]
    id: Option<String>,
    /// Send only keys starting with this.
    #[arg(long)]
    prefix: Option<String>,
    /// Send only versions carrying this tag (KEY=VALUE); repeatable: all of them.
    #[arg(long = "tag", value_parser = parse_tag)]
    tags: Vec<(String, String)>,
    /// Among the bucket's rules towards the same replica bucket whose filters
    /// overlap, the one with the higher priority sends a version.
    #[arg(long)]
    priority: Option<u32>,
    /// Do not send delete markers (S3 DeleteMarkerReplication Disabled).
    #[arg(long)]
    no_delete_markers: bool,
    /// Do not send the objects that exist before the rule (only later changes).
    #[arg(long)]
    no_existing: bool,
}

fn parse_tag(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("not a tag: {s} (KEY=VALUE)")),
    }
}

/// Where and how a rule replicates (also a named target's template).
#[derive(clap::Args)]
pub struct RuleArgs {
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
    /// The replica's CA certificate (PEM), e.g. its <data-dir>/tls/ca.pem, or a
    /// CA bundle such as /etc/ssl/certs/ca-certificates.crt for a public endpoint.
    #[arg(long, conflicts_with = "target_fingerprint")]
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
    /// What the target is: "hoard" (another hoard: only missing chunks travel) or
    /// "s3" (a plain S3 bucket of any vendor, written whole with PUT and multipart,
    /// over https or http://).
    #[arg(long, default_value = "hoard")]
    target_kind: String,
    /// The SigV4 region of an s3 target (default us-east-1).
    #[arg(long)]
    target_region: Option<String>,
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
            kind: Some(self.target_kind),
            region: self.target_region,
            ..Default::default()
        })
    }
}

#[derive(Subcommand)]
pub enum TargetCommand {
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
    match parse_size(s.strip_suffix("/s").unwrap_or(s)) {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("not a bandwidth: {s} (e.g. 50MiB/s)")),
    }
}

pub async fn run(cmd: Command) -> Result<(), String> {
    let e = |e: hoard::client::ClientError| e.to_string();
    let render = |r: hoard::replication::rules::RuleInfo| {
        print!("{}", render_rules(&[r]));
    };
    match cmd {
        Command::Add {
            bucket,
            rule,
            scope,
            target_server,
        } => {
            let req = hoard::replication::rules::AddRule {
                id: scope.id,
                prefix: scope.prefix,
                tags: scope.tags.into_iter().collect(),
                priority: scope.priority,
                delete_markers: Some(!scope.no_delete_markers),
                existing_objects: Some(!scope.no_existing),
                ..rule.into_request()?
            };
            let r = client(target_server)?
                .add_replication(&bucket, &req)
                .await
                .map_err(e)?;
            render(r);
        }
        Command::Target(TargetCommand::Add {
            name,
            rule,
            target_server,
        }) => {
            let t = client(target_server)?
                .add_replication_target(&name, &rule.into_request()?)
                .await
                .map_err(e)?;
            print!("{}", render_targets(&[t]));
        }
        Command::Target(TargetCommand::List { target_server }) => {
            let ts = client(target_server)?
                .replication_targets()
                .await
                .map_err(e)?;
            print!("{}", render_targets(&ts));
        }
        Command::Target(TargetCommand::Remove {
            name,
            target_server,
        }) => {
            client(target_server)?
                .remove_replication_target(&name)
                .await
                .map_err(e)?;
            println!("replication target {name} removed");
        }
        Command::List { json, target } => {
            let rules = client(target)?.replication_rules().await.map_err(e)?;
            print_report(json, &rules, |r| render_rules(r))?;
        }
        Command::Remove {
            bucket,
            rule,
            target,
        } => {
            client(target)?
                .remove_replication(&bucket, rule.id.as_deref())
                .await
                .map_err(e)?;
            println!("replication rule of {bucket} removed");
        }
        Command::Pause {
            bucket,
            rule,
            target,
        } => {
            render(
                client(target)?
                    .pause_replication(&bucket, rule.id.as_deref(), true)
                    .await
                    .map_err(e)?,
            );
        }
        Command::Resume {
            bucket,
            rule,
            target,
        } => {
            render(
                client(target)?
                    .pause_replication(&bucket, rule.id.as_deref(), false)
                    .await
                    .map_err(e)?,
            );
        }
        Command::Status {
            bucket,
            id,
            json,
            target,
        } => {
            let client = client(target)?;
            match id {
                Some(id) => {
                    let s = client
                        .replication_status(&bucket, Some(&id))
                        .await
                        .map_err(e)?;
                    print_report(json, &s, render_rule_status)?;
                }
                None => {
                    let all = client.replication_statuses(&bucket).await.map_err(e)?;
                    print_report(json, &all, |all| {
                        all.iter().map(render_rule_status).collect::<String>()
                    })?;
                }
            }
        }
        Command::Run {
            bucket,
            rule,
            wait,
            target,
        } => {
            let c = client(target)?;
            let mut s = c
                .run_replication(&bucket, rule.id.as_deref())
                .await
                .map_err(e)?;
            if wait {
                s = wait_for_run(&c, &bucket, &s).await?;
            }
            print!("{}", render_rule_status(&s));
        }
        Command::Requeue {
            bucket,
            rule,
            target,
        } => {
            let n = client(target)?
                .requeue_replication(&bucket, rule.id.as_deref())
                .await
                .map_err(e)?;
            println!("{n} failed key(s) of {bucket} queued again");
        }
    }
    Ok(())
}

/// Follows a manual run until the rule's queue and resync are empty: the versions
/// sent since `first`, of those sent and still to send (queued changes, and while
/// a resync runs the bucket's versions).
async fn wait_for_run(
    c: &hoard::client::AdminClient,
    bucket: &str,
    first: &hoard::replication::rules::RuleStatus,
) -> Result<hoard::replication::rules::RuleStatus, String> {
    let id = Some(first.rule.id.as_str());
    let mut meter = super::progress::Meter::new(&format!("replication {bucket}"));
    // A resync sends the bucket's versions besides the queued changes: while it
    // runs, they count towards the total.
    let versions = match first.resync_after {
        Some(_) => c
            .stats(Some(bucket))
            .await
            .map_err(|e| e.to_string())?
            .buckets
            .first()
            .map_or(0, |b| b.objects),
        None => 0,
    };
    loop {
        let s = c
            .replication_status(bucket, id)
            .await
            .map_err(|e| e.to_string())?;
        let done = s
            .progress
            .objects_sent
            .saturating_sub(first.progress.objects_sent);
        let mut total = done + s.progress.queued;
        if s.resync_after.is_some() {
            total = total.max(versions + s.progress.queued);
        }
        meter.update(done, total, "version(s)");
        if s.progress.queued == 0 && s.resync_after.is_none() {
            meter.finish();
            return Ok(s);
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}
