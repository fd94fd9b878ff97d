//! Lifecycle: Put/Get/DeleteBucketLifecycleConfiguration validated as S3 does, and
//! the pass that carries the rules out: noncurrent versions past their days (the
//! newest N kept), current versions past their days or date, expired delete
//! markers, stale multipart uploads; never a version Object Lock protects, never a
//! key no rule names.

mod common;

use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, ExpirationStatus,
    LifecycleExpiration, LifecycleRule, LifecycleRuleAndOperator, LifecycleRuleFilter,
    NoncurrentVersionExpiration, ObjectLockLegalHold, ObjectLockLegalHoldStatus, Tag, Transition,
    TransitionStorageClass,
};
use common::*;

const DAY_MS: i64 = 86_400_000;

fn prefix_filter(p: &str) -> LifecycleRuleFilter {
    LifecycleRuleFilter::builder().prefix(p).build()
}

fn rule(
    id: &str,
    filter: LifecycleRuleFilter,
) -> aws_sdk_s3::types::builders::LifecycleRuleBuilder {
    LifecycleRule::builder()
        .id(id)
        .status(ExpirationStatus::Enabled)
        .filter(filter)
}

fn expire_days(days: i32) -> LifecycleExpiration {
    LifecycleExpiration::builder().days(days).build()
}

fn config(rules: Vec<LifecycleRule>) -> BucketLifecycleConfiguration {
    BucketLifecycleConfiguration::builder()
        .set_rules(Some(rules))
        .build()
        .unwrap()
}

