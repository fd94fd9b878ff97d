//! Object Lock across replication: a locked source needs a lock-enabled replica
//! bucket; versions arrive with their mode, retain-until date and legal hold,
//! retention changes follow, and the replica enforces the locks itself, after a
//! promotion too.

use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{
    ObjectLockLegalHold, ObjectLockLegalHoldStatus, ObjectLockMode, ObjectLockRetention,
    ObjectLockRetentionMode,
};

use super::*;

fn in_days(days: i64) -> DateTime {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    DateTime::from_secs(now + days * 86_400)
}

/// (mode, retain-until secs, legal hold on) of one version, as HEAD shows it.
async fn lock_of(
    c: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    version: &str,
) -> (Option<ObjectLockMode>, Option<i64>, bool) {
    let h = c
        .head_object()
        .bucket(bucket)
        .key(key)
        .version_id(version)
        .send()
        .await
        .unwrap();
    (
        h.object_lock_mode().cloned(),
        h.object_lock_retain_until_date().map(|d| d.secs()),
        h.object_lock_legal_hold_status() == Some(&ObjectLockLegalHoldStatus::On),
    )
}

#[tokio::test]
async fn locks_cross_to_the_replica_and_hold_there_after_promotion() {
    let replica = Server::start_with_env(&["--tls"], &[]);
    let dst = replica.client();
    let (ok, text) = cli(&replica, &["bucket", "create", "mirror"]);
    assert!(ok, "{text}");
    let key = add_user(&replica, "from-source", &["mirror=replication"]);
    let source = Server::start();
    let src = source.client();
    src.create_bucket()
        .bucket("data")
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .unwrap();
    let ca = replica.ca_pem().display().to_string();

    // A replica bucket without Object Lock is refused, and stays an ordinary bucket:
    // writable, deletable, and then made again with Object Lock.
    let (ok, text) = add_rule(&source, &replica, &key, &["--target-ca", &ca]);
    assert!(!ok && text.contains("Object Lock"), "{text}");
    put_bytes(&dst, "mirror", "mine", b"still writable".to_vec()).await;
    delete_keys(&dst, "mirror", &["mine"]).await;
    dst.delete_bucket().bucket("mirror").send().await.unwrap();
    let (ok, text) = cli(&replica, &["bucket", "create", "mirror", "--object-lock"]);
    assert!(ok, "{text}");
    let (ok, text) = add_rule(&source, &replica, &key, &["--target-ca", &ca]);
    assert!(ok, "{text}");

    let v = src
        .put_object()
        .bucket("data")
        .key("full.vbk")
        .body(ByteStream::from(random_bytes(7, 2 << 20)))
        .object_lock_mode(ObjectLockMode::Compliance)
        .object_lock_retain_until_date(in_days(7))
        .send()
        .await
        .unwrap()
        .version_id()
        .unwrap()
        .to_owned();
    let held = src
        .put_object()
        .bucket("data")
        .key("case.pst")
        .body(ByteStream::from_static(b"evidence"))
        .object_lock_legal_hold_status(ObjectLockLegalHoldStatus::On)
        .send()
        .await
        .unwrap()
        .version_id()
        .unwrap()
        .to_owned();
    let want = lock_of(&src, "data", "full.vbk", &v).await;
    eventually(60, "the locked version on the replica", || async {
        dst.head_object()
            .bucket("mirror")
            .key("full.vbk")
            .version_id(&v)
            .send()
            .await
            .is_ok()
    })
    .await;
    assert_eq!(lock_of(&dst, "mirror", "full.vbk", &v).await, want);
    assert!(
        lock_of(&dst, "mirror", "case.pst", &held).await.2,
        "legal hold"
    );

    // An extension on the source follows.
    src.put_object_retention()
        .bucket("data")
        .key("full.vbk")
        .version_id(&v)
        .retention(
            ObjectLockRetention::builder()
                .mode(ObjectLockRetentionMode::Compliance)
                .retain_until_date(in_days(30))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let extended = lock_of(&src, "data", "full.vbk", &v).await;
    eventually(60, "the extension on the replica", || async {
        lock_of(&dst, "mirror", "full.vbk", &v).await == extended
    })
    .await;

    // Promoted, the replica still refuses to delete a locked version, to root too.
    let (ok, text) = cli(&replica, &["bucket", "promote", "mirror"]);
    assert!(ok, "{text}");
    refused!(
        dst.delete_object()
            .bucket("mirror")
            .key("full.vbk")
            .version_id(&v),
        "AccessDenied",
        403
    );
    refused!(
        dst.delete_object()
            .bucket("mirror")
            .key("case.pst")
            .version_id(&held),
        "AccessDenied",
        403
    );
    dst.put_object_legal_hold()
        .bucket("mirror")
        .key("case.pst")
        .version_id(&held)
        .legal_hold(
            ObjectLockLegalHold::builder()
                .status(ObjectLockLegalHoldStatus::Off)
                .build(),
        )
        .send()
        .await
        .unwrap();
    dst.delete_object()
        .bucket("mirror")
        .key("case.pst")
        .version_id(&held)
        .send()
        .await
        .expect("lifted, the version goes");
    assert_no_panic(&replica);
    assert_no_panic(&source);
}
