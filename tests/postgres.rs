//! The PostgreSQL metadata engine as a gateway's operator sees it: schema migrations
//! at start-up, a schema from a newer hoard refused, gateways sharing one database,
//! `/health` and `/ready`, and a PostgreSQL restart under load. Each test runs its own
//! private cluster (scripts/pg-cluster.sh); the behaviour suites run on PostgreSQL too
//! through `HOARD_TEST_POSTGRES` (scripts/test.sh).

mod common;

use std::time::{Duration, Instant};

use common::*;

async fn http_get(s: &Server, path: &str) -> (u16, String) {
    let url = format!("{}{path}", s.endpoint());
    let r = reqwest::get(&url).await.expect("request");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

fn gateway(url: &str) -> Server {
    Server::start_with_env(&[], &[("HOARD_META", url)])
}

#[tokio::test]
async fn a_schema_newer_than_the_binary_is_refused_and_left_alone() {
    let pg = Cluster::start();
    let url = pg.database("newer");
    let mut s = gateway(&url);
    let c = s.client();
    c.create_bucket().bucket("kept").send().await.unwrap();
    put_bytes(&c, "kept", "k", b"payload".to_vec()).await;
    assert!(s.stop());

    // A later hoard migrated the database past what this binary knows.
    pg.execute(
        "newer",
        "INSERT INTO hoard.schema_migrations (version) VALUES (99)",
    );
    let before = database_bytes(&url);
    let said = s.serve_refused(&[], &[]);
    assert!(
        said.contains("schema version 99") && said.contains("upgrade hoard"),
        "{said}"
    );
    assert_eq!(
        database_bytes(&url),
        before,
        "the refused start changed rows"
    );

    // Back at the version it knows, the same database serves its objects again.
    pg.execute(
        "newer",
        "DELETE FROM hoard.schema_migrations WHERE version = 99",
    );
    s.restart();
    assert_eq!(get_bytes(&s.client(), "kept", "k").await, b"payload");
}

#[tokio::test]
async fn gateways_starting_together_migrate_once_and_share_every_commit() {
    let pg = Cluster::start();
    let url = pg.database("shared");
    // Three gateways on one database and one object store, started at once: the
    // migration lock lets one create the schema while the others wait and find it
    // done.
    let site = Site::new(&url, &[]);
    let gateways: Vec<Server> = std::thread::scope(|scope| {
        let starts: Vec<_> = (0..3).map(|_| scope.spawn(|| site.gateway())).collect();
        starts.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let versions = {
        let url = url.clone();
        std::thread::spawn(move || {
            let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            c.query(
                "SELECT version FROM hoard.schema_migrations ORDER BY version",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get::<_, i32>(0))
            .collect::<Vec<_>>()
        })
        .join()
        .unwrap()
    };
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/src/meta/pg"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "sql")
        })
        .count() as i32;
    assert_eq!(
        versions,
        (1..=files).collect::<Vec<_>>(),
        "each migration is applied once, in order"
    );

    let (a, b, c) = (
        gateways[0].client(),
        gateways[1].client(),
        gateways[2].client(),
    );
    a.create_bucket().bucket("one").send().await.unwrap();
    let body = random_bytes(7, 3 << 20);
    put_bytes(&a, "one", "obj", body.clone()).await;
    // A commit on one gateway is read and listed on the others at once.
    assert_eq!(get_bytes(&b, "one", "obj").await, body);
    let listed = c
        .list_objects_v2()
        .bucket("one")
        .send()
        .await
        .unwrap()
        .contents
        .unwrap_or_default();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].size, Some(body.len() as i64));
    // The same bytes again through another gateway are found in the shared index.
    put_bytes(&c, "one", "again", body.clone()).await;
    assert_eq!(get_bytes(&a, "one", "again").await, body);
    // A delete on one is seen by all.
    b.delete_object()
        .bucket("one")
        .key("obj")
        .send()
        .await
        .unwrap();
    refused!(a.head_object().bucket("one").key("obj"), "NotFound", 404);
}

#[tokio::test]
async fn a_postgres_restart_gives_503_and_then_recovers_with_nothing_half_committed() {
    let pg = Cluster::start();
    let s = gateway(&pg.database("restart"));
    let c = s.client();
    assert_eq!(http_get(&s, "/health").await, (200, "ok\n".into()));
    assert_eq!(http_get(&s, "/ready").await.0, 200);
    c.create_bucket().bucket("load").send().await.unwrap();
    let before = random_bytes(11, 2 << 20);
    put_bytes(&c, "load", "before", before.clone()).await;

    pg.stop();
    // The process is up; it is not ready, and says which part is missing.
    assert_eq!(http_get(&s, "/health").await.0, 200);
    let (status, why) = http_get(&s, "/ready").await;
    assert_eq!(status, 503, "{why}");
    assert!(why.contains("metadata"), "{why}");
    // Requests fail promptly with 503, never hang and never half-commit.
    let started = Instant::now();
    let put = c
        .put_object()
        .bucket("load")
        .key("during")
        .body(random_bytes(12, 2 << 20).into())
        .send()
        .await;
    let err = put.expect_err("a PUT without its database");
    assert_eq!(status_of(&err), 503, "{err:?}\n{}", s.log());
    let get = c.get_object().bucket("load").key("before").send().await;
    assert_eq!(
        status_of(&get.expect_err("a GET without its database")),
        503
    );
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "failing took {:?}",
        started.elapsed()
    );

    pg.resume();
    let mut ready = false;
    for _ in 0..100 {
        if http_get(&s, "/ready").await.0 == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "the gateway did not become ready again");
    // What was committed is there; the PUT that failed left no key.
    assert_eq!(get_bytes(&c, "load", "before").await, before);
    refused!(
        c.head_object().bucket("load").key("during"),
        "NotFound",
        404
    );
    let after = random_bytes(13, 1 << 20);
    put_bytes(&c, "load", "after", after.clone()).await;
    assert_eq!(get_bytes(&c, "load", "after").await, after);
    assert_no_panic(&s);
}