#[tokio::test]
async fn lifecycle_configuration_is_validated_as_s3_does() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("rules").send().await.unwrap();
    refused!(
        c.get_bucket_lifecycle_configuration().bucket("rules"),
        "NoSuchLifecycleConfiguration",
        404
    );
    let put = |rules: Vec<LifecycleRule>| {
        c.put_bucket_lifecycle_configuration()
            .bucket("rules")
            .lifecycle_configuration(config(rules))
    };
    let days = |d| {
        rule("r", prefix_filter(""))
            .expiration(expire_days(d))
            .build()
            .unwrap()
    };
    refused!(put(vec![days(0)]), "InvalidArgument", 400);
    refused!(put(vec![days(-3)]), "InvalidArgument", 400);
    let not_midnight = LifecycleExpiration::builder()
        .date(DateTime::from_secs(1_767_225_600 + 3600))
        .build();
    refused!(
        put(vec![
            rule("r", prefix_filter(""))
                .expiration(not_midnight)
                .build()
                .unwrap()
        ]),
        "InvalidArgument",
        400
    );
    let transition = Transition::builder()
        .days(30)
        .storage_class(TransitionStorageClass::Glacier)
        .build();
    refused!(
        put(vec![
            rule("r", prefix_filter(""))
                .transitions(transition)
                .build()
                .unwrap()
        ]),
        "NotImplemented",
        501
    );
    refused!(put(vec![days(1), days(2)]), "InvalidArgument", 400);
    refused!(
        put(vec![rule("r", prefix_filter("")).build().unwrap()]),
        "InvalidRequest",
        400
    );
    let both = LifecycleExpiration::builder()
        .days(3)
        .expired_object_delete_marker(true)
        .build();
    refused!(
        put(vec![
            rule("r", prefix_filter(""))
                .expiration(both)
                .build()
                .unwrap()
        ]),
        "InvalidArgument",
        400
    );
    let tagged = LifecycleRuleFilter::builder()
        .tag(Tag::builder().key("a").value("b").build().unwrap())
        .build();
    let abort = AbortIncompleteMultipartUpload::builder()
        .days_after_initiation(7)
        .build();
    refused!(
        put(vec![
            rule("r", tagged)
                .abort_incomplete_multipart_upload(abort.clone())
                .build()
                .unwrap()
        ]),
        "InvalidRequest",
        400
    );
    refused!(
        put(vec![
            rule(
                "r",
                LifecycleRuleFilter::builder()
                    .prefix("a")
                    .object_size_greater_than(5)
                    .build()
            )
            .expiration(expire_days(1))
            .build()
            .unwrap()
        ]),
        "MalformedXML",
        400
    );
    refused!(
        put(vec![
            LifecycleRule::builder()
                .id("r")
                .status(ExpirationStatus::Enabled)
                .expiration(expire_days(1))
                .build()
                .unwrap()
        ]),
        "MalformedXML",
        400
    );
    let newer = NoncurrentVersionExpiration::builder()
        .noncurrent_days(30)
        .newer_noncurrent_versions(101)
        .build();
    refused!(
        put(vec![
            rule("r", prefix_filter(""))
                .noncurrent_version_expiration(newer)
                .build()
                .unwrap()
        ]),
        "InvalidArgument",
        400
    );
    refused!(
        c.get_bucket_lifecycle_configuration().bucket("rules"),
        "NoSuchLifecycleConfiguration",
        404
    );

    // A valid configuration reads back as given.
    let and = LifecycleRuleFilter::builder()
        .and(
            LifecycleRuleAndOperator::builder()
                .prefix("db/")
                .tags(Tag::builder().key("class").value("daily").build().unwrap())
                .object_size_greater_than(1024)
                .build(),
        )
        .build();
    let rules = vec![
        rule("keep-30-days", prefix_filter("backups/"))
            .noncurrent_version_expiration(
                NoncurrentVersionExpiration::builder()
                    .noncurrent_days(30)
                    .newer_noncurrent_versions(3)
                    .build(),
            )
            .abort_incomplete_multipart_upload(abort)
            .build()
            .unwrap(),
        rule("dailies", and)
            .expiration(expire_days(90))
            .build()
            .unwrap(),
        rule("markers", LifecycleRuleFilter::builder().prefix("").build())
            .status(ExpirationStatus::Disabled)
            .expiration(
                LifecycleExpiration::builder()
                    .expired_object_delete_marker(true)
                    .build(),
            )
            .build()
            .unwrap(),
    ];
    put(rules.clone())
        .send()
        .await
        .expect("a valid configuration");
    let got = c
        .get_bucket_lifecycle_configuration()
        .bucket("rules")
        .send()
        .await
        .unwrap();
    assert_eq!(got.rules(), rules.as_slice());
    c.delete_bucket_lifecycle()
        .bucket("rules")
        .send()
        .await
        .unwrap();
    refused!(
        c.get_bucket_lifecycle_configuration().bucket("rules"),
        "NoSuchLifecycleConfiguration",
        404
    );
    refused!(
        c.get_bucket_lifecycle_configuration()
            .bucket("no-such-bucket"),
        "NoSuchBucket",
        404
    );
    assert_no_panic(&s);
}

async fn put(c: &aws_sdk_s3::Client, bucket: &str, key: &str, body: &[u8]) -> String {
    c.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.to_vec()))
        .send()
        .await
        .unwrap()
        .version_id
        .unwrap_or_default()
}

