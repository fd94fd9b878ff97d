//! hoard: a deduplicating, S3-compatible backup target.
//!
//! Modules follow the data, and imports run one way, from the listener down to the
//! stores: `server` -> `s3` / `admin` -> `ingest`, `retrieve` -> `index` -> `meta`,
//! `segments`. See docs/ARCHITECTURE.md.

pub mod access;
pub mod admin;
pub mod auth;
pub mod cleaner;
pub mod client;
pub mod config;
pub mod durable;
pub mod idle_body;
pub mod index;
pub mod ingest;
pub mod interim;
pub mod meta;
pub mod metrics;
pub mod profile;
pub mod repair;
pub mod replication;
pub mod retrieve;
pub mod s3;
pub mod scrub;
pub mod secrets;
pub mod segments;
pub mod server;
pub mod stats;
pub mod tls;
pub mod users;
pub mod verify;
pub mod vhost;
