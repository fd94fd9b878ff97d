//! Cascades: a replica bucket is the source of a rule to a third hoard (A -> B ->
//! C). What arrives on B by replication is passed on with its versions and tags,
//! dedup-aware on each hop; B stays read-only and says REPLICA; a kill -9 of B
//! mid-stream loses nothing; a rule that would close the loop (C -> A) is refused.

use super::*;

#[tokio::test]
async fn a_cascade_passes_versions_on_survives_a_kill_of_the_middle_and_refuses_a_loop() {
    // A's data -> B's mirror -> C's mirror.
    let (mut b, a_key) = replica_with_key(&[]);
    let (c, b_key) = replica_with_key(&[]);
    let a = Server::start_with(&["--tls"]);
    let (ok, text) = cli(&a, &["bucket", "create", "data"]);
    assert!(ok, "{text}");
    let ca_of = |s: &Server| s.ca_pem().display().to_string();
    let (ok, text) = add_rule(&a, &b, &a_key, &["--target-ca", &ca_of(&b)]);
    assert!(ok, "{text}");
    let (ok, text) = add_rule_for(&b, "mirror", &c, &b_key, &["--target-ca", &ca_of(&c)]);
    assert!(ok, "{text}");
    let (src, end) = (a.client(), c.client());
    set_versioning(
        &src,
        "data",
        aws_sdk_s3::types::BucketVersioningStatus::Enabled,
    )
    .await;
    put_twelve(&src, "a", 300).await;
    put_version(&src, "a/0", b"second version").await;
    put_version(&src, "tagged", b"with tags").await;
    set_tag(&src, "tagged", ("job", "nightly")).await;
    delete_keys(&src, "data", &["a/1"]).await;

    // B dies while it passes the versions on, and comes back.
    // (Listing only: a key listed now may get its delete marker before a GET.)
    eventually(60, "the first versions reach C", || async {
        !versions(&end, "mirror").await.is_empty()
    })
    .await;
    b.kill9();
    b.restart();
    let mid = b.client();
    put_twelve(&src, "b", 400).await;
    let expected = versions(&src, "data").await;
    eventually(180, "C holds every version A holds", || async {
        versions(&end, "mirror").await == expected
    })
    .await;
    assert_eq!(versions(&mid, "mirror").await, expected);
    assert_eq!(contents(&end, "mirror").await, contents(&src, "data").await);
    let tagged = &expected.iter().find(|v| v.0 == "tagged").unwrap().1;
    assert_eq!(
        tags_of(&end, "mirror", "tagged", tagged).await,
        ["job=nightly"]
    );

    // B stays read-only to users and says REPLICA.
    assert_eq!(replication_status(&mid, "mirror", "a/0").await, "REPLICA");
    let refused = mid
        .put_object()
        .bucket("mirror")
        .key("x")
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"x"))
        .send()
        .await;
    assert_eq!(code_of(&refused.unwrap_err()), "AccessDenied");

    // Dedup-aware on each hop: a copy of data C holds sends almost nothing.
    let twice = random_bytes(300, 3 << 20);
    let before = sent_bytes(&b).await;
    put_bytes(&src, "data", "again", twice).await;
    eventually(60, "the copy reaches C", || async {
        end.head_object()
            .bucket("mirror")
            .key("again")
            .send()
            .await
            .is_ok()
    })
    .await;
    let delta = sent_bytes(&b).await - before;
    assert!(delta < 100_000.0, "B sent {delta} bytes for data C holds");

    // C -> A would close the loop: refused, naming it, and nothing stored.
    let (ok, text) = cli(&a, &["bucket", "create", "mirror"]);
    assert!(ok, "{text}");
    let c_key = add_user(&a, "from-c", &["mirror=replication"]);
    let (ok, text) = add_rule_for(&c, "mirror", &a, &c_key, &["--target-ca", &ca_of(&a)]);
    assert!(!ok && text.contains("would close a loop"), "{text}");
    assert!(rules(&c).contains("no replication rules"), "{}", rules(&c));
}