#[tokio::test]
async fn a_killed_gateways_upload_is_released_by_the_others_once_its_lease_expires() {
    let pg = Cluster::start();
    let url = pg.database("lease");
    let site = Site::new(&url, &[("HOARD_META_LEASE_SECS", "3")]);
    let mut a = site.gateway();
    let b = site.gateway();
    let c = a.client();
    c.create_bucket().bucket("crash").send().await.unwrap();
    let v1 = random_bytes(30, 6 << 20);
    put_bytes(&c, "crash", "key", v1.clone()).await;
    let v2 = random_bytes(31, 32 << 20);
    let conn = start_partial_put(&a, "/crash/key", &v2, 20 << 20).await;
    // Segments of the body are stored and indexed, their references held.
    tokio::time::sleep(Duration::from_millis(800)).await;
    a.kill9();
    drop(conn);

    // The other gateway serves the version that was committed...
    assert_eq!(get_bytes(&b.client(), "crash", "key").await, v1);
    // ...and once the dead gateway's lease has run out it releases what the killed
    // upload held, so a pass gives the space back.
    let mut freed = 0;
    for _ in 0..30 {
        let r = admin(&b).gc(false, Some(Duration::ZERO)).await.unwrap();
        freed += r.segments_deleted;
        if freed > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        freed > 0,
        "the killed upload's segments were never released"
    );
    assert!(
        b.log().contains("gateway whose lease expired"),
        "{}",
        b.log()
    );
    let report = admin(&b).verify(None, false).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(get_bytes(&b.client(), "crash", "key").await, v1);
    assert_no_panic(&b);
}

#[tokio::test]
async fn users_added_or_disabled_on_one_gateway_hold_on_the_others() {
    let pg = Cluster::start();
    let url = pg.database("users");
    let site = Site::new(&url, &[]);
    let a = site.gateway();
    let b = site.gateway();
    a.client()
        .create_bucket()
        .bucket("team")
        .send()
        .await
        .unwrap();

    // A user made on one gateway signs requests to the other at once.
    let key = add_user(&a, "veeam", &["team=readwrite"]);
    put_bytes(&client_as(&b, &key), "team", "from-b", b"b".to_vec()).await;
    assert_eq!(
        get_bytes(&client_as(&a, &key), "team", "from-b").await,
        b"b"
    );

    // Disabled on one, refused by the other within its refresh interval.
    admin(&a).set_user_enabled("veeam", false).await.unwrap();
    let mut refused_by_b = false;
    for _ in 0..100 {
        let r = client_as(&b, &key)
            .list_objects_v2()
            .bucket("team")
            .send()
            .await;
        if r.as_ref().err().map(code_of).as_deref() == Some("InvalidAccessKeyId") {
            refused_by_b = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        refused_by_b,
        "a disabled user's key still works on the other gateway"
    );
    assert_no_panic(&a);
    assert_no_panic(&b);
}

#[tokio::test]
async fn tls_to_postgres_is_required_and_verified_against_the_given_ca() {
    let pg = Cluster::start();
    // A private CA and a server certificate for 127.0.0.1: what `hoard serve --tls`
    // generates for itself.
    let certs = Server::start_with_env(&["--tls"], &[]);
    let tls = certs.data_dir().join("tls");
    pg.enable_tls(&tls.join("server.pem"), &tls.join("server.key"));
    let url = format!("{}?sslmode=require", pg.database("sealed"));
    let ca = tls.join("ca.pem").display().to_string();

    // With the CA, the gateway serves over an encrypted session.
    let s = Server::start_with_env(&[], &[("HOARD_META", &url), ("HOARD_META_CA", &ca)]);
    let c = s.client();
    c.create_bucket().bucket("sealed").send().await.unwrap();
    put_bytes(&c, "sealed", "k", b"over tls".to_vec()).await;
    assert_eq!(get_bytes(&c, "sealed", "k").await, b"over tls");
    let encrypted = pg.query_text(
        "sealed",
        "SELECT count(*)::text FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
         WHERE application_name = 'hoard' AND ssl",
    );
    assert_ne!(encrypted, "0", "no encrypted session of hoard's");
    let plain = pg.query_text(
        "sealed",
        "SELECT count(*)::text FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
         WHERE application_name = 'hoard' AND NOT ssl",
    );
    assert_eq!(plain, "0", "a session of hoard's in the clear");

    // Without a CA file, sslmode=require is refused at start, and so is a CA that
    // did not sign the server's certificate.
    let dir = tempfile::tempdir().unwrap();
    let said = serve_refused(dir.path(), &[], &[("HOARD_META", &url)]);
    assert!(
        said.contains("sslmode=require") && said.contains("HOARD_META_CA"),
        "{said}"
    );
    let other = Server::start_with_env(&["--tls"], &[]);
    let wrong = other.data_dir().join("tls/ca.pem").display().to_string();
    let said = serve_refused(
        dir.path(),
        &[],
        &[("HOARD_META", &url), ("HOARD_META_CA", &wrong)],
    );
    assert!(said.contains("certificate"), "{said}");
    assert_no_panic(&s);
}