async fn version_ids(c: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<String> {
    let out = c
        .list_object_versions()
        .bucket(bucket)
        .prefix(key)
        .send()
        .await
        .unwrap();
    let mut ids: Vec<String> = out
        .versions()
        .iter()
        .filter(|v| v.key() == Some(key))
        .map(|v| v.version_id().unwrap().to_owned())
        .collect();
    ids.extend(
        out.delete_markers()
            .iter()
            .filter(|m| m.key() == Some(key))
            .map(|m| format!("marker:{}", m.version_id().unwrap())),
    );
    ids
}

/// A pass run with the clock 40 days ahead, then 100 days ahead, on the data of a
/// stopped server: what the rules name expires, the newest noncurrent versions, a
/// version under legal hold, keys no rule names and fresh uploads stay.
#[tokio::test]
async fn a_pass_with_an_injected_clock_expires_what_is_due_and_keeps_the_rest() {
    let mut s = Server::start();
    let c = s.client();
    c.create_bucket()
        .bucket("vault")
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .unwrap();
    let mut backups = Vec::new();
    for g in 0..5u8 {
        backups.push(put(&c, "vault", "backups/db", &[g; 100]).await);
    }
    let mut others = Vec::new();
    for g in 0..3u8 {
        others.push(put(&c, "vault", "other/db", &[g; 100]).await);
    }
    let tmp = put(&c, "vault", "tmp/scratch", b"scratch").await;
    // The oldest backup version is under legal hold.
    c.put_object_legal_hold()
        .bucket("vault")
        .key("backups/db")
        .version_id(&backups[0])
        .legal_hold(
            ObjectLockLegalHold::builder()
                .status(ObjectLockLegalHoldStatus::On)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let held = c
        .get_object_legal_hold()
        .bucket("vault")
        .key("backups/db")
        .version_id(&backups[0])
        .send()
        .await
        .expect("the legal hold was set");
    assert_eq!(
        held.legal_hold().and_then(|h| h.status()),
        Some(&ObjectLockLegalHoldStatus::On)
    );
    let stale = c
        .create_multipart_upload()
        .bucket("vault")
        .key("backups/big")
        .send()
        .await
        .unwrap();
    let kept_upload = c
        .create_multipart_upload()
        .bucket("vault")
        .key("other/big")
        .send()
        .await
        .unwrap();
    let rules = vec![
        rule("backups", prefix_filter("backups/"))
            .noncurrent_version_expiration(
                NoncurrentVersionExpiration::builder()
                    .noncurrent_days(30)
                    .newer_noncurrent_versions(2)
                    .build(),
            )
            .abort_incomplete_multipart_upload(
                AbortIncompleteMultipartUpload::builder()
                    .days_after_initiation(7)
                    .build(),
            )
            .build()
            .unwrap(),
        rule("tmp", prefix_filter("tmp/"))
            .expiration(expire_days(90))
            .build()
            .unwrap(),
    ];
    c.put_bucket_lifecycle_configuration()
        .bucket("vault")
        .lifecycle_configuration(config(rules))
        .send()
        .await
        .unwrap();
    c.create_bucket().bucket("garbled").send().await.unwrap();
    assert!(s.stop());

    let now = hoard::meta::now_ms();
    let lock = hoard::meta::LockCheck {
        now_ms: now,
        bypass_governance: false,
    };
    let meta = s.meta();
    // Another bucket whose stored rules are unreadable is skipped, not fatal.
    meta.set_bucket_config(
        "garbled",
        hoard::meta::BucketConfigKind::Lifecycle,
        Some(b"not json".to_vec()),
    )
    .await
    .unwrap();
    let first = hoard::lifecycle::run_pass(&meta, now + 40 * DAY_MS, lock)
        .await
        .unwrap();
    assert_eq!(first.unreadable_rules, 1, "{first:?}");
    // Noncurrent: backups[0..4]; the newest two (3, 2) are kept, 1 goes, 0 is held.
    assert_eq!(first.noncurrent_removed, 1, "{first:?}");
    assert_eq!(first.kept_locked, 1, "{first:?}");
    assert_eq!(first.uploads_aborted, 1, "{first:?}");
    assert_eq!(first.expired, 0, "{first:?}");
    let again = hoard::lifecycle::run_pass(&meta, now + 40 * DAY_MS, lock)
        .await
        .unwrap();
    assert_eq!(
        (
            again.noncurrent_removed,
            again.uploads_aborted,
            again.expired
        ),
        (0, 0, 0),
        "a second pass at the same time finds nothing new: {again:?}"
    );
    let later = hoard::lifecycle::run_pass(&meta, now + 100 * DAY_MS, lock)
        .await
        .unwrap();
    assert_eq!(later.expired, 1, "tmp/scratch is 100 days old: {later:?}");
    drop(meta);
    s.restart();
    let c = s.client();

    let mut expect = vec![
        backups[4].clone(),
        backups[3].clone(),
        backups[2].clone(),
        backups[0].clone(),
    ];
    let mut got = version_ids(&c, "vault", "backups/db").await;
    expect.sort();
    got.sort();
    assert_eq!(
        got, expect,
        "current, the two newest noncurrent, the held one"
    );
    let mut got = version_ids(&c, "vault", "other/db").await;
    got.sort();
    others.sort();
    assert_eq!(got, others, "no rule names other/");
    let tmp_versions = version_ids(&c, "vault", "tmp/scratch").await;
    assert_eq!(tmp_versions.len(), 2, "{tmp_versions:?}");
    assert!(
        tmp_versions.contains(&tmp),
        "the expired version is noncurrent now"
    );
    assert!(tmp_versions.iter().any(|v| v.starts_with("marker:")));
    assert!(try_get_bytes(&c, "vault", "tmp/scratch").await.is_err());
    let uploads = c
        .list_multipart_uploads()
        .bucket("vault")
        .send()
        .await
        .unwrap();
    let ids: Vec<_> = uploads
        .uploads()
        .iter()
        .filter_map(|u| u.upload_id())
        .collect();
    assert_eq!(ids, [kept_upload.upload_id().unwrap()]);
    assert!(!ids.contains(&stale.upload_id().unwrap()));
    assert_no_panic(&s);
}

/// The server's own pass (every second here) expires what is due by the wall
/// clock: a Date in the past expires every current version the rule names, expired
/// delete markers go; `hoard lifecycle run` runs a pass on demand; both counted in
/// the metrics.
#[tokio::test]
async fn the_server_runs_passes_on_its_interval_and_on_demand() {
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("hoard.toml");
    std::fs::write(&toml, "[lifecycle]\ninterval_secs = 1\n").unwrap();
    let s = Server::start_with(&["--config", toml.to_str().unwrap()]);
    let c = s.client();
    c.create_bucket().bucket("logs").send().await.unwrap();
    for key in ["old/1", "old/2", "new/1"] {
        put(&c, "logs", key, key.as_bytes()).await;
    }
    c.create_bucket().bucket("trash").send().await.unwrap();
    set_versioning(
        &c,
        "trash",
        aws_sdk_s3::types::BucketVersioningStatus::Enabled,
    )
    .await;
    let v = put(&c, "trash", "gone", b"x").await;
    delete_keys(&c, "trash", &["gone"]).await;
    c.delete_object()
        .bucket("trash")
        .key("gone")
        .version_id(&v)
        .send()
        .await
        .unwrap();
    assert_eq!(
        version_ids(&c, "trash", "gone").await.len(),
        1,
        "one marker left"
    );
    let past = LifecycleExpiration::builder()
        .date(DateTime::from_secs(1_577_836_800)) // 2020-01-01
        .build();
    c.put_bucket_lifecycle_configuration()
        .bucket("logs")
        .lifecycle_configuration(config(vec![
            rule("old", prefix_filter("old/"))
                .expiration(past)
                .build()
                .unwrap(),
        ]))
        .send()
        .await
        .unwrap();
    eventually(20, "old/ expired", || async {
        try_get_bytes(&c, "logs", "old/1").await.is_err()
            && try_get_bytes(&c, "logs", "old/2").await.is_err()
    })
    .await;
    assert_eq!(get_bytes(&c, "logs", "new/1").await, b"new/1");
    let text = metrics_text(&s).await;
    assert_eq!(
        metric(&text, "hoard_lifecycle_removed_total{action=\"expired\"}"),
        Some(2.0),
        "{text}"
    );
    assert!(metric(&text, "hoard_lifecycle_runs_total").unwrap_or(0.0) >= 1.0);

    let marker_rule = rule("markers", prefix_filter(""))
        .expiration(
            LifecycleExpiration::builder()
                .expired_object_delete_marker(true)
                .build(),
        )
        .build()
        .unwrap();
    c.put_bucket_lifecycle_configuration()
        .bucket("trash")
        .lifecycle_configuration(config(vec![marker_rule]))
        .send()
        .await
        .unwrap();
    let (ok, out) = cli(&s, &["lifecycle", "run"]);
    assert!(ok, "{out}");
    assert!(out.contains("buckets 2"), "{out}");
    assert!(
        version_ids(&c, "trash", "gone").await.is_empty(),
        "the expired marker is gone"
    );
    assert!(s.log().contains("lifecycle pass finished"));
    assert_no_panic(&s);
}
