//! `hoard user`: users, their keys and their per-bucket grants.

use clap::Subcommand;

use super::render::render_users;
use super::{Target, client, print_report};
use hoard::meta::Permission;

#[derive(Subcommand)]
pub enum Command {
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

pub async fn run(cmd: Command) -> Result<(), String> {
    let e = |e: hoard::client::ClientError| e.to_string();
    match cmd {
        Command::Add {
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
        Command::RotateKey { name, target } => {
            let key = client(target)?.rotate_user_key(&name).await.map_err(e)?;
            print_new_key("has a new key; the old one is refused from now on", &key);
        }
        Command::List { json, target } => {
            let users = client(target)?.users().await.map_err(e)?;
            print_report(json, &users, |u| render_users(u))?;
        }
        Command::Disable { name, target } => {
            client(target)?
                .set_user_enabled(&name, false)
                .await
                .map_err(e)?;
            println!("user {name} disabled");
        }
        Command::Enable { name, target } => {
            client(target)?
                .set_user_enabled(&name, true)
                .await
                .map_err(e)?;
            println!("user {name} enabled");
        }
        Command::Remove { name, target } => {
            client(target)?.remove_user(&name).await.map_err(e)?;
            println!("user {name} removed");
        }
        Command::Grant {
            name,
            bucket,
            permission,
            target,
        } => {
            let u = client(target)?
                .set_grant(&name, &bucket, Some(permission))
                .await
                .map_err(e)?;
            print!("{}", render_users(&[u]));
        }
        Command::Revoke {
            name,
            bucket,
            target,
        } => {
            let u = client(target)?
                .set_grant(&name, &bucket, None)
                .await
                .map_err(e)?;
            print!("{}", render_users(&[u]));
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
