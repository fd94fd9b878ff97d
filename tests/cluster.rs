//! Several gateways on one PostgreSQL database and one object store (s3s-fs), as a
//! scale-out site runs them: the same data written through different gateways at
//! once, deletes on one and the cleaner on another, one cleaner at a time across
//! the cluster, replication that fails over when the gateway sending a rule dies,
//! a gateway killed mid-load, and every gateway's stream load in each one's
//! metrics. Each test runs its own private PostgreSQL (scripts/pg-cluster.sh).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;

/// A lease of 3 s (renewed every second): a dead gateway's workers and holds pass on
/// within seconds.
const SHORT_LEASE: (&str, &str) = ("HOARD_META_LEASE_SECS", "3");

/// The row a gateway's cleaner pass holds while it runs (`meta::gateways`:
/// `workers`, the name's bytes -> the gateway id as redb stores a u64).
fn cleaner_row_for(gateway: &str) -> String {
    let id = u64::from_str_radix(gateway, 16).expect("a hex gateway id");
    let le: String = id
        .to_le_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("INSERT INTO hoard.workers VALUES ('cleaner'::bytea, decode('{le}', 'hex'))")
}

#[tokio::test]
async fn one_cleaner_runs_at_a_time_and_a_dead_gateways_turn_passes_on() {
    let pg = Cluster::start();
    let url = pg.database("workers");
    let site = Site::new(&url, &[SHORT_LEASE]);
    let mut a = site.gateway();
    let b = site.gateway();
    let a_id = gateway_id(&a);
    assert_ne!(a_id, gateway_id(&b));

    // Gateway A is in the middle of a pass.
    pg.execute("workers", &cleaner_row_for(&a_id));
    let err = admin(&b)
        .gc(false, Some(Duration::ZERO))
        .await
        .expect_err("a second cleaner in the cluster");
    let said = err.to_string();
    assert!(
        said.contains("409") && said.contains("OperationAborted") && said.contains(&a_id),
        "{said}"
    );
    let (ok, text) = cli(&b, &["gc"]);
    assert!(
        !ok && text.contains("another gateway runs the cleaner"),
        "{text}"
    );

    // A's own pass runs, and gives the cleaner up when it ends: B's runs then.
    admin(&a).gc(false, Some(Duration::ZERO)).await.unwrap();
    admin(&b).gc(false, Some(Duration::ZERO)).await.unwrap();

    // A dies mid-pass: the cleaner is B's once A's lease has run out.
    pg.execute("workers", &cleaner_row_for(&a_id));
    a.kill9();
    assert!(
        admin(&b).gc(false, None).await.is_err(),
        "A's lease still runs"
    );
    let mut ran = false;
    for _ in 0..50 {
        if admin(&b).gc(false, None).await.is_ok() {
            ran = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ran, "the dead gateway kept the cleaner: {}", b.log());
    assert_no_panic(&b);
}

#[tokio::test]
async fn the_same_data_through_three_gateways_at_once_then_deleted_on_one_and_collected_on_another()
{
    let pg = Cluster::start();
    let site = Site::new(&pg.database("same"), &[]);
    let gateways: Vec<Server> = (0..3).map(|_| site.gateway()).collect();
    let clients: Vec<_> = gateways.iter().map(Server::client).collect();
    clients[0]
        .create_bucket()
        .bucket("same")
        .send()
        .await
        .unwrap();
    let body = random_bytes(40, 12 << 20);
    let puts = clients.iter().enumerate().map(|(i, c)| {
        let (c, body) = (c.clone(), body.clone());
        tokio::spawn(async move { put_bytes(&c, "same", &format!("copy-{i}"), body).await })
    });
    let etags: Vec<String> = futures::future::join_all(puts)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert!(etags.iter().all(|e| *e == etags[0]), "{etags:?}");
    // Every copy reads back whole through every gateway, and each gateway lists all
    // three right after the commits.
    for c in &clients {
        for i in 0..3 {
            assert_eq!(get_bytes(c, "same", &format!("copy-{i}")).await, body);
        }
        let listed = c.list_objects_v2().bucket("same").send().await.unwrap();
        assert_eq!(listed.key_count(), Some(3));
    }

    // Deleted through one gateway, collected by another's cleaner: the space the
    // deleted copies alone held goes, the copy left reads back whole.
    let stored_before = stats(&gateways[1]).await.total.stored_bytes;
    delete_keys(&clients[0], "same", &["copy-0", "copy-1"]).await;
    let report = admin(&gateways[1])
        .gc(false, Some(Duration::ZERO))
        .await
        .unwrap();
    let stored_after = stats(&gateways[2]).await.total.stored_bytes;
    assert!(stored_after <= stored_before, "{report:?}");
    assert_eq!(get_bytes(&clients[2], "same", "copy-2").await, body);
    let verified = admin(&gateways[2]).verify(None, false).await.unwrap();
    assert!(verified.is_clean(), "{verified:?}");
    // Once the last copy is gone too, nothing of the body is left stored.
    delete_keys(&clients[1], "same", &["copy-2"]).await;
    admin(&gateways[0])
        .gc(false, Some(Duration::ZERO))
        .await
        .unwrap();
    let left = stats(&gateways[1]).await.total;
    assert_eq!((left.objects, left.segments), (0, 0), "{left:?}");
    for g in &gateways {
        assert_no_panic(g);
    }
}

#[tokio::test]
async fn a_gateway_killed_mid_load_loses_no_acknowledged_write() {
    let pg = Cluster::start();
    let site = Site::new(&pg.database("killed"), &[SHORT_LEASE]);
    let mut gateways: Vec<Server> = (0..3).map(|_| site.gateway()).collect();
    gateways[0]
        .client()
        .create_bucket()
        .bucket("load")
        .send()
        .await
        .unwrap();
    // One writer per gateway, each recording the writes it saw acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = gateways
        .iter()
        .enumerate()
        .map(|(g, s)| {
            let (c, stop) = (s.client(), stop.clone());
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for n in 0u64.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let seed = (g as u64) << 32 | n;
                    let key = format!("g{g}/{n}");
                    let put = c
                        .put_object()
                        .bucket("load")
                        .key(&key)
                        .body(random_bytes(seed, 600 << 10).into())
                        .send()
                        .await;
                    match put {
                        Ok(_) => acked.push((key, seed)),
                        Err(_) if g == 2 => break, // its gateway was killed
                        Err(e) => panic!("a write through a live gateway failed: {e:?}"),
                    }
                }
                acked
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    gateways[2].kill9();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    assert!(
        acked.iter().any(|(k, _)| k.starts_with("g2/")),
        "the killed gateway acknowledged nothing before its kill"
    );
    let survivors = &gateways[..2];
    for (i, (key, seed)) in acked.iter().enumerate() {
        let c = survivors[i % 2].client();
        assert_eq!(
            get_bytes(&c, "load", key).await,
            random_bytes(*seed, 600 << 10),
            "{key}"
        );
    }
    // Once the dead gateway's lease ran out, what its upload in flight held is
    // released; the counts agree with the manifests, and a pass frees its debris.
    tokio::time::sleep(Duration::from_secs(5)).await;
    admin(&survivors[0])
        .gc(false, Some(Duration::ZERO))
        .await
        .unwrap();
    let verified = admin(&survivors[1]).verify(None, false).await.unwrap();
    assert!(verified.is_clean(), "{verified:?}");
    // The segment files it uploaded and never named went at that pass, not after
    // the 24 h orphan grace: their ids were handed to a gateway now dead.
    assert!(
        verified.orphan_segments.is_empty(),
        "{:?}",
        verified.orphan_segments
    );
    // Only acknowledged writes exist, and perhaps the one the kill cut between its
    // commit and its answer.
    let listed = stats(&survivors[1]).await.total.objects;
    let acked_n = acked.len() as u64;
    assert!(
        (acked_n..=acked_n + 1).contains(&listed),
        "{listed} objects, {acked_n} acknowledged"
    );
    for s in survivors {
        assert_no_panic(s);
    }
}

#[tokio::test]
async fn replication_fails_over_when_the_gateway_sending_a_rule_dies() {
    let (replica, key) = replica_with_key(&[]);
    let pg = Cluster::start();
    let site = Site::new(&pg.database("failover"), &[SHORT_LEASE]);
    let mut gateways: Vec<Server> = (0..2).map(|_| site.gateway()).collect();
    let (ok, text) = cli(&gateways[0], &["bucket", "create", "data"]);
    assert!(ok, "{text}");
    let ca = replica.ca_pem().display().to_string();
    // 24 MiB at 4 MiB/s: about six seconds of sending, one object at a time.
    let slow = [
        "--target-ca",
        &ca,
        "--bandwidth",
        "4MiB/s",
        "--connections",
        "1",
    ];
    let (ok, text) = add_rule_for(&gateways[1], "data", &replica, &key, &slow);
    assert!(ok, "{text}");
    for i in 0..12u64 {
        let c = gateways[(i % 2) as usize].client();
        put_bytes(
            &c,
            "data",
            &format!("obj-{i}"),
            random_bytes(50 + i, 2 << 20),
        )
        .await;
    }
    // One gateway sends the rule; it dies once part of the bucket has arrived.
    let sends = |s: &Server| {
        s.log()
            .contains("this gateway sends the rule's replication")
    };
    let dst = replica.client();
    eventually(60, "the first objects arrive", || async {
        dst.list_objects_v2()
            .bucket("mirror")
            .send()
            .await
            .is_ok_and(|l| l.key_count().unwrap_or(0) >= 2)
    })
    .await;
    let holders: Vec<bool> = gateways.iter().map(sends).collect();
    assert_eq!(
        holders.iter().filter(|h| **h).count(),
        1,
        "one sender per rule"
    );
    let dying = holders.iter().position(|h| *h).unwrap();
    let arrived = dst
        .list_objects_v2()
        .bucket("mirror")
        .send()
        .await
        .unwrap()
        .key_count()
        .unwrap_or(0);
    assert!(arrived < 12, "the transfer ended before the kill");
    gateways[dying].kill9();

    // The other gateway takes the rule over and the replica converges.
    let survivor = &gateways[1 - dying];
    mirrored(
        &survivor.client(),
        &dst,
        120,
        "the replica after the failover",
    )
    .await;
    assert!(sends(survivor), "{}", survivor.log());
    assert_no_panic(survivor);
    assert_no_panic(&replica);
}

#[tokio::test]
async fn every_gateways_streams_show_in_each_gateways_metrics() {
    let pg = Cluster::start();
    let site = Site::new(&pg.database("streams"), &[SHORT_LEASE]);
    let a = site.gateway_with(&[("HOARD_MAX_STREAMS", "5")]);
    let b = site.gateway_with(&[("HOARD_MAX_STREAMS", "7")]);
    let (a_id, b_id) = (gateway_id(&a), gateway_id(&b));
    a.client()
        .create_bucket()
        .bucket("busy")
        .send()
        .await
        .unwrap();
    let line = |id: &str, name: &str| format!("{name}{{gateway=\"{id}\"}} ");
    // An upload in progress on A shows in B's metrics within a renewal or two.
    let body = random_bytes(60, 16 << 20);
    let upload = start_partial_put(&a, "/busy/slow", &body, 8 << 20).await;
    eventually(15, "A's stream in B's metrics", || async {
        let text = metrics_text(&b).await;
        metric(&text, &line(&a_id, "hoard_cluster_streams_active")) == Some(1.0)
            && metric(&text, &line(&a_id, "hoard_cluster_streams_limit")) == Some(5.0)
            && metric(&text, &line(&b_id, "hoard_cluster_streams_limit")) == Some(7.0)
    })
    .await;
    drop(upload);
    eventually(15, "A's stream gone from B's metrics", || async {
        metric(
            &metrics_text(&b).await,
            &line(&a_id, "hoard_cluster_streams_active"),
        ) == Some(0.0)
    })
    .await;
    let (ok, text) = cli(&b, &["stats"]);
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!("gateway {a_id}: 0 of 5 ingest streams")),
        "{text}"
    );
    assert_no_panic(&a);
    assert_no_panic(&b);
}

