//! Rules and the hello: a rule is stored only after its replica answered; refusals
//! for an untrusted certificate, a wrong key and an incompatible protocol; read-only
//! replica buckets and promotion; S3 PutBucketReplication over named targets.

use super::*;

#[tokio::test]
async fn a_rule_is_stored_after_the_hello_and_the_replica_bucket_turns_read_only() {
    let (replica, key) = replica_with_key(&[]);
    let source = source_with_bucket();
    let ca = replica.ca_pem().display().to_string();

    let (ok, text) = add_rule(
        &source,
        &replica,
        &key,
        &[
            "--target-ca",
            &ca,
            "--schedule",
            "22:00-06:00",
            "--bandwidth",
            "50MiB/s",
        ],
    );
    assert!(ok, "{text}");
    assert!(text.contains("replica answered: hoard"), "{text}");
    let listed = rules(&source);
    assert!(
        listed.contains("data -> https://") && listed.contains("mirror"),
        "{listed}"
    );
    assert!(
        listed.contains("22:00-06:00") && listed.contains("50.00 MiB/s"),
        "{listed}"
    );
    assert!(!listed.contains(&key.secret), "{listed}");
    assert!(replica.log().contains("replication hello accepted"));

    // The replica bucket is read-only to everyone, root included; reads work.
    let root = replica.client();
    refused!(
        root.put_object()
            .bucket("mirror")
            .key("x")
            .body(aws_sdk_s3::primitives::ByteStream::from_static(b"x")),
        "AccessDenied",
        403
    );
    refused!(
        root.delete_object().bucket("mirror").key("x"),
        "AccessDenied",
        403
    );
    refused!(root.delete_bucket().bucket("mirror"), "AccessDenied", 403);
    let listed = root
        .list_objects_v2()
        .bucket("mirror")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.key_count(), Some(0));
    // The replication key is for replication only.
    let ca_pem = std::fs::read(replica.ca_pem()).unwrap();
    let link_as_s3 = tls_client_as(&replica.endpoint(), Some(&ca_pem), &key.access, &key.secret);
    refused!(
        link_as_s3.list_objects_v2().bucket("mirror"),
        "AccessDenied",
        403
    );

    // A pinned fingerprint works as well as the CA; pause, resume, remove.
    let fp = server_fingerprint(&replica);
    let (ok, text) = add_rule(&source, &replica, &key, &["--target-fingerprint", &fp]);
    assert!(ok, "{text}");
    assert!(
        rules(&source).contains("fingerprint"),
        "the rule was replaced"
    );
    let (ok, text) = cli(&source, &["replication", "pause", "data"]);
    assert!(ok && text.contains("PAUSED"), "{text}");
    let (ok, text) = cli(&source, &["replication", "resume", "data"]);
    assert!(ok && !text.contains("PAUSED"), "{text}");
    let (ok, text) = cli(&source, &["replication", "remove", "data"]);
    assert!(ok, "{text}");
    assert!(rules(&source).contains("no replication rules"));
    let (ok, text) = cli(&source, &["replication", "remove", "data"]);
    assert!(
        !ok && text.contains("ReplicationConfigurationNotFoundError"),
        "{text}"
    );

    // Promotion makes the bucket writable; a stale source cannot take it back.
    let (ok, text) = cli(&replica, &["bucket", "promote", "mirror"]);
    assert!(ok, "{text}");
    put_bytes(&root, "mirror", "after-promotion", b"mine now".to_vec()).await;
    let (ok, text) = add_rule(&source, &replica, &key, &["--target-ca", &ca]);
    assert!(!ok && text.contains("BucketNotEmpty"), "{text}");
    assert!(rules(&source).contains("no replication rules"));
    let (ok, text) = cli(&replica, &["bucket", "promote", "mirror"]);
    assert!(!ok && text.contains("not a replica"), "{text}");
    assert_no_panic(&replica);
    assert_no_panic(&source);
}

