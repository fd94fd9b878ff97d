//! Several rules per bucket: fan-out to two replicas each at its own pace (one
//! down for a while loses nothing and holds nobody back), filters by prefix and
//! tags with priorities between rules towards one replica bucket, delete markers
//! left out, existing objects left out, and the S3 configuration of all that.

use super::*;

/// Key -> SHA-256 of the body, for every object of a bucket (all pages).
async fn digests(c: &aws_sdk_s3::Client, bucket: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pages = c.list_objects_v2().bucket(bucket).into_paginator().send();
    while let Some(page) = pages.next().await {
        for o in page.unwrap().contents() {
            let key = o.key().unwrap().to_owned();
            let body = get_bytes(c, bucket, &key).await;
            out.push((key, hex::encode(sha256(&body))));
        }
    }
    out
}

/// Key -> ETag of every object of a bucket (all pages): cheap to poll.
async fn etags(c: &aws_sdk_s3::Client, bucket: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pages = c.list_objects_v2().bucket(bucket).into_paginator().send();
    while let Some(page) = pages.next().await {
        let Ok(page) = page else {
            return Vec::new();
        };
        for o in page.contents() {
            out.push((o.key().unwrap().to_owned(), o.e_tag().unwrap().to_owned()));
        }
    }
    out
}

fn rule_status(source: &Server, rule: &str) -> String {
    let (ok, text) = cli(source, &["replication", "status", "data", "--rule", rule]);
    assert!(ok, "{text}");
    text
}

async fn backlog_metric(source: &Server, rule: &str) -> f64 {
    let name = format!("hoard_replication_backlog_events{{bucket=\"data\",rule=\"{rule}\"}} ");
    metric(&metrics_text(source).await, &name).unwrap_or(-1.0)
}

#[tokio::test]
async fn two_replicas_converge_each_at_its_pace_and_one_back_from_an_outage_gets_all() {
    let (near, near_key) = replica_with_key(&[]);
    let (mut far, far_key) = replica_with_key(&[]);
    let mut source = source_with_bucket();
    for (replica, key, id) in [(&near, &near_key, "near"), (&far, &far_key, "far")] {
        let ca = replica.ca_pem().display().to_string();
        let (ok, text) = add_rule(&source, replica, key, &["--target-ca", &ca, "--rule", id]);
        assert!(ok && text.contains(&format!("rule \"{id}\"")), "{text}");
    }
    let (ok, text) = cli(&source, &["replication", "pause", "data"]);
    assert!(
        !ok && text.contains("has 2 replication rules (far, near)"),
        "{text}"
    );
    let src = source.client();
    let (near_c, far_c) = (near.client(), far.client());
    put_bytes(&src, "data", "first", random_bytes(1, 300_000)).await;
    for c in [&near_c, &far_c] {
        eventually(60, "both replicas get the first object", || async {
            etags(c, "mirror").await == etags(&src, "data").await
        })
        .await;
    }

    // The far replica goes down; 500 objects are written (some overwritten, one
    // deleted). The near one converges during the outage.
    assert!(far.stop());
    for batch in 0..25u64 {
        let writes = (0..20u64).map(|i| {
            let n = batch * 20 + i;
            let src = src.clone();
            async move {
                let body = random_bytes(1000 + n, 2000 + (n as usize % 7) * 1500);
                put_bytes(&src, "data", &format!("obj/{n:03}"), body).await;
            }
        });
        futures::future::join_all(writes).await;
    }
    put_bytes(&src, "data", "obj/007", b"overwritten".to_vec()).await;
    delete_keys(&src, "data", &["obj/008"]).await;
    eventually(
        120,
        "the near replica converges while the far one is down",
        || async { etags(&near_c, "mirror").await == etags(&src, "data").await },
    )
    .await;
    let waiting = rule_status(&source, "far");
    assert!(
        waiting.contains("backlog: ") && !waiting.contains("backlog: 0 change(s)"),
        "{waiting}"
    );
    eventually(
        30,
        "the far rule's backlog shows in the metrics",
        || async { backlog_metric(&source, "far").await >= 400.0 },
    )
    .await;
    assert!(rule_status(&source, "near").contains("backlog: 0 change(s)"));

    // The events the near rule passed are kept for the far one, across a kill -9
    // of the source.
    source.kill9();
    source.restart();
    let src = source.client();
    far.restart();
    eventually(180, "the far replica converges once it is back", || async {
        etags(&far_c, "mirror").await == etags(&src, "data").await
    })
    .await;
    let expected = digests(&src, "data").await;
    assert_eq!(expected.len(), 500);
    assert_eq!(digests(&near_c, "mirror").await, expected);
    assert_eq!(digests(&far_c, "mirror").await, expected);
    eventually(30, "both backlogs are empty", || async {
        backlog_metric(&source, "far").await == 0.0 && backlog_metric(&source, "near").await == 0.0
    })
    .await;
}

