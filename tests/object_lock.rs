//! S3 Object Lock driven by aws-sdk-s3: bucket configuration, retention and legal
//! hold per version, what they refuse (with S3's codes and statuses), the governance
//! bypass and its grant, default retention, and the cleaner, verify, bucket deletion
//! and kill -9 leaving locked versions whole.

mod common;

use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{
    BucketVersioningStatus, DefaultRetention, Delete, ObjectIdentifier, ObjectLockConfiguration,
    ObjectLockEnabled, ObjectLockLegalHold, ObjectLockLegalHoldStatus, ObjectLockMode,
    ObjectLockRetention, ObjectLockRetentionMode, ObjectLockRule, VersioningConfiguration,
};
use common::*;

fn secs_from_now(secs: i64) -> DateTime {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    DateTime::from_secs(now + secs)
}

const DAY: i64 = 86_400;

async fn lock_bucket(c: &Client, name: &str) {
    c.create_bucket()
        .bucket(name)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .unwrap();
}

async fn put(c: &Client, bucket: &str, key: &str, data: &[u8]) -> String {
    c.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(data.to_vec()))
        .send()
        .await
        .expect("put")
        .version_id()
        .expect("a version id")
        .to_owned()
}

async fn put_locked(
    c: &Client,
    bucket: &str,
    key: &str,
    data: &[u8],
    mode: ObjectLockMode,
    secs: i64,
) -> String {
    c.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(data.to_vec()))
        .object_lock_mode(mode)
        .object_lock_retain_until_date(secs_from_now(secs))
        .send()
        .await
        .expect("locked put")
        .version_id()
        .expect("a version id")
        .to_owned()
}

fn retention(mode: ObjectLockRetentionMode, until: DateTime) -> ObjectLockRetention {
    ObjectLockRetention::builder()
        .mode(mode)
        .retain_until_date(until)
        .build()
}

fn config(rule: Option<DefaultRetention>) -> ObjectLockConfiguration {
    let mut b = ObjectLockConfiguration::builder().object_lock_enabled(ObjectLockEnabled::Enabled);
    if let Some(d) = rule {
        b = b.rule(ObjectLockRule::builder().default_retention(d).build());
    }
    b.build()
}

