//! A plain S3 bucket as a replica: s3s-fs and moto's server as targets, each
//! behind the fault proxy. Objects are rehydrated and written with PUT or multipart;
//! the target's objects are byte-identical to the source's, versions arrive in the
//! source's order, deletes become deletes or delete markers, tags and metadata
//! travel, and nothing is skipped across a flaky link and a kill -9 of the source.

use super::*;
use aws_sdk_s3::primitives::ByteStream;

/// `hoard replication add` of `source`'s `data` towards a plain S3 bucket.
fn add_s3_rule(source: &Server, endpoint: &str, bucket: &str, key: (&str, &str)) {
    let (ok, text) = cli(
        source,
        &[
            "replication",
            "add",
            "--bucket",
            "data",
            "--target",
            endpoint,
            "--target-bucket",
            bucket,
            "--target-access-key",
            key.0,
            "--target-secret-key",
            key.1,
            "--target-kind",
            "s3",
        ],
    );
    assert!(ok && text.contains("plain S3 bucket"), "{text}");
}

/// Key -> SHA-256 of the body of every object in a bucket.
async fn sums(c: &aws_sdk_s3::Client, bucket: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(listed) = c.list_objects_v2().bucket(bucket).send().await else {
        return out;
    };
    for o in listed.contents() {
        let key = o.key().unwrap().to_owned();
        let Ok(got) = c.get_object().bucket(bucket).key(&key).send().await else {
            return Vec::new();
        };
        let body = got.body.collect().await.unwrap().into_bytes();
        out.push((key, hex::encode(sha256(&body))));
    }
    out
}

// The proxy runs on the test's runtime while the CLI blocks a thread: two workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3s_fs_bucket_behind_a_flaky_link_gets_every_object_byte_identical() {
    let store = S3Fs::start("copies");
    let proxy = FaultProxy::start(([127, 0, 0, 1], store.port).into()).await;
    let mut source = source_with_bucket();
    let endpoint = format!("http://{}", proxy.addr);
    add_s3_rule(
        &source,
        &endpoint,
        "copies",
        (S3FS_ACCESS_KEY, S3FS_SECRET_KEY),
    );
    let src = source.client();
    proxy.chaos.store(true, std::sync::atomic::Ordering::SeqCst);
    // 40 MiB: a multipart upload of three 16 MiB parts at most.
    put_bytes(&src, "data", "big.bin", random_bytes(7, 40 << 20)).await;
    src.put_object()
        .bucket("data")
        .key("dir/meta é.txt")
        .content_type("text/x-hoard")
        .metadata("job", "nightly")
        .body(ByteStream::from_static(b"with metadata"))
        .send()
        .await
        .unwrap();
    for i in 0..40u64 {
        put_bytes(
            &src,
            "data",
            &format!("small/{i}"),
            random_bytes(100 + i, 3000),
        )
        .await;
    }
    put_bytes(&src, "data", "small/3", b"overwritten".to_vec()).await;
    put_bytes(&src, "data", "gone", b"short-lived".to_vec()).await;
    delete_keys(&src, "data", &["gone"]).await;
    // The source dies mid-transfer; what it acknowledged still goes.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    source.kill9();
    source.restart();
    let src = source.client();
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    proxy
        .chaos
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let dst = client_for(&store.endpoint(), S3FS_ACCESS_KEY, S3FS_SECRET_KEY, true);
    let expected = sums(&src, "data").await;
    assert_eq!(expected.len(), 42);
    eventually(180, "the S3 bucket holds what the source holds", || async {
        sums(&dst, "copies").await == expected
    })
    .await;
    let head = dst
        .head_object()
        .bucket("copies")
        .key("dir/meta é.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("text/x-hoard"));
    let meta = head.metadata().unwrap();
    assert_eq!(meta.get("job").map(String::as_str), Some("nightly"));
    let (ok, text) = cli(&source, &["replication", "status", "data"]);
    assert!(ok && text.contains("backlog: 0 change(s)"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_versioned_moto_bucket_gets_versions_in_order_tags_and_delete_markers() {
    use aws_sdk_s3::types::BucketVersioningStatus::Enabled;
    let moto = Moto::start("copies").await;
    let dst = moto.client();
    set_versioning(&dst, "copies", Enabled).await;
    let proxy = FaultProxy::start(([127, 0, 0, 1], moto.port).into()).await;
    let source = source_with_bucket();
    let src = source.client();
    set_versioning(&src, "data", Enabled).await;
    add_s3_rule(
        &source,
        &format!("http://{}", proxy.addr),
        "copies",
        ("motokey", "motosecret"),
    );
    proxy.chaos.store(true, std::sync::atomic::Ordering::SeqCst);
    for body in [&b"one"[..], b"two", b"three"] {
        put_version(&src, "doc", body).await;
    }
    set_tag(&src, "doc", ("job", "nightly")).await;
    put_version(&src, "gone", b"short-lived").await;
    delete_keys(&src, "data", &["gone"]).await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    proxy
        .chaos
        .store(false, std::sync::atomic::Ordering::SeqCst);

    // Versions newest first, as ListObjectVersions gives them.
    let bodies = || async {
        let listed = dst
            .list_object_versions()
            .bucket("copies")
            .prefix("doc")
            .send()
            .await
            .unwrap();
        let mut out = Vec::new();
        for v in listed.versions() {
            out.push(get_version(&dst, "copies", "doc", v.version_id().unwrap()).await);
        }
        out
    };
    // A PUT whose answer the proxy cut is sent again, and S3 has no idempotent PUT:
    // on a versioned target that version may then be there twice, next to itself.
    // Nothing is missing and the order is the source's.
    let distinct = || async {
        let mut b = bodies().await;
        b.dedup();
        b
    };
    eventually(120, "the three versions arrive", || async {
        distinct().await.len() == 3
    })
    .await;
    assert_eq!(distinct().await, [&b"three"[..], b"two", b"one"]);
    eventually(
        60,
        "the tag change and the delete marker arrive",
        || async {
            let tags = dst
                .get_object_tagging()
                .bucket("copies")
                .key("doc")
                .send()
                .await;
            let tagged = tags.is_ok_and(|t| {
                t.tag_set()
                    .iter()
                    .any(|t| t.key() == "job" && t.value() == "nightly")
            });
            let gone = dst
                .list_object_versions()
                .bucket("copies")
                .prefix("gone")
                .send()
                .await
                .unwrap();
            let marked = gone
                .delete_markers()
                .iter()
                .any(|m| m.is_latest() == Some(true));
            // (The same goes for the deleted key's one version.)
            tagged && marked && !gone.versions().is_empty()
        },
    )
    .await;
}
