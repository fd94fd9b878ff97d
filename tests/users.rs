//! Users, keys and per-bucket grants, driven as an admin does (the `hoard user` CLI)
//! and as the users' S3 clients do (aws-sdk-s3 with each user's keys).

mod common;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketVersioningStatus, Delete, ObjectIdentifier, VersioningConfiguration,
};
use common::*;

async fn keys(c: &aws_sdk_s3::Client, bucket: &str) -> Vec<String> {
    let out = c.list_objects_v2().bucket(bucket).send().await.unwrap();
    out.contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn each_grant_allows_exactly_what_it_names() {
    let s = Server::start();
    let root = s.client();
    for b in ["shared", "other"] {
        root.create_bucket().bucket(b).send().await.unwrap();
    }
    put_bytes(&root, "shared", "seed", b"seed bytes".to_vec()).await;
    put_bytes(&root, "other", "secret-doc", b"not for them".to_vec()).await;

    let made = [
        add_user(&s, "reader", &["shared=readonly"]),
        add_user(&s, "writer", &["shared=writeonly"]),
        add_user(&s, "rw", &["shared=readwrite"]),
    ];
    let [reader, writer, rw] = made.each_ref().map(|k| client_as(&s, k));

    // readonly: reads and lists, cannot write or delete; nothing changes.
    assert_eq!(get_bytes(&reader, "shared", "seed").await, b"seed bytes");
    assert_eq!(keys(&reader, "shared").await, ["seed"]);
    refused!(
        reader
            .put_object()
            .bucket("shared")
            .key("new")
            .body(ByteStream::from_static(b"x")),
        "AccessDenied",
        403
    );
    refused!(
        reader.delete_object().bucket("shared").key("seed"),
        "AccessDenied",
        403
    );
    let one = Delete::builder()
        .objects(ObjectIdentifier::builder().key("seed").build().unwrap())
        .build()
        .unwrap();
    refused!(
        reader.delete_objects().bucket("shared").delete(one),
        "AccessDenied",
        403
    );
    refused!(
        reader.create_multipart_upload().bucket("shared").key("mp"),
        "AccessDenied",
        403
    );
    refused!(
        reader.get_object().bucket("other").key("secret-doc"),
        "AccessDenied",
        403
    );
    assert_eq!(keys(&root, "shared").await, ["seed"]);
    assert_eq!(get_bytes(&root, "shared", "seed").await, b"seed bytes");
    // ListBuckets shows only the buckets a user holds a grant on.
    let listed = reader.list_buckets().send().await.unwrap();
    let names: Vec<_> = listed.buckets().iter().filter_map(|b| b.name()).collect();
    assert_eq!(names, ["shared"]);

    // writeonly: writes (single and multipart) and deletes, cannot read or list.
    put_bytes(&writer, "shared", "backup-1", b"first backup".to_vec()).await;
    let up = writer
        .create_multipart_upload()
        .bucket("shared")
        .key("backup-2")
        .send()
        .await
        .unwrap();
    let id = up.upload_id().unwrap();
    let part_body = random_bytes(7, 5 * 1024 * 1024 + 3);
    let part = writer
        .upload_part()
        .bucket("shared")
        .key("backup-2")
        .upload_id(id)
        .part_number(1)
        .body(ByteStream::from(part_body.clone()))
        .send()
        .await
        .unwrap();
    let parts = writer
        .list_parts()
        .bucket("shared")
        .key("backup-2")
        .upload_id(id)
        .send()
        .await
        .unwrap();
    assert_eq!(parts.parts().len(), 1, "a writer may resume its uploads");
    writer
        .complete_multipart_upload()
        .bucket("shared")
        .key("backup-2")
        .upload_id(id)
        .multipart_upload(completed(&[part.e_tag().unwrap()]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        get_bytes(&root, "shared", "backup-1").await,
        b"first backup"
    );
    assert_eq!(get_bytes(&root, "shared", "backup-2").await, part_body);
    writer.head_bucket().bucket("shared").send().await.unwrap();
    refused!(
        writer.get_object().bucket("shared").key("backup-1"),
        "AccessDenied",
        403
    );
    let head = writer
        .head_object()
        .bucket("shared")
        .key("backup-1")
        .send()
        .await
        .expect_err("HEAD must be refused");
    assert_eq!(status_of(&head), 403);
    refused!(
        writer.list_objects_v2().bucket("shared"),
        "AccessDenied",
        403
    );
    refused!(writer.list_objects().bucket("shared"), "AccessDenied", 403);
    refused!(
        writer.list_object_versions().bucket("shared"),
        "AccessDenied",
        403
    );
    // A copy reads its source, so a writer cannot copy what it cannot read.
    refused!(
        writer
            .copy_object()
            .bucket("shared")
            .key("copy")
            .copy_source("shared/backup-1"),
        "AccessDenied",
        403
    );
    writer
        .delete_object()
        .bucket("shared")
        .key("backup-1")
        .send()
        .await
        .unwrap();
    assert_eq!(keys(&root, "shared").await, ["backup-2", "seed"]);

    // readwrite: everything on objects, but not the bucket itself, and not the
    // objects of a bucket it has no grant on (also as a copy source).
    rw.copy_object()
        .bucket("shared")
        .key("seed-copy")
        .copy_source("shared/seed")
        .send()
        .await
        .unwrap();
    assert_eq!(get_bytes(&rw, "shared", "seed-copy").await, b"seed bytes");
    refused!(
        rw.copy_object()
            .bucket("shared")
            .key("stolen")
            .copy_source("other/secret-doc"),
        "AccessDenied",
        403
    );
    refused!(rw.delete_bucket().bucket("shared"), "AccessDenied", 403);
    refused!(
        rw.put_bucket_versioning()
            .bucket("shared")
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build()
            ),
        "AccessDenied",
        403
    );
    refused!(rw.create_bucket().bucket("rw-made"), "AccessDenied", 403);
    let all = root.list_buckets().send().await.unwrap();
    assert_eq!(all.buckets().len(), 2, "refused calls created nothing");

    // An admin grant on a bucket that does not exist yet lets its holder create it.
    let owner = client_as(&s, &add_user(&s, "owner", &["team-a=admin"]));
    owner.create_bucket().bucket("team-a").send().await.unwrap();
    put_bytes(&owner, "team-a", "k", b"v".to_vec()).await;
    set_versioning(&owner, "team-a", BucketVersioningStatus::Enabled).await;
    refused!(owner.create_bucket().bucket("team-b"), "AccessDenied", 403);

    // Refusals are logged; secrets never are.
    let log = s.log();
    assert!(log.contains("access denied"), "refusals are logged");
    for k in &made {
        assert!(!log.contains(&k.secret), "a secret reached the log");
    }
    assert_no_panic(&s);
}

#[tokio::test]
async fn the_admin_api_needs_the_admin_grant_on_every_bucket() {
    let s = Server::start();
    let bucket_admin = add_user(&s, "bucket-admin", &["logs=admin"]);
    let ops = add_user(&s, "ops", &["*=admin"]);
    let endpoint = s.endpoint();
    let as_user = |k: &Key, args: &[&str]| {
        cli_env(
            &[
                ("HOARD_ENDPOINT", endpoint.as_str()),
                ("HOARD_ACCESS_KEY", k.access.as_str()),
                ("HOARD_SECRET_KEY", k.secret.as_str()),
            ],
            args,
        )
    };
    let (ok, text) = as_user(&bucket_admin, &["stats"]);
    assert!(
        !ok && text.contains("403") && text.contains("AccessDenied"),
        "{text}"
    );
    let (ok, text) = as_user(
        &bucket_admin,
        &["user", "add", "sneaky", "--grant", "*=admin"],
    );
    assert!(!ok && text.contains("AccessDenied"), "{text}");
    let (ok, text) = as_user(&ops, &["user", "list"]);
    assert!(
        !text.contains("sneaky"),
        "a refused call added nobody: {text}"
    );

    // A holder of admin on * runs the admin verbs and manages users.
    assert!(ok, "{text}");
    assert!(
        text.contains("bucket-admin") && text.contains("logs=admin"),
        "{text}"
    );
    assert!(text.contains("ops") && text.contains("*=admin"), "{text}");
    assert!(!text.contains(&ops.secret) && !text.contains(&bucket_admin.secret));
    let (ok, text) = as_user(&ops, &["bucket", "create", "made-by-ops"]);
    assert!(ok, "{text}");
    let (ok, text) = as_user(&ops, &["stats"]);
    assert!(ok && text.contains("made-by-ops"), "{text}");
    let (ok, text) = as_user(
        &ops,
        &["user", "grant", "bucket-admin", "made-by-ops", "readonly"],
    );
    assert!(ok && text.contains("made-by-ops=readonly"), "{text}");
    let (ok, text) = as_user(&ops, &["user", "revoke", "bucket-admin", "logs"]);
    assert!(ok && !text.contains("logs="), "{text}");
    let (ok, text) = as_user(&ops, &["user", "grant", "bucket-admin", "*", "readonly"]);
    assert!(ok && text.contains("*=readonly"), "{text}");
    let (ok, text) = as_user(&ops, &["user", "revoke", "bucket-admin", "*"]);
    assert!(ok && !text.contains("*="), "{text}");

    // Bad input: clear errors, nothing changed.
    let (ok, text) = cli(&s, &["user", "add", "ops"]);
    assert!(!ok && text.contains("EntityAlreadyExists"), "{text}");
    let (ok, text) = cli(&s, &["user", "add", "bad name!"]);
    assert!(!ok && text.contains("invalid user name"), "{text}");
    let (ok, text) = cli(&s, &["user", "add", "x1", "--grant", "Bad_Bucket=readonly"]);
    assert!(!ok && text.contains("InvalidArgument"), "{text}");
    let (ok, text) = cli(&s, &["user", "add", "x2", "--grant", "b12=superuser"]);
    assert!(!ok && text.contains("unknown permission"), "{text}");
    let (ok, text) = cli(&s, &["user", "disable", "nobody"]);
    assert!(!ok && text.contains("NoSuchEntity"), "{text}");
    let (_, text) = cli(&s, &["user", "list"]);
    assert!(!text.contains("x1") && !text.contains("x2"), "{text}");
}

#[tokio::test]
async fn disabled_removed_and_rotated_away_keys_are_refused_and_users_survive_restarts() {
    let mut s = Server::start();
    s.client()
        .create_bucket()
        .bucket("vault")
        .send()
        .await
        .unwrap();
    let first = add_user(&s, "veeam", &["vault=readwrite"]);
    put_bytes(&client_as(&s, &first), "vault", "a", b"1".to_vec()).await;

    let (ok, text) = cli(&s, &["user", "disable", "veeam"]);
    assert!(ok, "{text}");
    refused!(
        client_as(&s, &first).list_objects_v2().bucket("vault"),
        "InvalidAccessKeyId",
        403
    );
    let (_, listed) = cli(&s, &["user", "list"]);
    assert!(listed.contains("disabled"), "{listed}");
    let (ok, text) = cli(&s, &["user", "enable", "veeam"]);
    assert!(ok, "{text}");
    assert_eq!(keys(&client_as(&s, &first), "vault").await, ["a"]);

    let (ok, text) = cli(&s, &["user", "rotate-key", "veeam"]);
    assert!(ok, "{text}");
    let second = parse_key(&text);
    assert_ne!(second.access, first.access);
    refused!(
        client_as(&s, &first).list_objects_v2().bucket("vault"),
        "InvalidAccessKeyId",
        403
    );
    // The old access key with the new secret is no better.
    let mixed = Key {
        access: first.access.clone(),
        secret: second.secret.clone(),
    };
    refused!(
        client_as(&s, &mixed).list_objects_v2().bucket("vault"),
        "InvalidAccessKeyId",
        403
    );
    put_bytes(&client_as(&s, &second), "vault", "b", b"2".to_vec()).await;

    // Users, keys and grants survive a crash; the secret is stored only sealed.
    s.kill9();
    let meta = s.metadata_bytes();
    for secret in [&first.secret, &second.secret] {
        assert!(
            !meta.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "a secret is stored in the clear"
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(s.data_dir().join("secrets.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Started with another secrets key, the server refuses to start and says why.
    let said = s.serve_refused(&[], &[("HOARD_SECRETS_KEY", &"11".repeat(32))]);
    assert!(
        said.contains("veeam") && said.contains("secrets key"),
        "{said}"
    );

    s.restart();
    assert_eq!(keys(&client_as(&s, &second), "vault").await, ["a", "b"]);
    refused!(
        client_as(&s, &first).list_objects_v2().bucket("vault"),
        "InvalidAccessKeyId",
        403
    );

    let (ok, text) = cli(&s, &["user", "remove", "veeam"]);
    assert!(ok, "{text}");
    refused!(
        client_as(&s, &second).list_objects_v2().bucket("vault"),
        "InvalidAccessKeyId",
        403
    );
    let (_, listed) = cli(&s, &["user", "list"]);
    assert!(!listed.contains("veeam"), "{listed}");
    assert_eq!(keys(&s.client(), "vault").await, ["a", "b"], "data stays");
    let log = s.log();
    for secret in [&first.secret, &second.secret] {
        assert!(!log.contains(secret.as_str()), "a secret reached the log");
    }
}

#[tokio::test]
async fn the_cli_reads_endpoint_and_keys_from_its_config_file() {
    let s = Server::start_with(&["--tls"]);
    let ops = add_user(&s, "ops", &["*=admin"]);
    let reader = add_user(&s, "reader", &["*=readonly"]);
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join(".config").join("hoard");
    std::fs::create_dir_all(&dir).unwrap();
    let write_config = |k: &Key| {
        let text = format!(
            "endpoint = \"{}\"\naccess_key = \"{}\"\nsecret_key = \"{}\"\nca = \"{}\"\n",
            s.endpoint(),
            k.access,
            k.secret,
            s.ca_pem().display()
        );
        std::fs::write(dir.join("cli.toml"), text).unwrap();
    };
    let home_env = home.path().display().to_string();
    let in_home = |args: &[&str]| cli_env(&[("HOME", home_env.as_str())], args);

    write_config(&ops);
    let (ok, text) = in_home(&["user", "list"]);
    assert!(ok && text.contains("reader"), "{text}");
    // A secret in a file others can read earns a warning.
    assert!(text.contains("chmod 600"), "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join("cli.toml"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
    }
    let (ok, text) = in_home(&["stats"]);
    assert!(ok && !text.contains("chmod"), "{text}");

    // The file's keys are the reader's: refused; flags win over the file.
    write_config(&reader);
    let (ok, text) = in_home(&["stats"]);
    assert!(!ok && text.contains("AccessDenied"), "{text}");
    let (ok, text) = in_home(&[
        "stats",
        "--access-key",
        &ops.access,
        "--secret-key",
        &ops.secret,
    ]);
    assert!(ok, "{text}");

    // A broken file is named in the error.
    std::fs::write(dir.join("cli.toml"), "endpoint = [").unwrap();
    let (ok, text) = in_home(&["stats"]);
    assert!(!ok && text.contains("cli.toml"), "{text}");
}
