//! S3 bucket policies on top of hoard's users and grants: Put/Get/DeleteBucketPolicy
//! and GetBucketPolicyStatus validated and answered as S3 does, explicit Deny over
//! every grant, Allow adding access, conditions on the facts a request brings
//! (source address, referer, tags, listing parameters), and the public access
//! block's BlockPublicPolicy and RestrictPublicBuckets.

mod common;

use aws_sdk_s3::types::{
    Delete, ObjectCannedAcl, ObjectIdentifier, PublicAccessBlockConfiguration, Tag, Tagging,
};
use common::*;
use reqwest::Method;

/// The ARN bucket policies name `user` by, as `hoard user list` shows it.
async fn arn_of(s: &Server, user: &str) -> String {
    let users = admin(s).users().await.unwrap();
    let u = users.iter().find(|u| u.name == user).expect("the user");
    u.arn.clone()
}

fn policy(statements: &str) -> String {
    format!(r#"{{"Version":"2012-10-17","Statement":[{statements}]}}"#)
}

async fn put_policy(c: &aws_sdk_s3::Client, bucket: &str, text: &str) {
    c.put_bucket_policy()
        .bucket(bucket)
        .policy(text)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}: {text}"));
}

/// An unsigned request with optional headers.
async fn anonymous(s: &Server, method: Method, path: &str, headers: &[(&str, &str)]) -> u16 {
    let mut r = reqwest::Client::new().request(method, format!("{}{}", s.endpoint(), path));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn policies_are_put_answered_and_validated_as_s3_does() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("ruled").send().await.unwrap();
    let reader = client_as(&s, &add_user(&s, "reader", &["ruled=readonly"]));
    let writer = client_as(&s, &add_user(&s, "writer", &["ruled=readwrite"]));
    refused!(
        c.get_bucket_policy().bucket("ruled"),
        "NoSuchBucketPolicy",
        404
    );
    refused!(
        c.get_bucket_policy_status().bucket("ruled"),
        "NoSuchBucketPolicy",
        404
    );
    refused!(c.get_bucket_policy().bucket("nowhere"), "NoSuchBucket", 404);

    // What S3 refuses as MalformedPolicy, hoard refuses, and nothing is stored.
    let reader_arn = arn_of(&s, "reader").await;
    let malformed = [
        "not json".to_owned(),
        policy(
            r#"{"Effect":"Allow","Principal":"*","Action":"s3:GetObjekt","Resource":"arn:aws:s3:::ruled/*"}"#,
        ),
        policy(
            r#"{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::other/*"}"#,
        ),
        policy(
            r#"{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam:::user/nobody-here"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::ruled/*"}"#,
        ),
        policy(
            r#"{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::ruled"}"#,
        ),
    ];
    for text in &malformed {
        let err = c
            .put_bucket_policy()
            .bucket("ruled")
            .policy(text)
            .send()
            .await
            .expect_err(text);
        assert_eq!(
            (code_of(&err).as_str(), status_of(&err)),
            ("MalformedPolicy", 400),
            "{text}"
        );
    }
    refused!(
        c.get_bucket_policy().bucket("ruled"),
        "NoSuchBucketPolicy",
        404
    );

    // A policy naming a user is stored as written and is not public.
    let private = policy(&format!(
        r#"{{"Sid":"ReaderLists","Effect":"Allow","Principal":{{"AWS":"{reader_arn}"}},"Action":"s3:ListBucket","Resource":"arn:aws:s3:::ruled"}}"#
    ));
    refused!(
        writer.put_bucket_policy().bucket("ruled").policy(&private),
        "AccessDenied",
        403
    );
    put_policy(&c, "ruled", &private).await;
    let got = reader.get_bucket_policy().bucket("ruled").send().await;
    assert_eq!(got.unwrap().policy(), Some(private.as_str()));
    let status = c.get_bucket_policy_status().bucket("ruled").send().await;
    let status = status.unwrap().policy_status().cloned().unwrap();
    assert_eq!(status.is_public(), Some(false));

    // A policy allowing everyone is public, and BlockPublicPolicy refuses it.
    let public = policy(
        r#"{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::ruled/*"}"#,
    );
    put_policy(&c, "ruled", &public).await;
    let status = c.get_bucket_policy_status().bucket("ruled").send().await;
    assert_eq!(
        status.unwrap().policy_status().unwrap().is_public(),
        Some(true)
    );
    c.put_public_access_block()
        .bucket("ruled")
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_policy(true)
                .build(),
        )
        .send()
        .await
        .unwrap();
    refused!(
        c.put_bucket_policy().bucket("ruled").policy(&public),
        "AccessDenied",
        403
    );
    put_policy(&c, "ruled", &private).await;

    c.delete_bucket_policy()
        .bucket("ruled")
        .send()
        .await
        .unwrap();
    refused!(
        c.get_bucket_policy().bucket("ruled"),
        "NoSuchBucketPolicy",
        404
    );
    c.delete_bucket_policy()
        .bucket("ruled")
        .send()
        .await
        .unwrap();
    assert_no_panic(&s);
}