#[tokio::test]
async fn a_body_stored_through_one_gateway_is_deduplicated_through_another() {
    let pg = Cluster::start();
    let site = Site::new(&pg.database("dedup"), &[]);
    let (a, b) = (site.gateway(), site.gateway());
    a.client()
        .create_bucket()
        .bucket("gens")
        .send()
        .await
        .unwrap();
    let body = random_bytes(70, 24 << 20);
    put_bytes(&a.client(), "gens", "monday", body.clone()).await;
    let stored = stats(&b).await.total.stored_bytes;
    // B's chunk filter reads the segments A sealed within a refresh or two (2 s).
    tokio::time::sleep(Duration::from_secs(5)).await;
    put_bytes(&b.client(), "gens", "tuesday", body.clone()).await;
    let total = stats(&a).await.total;
    assert!(
        total.stored_bytes < stored + (1 << 20),
        "the second copy through another gateway stored {} bytes more",
        total.stored_bytes - stored
    );
    assert_eq!(get_bytes(&a.client(), "gens", "tuesday").await, body);
    assert_no_panic(&b);
}

#[tokio::test]
async fn a_dead_gateways_unnamed_segment_files_go_at_the_next_pass() {
    let pg = Cluster::start();
    // A lease long enough for PostgreSQL's short stop below not to expire it.
    let site = Site::new(&pg.database("unnamed"), &[("HOARD_META_LEASE_SECS", "10")]);
    let mut a = site.gateway();
    let b = site.gateway();
    a.client()
        .create_bucket()
        .bucket("debris")
        .send()
        .await
        .unwrap();
    // A's segment upload waits on the frozen object store; PostgreSQL stops before
    // it lands, so the file is stored and no row will name it.
    site.store.freeze();
    let put = {
        let c = a.client();
        tokio::spawn(async move {
            c.put_object()
                .bucket("debris")
                .key("cut")
                .body(random_bytes(80, 6 << 20).into())
                .send()
                .await
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    pg.stop();
    site.store.thaw();
    let refused = put
        .await
        .unwrap()
        .expect_err("a PUT whose segment has no row");
    assert_eq!(status_of(&refused), 503, "{refused:?}");
    pg.resume();
    eventually(30, "B ready again", || async {
        admin(&b).verify(None, false).await.is_ok()
    })
    .await;

    // While A lives, its file may be a segment about to be named: kept.
    let report = admin(&b).gc(false, Some(Duration::ZERO)).await.unwrap();
    assert_eq!(report.orphans_removed, 0, "{report:?}");
    let orphans = admin(&b)
        .verify(None, false)
        .await
        .unwrap()
        .orphan_segments
        .clone();
    assert!(
        !orphans.is_empty(),
        "the cut upload left no file to test with"
    );

    // Once A is dead and its lease ran out, the next pass removes it.
    a.kill9();
    tokio::time::sleep(Duration::from_secs(13)).await;
    let report = admin(&b).gc(false, Some(Duration::ZERO)).await.unwrap();
    assert_eq!(report.orphans_removed, orphans.len() as u64, "{report:?}");
    let verified = admin(&b).verify(None, false).await.unwrap();
    assert!(verified.orphan_segments.is_empty(), "{verified:?}");
    assert!(verified.is_clean(), "{verified:?}");
    assert_no_panic(&b);
}

#[tokio::test]
async fn replication_status_and_manual_runs_answer_through_any_gateway() {
    let (replica, key) = replica_with_key(&[]);
    let pg = Cluster::start();
    let site = Site::new(&pg.database("status"), &[SHORT_LEASE]);
    let gateways: Vec<Server> = (0..2).map(|_| site.gateway()).collect();
    let (ok, text) = cli(&gateways[0], &["bucket", "create", "data"]);
    assert!(ok, "{text}");
    // A window twelve hours away: nothing is sent until a manual run.
    let hour = (hoard::meta::unix_secs() / 3600 + 12) % 24;
    let window = format!("{hour:02}:00-{hour:02}:30");
    let ca = replica.ca_pem().display().to_string();
    let (ok, text) = add_rule_for(
        &gateways[1],
        "data",
        &replica,
        &key,
        &["--target-ca", &ca, "--schedule", &window],
    );
    assert!(ok, "{text}");
    for i in 0..5u64 {
        let body = random_bytes(90 + i, 64 << 10);
        put_bytes(&gateways[0].client(), "data", &format!("k{i}"), body).await;
    }
    // Both gateways tell the same story: five changes waiting, and who sends them.
    let status = |g: &Server| cli(g, &["replication", "status", "data"]).1;
    eventually(30, "the queue in both gateways' status", || async {
        gateways
            .iter()
            .all(|g| status(g).contains("backlog: 5 change(s)"))
    })
    .await;
    let sender_of = |text: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix("sent by gateway "))
            .map(str::to_owned)
    };
    let senders: Vec<Option<String>> = gateways.iter().map(|g| sender_of(&status(g))).collect();
    assert!(
        senders[0].is_some() && senders[0] == senders[1],
        "{senders:?}"
    );
    let other = gateways
        .iter()
        .find(|g| Some(gateway_id(g)) != senders[0])
        .expect("a gateway that does not send the rule");

    // A manual run asked of the gateway that does not send reaches the one that does.
    let (ok, text) = cli(other, &["replication", "run", "data"]);
    assert!(ok, "{text}");
    mirrored(
        &gateways[0].client(),
        &replica.client(),
        60,
        "after the manual run",
    )
    .await;
    for g in &gateways {
        assert_no_panic(g);
    }
}
