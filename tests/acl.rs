//! S3 ACLs on top of hoard's users and grants: canned ACLs and grant headers on
//! CreateBucket, PutObject, CopyObject and CreateMultipartUpload, the
//! AccessControlPolicy XML of Put/Get{Bucket,Object}Acl, anonymous requests judged
//! as S3 judges them, and the public access block and ownership controls that
//! govern ACLs.

mod common;

use aws_sdk_s3::types::{
    AccessControlPolicy, BucketCannedAcl, Grant, Grantee, ObjectCannedAcl, ObjectOwnership,
    OwnershipControls, OwnershipControlsRule, Permission, PublicAccessBlockConfiguration, Type,
};
use common::*;

const ALL_USERS: &str = "http://acs.amazonaws.com/groups/global/AllUsers";

/// (grantee id or group uri, permission) of each grant, in order.
fn grants_of(grants: &[Grant]) -> Vec<(String, String)> {
    grants
        .iter()
        .map(|g| {
            let who = g.grantee().expect("a grantee");
            let name = who.id().or(who.uri()).expect("an id or uri").to_owned();
            (
                name,
                g.permission().expect("a permission").as_str().to_owned(),
            )
        })
        .collect()
}

fn grant(grantee: Grantee, p: Permission) -> Grant {
    Grant::builder().grantee(grantee).permission(p).build()
}

fn user_grantee(id: &str) -> Grantee {
    Grantee::builder()
        .r#type(Type::CanonicalUser)
        .id(id)
        .build()
        .unwrap()
}

/// Puts `body` at `key` with a canned ACL.
async fn put_with_acl(
    c: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    acl: ObjectCannedAcl,
    body: &[u8],
) {
    c.put_object()
        .bucket(bucket)
        .key(key)
        .acl(acl)
        .body(body.to_vec().into())
        .send()
        .await
        .unwrap();
}

