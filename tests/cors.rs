//! CORS: Put/Get/DeleteBucketCors validated as S3 does, preflights (`OPTIONS`,
//! unsigned, as a browser sends them) judged by the bucket's rules, and the
//! `Access-Control-*` headers on actual requests from an allowed origin; S3's
//! request ids on every answer and in every error body, with S3's message.

mod common;

use std::time::Duration;

use aws_sdk_s3::operation::RequestId;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::types::{CorsConfiguration, CorsRule};
use common::*;

fn app_rules() -> CorsConfiguration {
    CorsConfiguration::builder()
        .cors_rules(
            CorsRule::builder()
                .id("app")
                .allowed_origins("https://app.example")
                .allowed_origins("https://*.console.example")
                .allowed_methods("GET")
                .allowed_methods("PUT")
                .allowed_headers("Content-Type")
                .allowed_headers("x-amz-*")
                .expose_headers("ETag")
                .expose_headers("x-amz-version-id")
                .max_age_seconds(600)
                .build()
                .unwrap(),
        )
        .cors_rules(
            CorsRule::builder()
                .allowed_origins("*")
                .allowed_methods("GET")
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

fn one_rule(rule: CorsRule) -> CorsConfiguration {
    CorsConfiguration::builder()
        .cors_rules(rule)
        .build()
        .unwrap()
}

#[tokio::test]
async fn cors_configuration_is_validated_and_round_trips() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("web").send().await.unwrap();
    refused!(
        c.get_bucket_cors().bucket("web"),
        "NoSuchCORSConfiguration",
        404
    );
    refused!(
        c.put_bucket_cors()
            .bucket("nobucket")
            .cors_configuration(app_rules()),
        "NoSuchBucket",
        404
    );
    c.put_bucket_cors()
        .bucket("web")
        .cors_configuration(app_rules())
        .send()
        .await
        .unwrap();

    let bad = [
        (
            CorsRule::builder()
                .allowed_origins("*")
                .allowed_methods("PATCH")
                .build()
                .unwrap(),
            "InvalidRequest",
            "Unsupported method is PATCH",
        ),
        (
            CorsRule::builder()
                .allowed_origins("https://*.*.example")
                .allowed_methods("GET")
                .build()
                .unwrap(),
            "InvalidRequest",
            "can not have more than one wildcard",
        ),
        (
            CorsRule::builder()
                .allowed_origins("*")
                .allowed_methods("GET")
                .allowed_headers("x-*-*")
                .build()
                .unwrap(),
            "InvalidRequest",
            "AllowedHeader",
        ),
        (
            CorsRule::builder()
                .id("x".repeat(256))
                .allowed_origins("*")
                .allowed_methods("GET")
                .build()
                .unwrap(),
            "InvalidArgument",
            "255",
        ),
    ];
    for (rule, code, message) in bad {
        let err = c
            .put_bucket_cors()
            .bucket("web")
            .cors_configuration(one_rule(rule))
            .send()
            .await
            .expect_err("an invalid rule");
        assert_eq!((code_of(&err).as_str(), status_of(&err)), (code, 400));
        let text = format!("{err:?}");
        assert!(text.contains(message), "{text}");
    }
    // The refused configurations changed nothing.
    let got = c.get_bucket_cors().bucket("web").send().await.unwrap();
    let rules = got.cors_rules();
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0].id(), Some("app"));
    assert_eq!(
        rules[0].allowed_origins(),
        ["https://app.example", "https://*.console.example"]
    );
    assert_eq!(rules[0].allowed_methods(), ["GET", "PUT"]);
    assert_eq!(rules[0].allowed_headers(), ["Content-Type", "x-amz-*"]);
    assert_eq!(rules[0].expose_headers(), ["ETag", "x-amz-version-id"]);
    assert_eq!(rules[0].max_age_seconds(), Some(600));
    assert_eq!(rules[1].id(), None);
    assert_eq!(rules[1].allowed_origins(), ["*"]);
    assert!(rules[1].allowed_headers().is_empty());

    c.delete_bucket_cors().bucket("web").send().await.unwrap();
    refused!(
        c.get_bucket_cors().bucket("web"),
        "NoSuchCORSConfiguration",
        404
    );
    // Rules go with their bucket: a bucket made again under the name has none.
    c.put_bucket_cors()
        .bucket("web")
        .cors_configuration(app_rules())
        .send()
        .await
        .unwrap();
    c.delete_bucket().bucket("web").send().await.unwrap();
    c.create_bucket().bucket("web").send().await.unwrap();
    refused!(
        c.get_bucket_cors().bucket("web"),
        "NoSuchCORSConfiguration",
        404
    );
    assert_no_panic(&s);
}

