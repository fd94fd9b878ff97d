//! The dashboard over HTTP, as a browser speaks to it: sign-in and its cookie, the
//! CSRF token and the grants on every action, the sign-in rate limit, sessions that
//! end with their key, the Streams page during an upload, and `/ui/` staying S3's
//! for signed requests. tests/e2e/dashboard.py drives the same pages in chromium.

mod common;

use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use common::*;

const MIB: usize = 1024 * 1024;

/// A server with `[ui]` settings `ui` (and the config file kept with it).
fn server_with_ui(ui: &str) -> (Server, tempfile::NamedTempFile) {
    let cfg = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(cfg.path(), format!("[ui]\n{ui}\n")).unwrap();
    let s = Server::start_with(&["--config", cfg.path().to_str().unwrap()]);
    (s, cfg)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The answer's status, its `Location` and `Set-Cookie`, and its body.
struct Answer {
    status: u16,
    location: Option<String>,
    cookie: Option<String>,
    body: String,
}

async fn answer(r: reqwest::Response) -> Answer {
    let header = |n: &str| {
        r.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (location, cookie) = (header("location"), header("set-cookie"));
    Answer {
        status: r.status().as_u16(),
        location,
        cookie,
        body: r.text().await.unwrap(),
    }
}

async fn get(s: &Server, path: &str, session: Option<&str>) -> Answer {
    let mut req = http().get(format!("{}{path}", s.endpoint()));
    if let Some(t) = session {
        req = req.header("cookie", format!("hoard_session={t}"));
    }
    answer(req.send().await.unwrap()).await
}

async fn post(s: &Server, path: &str, form: &[(&str, &str)], session: Option<&str>) -> Answer {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let mut req = http()
        .post(format!("{}{path}", s.endpoint()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    if let Some(t) = session {
        req = req.header("cookie", format!("hoard_session={t}"));
    }
    answer(req.send().await.unwrap()).await
}

/// Signs in; answers the session token and the page's CSRF token.
async fn sign_in(s: &Server, access: &str, secret: &str) -> (String, String) {
    let a = post(
        s,
        "/ui/login",
        &[("access_key", access), ("secret_key", secret)],
        None,
    )
    .await;
    assert_eq!(a.status, 303, "{}", a.body);
    let cookie = a.cookie.expect("a session cookie");
    let token = cookie
        .strip_prefix("hoard_session=")
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_owned();
    let page = get(s, "/ui/", Some(&token)).await;
    assert_eq!(page.status, 200);
    let csrf = page
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a CSRF token in the page")
        .to_owned();
    (token, csrf)
}

fn user_state(s: &Server, name: &str) -> String {
    let (ok, text) = cli(s, &["user", "list"]);
    assert!(ok, "{text}");
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("{name} in {text}"))
        .to_owned();
    if line.contains("disabled") {
        "disabled".into()
    } else {
        "enabled".into()
    }
}

#[tokio::test]
async fn sign_in_sets_a_strict_http_only_session_cookie_that_the_pages_need() {
    let s = Server::start();
    let first = get(&s, "/ui/", None).await;
    assert_eq!(first.status, 303);
    assert_eq!(first.location.as_deref(), Some("/ui/login"));
    let a = post(
        &s,
        "/ui/login",
        &[("access_key", ACCESS_KEY), ("secret_key", SECRET_KEY)],
        None,
    )
    .await;
    assert_eq!((a.status, a.location.as_deref()), (303, Some("/ui/")));
    let cookie = a.cookie.unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=28800"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    assert!(!cookie.contains(SECRET_KEY));
    let (token, _) = sign_in(&s, ACCESS_KEY, SECRET_KEY).await;
    let page = http()
        .get(format!("{}/ui/", s.endpoint()))
        .header("cookie", format!("hoard_session={token}"))
        .send()
        .await
        .unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let body = page.text().await.unwrap();
    assert!(body.contains("data-field=\"dedup_ratio\""), "{body}");
    assert!(!body.contains(SECRET_KEY));
    // A made-up token is no session.
    let forged = get(&s, "/ui/buckets", Some(&"0".repeat(64))).await;
    assert_eq!(forged.location.as_deref(), Some("/ui/login"));
    assert!(s.log().contains("dashboard sign-in"));
}

#[tokio::test]
async fn every_action_needs_the_session_csrf_token_and_the_admin_grant() {
    let s = Server::start();
    let viewer = add_user(&s, "viewer", &["*=readonly"]);
    add_user(&s, "worker", &["bkt=readwrite"]);
    let (root, root_csrf) = sign_in(&s, ACCESS_KEY, SECRET_KEY).await;
    let (look, look_csrf) = sign_in(&s, &viewer.access, &viewer.secret).await;
    // No token, another session's token: refused, nothing changes.
    let no_token = post(&s, "/ui/users/disable", &[("name", "worker")], Some(&root)).await;
    assert_eq!(no_token.status, 403);
    assert!(no_token.body.contains("CSRF token"), "{}", no_token.body);
    let crossed = [("name", "worker"), ("csrf", look_csrf.as_str())];
    assert_eq!(
        post(&s, "/ui/users/disable", &crossed, Some(&root))
            .await
            .status,
        403
    );
    assert_eq!(user_state(&s, "worker"), "enabled");
    // A look-only user with its own token: refused, nothing changes.
    let own = [("name", "worker"), ("csrf", look_csrf.as_str())];
    let refused = post(&s, "/ui/users/disable", &own, Some(&look)).await;
    assert_eq!(refused.status, 403);
    assert!(refused.body.contains("may look but not act"));
    let gc = [("csrf", look_csrf.as_str()), ("confirm", "yes")];
    assert_eq!(post(&s, "/ui/gc", &gc, Some(&look)).await.status, 403);
    assert_eq!(user_state(&s, "worker"), "enabled");
    // The right token from a page of another site: refused, nothing changes.
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("name", "worker"), ("csrf", root_csrf.as_str())])
        .finish();
    let cross = http()
        .post(format!("{}/ui/users/disable", s.endpoint()))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", "http://elsewhere.example")
        .header("cookie", format!("hoard_session={root}"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status().as_u16(), 403);
    assert!(cross.text().await.unwrap().contains("another site"));
    assert_eq!(user_state(&s, "worker"), "enabled");
    // The admin with its token: done.
    let ok = [("name", "worker"), ("csrf", root_csrf.as_str())];
    let done = post(&s, "/ui/users/disable", &ok, Some(&root)).await;
    assert_eq!(done.status, 303);
    assert!(
        done.location
            .as_deref()
            .is_some_and(|l| l.starts_with("/ui/users?notice=User+worker+disabled")),
        "{:?}",
        done.location
    );
    assert_eq!(user_state(&s, "worker"), "disabled");
    // gc asks first; the confirmation runs it.
    let ask = post(&s, "/ui/gc", &[("csrf", root_csrf.as_str())], Some(&root)).await;
    assert_eq!(ask.status, 200);
    assert!(ask.body.contains("Run a cleaner pass now?"));
    assert!(
        get(&s, "/ui/cleaner", Some(&root))
            .await
            .body
            .contains("No pass has run")
    );
    let run = [("csrf", root_csrf.as_str()), ("confirm", "yes")];
    let ran = post(&s, "/ui/gc", &run, Some(&root)).await;
    assert_eq!(ran.status, 303);
    let page = get(&s, "/ui/cleaner", Some(&root)).await.body;
    assert!(page.contains("id=\"gc-runs\""), "{page}");
    let log = s.log();
    for line in [
        "dashboard action refused: missing or wrong CSRF token",
        "dashboard action refused: not an admin",
        "dashboard action",
    ] {
        assert!(log.contains(line), "{line} in {log}");
    }
    assert!(!log.contains(&root_csrf) && !log.contains(&root));
}

#[tokio::test]
async fn sign_in_attempts_are_limited_and_a_wrong_secret_is_refused() {
    let (s, _cfg) = server_with_ui("signins_per_minute = 3");
    for _ in 0..3 {
        let a = post(
            &s,
            "/ui/login",
            &[("access_key", ACCESS_KEY), ("secret_key", "wrong")],
            None,
        )
        .await;
        assert_eq!(a.status, 401);
        assert!(a.body.contains("Wrong access key or secret key."));
        assert!(a.cookie.is_none());
    }
    // The right secret too, now: the address has used its attempts.
    let limited = post(
        &s,
        "/ui/login",
        &[("access_key", ACCESS_KEY), ("secret_key", SECRET_KEY)],
        None,
    )
    .await;
    assert_eq!(limited.status, 429);
    assert!(limited.cookie.is_none());
    assert!(s.log().contains("too many attempts"));
}

#[tokio::test]
async fn sessions_end_with_their_key_and_at_their_expiry() {
    let (s, _cfg) = server_with_ui("session_secs = 2");
    let only_bucket = add_user(&s, "bucketonly", &["bkt=readwrite"]);
    let refused = post(
        &s,
        "/ui/login",
        &[
            ("access_key", only_bucket.access.as_str()),
            ("secret_key", only_bucket.secret.as_str()),
        ],
        None,
    )
    .await;
    assert_eq!(refused.status, 403);
    assert!(refused.body.contains("needs a grant on *"));
    let viewer = add_user(&s, "viewer", &["*=readonly"]);
    let (token, _) = sign_in(&s, &viewer.access, &viewer.secret).await;
    let (ok, text) = cli(&s, &["user", "disable", "viewer"]);
    assert!(ok, "{text}");
    let ended = get(&s, "/ui/", Some(&token)).await;
    assert_eq!(ended.location.as_deref(), Some("/ui/login"));
    // Root's session lives two seconds.
    let (root, csrf) = sign_in(&s, ACCESS_KEY, SECRET_KEY).await;
    assert_eq!(get(&s, "/ui/users", Some(&root)).await.status, 200);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        get(&s, "/ui/users", Some(&root)).await.location.as_deref(),
        Some("/ui/login")
    );
    let late = post(&s, "/ui/gc", &[("csrf", csrf.as_str())], Some(&root)).await;
    assert_eq!(late.status, 401);
}

#[tokio::test]
async fn the_streams_page_lists_an_upload_while_it_streams_in() {
    let s = Server::start();
    let c = s.client();
    c.create_bucket().bucket("incoming").send().await.unwrap();
    let (root, _) = sign_in(&s, ACCESS_KEY, SECRET_KEY).await;
    assert!(
        get(&s, "/ui/streams", Some(&root))
            .await
            .body
            .contains("No upload is streaming in.")
    );
    let url = c
        .put_object()
        .bucket("incoming")
        .key("big")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(300)).unwrap())
        .await
        .unwrap()
        .uri()
        .to_owned();
    let (tx, rx) = futures::channel::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let total = 6 * MIB;
    let upload = tokio::spawn(async move {
        http()
            .put(url)
            .header("content-length", total.to_string())
            .body(reqwest::Body::wrap_stream(rx))
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    let mut tx = tx;
    use futures::SinkExt;
    let data = random_bytes(9, total);
    for part in data[..3 * MIB].chunks(MIB) {
        tx.send(Ok(part.to_vec())).await.unwrap();
    }
    eventually(20, "the upload is on the Streams page", || async {
        let page = get(&s, "/ui/streams", Some(&root)).await.body;
        page.contains(">incoming<") && page.contains("6.00 MiB") && page.contains("1 of 64")
    })
    .await;
    for part in data[3 * MIB..].chunks(MIB) {
        tx.send(Ok(part.to_vec())).await.unwrap();
    }
    drop(tx);
    assert_eq!(upload.await.unwrap().unwrap(), 200);
    assert_eq!(get_bytes(&c, "incoming", "big").await, data);
    let page = get(&s, "/ui/streams", Some(&root)).await.body;
    assert!(page.contains("No upload is streaming in."), "{page}");
}

#[tokio::test]
async fn the_dashboard_shadows_no_s3_request() {
    let s = Server::start();
    let c = s.client();
    // Signed, /ui/... is S3's: a bucket named "ui" is not a valid name.
    let err = c.list_objects_v2().bucket("ui").send().await.unwrap_err();
    assert_eq!(code_of(&err), "InvalidBucketName");
    // Virtual-hosted, /ui/login is a key of the bucket the Host names.
    c.create_bucket().bucket("pages").send().await.unwrap();
    put_bytes(&c, "pages", "ui/login", b"an object, not a page".to_vec()).await;
    let anonymous = http()
        .get(format!("{}/ui/login", s.endpoint()))
        .header("host", format!("pages.localhost:{}", s.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 403);
    assert!(
        anonymous
            .text()
            .await
            .unwrap()
            .contains("<Code>AccessDenied</Code>")
    );
    assert_eq!(
        get_bytes(&c, "pages", "ui/login").await,
        b"an object, not a page"
    );
    // Unsigned and path-style, the same path is the dashboard's.
    let page = get(&s, "/ui/login", None).await;
    assert!(page.body.contains("Sign in"));
}

#[tokio::test]
async fn the_storage_history_is_charted_and_survives_kill_9() {
    let (mut s, _cfg) = server_with_ui("sample_secs = 1");
    let c = s.client();
    c.create_bucket().bucket("hist").send().await.unwrap();
    let blob = random_bytes(4, 2 * MIB);
    for k in ["a", "b"] {
        put_bytes(&c, "hist", k, blob.clone()).await;
    }
    let (root, _) = sign_in(&s, ACCESS_KEY, SECRET_KEY).await;
    let points = |page: &str| -> Vec<String> {
        page.split("class=\"s-logical\" fill=\"none\" points=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .map(|p| p.split(' ').map(str::to_owned).collect())
            .unwrap_or_default()
    };
    eventually(20, "the chart has a few points", || async {
        points(&get(&s, "/ui/", Some(&root)).await.body).len() >= 3
    })
    .await;
    let page = get(&s, "/ui/?range=1d", Some(&root)).await.body;
    assert!(page.contains("Space saving (logical / stored)"));
    assert!(page.contains("data-field=\"dedup_ratio\">2.00x<"), "{page}");
    // kill -9 and start again: every point recorded before is still charted.
    let recorded = points(&get(&s, "/ui/", Some(&root)).await.body).len();
    s.restart();
    let (root, _) = sign_in(&s, ACCESS_KEY, SECRET_KEY).await;
    let kept = points(&get(&s, "/ui/", Some(&root)).await.body).len();
    assert!(
        kept >= recorded,
        "{recorded} points recorded, {kept} charted after the restart"
    );
}

#[tokio::test]
async fn a_stalled_sign_in_form_is_answered_and_holds_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = Server::start();
    let mut raw = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let head = format!(
        "POST /ui/login HTTP/1.1\r\nhost: {}\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: 100\r\n\r\naccess_key",
        s.addr
    );
    raw.write_all(head.as_bytes()).await.unwrap();
    // Meanwhile others sign in as usual.
    sign_in(&s, ACCESS_KEY, SECRET_KEY).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), async {
        let mut buf = [0u8; 1024];
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = raw.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(read.is_ok(), "no answer to a stalled form");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
}
