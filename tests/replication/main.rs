//! Replication between two real hoards on 127.0.0.1, one test binary: rules and the
//! hello (`setup`), what crosses and how much (`transfer`), refusals, kills, a
//! cleaner and a flaky link on the way (`faults`), and seeding (`seeding`). The
//! helpers every module shares are here.

#[path = "../common/mod.rs"]
mod common;

mod cascade;
mod fanout;
mod faults;
mod locks;
mod plain_s3;
mod seeding;
mod setup;
mod transfer;

use common::*;

/// `hoard replication add` on `source`'s bucket `data` towards `replica`'s `mirror`.
fn add_rule(source: &Server, replica: &Server, key: &Key, trust: &[&str]) -> (bool, String) {
    add_rule_for(source, "data", replica, key, trust)
}

fn source_with_bucket() -> Server {
    let source = Server::start();
    let (ok, text) = cli(&source, &["bucket", "create", "data"]);
    assert!(ok, "{text}");
    source
}

fn server_fingerprint(s: &Server) -> String {
    let data_dir = s.data_dir().display().to_string();
    let (ok, text) = cli(s, &["cert", "show", "--data-dir", &data_dir]);
    assert!(ok, "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix("server SHA-256 fingerprint: "))
        .expect("fingerprint line")
        .trim()
        .to_owned()
}

fn rules(source: &Server) -> String {
    let (ok, text) = cli(source, &["replication", "list"]);
    assert!(ok, "{text}");
    text
}

async fn sent_bytes(s: &Server) -> f64 {
    metric(
        &metrics_text(s).await,
        "hoard_replication_sent_bytes_total ",
    )
    .unwrap_or(0.0)
}

/// (key, version id, ETag, size, latest, delete marker) of every version in a bucket.
async fn versions(
    c: &aws_sdk_s3::Client,
    bucket: &str,
) -> Vec<(String, String, String, i64, bool, bool)> {
    let listed = c
        .list_object_versions()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    let mut out: Vec<_> = listed
        .versions()
        .iter()
        .map(|v| {
            (
                v.key().unwrap().to_owned(),
                v.version_id().unwrap().to_owned(),
                v.e_tag().unwrap_or("").to_owned(),
                v.size().unwrap_or(0),
                v.is_latest().unwrap(),
                false,
            )
        })
        .collect();
    out.extend(listed.delete_markers().iter().map(|m| {
        (
            m.key().unwrap().to_owned(),
            m.version_id().unwrap().to_owned(),
            String::new(),
            0,
            m.is_latest().unwrap(),
            true,
        )
    }));
    out.sort();
    out
}

/// PUTs into bucket `data`; returns the new version's id.
async fn put_version(c: &aws_sdk_s3::Client, key: &str, body: &[u8]) -> String {
    let out = c
        .put_object()
        .bucket("data")
        .key(key)
        .body(body.to_vec().into())
        .send()
        .await
        .unwrap();
    out.version_id().unwrap().to_owned()
}

/// Replaces the tags of the current version of `key` in bucket `data` with one.
async fn set_tag(c: &aws_sdk_s3::Client, key: &str, tag: (&str, &str)) {
    use aws_sdk_s3::types::{Tag, Tagging};
    let tagging = Tagging::builder()
        .tag_set(Tag::builder().key(tag.0).value(tag.1).build().unwrap())
        .build()
        .unwrap();
    c.put_object_tagging()
        .bucket("data")
        .key(key)
        .tagging(tagging)
        .send()
        .await
        .unwrap();
}

/// `hoard replication target add NAME` on `source` towards `replica`'s `mirror`.
fn add_target(source: &Server, name: &str, replica: &Server, key: &Key) -> (bool, String) {
    let (target, ca) = (replica.endpoint(), replica.ca_pem().display().to_string());
    cli(
        source,
        &[
            "replication",
            "target",
            "add",
            name,
            "--target",
            &target,
            "--target-bucket",
            "mirror",
            "--target-access-key",
            &key.access,
            "--target-secret-key",
            &key.secret,
            "--target-ca",
            &ca,
        ],
    )
}

async fn tags_of(c: &aws_sdk_s3::Client, bucket: &str, key: &str, v: &str) -> Vec<String> {
    let t = c
        .get_object_tagging()
        .bucket(bucket)
        .key(key)
        .version_id(v)
        .send()
        .await
        .unwrap();
    t.tag_set()
        .iter()
        .map(|t| format!("{}={}", t.key(), t.value()))
        .collect()
}

async fn part_bytes(c: &aws_sdk_s3::Client, bucket: &str, key: &str, n: i32) -> (Vec<u8>, i32) {
    let got = c
        .get_object()
        .bucket(bucket)
        .key(key)
        .part_number(n)
        .send()
        .await
        .unwrap();
    let parts = got.parts_count().unwrap_or(0);
    (got.body.collect().await.unwrap().to_vec(), parts)
}

async fn replication_status(c: &aws_sdk_s3::Client, bucket: &str, key: &str) -> String {
    let head = c
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    head.replication_status()
        .map_or("none".to_owned(), |s| s.as_str().to_owned())
}

/// The newest segment file of a server (written by its last upload).
fn newest_segment(s: &Server) -> std::path::PathBuf {
    segment_files(s).pop().unwrap().1
}

/// A copy of `data` with `edits` scattered 4 KiB overwrites and `inserts` 1000-byte
/// insertions (which shift every later offset).
fn edited_copy(data: &[u8], edits: usize, inserts: usize) -> Vec<u8> {
    let mut out = data.to_vec();
    let step = data.len() / edits;
    for i in 0..edits {
        let at = i * step + (i * 7919) % (step - 4096);
        out[at..at + 4096].copy_from_slice(&random_bytes(1000 + i as u64, 4096));
    }
    let step = out.len() / (inserts + 1);
    for i in (1..=inserts).rev() {
        let at = i * step;
        out.splice(at..at, random_bytes(5000 + i as u64, 1000));
    }
    out
}

/// Every file of a directory with its bytes.
fn files_in(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|f| {
            let f = f.unwrap();
            (
                f.file_name().to_string_lossy().into_owned(),
                std::fs::read(f.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

fn replication_config(
    arn: &str,
    status: aws_sdk_s3::types::ReplicationRuleStatus,
    prefix: &str,
    rules: usize,
) -> aws_sdk_s3::types::ReplicationConfiguration {
    use aws_sdk_s3::types::*;
    let rule = || {
        ReplicationRule::builder()
            .status(status.clone())
            .priority(1)
            .filter(ReplicationRuleFilter::builder().prefix(prefix).build())
            .delete_marker_replication(
                DeleteMarkerReplication::builder()
                    .status(DeleteMarkerReplicationStatus::Enabled)
                    .build(),
            )
            .destination(Destination::builder().bucket(arn).build().unwrap())
            .build()
            .unwrap()
    };
    ReplicationConfiguration::builder()
        .role("")
        .set_rules(Some((0..rules).map(|_| rule()).collect()))
        .build()
        .unwrap()
}

/// "HH:MM-HH:MM" from minutes after midnight UTC (wrapping).
fn window(start: u64, end: u64) -> String {
    let hm = |m: u64| format!("{:02}:{:02}", (m % 1440) / 60, m % 60);
    format!("{}-{}", hm(start), hm(end))
}

fn utc_minute() -> u64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    (secs % 86_400) / 60
}

/// The backlog `hoard replication status` shows (changes).
fn queued(status: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.trim().strip_prefix("backlog: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("a queue line")
}

fn status(source: &Server) -> String {
    let (ok, text) = cli(source, &["replication", "status", "data"]);
    assert!(ok, "{text}");
    text
}

/// Twelve 3 MiB objects `PREFIX/0..12` of new data.
async fn put_twelve(c: &aws_sdk_s3::Client, prefix: &str, seed: u64) {
    for i in 0..12u64 {
        let data = random_bytes(seed + i, 3 << 20);
        put_bytes(c, "data", &format!("{prefix}/{i}"), data).await;
    }
}