#[tokio::test]
async fn deny_wins_over_grants_and_allow_adds_access() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("vault").send().await.unwrap();
    let alice = client_as(&s, &add_user(&s, "alice", &[]));
    let bob = client_as(&s, &add_user(&s, "bob", &["vault=readwrite"]));
    let (alice_arn, bob_arn) = (arn_of(&s, "alice").await, arn_of(&s, "bob").await);
    for key in [
        "shared/a", "other/b", "keep/c", "tmp/d", "public/p", "locked/l",
    ] {
        put_bytes(&c, "vault", key, key.as_bytes().to_vec()).await;
    }
    put_policy(
        &c,
        "vault",
        &policy(&format!(
            r#"{{"Effect":"Allow","Principal":{{"AWS":"{alice_arn}"}},"Action":"s3:GetObject","Resource":"arn:aws:s3:::vault/shared/*"}},
               {{"Effect":"Allow","Principal":{{"AWS":["{alice_arn}"]}},"Action":"s3:ListBucket","Resource":"arn:aws:s3:::vault","Condition":{{"StringLike":{{"s3:prefix":"shared/*"}}}}}},
               {{"Effect":"Deny","Principal":{{"AWS":"{bob_arn}"}},"Action":["s3:DeleteObject","s3:DeleteObjectVersion"],"Resource":"arn:aws:s3:::vault/keep/*"}},
               {{"Effect":"Deny","Principal":"*","Action":"s3:PutObject","Resource":"arn:aws:s3:::vault/*","Condition":{{"StringEquals":{{"s3:x-amz-acl":"public-read"}}}}}},
               {{"Effect":"Deny","Principal":"*","Action":"s3:DeleteObject","Resource":"arn:aws:s3:::vault/locked/*"}},
               {{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::vault/public/*"}}"#
        )),
    )
    .await;

    // Allow: alice holds no grant, yet reads and lists what the policy gives her.
    assert_eq!(get_bytes(&alice, "vault", "shared/a").await, b"shared/a");
    refused!(
        alice.get_object().bucket("vault").key("other/b"),
        "AccessDenied",
        403
    );
    let listed = alice
        .list_objects_v2()
        .bucket("vault")
        .prefix("shared/")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.key_count(), Some(1));
    refused!(alice.list_objects_v2().bucket("vault"), "AccessDenied", 403);
    refused!(
        alice
            .put_object()
            .bucket("vault")
            .key("shared/new")
            .body(b"x".to_vec().into()),
        "AccessDenied",
        403
    );

    // Deny: bob's readwrite grant does not delete what the policy keeps.
    refused!(
        bob.delete_object().bucket("vault").key("keep/c"),
        "AccessDenied",
        403
    );
    bob.delete_object()
        .bucket("vault")
        .key("other/b")
        .send()
        .await
        .unwrap();
    let batch = bob
        .delete_objects()
        .bucket("vault")
        .delete(
            Delete::builder()
                .objects(ObjectIdentifier::builder().key("keep/c").build().unwrap())
                .objects(ObjectIdentifier::builder().key("tmp/d").build().unwrap())
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let deleted: Vec<_> = batch.deleted().iter().filter_map(|d| d.key()).collect();
    assert_eq!(deleted, ["tmp/d"]);
    let errors: Vec<_> = batch
        .errors()
        .iter()
        .map(|e| (e.key().unwrap_or_default(), e.code().unwrap_or_default()))
        .collect();
    assert_eq!(errors, [("keep/c", "AccessDenied")]);
    assert_eq!(get_bytes(&c, "vault", "keep/c").await, b"keep/c");

    // A condition on the request's headers: no public-read uploads, for anyone.
    refused!(
        bob.put_object()
            .bucket("vault")
            .key("up")
            .acl(ObjectCannedAcl::PublicRead)
            .body(b"x".to_vec().into()),
        "AccessDenied",
        403
    );
    put_bytes(&bob, "vault", "up", b"private".to_vec()).await;

    // A Deny to everyone holds root too, but root may always mend the policy.
    refused!(
        c.delete_object().bucket("vault").key("locked/l"),
        "AccessDenied",
        403
    );

    // Anonymous: what "*" is allowed, nothing else.
    assert_eq!(
        anonymous(&s, Method::GET, "/vault/public/p", &[]).await,
        200
    );
    assert_eq!(
        anonymous(&s, Method::GET, "/vault/shared/a", &[]).await,
        403
    );
    assert_eq!(
        anonymous(&s, Method::GET, "/nothere/public/p", &[]).await,
        404
    );

    // RestrictPublicBuckets: the public statement counts for signed principals only.
    c.put_public_access_block()
        .bucket("vault")
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .restrict_public_buckets(true)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        anonymous(&s, Method::GET, "/vault/public/p", &[]).await,
        403
    );
    assert_eq!(get_bytes(&alice, "vault", "public/p").await, b"public/p");

    put_policy(
        &c,
        "vault",
        &policy(
            r#"{"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":["arn:aws:s3:::vault","arn:aws:s3:::vault/*"]}"#,
        ),
    )
    .await;
    refused!(c.list_objects_v2().bucket("vault"), "AccessDenied", 403);
    refused!(
        bob.get_object().bucket("vault").key("up"),
        "AccessDenied",
        403
    );
    c.get_bucket_policy().bucket("vault").send().await.unwrap();
    c.delete_bucket_policy()
        .bucket("vault")
        .send()
        .await
        .unwrap();
    assert_eq!(get_bytes(&bob, "vault", "up").await, b"private");
    assert_no_panic(&s);
}

#[tokio::test]
async fn conditions_judge_address_referer_tags_and_listing_parameters() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("cond").send().await.unwrap();
    c.create_bucket().bucket("source").send().await.unwrap();
    let alice = client_as(&s, &add_user(&s, "alice", &["copies=readwrite"]));
    let bob = client_as(
        &s,
        &add_user(&s, "bob", &["cond=readwrite", "source=readonly"]),
    );
    let alice_arn = arn_of(&s, "alice").await;
    c.create_bucket().bucket("copies").send().await.unwrap();
    let tagged = |k: &str, v: &str| {
        Tagging::builder()
            .tag_set(Tag::builder().key(k).value(v).build().unwrap())
            .build()
            .unwrap()
    };
    for (key, share) in [("yes.txt", "yes"), ("no.txt", "no")] {
        put_bytes(&c, "cond", key, key.as_bytes().to_vec()).await;
        c.put_object_tagging()
            .bucket("cond")
            .key(key)
            .tagging(tagged("share", share))
            .send()
            .await
            .unwrap();
    }
    put_bytes(&c, "cond", "site/page", b"page".to_vec()).await;
    put_bytes(&c, "cond", "blocked/x", b"x".to_vec()).await;
    put_policy(
        &c,
        "cond",
        &policy(&format!(
            r#"{{"Effect":"Allow","Principal":{{"AWS":"{alice_arn}"}},"Action":"s3:GetObject","Resource":"arn:aws:s3:::cond/*","Condition":{{"StringEquals":{{"s3:ExistingObjectTag/share":"yes"}}}}}},
               {{"Effect":"Allow","Principal":{{"AWS":"{alice_arn}"}},"Action":"s3:ListBucket","Resource":"arn:aws:s3:::cond","Condition":{{"NumericLessThanEquals":{{"s3:max-keys":"10"}}}}}},
               {{"Effect":"Deny","Principal":"*","Action":["s3:PutObjectTagging","s3:PutObject"],"Resource":"arn:aws:s3:::cond/*","Condition":{{"StringEquals":{{"s3:RequestObjectTag/class":"secret"}}}}}},
               {{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::cond/site/*","Condition":{{"StringLike":{{"aws:Referer":"https://site.example/*"}}}}}},
               {{"Effect":"Deny","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::cond/blocked/*","Condition":{{"IpAddress":{{"aws:SourceIp":"127.0.0.1/32"}}}}}},
               {{"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::cond/*","Condition":{{"NotIpAddress":{{"aws:SourceIp":["127.0.0.0/8","::1/128"]}}}}}}"#
        )),
    )
    .await;

    // s3:ExistingObjectTag: the tags of the version read.
    assert_eq!(get_bytes(&alice, "cond", "yes.txt").await, b"yes.txt");
    refused!(
        alice.get_object().bucket("cond").key("no.txt"),
        "AccessDenied",
        403
    );

    // s3:max-keys on a listing.
    let few = alice
        .list_objects_v2()
        .bucket("cond")
        .max_keys(5)
        .send()
        .await;
    assert_eq!(few.unwrap().key_count(), Some(4));
    refused!(
        alice.list_objects_v2().bucket("cond").max_keys(100),
        "AccessDenied",
        403
    );

    // s3:RequestObjectTag: from PutObjectTagging's body and from x-amz-tagging.
    refused!(
        bob.put_object_tagging()
            .bucket("cond")
            .key("yes.txt")
            .tagging(tagged("class", "secret")),
        "AccessDenied",
        403
    );
    bob.put_object_tagging()
        .bucket("cond")
        .key("yes.txt")
        .tagging(tagged("class", "open"))
        .send()
        .await
        .unwrap();
    refused!(
        bob.put_object()
            .bucket("cond")
            .key("new")
            .tagging("class=secret")
            .body(b"x".to_vec().into()),
        "AccessDenied",
        403
    );
    bob.put_object()
        .bucket("cond")
        .key("new")
        .tagging("class=open")
        .body(b"x".to_vec().into())
        .send()
        .await
        .unwrap();

    // aws:Referer, anonymously.
    let referred = [("referer", "https://site.example/index.html")];
    assert_eq!(
        anonymous(&s, Method::GET, "/cond/site/page", &referred).await,
        200
    );
    assert_eq!(
        anonymous(&s, Method::GET, "/cond/site/page", &[]).await,
        403
    );

    // aws:SourceIp: every test client comes from 127.0.0.1.
    refused!(
        bob.get_object().bucket("cond").key("blocked/x"),
        "AccessDenied",
        403
    );
    assert_eq!(get_bytes(&bob, "cond", "site/page").await, b"page");

    // A copy's source is judged by the source bucket's policy.
    put_bytes(&c, "source", "doc", b"doc".to_vec()).await;
    refused!(
        alice
            .copy_object()
            .bucket("copies")
            .key("doc")
            .copy_source("source/doc"),
        "AccessDenied",
        403
    );
    put_policy(
        &c,
        "source",
        &policy(&format!(
            r#"{{"Effect":"Allow","Principal":{{"AWS":"{alice_arn}"}},"Action":"s3:GetObject","Resource":"arn:aws:s3:::source/*"}},
               {{"Effect":"Deny","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::source/*","Condition":{{"StringEquals":{{"aws:username":"bob"}}}}}}"#
        )),
    )
    .await;
    alice
        .copy_object()
        .bucket("copies")
        .key("doc")
        .copy_source("source/doc")
        .send()
        .await
        .unwrap();
    assert_eq!(get_bytes(&alice, "copies", "doc").await, b"doc");
    refused!(
        bob.get_object().bucket("source").key("doc"),
        "AccessDenied",
        403
    );
    assert_no_panic(&s);
}