#[tokio::test]
async fn a_filtered_rule_sends_matching_versions_and_a_tag_change_sends_one() {
    let (replica, key) = replica_with_key(&[]);
    let source = source_with_bucket();
    let src = source.client();
    let dst = replica.client();
    for (c, bucket) in [(&src, "data"), (&dst, "mirror")] {
        set_versioning(
            c,
            bucket,
            aws_sdk_s3::types::BucketVersioningStatus::Enabled,
        )
        .await;
    }
    let put_tagged = |key: &'static str, tags: &'static str| {
        src.put_object()
            .bucket("data")
            .key(key)
            .tagging(tags)
            .body(aws_sdk_s3::primitives::ByteStream::from(
                key.as_bytes().to_vec(),
            ))
            .send()
    };
    // From before the rule, matching, but the rule leaves existing objects out.
    put_tagged("logs/old", "keep=yes").await.unwrap();
    let ca = replica.ca_pem().display().to_string();
    let (ok, text) = add_rule(
        &source,
        &replica,
        &key,
        &[
            "--target-ca",
            &ca,
            "--prefix",
            "logs/",
            "--tag",
            "keep=yes",
            "--no-delete-markers",
            "--no-existing",
        ],
    );
    assert!(ok, "{text}");
    assert!(
        text.contains(
            "keys under \"logs/\", tag keep=yes, no delete markers, no objects from before the rule"
        ),
        "{text}"
    );
    put_tagged("logs/a", "keep=yes&team=ops").await.unwrap();
    put_tagged("logs/b", "keep=no").await.unwrap();
    put_tagged("other/c", "keep=yes").await.unwrap();
    eventually(60, "the matching key replicates", || async {
        contents(&dst, "mirror").await.len() == 1
    })
    .await;
    eventually(30, "the rule passed every change", || async {
        rule_status(&source, "hoard").contains("backlog: 0 change(s)")
    })
    .await;
    assert_eq!(
        contents(&dst, "mirror").await,
        vec![("logs/a".to_owned(), b"logs/a".to_vec())]
    );

    // A tag change that makes logs/b match sends it.
    set_tag(&src, "logs/b", ("keep", "yes")).await;
    eventually(60, "the newly matching key replicates", || async {
        contents(&dst, "mirror").await.len() == 2
    })
    .await;

    // A delete marker stays on the source: the replica still serves the object.
    delete_keys(&src, "data", &["logs/a"]).await;
    assert!(
        src.get_object()
            .bucket("data")
            .key("logs/a")
            .send()
            .await
            .is_err()
    );
    eventually(30, "the rule passed the delete", || async {
        rule_status(&source, "hoard").contains("backlog: 0 change(s)")
    })
    .await;
    assert_eq!(get_bytes(&dst, "mirror", "logs/a").await, b"logs/a");
    let keys: Vec<String> = contents(&dst, "mirror")
        .await
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, ["logs/a", "logs/b"]);
}