#[tokio::test]
async fn bucket_lock_configuration_is_validated_as_s3_does() {
    let s = Server::start();
    let c = s.client();
    lock_bucket(&c, "locked").await;
    let v = c
        .get_bucket_versioning()
        .bucket("locked")
        .send()
        .await
        .unwrap();
    assert_eq!(v.status(), Some(&BucketVersioningStatus::Enabled));
    let got = c
        .get_object_lock_configuration()
        .bucket("locked")
        .send()
        .await
        .unwrap();
    let got = got.object_lock_configuration().unwrap();
    assert_eq!(got.object_lock_enabled(), Some(&ObjectLockEnabled::Enabled));
    assert!(got.rule().is_none());
    // Versioning stays Enabled for good.
    refused!(
        c.put_bucket_versioning()
            .bucket("locked")
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Suspended)
                    .build()
            ),
        "InvalidBucketState",
        409
    );

    for rule in [
        DefaultRetention::builder()
            .mode(ObjectLockRetentionMode::Governance)
            .days(1)
            .build(),
        DefaultRetention::builder()
            .mode(ObjectLockRetentionMode::Compliance)
            .years(1)
            .build(),
    ] {
        c.put_object_lock_configuration()
            .bucket("locked")
            .object_lock_configuration(config(Some(rule.clone())))
            .send()
            .await
            .unwrap();
        let got = c
            .get_object_lock_configuration()
            .bucket("locked")
            .send()
            .await
            .unwrap();
        let got = got.object_lock_configuration().unwrap();
        assert_eq!(got.rule().and_then(|r| r.default_retention()), Some(&rule));
    }
    let bad = |mode: &str, days: Option<i32>, years: Option<i32>| {
        let mut d = DefaultRetention::builder().mode(ObjectLockRetentionMode::from(mode));
        if let Some(n) = days {
            d = d.days(n);
        }
        if let Some(n) = years {
            d = d.years(n);
        }
        c.put_object_lock_configuration()
            .bucket("locked")
            .object_lock_configuration(config(Some(d.build())))
    };
    refused!(
        bad("GOVERNANCE", Some(0), None),
        "InvalidRetentionPeriod",
        400
    );
    refused!(
        bad("GOVERNANCE", None, Some(-1)),
        "InvalidRetentionPeriod",
        400
    );
    refused!(bad("GOVERNANCE", Some(1), Some(1)), "MalformedXML", 400);
    refused!(bad("governance", Some(1), None), "MalformedXML", 400);
    refused!(bad("abc", Some(1), None), "MalformedXML", 400);
    refused!(
        c.put_object_lock_configuration()
            .bucket("locked")
            .object_lock_configuration(
                ObjectLockConfiguration::builder()
                    .object_lock_enabled(ObjectLockEnabled::from("Disabled"))
                    .build()
            ),
        "MalformedXML",
        400
    );
    // The refused ones changed nothing.
    let got = c
        .get_object_lock_configuration()
        .bucket("locked")
        .send()
        .await
        .unwrap();
    let rule = got.object_lock_configuration().unwrap().rule().unwrap();
    assert_eq!(rule.default_retention().unwrap().years(), Some(1));

    // A plain bucket has none, cannot take one until versioned, then can.
    c.create_bucket().bucket("plain").send().await.unwrap();
    refused!(
        c.get_object_lock_configuration().bucket("plain"),
        "ObjectLockConfigurationNotFoundError",
        404
    );
    refused!(
        c.put_object_lock_configuration()
            .bucket("plain")
            .object_lock_configuration(config(None)),
        "InvalidBucketState",
        409
    );
    put(&c, "locked", "k", b"x").await;
    c.put_object()
        .bucket("plain")
        .key("k")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    refused!(
        c.get_object_retention().bucket("plain").key("k"),
        "InvalidRequest",
        400
    );
    refused!(
        c.put_object_legal_hold()
            .bucket("plain")
            .key("k")
            .legal_hold(
                ObjectLockLegalHold::builder()
                    .status(ObjectLockLegalHoldStatus::On)
                    .build()
            ),
        "InvalidRequest",
        400
    );
    refused!(
        c.put_object()
            .bucket("plain")
            .key("k2")
            .body(ByteStream::from_static(b"x"))
            .object_lock_mode(ObjectLockMode::Governance)
            .object_lock_retain_until_date(secs_from_now(DAY)),
        "InvalidRequest",
        400
    );
    set_versioning(&c, "plain", BucketVersioningStatus::Enabled).await;
    c.put_object_lock_configuration()
        .bucket("plain")
        .object_lock_configuration(config(None))
        .send()
        .await
        .expect("an existing versioned bucket takes Object Lock");
    assert_no_panic(&s);
}