#[tokio::test]
async fn untrusted_certificates_wrong_keys_and_incompatible_versions_are_refused() {
    let (replica, key) = replica_with_key(&[]);
    let source = source_with_bucket();
    let ca = replica.ca_pem().display().to_string();

    // Another hoard's CA, and a wrong pinned fingerprint: the certificate is refused.
    let stranger = Server::start_with(&["--tls"]);
    let other_ca = stranger.ca_pem().display().to_string();
    let (ok, text) = add_rule(&source, &replica, &key, &["--target-ca", &other_ca]);
    assert!(!ok && text.contains("InvalidReplicationTarget"), "{text}");
    assert!(text.to_lowercase().contains("certificate"), "{text}");
    let wrong_fp = "00".repeat(32);
    let (ok, text) = add_rule(
        &source,
        &replica,
        &key,
        &["--target-fingerprint", &wrong_fp],
    );
    assert!(!ok && text.to_lowercase().contains("certificate"), "{text}");

    // A wrong secret, and a key without the grant on the target bucket.
    let wrong = Key {
        access: key.access.clone(),
        secret: "not-the-secret".into(),
    };
    let (ok, text) = add_rule(&source, &replica, &wrong, &["--target-ca", &ca]);
    assert!(!ok && text.contains("SignatureDoesNotMatch"), "{text}");
    let elsewhere = add_user(&replica, "other-link", &["elsewhere=replication"]);
    let (ok, text) = add_rule(&source, &replica, &elsewhere, &["--target-ca", &ca]);
    assert!(!ok && text.contains("AccessDenied"), "{text}");

    // Bad input never reaches the target.
    let (ok, text) = add_rule(
        &source,
        &replica,
        &key,
        &["--target-ca", &ca, "--schedule", "25:00-26:00"],
    );
    assert!(!ok && text.contains("window"), "{text}");
    let (ok, text) = add_rule(&source, &replica, &key, &["--target-fingerprint", "abc"]);
    assert!(!ok && text.contains("fingerprint"), "{text}");
    assert!(
        rules(&source).contains("no replication rules"),
        "nothing was stored"
    );
    // None of those made the bucket a replica.
    put_bytes(&replica.client(), "mirror", "still-writable", b"w".to_vec()).await;
    let (ok, text) = cli(&replica, &["bucket", "create", "mirror2"]);
    assert!(ok, "{text}");
    let (ok, text) = cli(
        &replica,
        &["user", "grant", "from-source", "mirror2", "replication"],
    );
    assert!(ok, "{text}");

    // A replica that speaks another protocol version: refused on both sides, logged,
    // counted, nothing stored, the bucket left writable.
    let (future, fkey) = replica_with_key(&[("HOARD_REPLICATION_PROTOCOL", "99")]);
    let fca = future.ca_pem().display().to_string();
    let (ok, text) = add_rule(&source, &future, &fkey, &["--target-ca", &fca]);
    assert!(
        !ok && text.contains("incompatible replication protocol"),
        "{text}"
    );
    assert!(text.contains("99..=99"), "{text}");
    assert!(rules(&source).contains("no replication rules"));
    for (s, side) in [(&future, "replica"), (&source, "source")] {
        let m = metrics_text(s).await;
        let line = format!("hoard_replication_hello_refused_total{{side=\"{side}\"}} ");
        assert_eq!(metric(&m, &line), Some(1.0), "{side}: {m}");
        assert!(
            s.log().contains("replication hello refused"),
            "{side} logs it"
        );
    }
    put_bytes(&future.client(), "mirror", "writable", b"w".to_vec()).await;
    assert_no_panic(&future);
    assert_no_panic(&source);
}

#[tokio::test]
async fn s3_bucket_replication_names_a_configured_target() {
    use aws_sdk_s3::types::ReplicationRuleStatus;
    let (replica, key) = replica_with_key(&[]);
    let source = source_with_bucket();
    let src = source.client();
    let (ok, text) = add_target(&source, "dr-site", &replica, &key);
    assert!(ok && text.contains("ARN: arn:aws:s3:::dr-site"), "{text}");
    assert!(!text.contains(&key.secret), "{text}");
    let get = || src.get_bucket_replication().bucket("data").send();
    let none = get().await.unwrap_err();
    assert_eq!(code_of(&none), "ReplicationConfigurationNotFoundError");

    // Refused, changing nothing: an unknown target, two rules of one priority.
    let put = |cfg| {
        src.put_bucket_replication()
            .bucket("data")
            .replication_configuration(cfg)
            .send()
    };
    let enabled = ReplicationRuleStatus::Enabled;
    let bad = put(replication_config(
        "arn:aws:s3:::nowhere",
        enabled.clone(),
        "",
        1,
    ))
    .await;
    let bad = bad.unwrap_err();
    assert_eq!(
        (status_of(&bad), code_of(&bad).as_str()),
        (400, "InvalidArgument")
    );
    let bad = put(replication_config(
        "arn:aws:s3:::dr-site",
        enabled.clone(),
        "",
        2,
    ))
    .await;
    assert_eq!(code_of(&bad.unwrap_err()), "InvalidArgument");
    assert!(get().await.is_err());
    let writer = add_user(&source, "writer", &["data=readwrite"]);
    let denied = client_as(&source, &writer)
        .put_bucket_replication()
        .bucket("data")
        .replication_configuration(replication_config(
            "arn:aws:s3:::dr-site",
            enabled.clone(),
            "",
            1,
        ))
        .send()
        .await;
    assert_eq!(code_of(&denied.unwrap_err()), "AccessDenied");

    put(replication_config(
        "arn:aws:s3:::dr-site",
        enabled.clone(),
        "",
        1,
    ))
    .await
    .unwrap();
    let got = get().await.unwrap();
    let rule = &got.replication_configuration().unwrap().rules()[0];
    assert_eq!(rule.destination().unwrap().bucket(), "arn:aws:s3:::dr-site");
    assert_eq!(rule.status(), &ReplicationRuleStatus::Enabled);
    put_bytes(&src, "data", "via-s3-api", b"replicated".to_vec()).await;
    let dst = replica.client();
    eventually(60, "the object replicates", || async {
        contents(&dst, "mirror").await.len() == 1
    })
    .await;

    // Disabled pauses the rule; DeleteBucketReplication removes it.
    let disabled = ReplicationRuleStatus::Disabled;
    put(replication_config(
        "arn:aws:s3:::dr-site",
        disabled.clone(),
        "",
        1,
    ))
    .await
    .unwrap();
    assert!(rules(&source).contains("PAUSED"), "{}", rules(&source));
    let got = get().await.unwrap();
    assert_eq!(
        got.replication_configuration().unwrap().rules()[0].status(),
        &disabled
    );
    src.delete_bucket_replication()
        .bucket("data")
        .send()
        .await
        .unwrap();
    assert!(rules(&source).contains("no replication rules"));
    assert_eq!(
        code_of(&get().await.unwrap_err()),
        "ReplicationConfigurationNotFoundError"
    );
    let (ok, text) = cli(&source, &["replication", "target", "list"]);
    assert!(ok && text.contains("dr-site"), "{text}");
    let (ok, text) = cli(&source, &["replication", "target", "remove", "dr-site"]);
    assert!(ok, "{text}");
    let (ok, text) = cli(&source, &["replication", "target", "remove", "dr-site"]);
    assert!(!ok && text.contains("NoSuchReplicationTarget"), "{text}");
    assert_no_panic(&source);
}