#[tokio::test]
async fn s3_configurations_with_several_rules_filters_and_priorities_round_trip_and_apply() {
    use aws_sdk_s3::types::*;
    let (replica, key) = replica_with_key(&[]);
    let source = source_with_bucket();
    let src = source.client();
    let dst = replica.client();
    for (c, bucket) in [(&src, "data"), (&dst, "mirror")] {
        set_versioning(c, bucket, BucketVersioningStatus::Enabled).await;
    }
    let (ok, text) = add_target(&source, "dr-site", &replica, &key);
    assert!(ok, "{text}");
    let markers = |on: bool| {
        DeleteMarkerReplication::builder()
            .status(if on {
                DeleteMarkerReplicationStatus::Enabled
            } else {
                DeleteMarkerReplicationStatus::Disabled
            })
            .build()
    };
    // Towards one replica bucket: "gold" (priority 3) keys under g/ tagged
    // tier=gold; "keep" (priority 2) keys under a/ without their delete markers;
    // "all" (priority 1) every key, delete markers too.
    let rule = |id: &str, priority: i32, filter: ReplicationRuleFilter, on: bool| {
        ReplicationRule::builder()
            .id(id)
            .priority(priority)
            .status(ReplicationRuleStatus::Enabled)
            .filter(filter)
            .delete_marker_replication(markers(on))
            .destination(
                Destination::builder()
                    .bucket("arn:aws:s3:::dr-site")
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    };
    let gold = ReplicationRuleFilter::builder()
        .and(
            ReplicationRuleAndOperator::builder()
                .prefix("g/")
                .tags(Tag::builder().key("tier").value("gold").build().unwrap())
                .build(),
        )
        .build();
    let prefix = |p: &str| ReplicationRuleFilter::builder().prefix(p).build();
    let put_config = |cfg| {
        src.put_bucket_replication()
            .bucket("data")
            .replication_configuration(cfg)
            .send()
    };
    let config = ReplicationConfiguration::builder()
        .role("")
        .rules(rule("gold", 3, gold, false))
        .rules(rule("keep", 2, prefix("a/"), false))
        .rules(rule("all", 1, prefix(""), true))
        .build()
        .unwrap();
    put_config(config).await.unwrap();
    let got = src
        .get_bucket_replication()
        .bucket("data")
        .send()
        .await
        .unwrap();
    let mut given = got.replication_configuration().unwrap().rules().to_vec();
    given.sort_by(|a, b| a.id().cmp(&b.id()));
    assert_eq!(given.len(), 3, "{given:?}");
    let (all, gold, keep) = (&given[0], &given[1], &given[2]);
    assert_eq!((all.id(), all.priority()), (Some("all"), Some(1)));
    assert_eq!((keep.id(), keep.priority()), (Some("keep"), Some(2)));
    assert_eq!(keep.filter().unwrap().prefix(), Some("a/"));
    let and = gold.filter().unwrap().and().unwrap();
    assert_eq!(and.prefix(), Some("g/"));
    assert_eq!(
        (and.tags()[0].key(), and.tags()[0].value()),
        ("tier", "gold")
    );
    let status = |r: &ReplicationRule| r.delete_marker_replication().unwrap().status().cloned();
    assert_eq!(status(keep), Some(DeleteMarkerReplicationStatus::Disabled));
    assert_eq!(status(all), Some(DeleteMarkerReplicationStatus::Enabled));
    let listed = rules(&source);
    assert!(
        listed.contains("rule \"keep\", priority 2") && listed.contains("rule \"all\", priority 1"),
        "{listed}"
    );

    // "keep" outranks "all" for a/x, so its delete marker stays home; b/y's
    // marker goes (only "all" covers it).
    for k in ["a/x", "b/y"] {
        src.put_object()
            .bucket("data")
            .key(k)
            .tagging("tier=gold")
            .body(aws_sdk_s3::primitives::ByteStream::from_static(b"v1"))
            .send()
            .await
            .unwrap();
    }
    eventually(60, "both keys replicate", || async {
        contents(&dst, "mirror").await.len() == 2
    })
    .await;
    delete_keys(&src, "data", &["a/x", "b/y"]).await;
    eventually(60, "b/y's delete marker replicates", || async {
        dst.get_object()
            .bucket("mirror")
            .key("b/y")
            .send()
            .await
            .is_err()
    })
    .await;
    eventually(30, "both rules passed every change", || async {
        let (_, text) = cli(&source, &["replication", "status", "data"]);
        text.matches("backlog: 0 change(s)").count() == 3
    })
    .await;
    assert_eq!(get_bytes(&dst, "mirror", "a/x").await, b"v1");

    // Replacing the configuration with one rule removes the other.
    let only = ReplicationConfiguration::builder()
        .role("")
        .rules(given[0].clone())
        .build()
        .unwrap();
    put_config(only).await.unwrap();
    let got = src
        .get_bucket_replication()
        .bucket("data")
        .send()
        .await
        .unwrap();
    let ids: Vec<_> = got
        .replication_configuration()
        .unwrap()
        .rules()
        .iter()
        .map(|r| r.id())
        .collect();
    assert_eq!(ids, [Some("all")]);
    src.delete_bucket_replication()
        .bucket("data")
        .send()
        .await
        .unwrap();
    assert!(rules(&source).contains("no replication rules"));
}