#[tokio::test]
async fn compliance_retention_can_only_be_extended_and_blocks_deletion_by_anyone() {
    let s = Server::start();
    let c = s.client();
    lock_bucket(&c, "vault").await;
    let v1 = put_locked(
        &c,
        "vault",
        "db.bak",
        b"monday",
        ObjectLockMode::Compliance,
        DAY,
    )
    .await;
    let head = c
        .head_object()
        .bucket("vault")
        .key("db.bak")
        .send()
        .await
        .unwrap();
    assert_eq!(head.object_lock_mode(), Some(&ObjectLockMode::Compliance));
    let until = head.object_lock_retain_until_date().unwrap().secs();
    assert!((until - secs_from_now(DAY).secs()).abs() < 60, "{until}");
    assert!(head.object_lock_legal_hold_status().is_none());

    // Root cannot delete the version, not even with a bypass.
    refused!(
        c.delete_object()
            .bucket("vault")
            .key("db.bak")
            .version_id(&v1),
        "AccessDenied",
        403
    );
    refused!(
        c.delete_object()
            .bucket("vault")
            .key("db.bak")
            .version_id(&v1)
            .bypass_governance_retention(true),
        "AccessDenied",
        403
    );
    // A delete without a version id only adds a delete marker.
    let marker = c
        .delete_object()
        .bucket("vault")
        .key("db.bak")
        .send()
        .await
        .unwrap();
    assert_eq!(marker.delete_marker(), Some(true));
    assert!(try_get_bytes(&c, "vault", "db.bak").await.is_err());
    assert_eq!(get_version(&c, "vault", "db.bak", &v1).await, b"monday");

    // Shorter, another mode, or none: refused; longer: fine.
    let until = |secs| secs_from_now(secs);
    let set = |r: Option<ObjectLockRetention>| {
        let mut req = c
            .put_object_retention()
            .bucket("vault")
            .key("db.bak")
            .version_id(&v1);
        if let Some(r) = r {
            req = req.retention(r);
        }
        req.bypass_governance_retention(true)
    };
    refused!(
        set(Some(retention(
            ObjectLockRetentionMode::Compliance,
            until(DAY / 2)
        ))),
        "AccessDenied",
        403
    );
    refused!(
        set(Some(retention(
            ObjectLockRetentionMode::Governance,
            until(2 * DAY)
        ))),
        "AccessDenied",
        403
    );
    refused!(
        set(Some(ObjectLockRetention::builder().build())),
        "AccessDenied",
        403
    );
    refused!(
        set(Some(retention(
            ObjectLockRetentionMode::Compliance,
            until(-60)
        ))),
        "InvalidArgument",
        400
    );
    set(Some(retention(
        ObjectLockRetentionMode::Compliance,
        until(30 * DAY),
    )))
    .send()
    .await
    .expect("an extension");
    let got = c
        .get_object_retention()
        .bucket("vault")
        .key("db.bak")
        .version_id(&v1)
        .send()
        .await
        .unwrap();
    let r = got.retention().unwrap();
    assert_eq!(r.mode(), Some(&ObjectLockRetentionMode::Compliance));
    assert!((r.retain_until_date().unwrap().secs() - until(30 * DAY).secs()).abs() < 60);

    // The current version is a delete marker: by key the object is not there, as
    // for a GET.
    refused!(
        c.get_object_retention().bucket("vault").key("db.bak"),
        "NoSuchKey",
        404
    );
    // A version with no lock has no retention to show.
    let plain = put(&c, "vault", "free", b"f").await;
    refused!(
        c.get_object_retention()
            .bucket("vault")
            .key("free")
            .version_id(&plain),
        "NoSuchObjectLockConfiguration",
        404
    );
    // Malformed lock headers.
    refused!(
        c.put_object()
            .bucket("vault")
            .key("half")
            .body(ByteStream::from_static(b"h"))
            .object_lock_mode(ObjectLockMode::Compliance),
        "InvalidArgument",
        400
    );
    refused!(
        c.put_object()
            .bucket("vault")
            .key("past")
            .body(ByteStream::from_static(b"p"))
            .object_lock_mode(ObjectLockMode::Compliance)
            .object_lock_retain_until_date(secs_from_now(-10)),
        "InvalidArgument",
        400
    );
    assert_eq!(get_version(&c, "vault", "db.bak", &v1).await, b"monday");
    assert_no_panic(&s);
}

#[tokio::test]
async fn governance_yields_only_to_a_bypass_by_a_user_holding_the_grant() {
    let s = Server::start();
    let root = s.client();
    lock_bucket(&root, "gov").await;
    let backup = client_as(&s, &add_user(&s, "backup", &["gov=readwrite"]));
    let privileged = client_as(&s, &add_user(&s, "cleanup", &["gov=bypass-governance"]));
    let v = put_locked(
        &backup,
        "gov",
        "job/1",
        b"one",
        ObjectLockMode::Governance,
        DAY,
    )
    .await;

    // A backup key extends, but cannot shorten or delete, bypass or not.
    backup
        .put_object_retention()
        .bucket("gov")
        .key("job/1")
        .retention(retention(
            ObjectLockRetentionMode::Governance,
            secs_from_now(2 * DAY),
        ))
        .send()
        .await
        .expect("extension by a backup key");
    for c in [&backup, &root] {
        refused!(
            c.put_object_retention()
                .bucket("gov")
                .key("job/1")
                .retention(retention(
                    ObjectLockRetentionMode::Governance,
                    secs_from_now(DAY / 2)
                ))
                .bypass_governance_retention(true),
            "AccessDenied",
            403
        );
        refused!(
            c.delete_object()
                .bucket("gov")
                .key("job/1")
                .version_id(&v)
                .bypass_governance_retention(true),
            "AccessDenied",
            403
        );
    }
    // The privileged key needs the header too.
    refused!(
        privileged
            .delete_object()
            .bucket("gov")
            .key("job/1")
            .version_id(&v),
        "AccessDenied",
        403
    );
    privileged
        .put_object_retention()
        .bucket("gov")
        .key("job/1")
        .version_id(&v)
        .retention(retention(
            ObjectLockRetentionMode::Governance,
            secs_from_now(60),
        ))
        .bypass_governance_retention(true)
        .send()
        .await
        .expect("a shortening with the bypass");
    privileged
        .delete_object()
        .bucket("gov")
        .key("job/1")
        .version_id(&v)
        .bypass_governance_retention(true)
        .send()
        .await
        .expect("a deletion with the bypass");
    refused!(
        root.get_object().bucket("gov").key("job/1").version_id(&v),
        "NoSuchVersion",
        404
    );
    assert_no_panic(&s);
}