/// An unsigned preflight, as a browser sends it.
async fn preflight(
    s: &Server,
    path: &str,
    origin: Option<&str>,
    method: Option<&str>,
    headers: Option<&str>,
) -> reqwest::Response {
    let mut req = reqwest::Client::new().request(
        reqwest::Method::OPTIONS,
        format!("{}{}", s.endpoint(), path),
    );
    for (name, value) in [
        ("origin", origin),
        ("access-control-request-method", method),
        ("access-control-request-headers", headers),
    ] {
        if let Some(v) = value {
            req = req.header(name, v);
        }
    }
    req.send().await.unwrap()
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).map(|v| v.to_str().unwrap())
}

/// The error code of an S3 XML error body, checking that its RequestId is the
/// answer's `x-amz-request-id`.
async fn error_code(r: reqwest::Response) -> String {
    let id = header(&r, "x-amz-request-id")
        .expect("a request id")
        .to_owned();
    let body = r.text().await.unwrap();
    assert!(
        body.contains(&format!("<RequestId>{id}</RequestId>")),
        "{body}"
    );
    let code = body
        .split("<Code>")
        .nth(1)
        .and_then(|t| t.split("</Code>").next());
    code.expect("an error code").to_owned()
}

#[tokio::test]
async fn preflights_are_judged_by_the_buckets_rules() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("site").send().await.unwrap();
    let app = Some("https://app.example");

    let r = preflight(&s, "/site/index.html", app, Some("GET"), None).await;
    assert_eq!(r.status(), 403, "no CORS configuration yet");
    assert_eq!(error_code(r).await, "AccessForbidden");

    c.put_bucket_cors()
        .bucket("site")
        .cors_configuration(app_rules())
        .send()
        .await
        .unwrap();

    let r = preflight(
        &s,
        "/site/upload/file.bin",
        app,
        Some("PUT"),
        Some("Content-Type, X-Amz-Date, x-amz-content-sha256"),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(header(&r, "access-control-allow-methods"), Some("GET, PUT"));
    assert_eq!(
        header(&r, "access-control-allow-headers"),
        Some("content-type, x-amz-date, x-amz-content-sha256")
    );
    assert_eq!(
        header(&r, "access-control-expose-headers"),
        Some("ETag, x-amz-version-id")
    );
    assert_eq!(header(&r, "access-control-max-age"), Some("600"));
    assert_eq!(header(&r, "access-control-allow-credentials"), Some("true"));
    assert!(header(&r, "x-amz-request-id").is_some());

    // A subdomain the wildcard origin names.
    let r = preflight(
        &s,
        "/site/k",
        Some("https://eu.console.example"),
        Some("PUT"),
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "access-control-allow-origin"),
        Some("https://eu.console.example")
    );

    // Any origin may GET (the second rule), answered `*` without credentials.
    let r = preflight(
        &s,
        "/site/k",
        Some("https://elsewhere.org"),
        Some("GET"),
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "access-control-allow-origin"), Some("*"));
    assert_eq!(header(&r, "access-control-allow-credentials"), None);

    for (origin, method, headers) in [
        ("https://elsewhere.org", "PUT", None),
        ("https://app.example", "DELETE", None),
        (
            "https://app.example",
            "PUT",
            Some("content-type, authorization"),
        ),
        ("http://app.example", "PUT", None),
    ] {
        let r = preflight(&s, "/site/k", Some(origin), Some(method), headers).await;
        assert_eq!(r.status(), 403, "{origin} {method} {headers:?}");
        assert_eq!(header(&r, "access-control-allow-origin"), None);
        assert_eq!(error_code(r).await, "AccessForbidden");
    }

    let r = preflight(&s, "/site/k", None, Some("GET"), None).await;
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "BadRequest");
    let r = preflight(&s, "/site/k", app, None, None).await;
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "BadRequest");
    let r = preflight(&s, "/nosuchsite/k", app, Some("GET"), None).await;
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "NoSuchBucket");

    // A preflight changes nothing and needs no key.
    assert!(
        c.list_objects_v2()
            .bucket("site")
            .send()
            .await
            .unwrap()
            .contents()
            .is_empty()
    );
    assert_no_panic(&s);
}

fn presigning() -> PresigningConfig {
    PresigningConfig::expires_in(Duration::from_secs(300)).unwrap()
}

async fn presigned_get(c: &aws_sdk_s3::Client, bucket: &str, key: &str) -> String {
    let req = c.get_object().bucket(bucket).key(key);
    req.presigned(presigning()).await.unwrap().uri().to_owned()
}