/// The grants GetObjectAcl answers for the current version of `key`.
async fn object_grants(c: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<Grant> {
    let got = c.get_object_acl().bucket(bucket).key(key).send().await;
    got.unwrap().grants().to_vec()
}

/// An unsigned request, as a browser or curl sends it.
async fn anonymous(method: reqwest::Method, s: &Server, path: &str) -> reqwest::Response {
    reqwest::Client::new()
        .request(method, format!("{}{}", s.endpoint(), path))
        .body(if path.contains("upload") {
            "anonymous"
        } else {
            ""
        })
        .send()
        .await
        .unwrap()
}

async fn code(r: reqwest::Response) -> String {
    let body = r.text().await.unwrap();
    let code = body
        .split("<Code>")
        .nth(1)
        .and_then(|t| t.split("</Code>").next());
    code.unwrap_or_default().to_owned()
}

#[tokio::test]
async fn acls_are_given_answered_and_validated_as_s3_does() {
    let s = Server::start();
    let c = s.client();
    let user = add_user(&s, "auditor", &[]);
    let users = admin(&s).users().await.unwrap();
    let auditor_id = users[0].canonical_id.clone();
    assert_eq!(auditor_id.len(), 32);

    c.create_bucket()
        .bucket("shared")
        .acl(BucketCannedAcl::PublicRead)
        .send()
        .await
        .unwrap();
    let owner = c.list_buckets().send().await.unwrap();
    let owner_id = owner.owner().and_then(|o| o.id()).unwrap().to_owned();
    let acl = c.get_bucket_acl().bucket("shared").send().await.unwrap();
    assert_eq!(acl.owner().and_then(|o| o.id()), Some(owner_id.as_str()));
    assert_eq!(
        grants_of(acl.grants()),
        [
            (owner_id.clone(), "FULL_CONTROL".into()),
            (ALL_USERS.into(), "READ".into())
        ]
    );

    // Canned ACLs and grant headers on new objects, copies and uploads.
    put_with_acl(
        &c,
        "shared",
        "report",
        ObjectCannedAcl::AuthenticatedRead,
        b"numbers",
    )
    .await;
    let got = object_grants(&c, "shared", "report").await;
    assert_eq!(
        grants_of(&got)[1],
        (
            "http://acs.amazonaws.com/groups/global/AuthenticatedUsers".into(),
            "READ".into()
        )
    );
    c.copy_object()
        .bucket("shared")
        .key("copy")
        .copy_source("shared/report")
        .grant_read(format!("id=\"{auditor_id}\""))
        .send()
        .await
        .unwrap();
    let got = object_grants(&c, "shared", "copy").await;
    assert_eq!(grants_of(&got)[1], (auditor_id.clone(), "READ".into()));
    assert_eq!(
        got[1].grantee().and_then(|g| g.display_name()),
        Some("auditor")
    );
    let up = c
        .create_multipart_upload()
        .bucket("shared")
        .key("big")
        .acl(ObjectCannedAcl::PublicRead)
        .send()
        .await
        .unwrap();
    let etag = c
        .upload_part()
        .bucket("shared")
        .key("big")
        .upload_id(up.upload_id().unwrap())
        .part_number(1)
        .body(b"one part".to_vec().into())
        .send()
        .await
        .unwrap()
        .e_tag()
        .unwrap()
        .to_owned();
    c.complete_multipart_upload()
        .bucket("shared")
        .key("big")
        .upload_id(up.upload_id().unwrap())
        .multipart_upload(completed(&[&etag]))
        .send()
        .await
        .unwrap();
    let r = anonymous(reqwest::Method::GET, &s, "/shared/big").await;
    assert_eq!(r.status(), 200, "the completed object has its upload's ACL");

    // Refusals, each changing nothing.
    let put = |key: &str| {
        c.put_object()
            .bucket("shared")
            .key(key)
            .body(b"x".to_vec().into())
    };
    refused!(
        put("bad").acl(ObjectCannedAcl::from("public")),
        "InvalidArgument",
        400
    );
    refused!(
        put("bad")
            .acl(ObjectCannedAcl::Private)
            .grant_read(format!("id=\"{auditor_id}\"")),
        "InvalidRequest",
        400
    );
    refused!(
        put("bad").grant_read("emailAddress=\"someone@example.com\""),
        "UnresolvableGrantByEmailAddress",
        400
    );
    refused!(
        put("bad").grant_read("id=\"0123456789abcdef\""),
        "InvalidArgument",
        400
    );
    refused!(c.head_object().bucket("shared").key("bad"), "NotFound", 404);

    // The XML document, on the bucket and on one version.
    let policy = AccessControlPolicy::builder()
        .grants(grant(user_grantee(&auditor_id), Permission::FullControl))
        .build();
    c.put_bucket_acl()
        .bucket("shared")
        .access_control_policy(policy.clone())
        .send()
        .await
        .unwrap();
    let acl = c.get_bucket_acl().bucket("shared").send().await.unwrap();
    assert_eq!(
        grants_of(acl.grants()),
        [
            (owner_id.clone(), "FULL_CONTROL".into()),
            (auditor_id.clone(), "FULL_CONTROL".into())
        ]
    );
    set_versioning(
        &c,
        "shared",
        aws_sdk_s3::types::BucketVersioningStatus::Enabled,
    )
    .await;
    let v1 = c
        .put_object()
        .bucket("shared")
        .key("doc")
        .body(b"v1".to_vec().into())
        .send()
        .await
        .unwrap()
        .version_id()
        .unwrap()
        .to_owned();
    put_bytes(&c, "shared", "doc", b"v2".to_vec()).await;
    c.put_object_acl()
        .bucket("shared")
        .key("doc")
        .version_id(&v1)
        .acl(ObjectCannedAcl::PublicRead)
        .send()
        .await
        .unwrap();
    let of = |v: Option<&str>| {
        c.get_object_acl()
            .bucket("shared")
            .key("doc")
            .set_version_id(v.map(str::to_owned))
            .send()
    };
    assert_eq!(of(Some(&v1)).await.unwrap().grants().len(), 2);
    assert_eq!(
        of(None).await.unwrap().grants().len(),
        1,
        "v2 stays private"
    );
    refused!(
        c.put_object_acl().bucket("shared").key("doc"),
        "MissingSecurityHeader",
        400
    );

    // The auditor, with no hoard grant, reads through the bucket ACL's full control.
    let auditor = client_as(&s, &user);
    auditor
        .list_objects_v2()
        .bucket("shared")
        .send()
        .await
        .unwrap();
    assert_no_panic(&s);
}

#[tokio::test]
async fn anonymous_requests_get_what_acls_make_public_and_403_otherwise() {
    let s = Server::start();
    let c = s.client();
    use reqwest::Method;
    c.create_bucket().bucket("private").send().await.unwrap();
    put_bytes(&c, "private", "k", b"secret".to_vec()).await;
    c.create_bucket()
        .bucket("listed")
        .acl(BucketCannedAcl::PublicRead)
        .send()
        .await
        .unwrap();
    put_bytes(&c, "listed", "closed", b"closed".to_vec()).await;
    put_with_acl(&c, "listed", "open", ObjectCannedAcl::PublicRead, b"open").await;
    c.create_bucket()
        .bucket("dropbox")
        .acl(BucketCannedAcl::PublicReadWrite)
        .send()
        .await
        .unwrap();

    let table = [
        (Method::GET, "/", 403, "AccessDenied"),
        (Method::GET, "/private", 403, "AccessDenied"),
        (Method::GET, "/private/k", 403, "AccessDenied"),
        (Method::GET, "/private/missing", 403, "AccessDenied"),
        (Method::PUT, "/private/upload", 403, "AccessDenied"),
        (Method::GET, "/nosuchbucket/k", 404, "NoSuchBucket"),
        (Method::GET, "/listed/closed", 403, "AccessDenied"),
        (Method::GET, "/listed/missing", 404, "NoSuchKey"),
        (Method::PUT, "/listed/upload", 403, "AccessDenied"),
        (Method::DELETE, "/listed/open", 403, "AccessDenied"),
        (Method::GET, "/listed?acl", 403, "AccessDenied"),
        (
            Method::GET,
            "/listed/open?response-content-type=x",
            400,
            "InvalidRequest",
        ),
        (Method::PUT, "/listed?versioning", 403, "AccessDenied"),
    ];
    for (method, path, status, expected) in table {
        let r = anonymous(method.clone(), &s, path).await;
        assert_eq!(r.status(), status, "{method} {path}");
        assert_eq!(code(r).await, expected, "{method} {path}");
    }
    let r = anonymous(Method::GET, &s, "/listed/open").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "open");
    let r = anonymous(Method::GET, &s, "/listed?list-type=2").await;
    assert_eq!(r.status(), 200);
    let listing = r.text().await.unwrap();
    assert!(listing.contains("<Key>closed</Key>") && listing.contains("<Key>open</Key>"));
    let r = anonymous(Method::HEAD, &s, "/listed/open").await;
    assert_eq!(r.status(), 200);

    // public-read-write takes anonymous writes and deletes.
    let r = anonymous(Method::PUT, &s, "/dropbox/upload").await;
    assert_eq!(r.status(), 200);
    assert_eq!(get_bytes(&c, "dropbox", "upload").await, b"anonymous");
    let r = anonymous(Method::DELETE, &s, "/dropbox/upload").await;
    assert_eq!(r.status(), 204);

    // authenticated-read: any signed key, never anonymous.
    put_with_acl(
        &c,
        "private",
        "members",
        ObjectCannedAcl::AuthenticatedRead,
        b"members",
    )
    .await;
    let r = anonymous(Method::GET, &s, "/private/members").await;
    assert_eq!(r.status(), 403);
    let nobody = client_as(&s, &add_user(&s, "nobody", &[]));
    assert_eq!(get_bytes(&nobody, "private", "members").await, b"members");
    refused!(
        nobody.get_object().bucket("private").key("k"),
        "AccessDenied",
        403
    );
    assert_no_panic(&s);
}