#[tokio::test]
async fn a_legal_hold_blocks_deletion_until_an_admin_lifts_it() {
    let s = Server::start();
    let root = s.client();
    lock_bucket(&root, "case").await;
    let writer = client_as(&s, &add_user(&s, "writer", &["case=readwrite"]));
    let v = put(&writer, "case", "mail.pst", b"evidence").await;
    let hold = |on: bool| {
        ObjectLockLegalHold::builder()
            .status(if on {
                ObjectLockLegalHoldStatus::On
            } else {
                ObjectLockLegalHoldStatus::Off
            })
            .build()
    };
    refused!(
        writer
            .put_object_legal_hold()
            .bucket("case")
            .key("mail.pst")
            .legal_hold(hold(true)),
        "AccessDenied",
        403
    );
    root.put_object_legal_hold()
        .bucket("case")
        .key("mail.pst")
        .legal_hold(hold(true))
        .send()
        .await
        .unwrap();
    let head = root
        .head_object()
        .bucket("case")
        .key("mail.pst")
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.object_lock_legal_hold_status(),
        Some(&ObjectLockLegalHoldStatus::On)
    );
    assert!(head.object_lock_mode().is_none(), "no retention was set");
    let got = writer
        .get_object_legal_hold()
        .bucket("case")
        .key("mail.pst")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.legal_hold().and_then(|h| h.status()),
        Some(&ObjectLockLegalHoldStatus::On)
    );
    for c in [&writer, &root] {
        refused!(
            c.delete_object()
                .bucket("case")
                .key("mail.pst")
                .version_id(&v),
            "AccessDenied",
            403
        );
    }
    refused!(
        root.put_object_legal_hold()
            .bucket("case")
            .key("mail.pst")
            .legal_hold(ObjectLockLegalHold::builder().status("abc".into()).build()),
        "MalformedXML",
        400
    );
    root.put_object_legal_hold()
        .bucket("case")
        .key("mail.pst")
        .version_id(&v)
        .legal_hold(hold(false))
        .send()
        .await
        .unwrap();
    writer
        .delete_object()
        .bucket("case")
        .key("mail.pst")
        .version_id(&v)
        .send()
        .await
        .expect("deletable once lifted");
    assert_no_panic(&s);
}

#[tokio::test]
async fn default_retention_is_given_to_puts_copies_and_multipart_uploads() {
    let s = Server::start();
    let c = s.client();
    lock_bucket(&c, "dflt").await;
    c.put_object_lock_configuration()
        .bucket("dflt")
        .object_lock_configuration(config(Some(
            DefaultRetention::builder()
                .mode(ObjectLockRetentionMode::Governance)
                .days(3)
                .build(),
        )))
        .send()
        .await
        .unwrap();
    let v_put = put(&c, "dflt", "put", b"p").await;
    c.copy_object()
        .bucket("dflt")
        .key("copy")
        .copy_source(format!("dflt/put?versionId={v_put}"))
        .send()
        .await
        .unwrap();
    put_multipart(
        &c,
        "dflt",
        "mpu",
        &[random_bytes(1, 5 << 20), random_bytes(2, 1000)],
    )
    .await;
    // An explicit retention wins over the default.
    put_locked(&c, "dflt", "own", b"o", ObjectLockMode::Compliance, DAY).await;
    for (key, mode, secs) in [
        ("put", ObjectLockMode::Governance, 3 * DAY),
        ("copy", ObjectLockMode::Governance, 3 * DAY),
        ("mpu", ObjectLockMode::Governance, 3 * DAY),
        ("own", ObjectLockMode::Compliance, DAY),
    ] {
        let head = c
            .head_object()
            .bucket("dflt")
            .key(key)
            .send()
            .await
            .unwrap();
        assert_eq!(head.object_lock_mode(), Some(&mode), "{key}");
        let until = head.object_lock_retain_until_date().unwrap().secs();
        assert!(
            (until - secs_from_now(secs).secs()).abs() < 120,
            "{key}: {until}"
        );
        let v = head.version_id().unwrap().to_owned();
        refused!(
            c.delete_object().bucket("dflt").key(key).version_id(&v),
            "AccessDenied",
            403
        );
    }
    assert_no_panic(&s);
}

