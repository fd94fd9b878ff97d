//! hoard: a deduplicating, S3-compatible backup target.
//!
//! Modules follow the data, and imports run one way, from the listener down to the
//! stores: `server` -> `s3` / `admin` -> `replication` -> `ingest`, `retrieve`,
//! `cleaner`, `verify` -> `index`, `config` -> `segments` -> `meta` -> the leaves.
//! docs/ARCHITECTURE.md's layer table places every module; `tests/layers.rs` checks
//! every import against it.

pub mod access;
pub mod acl;
pub mod admin;
pub mod admin_api;
pub mod auth;
pub mod board;
pub mod chunk_codec;
pub mod cleaner;
pub mod client;
pub mod config;
pub mod cors;
pub mod durable;
pub mod form_tap;
pub mod http_json;
pub mod idle_body;
pub mod index;
pub mod ingest;
pub mod interim;
pub mod lifecycle;
pub mod meta;
pub mod metrics;
pub mod names;
pub mod pace;
pub mod policy;
pub mod profile;
pub mod repair;
pub mod replication;
pub mod retention;
pub mod retrieve;
pub mod s3;
pub mod s3_error;
pub mod scrub;
pub mod secrets;
pub mod segments;
pub mod server;
pub mod signed_client;
pub mod stats;
pub mod tier;
pub mod tls;
pub mod ui;
pub mod users;
pub mod verify;
pub mod vhost;