#[tokio::test]
async fn public_access_block_and_ownership_controls_govern_acls() {
    let s = Server::start();
    let c = s.client();
    use reqwest::Method;
    c.create_bucket()
        .bucket("guarded")
        .acl(BucketCannedAcl::PublicRead)
        .send()
        .await
        .unwrap();
    put_with_acl(&c, "guarded", "open", ObjectCannedAcl::PublicRead, b"open").await;
    refused!(
        c.get_public_access_block().bucket("guarded"),
        "NoSuchPublicAccessBlockConfiguration",
        404
    );
    let block = |acls: bool, ignore: bool| {
        c.put_public_access_block()
            .bucket("guarded")
            .public_access_block_configuration(
                PublicAccessBlockConfiguration::builder()
                    .block_public_acls(acls)
                    .ignore_public_acls(ignore)
                    .build(),
            )
    };
    block(true, false).send().await.unwrap();
    let got = c
        .get_public_access_block()
        .bucket("guarded")
        .send()
        .await
        .unwrap();
    let conf = got.public_access_block_configuration().unwrap();
    assert_eq!(conf.block_public_acls(), Some(true));
    assert_eq!(conf.ignore_public_acls(), Some(false));
    assert_eq!(conf.block_public_policy(), Some(false));
    let put_public = |key: &str| {
        c.put_object()
            .bucket("guarded")
            .key(key)
            .acl(ObjectCannedAcl::PublicRead)
            .body(b"x".to_vec().into())
    };
    refused!(put_public("blocked"), "AccessDenied", 403);
    refused!(
        c.put_bucket_acl()
            .bucket("guarded")
            .acl(BucketCannedAcl::PublicReadWrite),
        "AccessDenied",
        403
    );
    // Existing public grants still count until IgnorePublicAcls.
    let r = anonymous(Method::GET, &s, "/guarded/open").await;
    assert_eq!(r.status(), 200);
    block(true, true).send().await.unwrap();
    let r = anonymous(Method::GET, &s, "/guarded/open").await;
    assert_eq!(r.status(), 403);
    c.delete_public_access_block()
        .bucket("guarded")
        .send()
        .await
        .unwrap();
    let r = anonymous(Method::GET, &s, "/guarded/open").await;
    assert_eq!(r.status(), 200);

    // Ownership: BucketOwnerEnforced disables ACLs.
    refused!(
        c.get_bucket_ownership_controls().bucket("guarded"),
        "OwnershipControlsNotFoundError",
        404
    );
    let enforce = || {
        c.put_bucket_ownership_controls()
            .bucket("guarded")
            .ownership_controls(
                OwnershipControls::builder()
                    .rules(
                        OwnershipControlsRule::builder()
                            .object_ownership(ObjectOwnership::BucketOwnerEnforced)
                            .build()
                            .unwrap(),
                    )
                    .build()
                    .unwrap(),
            )
    };
    refused!(enforce(), "InvalidBucketAclWithObjectOwnership", 400);
    c.put_bucket_acl()
        .bucket("guarded")
        .acl(BucketCannedAcl::Private)
        .send()
        .await
        .unwrap();
    enforce().send().await.unwrap();
    let got = c
        .get_bucket_ownership_controls()
        .bucket("guarded")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.ownership_controls().unwrap().rules()[0].object_ownership(),
        &ObjectOwnership::BucketOwnerEnforced
    );
    refused!(put_public("acl-off"), "AccessControlListNotSupported", 400);
    put_with_acl(
        &c,
        "guarded",
        "backup",
        ObjectCannedAcl::BucketOwnerFullControl,
        b"veeam",
    )
    .await;
    let r = anonymous(Method::GET, &s, "/guarded/open").await;
    assert_eq!(r.status(), 403, "ACLs are not consulted any more");
    let acl = object_grants(&c, "guarded", "backup").await;
    assert_eq!(acl.len(), 1, "reading ACLs still works");
    c.delete_bucket_ownership_controls()
        .bucket("guarded")
        .send()
        .await
        .unwrap();
    let r = anonymous(Method::GET, &s, "/guarded/open").await;
    assert_eq!(r.status(), 200);

    // At creation: an ACL and BucketOwnerEnforced together are refused.
    refused!(
        c.create_bucket()
            .bucket("both")
            .acl(BucketCannedAcl::PublicRead)
            .object_ownership(ObjectOwnership::BucketOwnerEnforced),
        "InvalidBucketAclWithObjectOwnership",
        400
    );
    refused!(c.head_bucket().bucket("both"), "NotFound", 404);
    assert_no_panic(&s);
}

#[tokio::test]
async fn expected_bucket_owner_must_name_the_store_owner() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("owned").send().await.unwrap();
    put_bytes(&c, "owned", "k", b"v".to_vec()).await;
    let owner = c.list_buckets().send().await.unwrap();
    let owner_id = owner.owner().and_then(|o| o.id()).unwrap().to_owned();
    let got = c
        .get_object()
        .bucket("owned")
        .key("k")
        .expected_bucket_owner(&owner_id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        b"v"
    );
    refused!(
        c.put_object()
            .bucket("owned")
            .key("k")
            .body(b"other".to_vec().into())
            .expected_bucket_owner("111122223333"),
        "AccessDenied",
        403
    );
    refused!(
        c.copy_object()
            .bucket("owned")
            .key("copy")
            .copy_source("owned/k")
            .expected_source_bucket_owner("111122223333"),
        "AccessDenied",
        403
    );
    assert_eq!(get_bytes(&c, "owned", "k").await, b"v");
    refused!(c.head_object().bucket("owned").key("copy"), "NotFound", 404);
}