#[tokio::test]
async fn delete_objects_refuses_each_locked_version_and_deletes_the_rest() {
    let s = Server::start();
    let c = s.client();
    lock_bucket(&c, "batch").await;
    let locked = put_locked(&c, "batch", "young", b"y", ObjectLockMode::Governance, DAY).await;
    let free = put(&c, "batch", "old", b"o").await;
    let ids = [("young", &locked), ("old", &free)]
        .into_iter()
        .map(|(k, v)| {
            ObjectIdentifier::builder()
                .key(k)
                .version_id(v)
                .build()
                .unwrap()
        })
        .collect::<Vec<_>>();
    let out = c
        .delete_objects()
        .bucket("batch")
        .delete(Delete::builder().set_objects(Some(ids)).build().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(out.deleted().len(), 1);
    assert_eq!(out.deleted()[0].key(), Some("old"));
    assert_eq!(out.deleted()[0].version_id(), Some(free.as_str()));
    assert_eq!(out.errors().len(), 1);
    let e = &out.errors()[0];
    assert_eq!(
        (e.key(), e.version_id(), e.code()),
        (Some("young"), Some(locked.as_str()), Some("AccessDenied"))
    );
    assert_eq!(get_version(&c, "batch", "young", &locked).await, b"y");
    // A bypass-governance key with the header deletes it.
    let privileged = client_as(&s, &add_user(&s, "p", &["batch=bypass-governance"]));
    let out = privileged
        .delete_objects()
        .bucket("batch")
        .bypass_governance_retention(true)
        .delete(
            Delete::builder()
                .objects(
                    ObjectIdentifier::builder()
                        .key("young")
                        .version_id(&locked)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert!(out.errors().is_empty(), "{:?}", out.errors());
    assert_eq!(out.deleted().len(), 1);
    assert_no_panic(&s);
}

/// Object Lock's headers without Content-MD5 or a checksum are refused, as S3
/// refuses them; the same PUT with Content-MD5 is stored locked.
#[tokio::test]
async fn a_locked_put_needs_content_md5_or_a_checksum() {
    let s = Server::start();
    let c = s.client();
    lock_bucket(&c, "md5").await;
    let until = "2099-01-01T00:00:00Z";
    let body = b"payload";
    let sha = "UNSIGNED-PAYLOAD";
    let len = body.len().to_string();
    let lock = [
        ("content-length", len.as_str()),
        ("x-amz-object-lock-mode", "GOVERNANCE"),
        ("x-amz-object-lock-retain-until-date", until),
    ];
    let head = signed_head(&s, "PUT", "/md5/k", &lock, sha);
    let answer = raw_exchange(s.addr, &head, body, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("<Code>InvalidRequest</Code>"), "{answer}");
    assert!(
        try_get_bytes(&c, "md5", "k").await.is_err(),
        "stored anyway"
    );
    let md5 = base64_md5(body);
    let mut with_md5 = lock.to_vec();
    with_md5.push(("content-md5", md5.as_str()));
    let head = signed_head(&s, "PUT", "/md5/k", &with_md5, sha);
    let answer = raw_exchange(s.addr, &head, body, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let head = c.head_object().bucket("md5").key("k").send().await.unwrap();
    assert_eq!(head.object_lock_mode(), Some(&ObjectLockMode::Governance));
}

fn base64_md5(data: &[u8]) -> String {
    use base64::Engine as _;
    let digest = hex::decode(md5_hex(data)).unwrap();
    base64::engine::general_purpose::STANDARD.encode(digest)
}

/// The cleaner with zero grace, after everything else was deleted, a repair, and a
/// refused bucket deletion leave every locked version readable byte for byte.
#[tokio::test]
async fn gc_repair_and_bucket_deletion_leave_every_locked_version_whole() {
    let mut s = Server::start();
    let c = s.client();
    lock_bucket(&c, "keep").await;
    c.create_bucket().bucket("scratch").send().await.unwrap();
    let mut locked = Vec::new();
    for i in 0..4u64 {
        let data = random_bytes(100 + i, 3 << 20);
        // The same bytes elsewhere, deleted below: they share every chunk.
        put_bytes(&c, "scratch", &format!("copy{i}"), data.clone()).await;
        let v = c
            .put_object()
            .bucket("keep")
            .key(format!("k{i}"))
            .body(ByteStream::from(data.clone()))
            .object_lock_mode(ObjectLockMode::Compliance)
            .object_lock_retain_until_date(secs_from_now(DAY))
            .send()
            .await
            .unwrap()
            .version_id()
            .unwrap()
            .to_owned();
        // A later unlocked version, deleted again, and a delete marker on top.
        let later = put(
            &c,
            "keep",
            &format!("k{i}"),
            &random_bytes(200 + i, 1 << 20),
        )
        .await;
        c.delete_object()
            .bucket("keep")
            .key(format!("k{i}"))
            .version_id(&later)
            .send()
            .await
            .unwrap();
        c.delete_object()
            .bucket("keep")
            .key(format!("k{i}"))
            .send()
            .await
            .unwrap();
        locked.push((format!("k{i}"), v, data));
    }
    for i in 0..4 {
        delete_keys(&c, "scratch", &[&format!("copy{i}")]).await;
    }
    refused!(c.delete_bucket().bucket("keep"), "BucketNotEmpty", 409);
    let gc = admin(&s).gc(false, Some(Duration::ZERO)).await.unwrap();
    assert!(
        gc.bytes_freed > 0,
        "the unlocked data was not freed: {gc:?}"
    );
    let report = admin(&s).verify(None, true).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    admin(&s).gc(false, Some(Duration::ZERO)).await.unwrap();
    for (key, v, data) in &locked {
        assert!(
            get_version(&c, "keep", key, v).await == *data,
            "{key} changed"
        );
    }
    assert_no_panic(&s);
    s.stop();
    assert!(s.meta().audit_refs_blocking().unwrap().is_empty());
}

/// kill -9 while retention is being extended over and over: after the restart
/// every version is there, locked at least as long as before, and still refuses
/// deletion.
#[tokio::test]
async fn kill_9_during_retention_changes_leaves_every_lock_in_force() {
    let mut s = Server::start();
    let c = s.client();
    lock_bucket(&c, "crash").await;
    let mut versions = Vec::new();
    for i in 0..8 {
        let v = put_locked(
            &c,
            "crash",
            &format!("k{i}"),
            format!("data {i}").as_bytes(),
            ObjectLockMode::Compliance,
            DAY,
        )
        .await;
        versions.push((format!("k{i}"), v));
    }
    let extender = {
        let c = c.clone();
        let versions = versions.clone();
        tokio::spawn(async move {
            for round in 1..1000i64 {
                for (key, v) in &versions {
                    let r = c
                        .put_object_retention()
                        .bucket("crash")
                        .key(key)
                        .version_id(v)
                        .retention(retention(
                            ObjectLockRetentionMode::Compliance,
                            secs_from_now(DAY + round * 60),
                        ))
                        .send()
                        .await;
                    if r.is_err() {
                        return;
                    }
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    s.kill9();
    let _ = extender.await;
    s.restart();
    let c = s.client();
    for (i, (key, v)) in versions.iter().enumerate() {
        assert_eq!(
            get_version(&c, "crash", key, v).await,
            format!("data {i}").into_bytes()
        );
        let r = c
            .get_object_retention()
            .bucket("crash")
            .key(key)
            .version_id(v)
            .send()
            .await
            .unwrap();
        let r = r.retention().unwrap();
        assert_eq!(r.mode(), Some(&ObjectLockRetentionMode::Compliance));
        assert!(r.retain_until_date().unwrap().secs() >= secs_from_now(DAY - 120).secs());
        refused!(
            c.delete_object().bucket("crash").key(key).version_id(v),
            "AccessDenied",
            403
        );
    }
    assert_no_panic(&s);
    s.stop();
    assert!(s.meta().audit_refs_blocking().unwrap().is_empty());
}

/// The retention clock is in `hoard stats` and the metrics, and resumes after a
/// restart from where it was, not from anything earlier.
#[tokio::test]
async fn the_retention_clock_is_shown_and_survives_a_restart() {
    let mut s = Server::start();
    let first = stats(&s).await.retention_clock.expect("a retention clock");
    assert!((first.wall_ms - first.clock_ms).abs() < 5_000, "{first:?}");
    let m = metrics_text(&s).await;
    let clock = metric(&m, "hoard_retention_clock_seconds ").unwrap();
    assert!((clock - first.clock_ms as f64 / 1000.0).abs() < 10.0, "{m}");
    assert!(
        metric(&m, "hoard_retention_clock_behind_seconds ")
            .unwrap()
            .abs()
            < 10.0
    );
    let (ok, text) = cli(&s, &["stats"]);
    assert!(ok && text.contains("retention clock:"), "{text}");
    s.stop();
    s.restart();
    let again = stats(&s).await.retention_clock.unwrap();
    assert!(again.clock_ms >= first.clock_ms, "{first:?} then {again:?}");
}

const SOS: &str = ".system-d26a9498-cb7c-4a87-a44a-8ae204f5ba6c/";

/// The text of element `name` in a small XML document.
fn element(xml: &str, name: &str) -> String {
    let open = format!("<{name}>");
    let start = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no {name} in {xml}"))
        + open.len();
    let end = xml[start..].find("</").unwrap() + start;
    xml[start..end].to_owned()
}

/// Veeam's SOSAPI documents: answered on GET (whole and by range) and HEAD, listed
/// only by their folder, their numbers following quotas and writes; a PUT of them
/// stores nothing.
#[tokio::test]
async fn sosapi_documents_report_the_system_and_its_capacity() {
    let s = Server::start();
    let c = s.client();
    lock_bucket(&c, "vbr").await;
    let system_key = format!("{SOS}system.xml");
    let capacity_key = format!("{SOS}capacity.xml");
    let system = String::from_utf8(get_bytes(&c, "vbr", &system_key).await).unwrap();
    // Segments in an object store without a quota: no capacity to report.
    let reports_capacity = if s.is_cloud() { "false" } else { "true" };
    assert_eq!(element(&system, "CapacityInfo"), reports_capacity);
    assert_eq!(element(&system, "UploadSessions"), "false");
    assert_eq!(element(&system, "IAMSTS"), "false");
    assert_eq!(element(&system, "S3MultiObjectDeleteLimit"), "1000");
    assert_eq!(element(&system, "KbBlockSize"), "1024");
    let head = c
        .head_object()
        .bucket("vbr")
        .key(&system_key)
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("application/xml"));
    assert_eq!(head.content_length(), Some(system.len() as i64));
    assert_eq!(
        head.e_tag().unwrap().trim_matches('"'),
        md5_hex(system.as_bytes())
    );
    assert!(head.last_modified().is_some());
    assert_eq!(
        get_range(&c, "vbr", &system_key, "bytes=0-4").await,
        system.as_bytes()[..5].to_vec()
    );

    // The file system's numbers (none in an object store), until a quota says
    // otherwise.
    let numbers = |xml: &str| {
        ["Capacity", "Available", "Used"].map(|n| element(xml, n).parse::<u64>().unwrap())
    };
    if s.is_cloud() {
        refused!(
            c.get_object().bucket("vbr").key(&capacity_key),
            "NoSuchKey",
            404
        );
    } else {
        let capacity = String::from_utf8(get_bytes(&c, "vbr", &capacity_key).await).unwrap();
        let [total, available, used] = numbers(&capacity);
        assert!(
            total > 0 && available <= total && used == total - available,
            "{capacity}"
        );
    }
    put_bytes(&c, "vbr", "block", vec![7u8; 300_000]).await;
    let (ok, text) = cli(&s, &["quota", "set", "--bucket", "vbr", "1MiB"]);
    assert!(ok, "{text}");
    let capacity = String::from_utf8(get_bytes(&c, "vbr", &capacity_key).await).unwrap();
    assert_eq!(numbers(&capacity), [1 << 20, (1 << 20) - 300_000, 300_000]);
    let (ok, text) = cli(&s, &["quota", "set", "--bucket", "vbr", "100KiB"]);
    assert!(ok, "{text}");
    let capacity = String::from_utf8(get_bytes(&c, "vbr", &capacity_key).await).unwrap();
    assert_eq!(
        numbers(&capacity),
        [100 << 10, 0, 300_000],
        "never negative"
    );

    // Listed by their folder only.
    let all = c.list_objects_v2().bucket("vbr").send().await.unwrap();
    let keys: Vec<_> = all.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["block"]);
    let folder = c
        .list_objects_v2()
        .bucket("vbr")
        .prefix(SOS)
        .send()
        .await
        .unwrap();
    let keys: Vec<_> = folder.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, [capacity_key.as_str(), system_key.as_str()]);

    // A client's PUT is answered and stores nothing; the document stays hoard's
    // (with a quota, capacity is reported in every mode).
    let system = String::from_utf8(get_bytes(&c, "vbr", &system_key).await).unwrap();
    assert_eq!(element(&system, "CapacityInfo"), "true");
    let put = c
        .put_object()
        .bucket("vbr")
        .key(&system_key)
        .body(ByteStream::from_static(b"<SystemInfo/>"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        put.e_tag().unwrap().trim_matches('"'),
        md5_hex(b"<SystemInfo/>")
    );
    assert_eq!(
        String::from_utf8(get_bytes(&c, "vbr", &system_key).await).unwrap(),
        system
    );
    assert_eq!(
        stats(&s).await.buckets[0].objects,
        1,
        "the PUT stored an object"
    );
    assert_no_panic(&s);
}

/// Lock headers on CopyObject and CreateMultipartUpload give the new version its own
/// lock (not the source's, not the default); GET shows it; the lock operations'
/// bodies need Content-MD5 or a checksum.
#[tokio::test]
async fn copies_and_multipart_uploads_take_the_lock_their_headers_name() {
    let s = Server::start();
    let c = s.client();
    lock_bucket(&c, "own").await;
    let src = put_locked(&c, "own", "src", b"source", ObjectLockMode::Compliance, DAY).await;
    c.copy_object()
        .bucket("own")
        .key("copy")
        .copy_source(format!("own/src?versionId={src}"))
        .object_lock_mode(ObjectLockMode::Governance)
        .object_lock_retain_until_date(secs_from_now(2 * DAY))
        .object_lock_legal_hold_status(ObjectLockLegalHoldStatus::On)
        .send()
        .await
        .unwrap();
    c.copy_object()
        .bucket("own")
        .key("plain-copy")
        .copy_source(format!("own/src?versionId={src}"))
        .send()
        .await
        .unwrap();
    let up = c
        .create_multipart_upload()
        .bucket("own")
        .key("mpu")
        .object_lock_mode(ObjectLockMode::Compliance)
        .object_lock_retain_until_date(secs_from_now(5 * DAY))
        .send()
        .await
        .unwrap();
    let id = up.upload_id().unwrap();
    let part = c
        .upload_part()
        .bucket("own")
        .key("mpu")
        .upload_id(id)
        .part_number(1)
        .body(ByteStream::from_static(b"one part"))
        .send()
        .await
        .unwrap();
    c.complete_multipart_upload()
        .bucket("own")
        .key("mpu")
        .upload_id(id)
        .multipart_upload(completed(&[part.e_tag().unwrap()]))
        .send()
        .await
        .unwrap();
    for (key, mode, days, hold) in [
        ("copy", Some(ObjectLockMode::Governance), 2, true),
        ("plain-copy", None, 0, false),
        ("mpu", Some(ObjectLockMode::Compliance), 5, false),
    ] {
        let got = c.get_object().bucket("own").key(key).send().await.unwrap();
        assert_eq!(got.object_lock_mode(), mode.as_ref(), "{key}");
        if days > 0 {
            let until = got.object_lock_retain_until_date().unwrap().secs();
            assert!(
                (until - secs_from_now(days * DAY).secs()).abs() < 120,
                "{key}"
            );
        }
        assert_eq!(
            got.object_lock_legal_hold_status() == Some(&ObjectLockLegalHoldStatus::On),
            hold,
            "{key}"
        );
    }
    // PutObjectRetention without Content-MD5 or a checksum.
    let body = format!(
        "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>COMPLIANCE</Mode><RetainUntilDate>2099-01-01T00:00:00Z</RetainUntilDate></Retention>"
    );
    let len = body.len().to_string();
    let head = signed_head(
        &s,
        "PUT",
        &format!("/own/src?retention&versionId={src}"),
        &[("content-length", len.as_str())],
        "UNSIGNED-PAYLOAD",
    );
    let answer = raw_exchange(s.addr, &head, body.as_bytes(), Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("<Code>InvalidRequest</Code>"), "{answer}");
    let r = c
        .get_object_retention()
        .bucket("own")
        .key("src")
        .version_id(&src)
        .send()
        .await
        .unwrap();
    assert!(
        r.retention().unwrap().retain_until_date().unwrap().secs() < secs_from_now(2 * DAY).secs(),
        "the refused request changed the retention"
    );
    assert_no_panic(&s);
}