/// Sends `req` as a browser on `origin` does.
async fn from_origin(req: reqwest::RequestBuilder, origin: &str) -> reqwest::Response {
    req.header("origin", origin).send().await.unwrap()
}

#[tokio::test]
async fn requests_from_an_allowed_origin_carry_cors_headers() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("assets").send().await.unwrap();
    put_bytes(&c, "assets", "logo.svg", b"<svg/>".to_vec()).await;
    let get_url = presigned_get(&c, "assets", "logo.svg").await;
    let http = reqwest::Client::new();
    let app = "https://app.example";

    // Without rules, an Origin changes nothing.
    let r = from_origin(http.get(&get_url), app).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "access-control-allow-origin"), None);

    c.put_bucket_cors()
        .bucket("assets")
        .cors_configuration(one_rule(
            CorsRule::builder()
                .allowed_origins(app)
                .allowed_methods("GET")
                .allowed_methods("PUT")
                .expose_headers("ETag")
                .build()
                .unwrap(),
        ))
        .send()
        .await
        .unwrap();
    let r = from_origin(http.get(&get_url), app).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "access-control-allow-origin"), Some(app));
    assert_eq!(header(&r, "access-control-expose-headers"), Some("ETag"));
    assert_eq!(r.text().await.unwrap(), "<svg/>");

    let r = from_origin(http.get(&get_url), "https://evil.example").await;
    assert_eq!(r.status(), 200, "CORS is the browser's check, not access");
    assert_eq!(header(&r, "access-control-allow-origin"), None);

    // A browser upload through a presigned PUT.
    let put = c.put_object().bucket("assets").key("upload.txt");
    let put_url = put.presigned(presigning()).await.unwrap().uri().to_owned();
    let r = from_origin(http.put(&put_url).body("from the browser"), app).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "access-control-allow-origin"), Some(app));
    assert_eq!(
        get_bytes(&c, "assets", "upload.txt").await,
        b"from the browser"
    );

    // An error answer from an allowed origin carries the headers too, so the
    // browser's script can read the error.
    let missing = presigned_get(&c, "assets", "missing").await;
    let r = from_origin(http.get(&missing), app).await;
    assert_eq!(r.status(), 404);
    assert_eq!(header(&r, "access-control-allow-origin"), Some(app));
    assert_eq!(error_code(r).await, "NoSuchKey");
    assert_no_panic(&s);
}

#[tokio::test]
async fn every_error_names_the_request_id_of_its_answer() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("ids").send().await.unwrap();
    let err = c
        .get_object()
        .bucket("ids")
        .key("absent")
        .send()
        .await
        .expect_err("no such key");
    let sdk_id = err.request_id().expect("the SDK reads the request id");
    assert_eq!(sdk_id.len(), 16);
    let ok = c.head_bucket().bucket("ids").send().await.unwrap();
    let ok_id = ok.request_id().expect("successes carry one too");
    assert_ne!(ok_id, sdk_id, "each answer has its own id");

    // Errors s3s raises itself carry S3's message too.
    let err = c
        .put_object()
        .bucket("ab")
        .key("k")
        .body(b"x".to_vec().into())
        .send()
        .await
        .expect_err("a two-letter bucket name");
    assert_eq!(code_of(&err), "InvalidBucketName");
    assert_eq!(
        aws_sdk_s3::error::ProvideErrorMetadata::message(&err),
        Some("The specified bucket is not valid.")
    );
    assert!(err.request_id().is_some());

    // Unsigned, malformed and oversized requests, answered before any operation.
    let http = reqwest::Client::new();
    let anonymous = http
        .get(format!("{}/ids/absent", s.endpoint()))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 403);
    assert_eq!(error_code(anonymous).await, "AccessDenied");
    // Declared too big: answered before the body is read.
    let head = format!(
        "PUT /ids?tagging HTTP/1.1\r\nhost: {}\r\ncontent-length: {}\r\n\r\n",
        s.addr,
        21u64 << 20
    );
    let resp = raw_exchange(s.addr, &head, b"", Duration::from_secs(10)).await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    let id = resp
        .lines()
        .find_map(|l| l.strip_prefix("x-amz-request-id: "))
        .expect("a request id header");
    assert!(
        resp.contains("<Code>MaxMessageLengthExceeded</Code>"),
        "{resp}"
    );
    assert!(
        resp.contains(&format!("<RequestId>{id}</RequestId>")),
        "{resp}"
    );
    assert_no_panic(&s);
}
