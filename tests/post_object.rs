//! Browser POST uploads (POST Object with a signed policy document), as a web form
//! sends them: success_action_status and success_action_redirect, the policy's
//! conditions (eq, starts-with, content-length-range) and expiry answered with S3's
//! codes, `${filename}` keys, tags and checksums in the form, and the same grants and bucket
//! policies as PUT.

mod common;

use base64::Engine as _;
use common::*;

const BOUNDARY: &str = "----hoardformboundary7MA4YWxkTrZu0gW";

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    ring::hmac::sign(&key, data).as_ref().to_vec()
}

/// A browser form: the policy (conditions as JSON array items, the signature's
/// own three added) signed with `access`/`secret`, the fields, then the file.
struct Form {
    fields: Vec<(String, String)>,
}

impl Form {
    fn new(
        access: &str,
        secret: &str,
        conditions: &[String],
        fields: &[(&str, &str)],
        expires_in: i64,
    ) -> Form {
        let now = time::OffsetDateTime::now_utc();
        let date = format!(
            "{:04}{:02}{:02}",
            now.year(),
            u8::from(now.month()),
            now.day()
        );
        let amz_date = format!(
            "{date}T{:02}{:02}{:02}Z",
            now.hour(),
            now.minute(),
            now.second()
        );
        let credential = format!("{access}/{date}/us-east-1/s3/aws4_request");
        let expiration = (now + time::Duration::seconds(expires_in))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let mut all = conditions.to_vec();
        all.push(r#"{"x-amz-algorithm":"AWS4-HMAC-SHA256"}"#.to_owned());
        all.push(format!(r#"{{"x-amz-credential":"{credential}"}}"#));
        all.push(format!(r#"{{"x-amz-date":"{amz_date}"}}"#));
        let policy = format!(
            r#"{{"expiration":"{expiration}","conditions":[{}]}}"#,
            all.join(",")
        );
        let policy = base64::engine::general_purpose::STANDARD.encode(policy);
        let mut key = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
        for part in ["us-east-1", "s3", "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        let signature = hex::encode(hmac(&key, policy.as_bytes()));
        let mut fields: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        fields.extend([
            ("policy".to_owned(), policy),
            ("x-amz-algorithm".to_owned(), "AWS4-HMAC-SHA256".to_owned()),
            ("x-amz-credential".to_owned(), credential),
            ("x-amz-date".to_owned(), amz_date),
            ("x-amz-signature".to_owned(), signature),
        ]);
        Form { fields }
    }

    /// Sends the form with `file` to the bucket; the answer.
    async fn post(&self, s: &Server, bucket: &str, file: &[u8]) -> reqwest::Response {
        let mut body = Vec::new();
        for (k, v) in &self.fields {
            body.extend_from_slice(
                format!(
                    "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
                )
                .as_bytes(),
            );
        }
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"report.pdf\"\r\nContent-Type: application/pdf\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(file);
        body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .post(format!("{}/{bucket}", s.endpoint()))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(body)
            .send()
            .await
            .unwrap()
    }
}

fn conditions(bucket: &str, extra: &[&str]) -> Vec<String> {
    let mut c = vec![
        format!(r#"{{"bucket":"{bucket}"}}"#),
        r#"["starts-with","$key","uploads/"]"#.to_owned(),
        r#"["starts-with","$Content-Type",""]"#.to_owned(),
        r#"["content-length-range",1,1048576]"#.to_owned(),
    ];
    c.extend(extra.iter().map(|e| (*e).to_owned()));
    c
}

async fn code(r: reqwest::Response) -> (u16, String, String) {
    let status = r.status().as_u16();
    let body = r.text().await.unwrap();
    let field = |name: &str| {
        body.split(&format!("<{name}>"))
            .nth(1)
            .and_then(|t| t.split(&format!("</{name}>")).next())
            .unwrap_or_default()
            .to_owned()
    };
    (status, field("Code"), field("Message"))
}

#[tokio::test]
async fn a_browser_form_uploads_and_answers_as_its_success_fields_ask() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("forms").send().await.unwrap();
    let file = random_bytes(1, 300 * 1024);

    // success_action_status 201: the PostResponse XML.
    let form = Form::new(
        ACCESS_KEY,
        SECRET_KEY,
        &conditions("forms", &[r#"{"success_action_status":"201"}"#]),
        &[
            ("key", "uploads/first.pdf"),
            ("Content-Type", "application/pdf"),
            ("success_action_status", "201"),
        ],
        600,
    );
    let r = form.post(&s, "forms", &file).await;
    assert_eq!(r.status().as_u16(), 201);
    let xml = r.text().await.unwrap();
    let etag = md5_hex(&file);
    assert!(xml.contains("<Key>uploads/first.pdf</Key>"), "{xml}");
    assert!(xml.contains("<Bucket>forms</Bucket>"), "{xml}");
    assert!(xml.contains(&etag), "{xml}");
    assert_eq!(get_bytes(&c, "forms", "uploads/first.pdf").await, file);
    let head = c
        .head_object()
        .bucket("forms")
        .key("uploads/first.pdf")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("application/pdf"));

    // success_action_redirect: 303 to the page, with bucket, key and ETag.
    let form = Form::new(
        ACCESS_KEY,
        SECRET_KEY,
        &conditions(
            "forms",
            &[r#"["starts-with","$success_action_redirect","https://app.example/"]"#],
        ),
        &[
            ("key", "uploads/second.pdf"),
            ("Content-Type", "application/pdf"),
            ("success_action_redirect", "https://app.example/done"),
        ],
        600,
    );
    let r = form.post(&s, "forms", &file).await;
    assert_eq!(r.status().as_u16(), 303);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location
            .starts_with("https://app.example/done?bucket=forms&key=uploads%2Fsecond.pdf&etag="),
        "{location}"
    );

    // `${filename}` in the key is the file's name, in the store and in the answer.
    let form = Form::new(
        ACCESS_KEY,
        SECRET_KEY,
        &conditions("forms", &[r#"{"success_action_status":"201"}"#]),
        &[
            ("key", "uploads/${filename}"),
            ("Content-Type", "application/pdf"),
            ("success_action_status", "201"),
        ],
        600,
    );
    let xml = form.post(&s, "forms", &file).await.text().await.unwrap();
    assert!(xml.contains("<Key>uploads/report.pdf</Key>"), "{xml}");
    assert_eq!(get_bytes(&c, "forms", "uploads/report.pdf").await, file);
    let form = Form::new(
        ACCESS_KEY,
        SECRET_KEY,
        &conditions(
            "forms",
            &[r#"["starts-with","$success_action_redirect","https://app.example/"]"#],
        ),
        &[
            ("key", "uploads/again-${filename}"),
            ("Content-Type", "application/pdf"),
            ("success_action_redirect", "https://app.example/done"),
        ],
        600,
    );
    let r = form.post(&s, "forms", &file).await;
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.contains("key=uploads%2Fagain-report.pdf"),
        "{location}"
    );
    assert_eq!(
        get_bytes(&c, "forms", "uploads/again-report.pdf").await,
        file
    );

    // Tags in the form's `tagging` field, as S3's XML tag set.
    let tagging =
        "<Tagging><TagSet><Tag><Key>dept</Key><Value>legal</Value></Tag></TagSet></Tagging>";
    let form = Form::new(
        ACCESS_KEY,
        SECRET_KEY,
        &conditions("forms", &[r#"["starts-with","$tagging",""]"#]),
        &[
            ("key", "uploads/tagged.pdf"),
            ("Content-Type", "application/pdf"),
            ("tagging", tagging),
        ],
        600,
    );
    assert_eq!(form.post(&s, "forms", &file).await.status().as_u16(), 204);
    let tags = c
        .get_object_tagging()
        .bucket("forms")
        .key("uploads/tagged.pdf")
        .send()
        .await
        .unwrap();
    let tags: Vec<_> = tags
        .tag_set()
        .iter()
        .map(|t| (t.key(), t.value()))
        .collect();
    assert_eq!(tags, [("dept", "legal")]);

    // Neither: 204, and a checksum in the form is verified.
    let sha = base64::engine::general_purpose::STANDARD
        .encode(ring::digest::digest(&ring::digest::SHA256, &file).as_ref());
    let form = Form::new(
        ACCESS_KEY,
        SECRET_KEY,
        &conditions("forms", &[r#"["starts-with","$x-amz-checksum-sha256",""]"#]),
        &[
            ("key", "uploads/third.pdf"),
            ("Content-Type", "application/pdf"),
            ("x-amz-checksum-sha256", &sha),
        ],
        600,
    );
    assert_eq!(form.post(&s, "forms", &file).await.status().as_u16(), 204);
    let bad = Form::new(
        ACCESS_KEY,
        SECRET_KEY,
        &conditions("forms", &[r#"["starts-with","$x-amz-checksum-sha256",""]"#]),
        &[
            ("key", "uploads/fourth.pdf"),
            ("Content-Type", "application/pdf"),
            ("x-amz-checksum-sha256", &sha),
        ],
        600,
    );
    let (status, code_, _) = code(bad.post(&s, "forms", b"other bytes").await).await;
    assert_eq!((status, code_.as_str()), (400, "BadDigest"));
    refused!(
        c.head_object().bucket("forms").key("uploads/fourth.pdf"),
        "NotFound",
        404
    );
    assert_no_panic(&s);
}

#[tokio::test]
async fn policy_conditions_expiry_grants_and_bucket_policies_hold_for_forms() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("gate").send().await.unwrap();
    let file = random_bytes(2, 4096);
    let fields = |key: &'static str| vec![("key", key), ("Content-Type", "text/plain")];

    // A key outside the policy's prefix: 403 AccessDenied, as S3 answers.
    let form = Form::new(
        ACCESS_KEY,
        SECRET_KEY,
        &conditions("gate", &[]),
        &fields("elsewhere/x"),
        600,
    );
    let (status, code_, message) = code(form.post(&s, "gate", &file).await).await;
    assert_eq!((status, code_.as_str()), (403, "AccessDenied"), "{message}");
    assert!(
        message.starts_with("Invalid according to Policy: Policy Condition failed"),
        "{message}"
    );

    // A file outside content-length-range.
    let form = Form::new(
        ACCESS_KEY,
        SECRET_KEY,
        &conditions("gate", &[]),
        &fields("uploads/big"),
        600,
    );
    let (status, code_, _) = code(form.post(&s, "gate", &random_bytes(3, 1048577)).await).await;
    assert_eq!((status, code_.as_str()), (400, "EntityTooLarge"));

    // A field the policy does not name.
    let mut extra = fields("uploads/x");
    extra.push(("x-amz-meta-owner", "eve"));
    let form = Form::new(
        ACCESS_KEY,
        SECRET_KEY,
        &conditions("gate", &[]),
        &extra,
        600,
    );
    let (status, code_, _) = code(form.post(&s, "gate", &file).await).await;
    assert_eq!((status, code_.as_str()), (403, "AccessDenied"));

    // An expired policy.
    let form = Form::new(
        ACCESS_KEY,
        SECRET_KEY,
        &conditions("gate", &[]),
        &fields("uploads/late"),
        -60,
    );
    let (status, code_, _) = code(form.post(&s, "gate", &file).await).await;
    assert_eq!((status, code_.as_str()), (403, "AccessDenied"));
    for key in ["elsewhere/x", "uploads/big", "uploads/x", "uploads/late"] {
        refused!(c.head_object().bucket("gate").key(key), "NotFound", 404);
    }

    // A write-only user posts as it puts; a user without a grant may not.
    let writer = add_user(&s, "writer", &["gate=writeonly"]);
    let form = Form::new(
        &writer.access,
        &writer.secret,
        &conditions("gate", &[]),
        &fields("uploads/w"),
        600,
    );
    assert_eq!(form.post(&s, "gate", &file).await.status().as_u16(), 204);
    let reader = add_user(&s, "reader", &["gate=readonly"]);
    let form = Form::new(
        &reader.access,
        &reader.secret,
        &conditions("gate", &[]),
        &fields("uploads/r"),
        600,
    );
    let (status, code_, _) = code(form.post(&s, "gate", &file).await).await;
    assert_eq!((status, code_.as_str()), (403, "AccessDenied"));

    // The bucket's policy judges the form's key.
    c.put_bucket_policy()
        .bucket("gate")
        .policy(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":"*","Action":"s3:PutObject","Resource":"arn:aws:s3:::gate/uploads/locked/*"}]}"#,
        )
        .send()
        .await
        .unwrap();
    let form = Form::new(
        &writer.access,
        &writer.secret,
        &conditions("gate", &[]),
        &fields("uploads/locked/a"),
        600,
    );
    let (status, code_, _) = code(form.post(&s, "gate", &file).await).await;
    assert_eq!((status, code_.as_str()), (403, "AccessDenied"));
    let form = Form::new(
        &writer.access,
        &writer.secret,
        &conditions("gate", &[]),
        &fields("uploads/open/a"),
        600,
    );
    assert_eq!(form.post(&s, "gate", &file).await.status().as_u16(), 204);
    assert_eq!(get_bytes(&c, "gate", "uploads/w").await, file);
    assert_eq!(get_bytes(&c, "gate", "uploads/open/a").await, file);
    assert_no_panic(&s);
}
