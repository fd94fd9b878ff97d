"""End-to-end: the web dashboard in a real browser (Debian's chromium, driven by
Playwright). A source hoard (plain HTTP) and a replica hoard (TLS, short sessions)
run on 127.0.0.1; set-up goes through the hoard CLI and boto3 as an admin's would.
Each step prints one PASS/FAIL line. Screenshots of every page at 1280 and 390 px
go to SHOTS (default target/ui-screenshots).

usage: dashboard.py PATH/TO/hoard"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import boto3
from playwright.sync_api import expect, sync_playwright

sys.path.insert(0, os.path.dirname(__file__))
from steps import client, finish, step  # noqa: E402

HOARD = os.path.abspath(sys.argv[1])
SHOTS = os.path.abspath(os.environ.get("SHOTS", "target/ui-screenshots"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ROOT = ("dashrootaccess", "dashrootsecret0123456789")
WORK = tempfile.mkdtemp(prefix="hoard-ui-")
procs = []


def serve(name, config, tls=False):
    """Starts a hoard on a free port; answers (endpoint, data dir)."""
    data = os.path.join(WORK, name)
    cfg = os.path.join(WORK, f"{name}.toml")
    with open(cfg, "w") as f:
        f.write(config)
    env = dict(os.environ, HOARD_ROOT_ACCESS_KEY=ROOT[0], HOARD_ROOT_SECRET_KEY=ROOT[1])
    args = [HOARD, "serve", "--listen", "127.0.0.1:0", "--data-dir", data, "--config", cfg]
    if tls:
        args.append("--tls")
    out = open(os.path.join(WORK, f"{name}.stdout"), "w")
    log = open(os.path.join(WORK, f"{name}.log"), "w")
    p = subprocess.Popen(args, stdout=out, stderr=log, env=env)
    procs.append(p)
    for _ in range(300):
        text = open(os.path.join(WORK, f"{name}.stdout")).read()
        m = re.search(r"listening on (https?://\S+)", text)
        if m:
            return m.group(1), data
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not start")


def cli(endpoint, data, *args):
    env = dict(os.environ, HOARD_ENDPOINT=endpoint, HOARD_ACCESS_KEY=ROOT[0], HOARD_SECRET_KEY=ROOT[1])
    ca = os.path.join(data, "tls", "ca.pem")
    if endpoint.startswith("https"):
        env["HOARD_CA"] = ca
    r = subprocess.run([HOARD, *args], env=env, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"hoard {' '.join(args)}: {r.stdout}{r.stderr}")
    return r.stdout


def new_key(endpoint, data, name, grant):
    text = cli(endpoint, data, "user", "add", name, "--grant", grant)
    access = re.search(r"access key:\s*(\S+)", text).group(1)
    secret = re.search(r"secret key:\s*(\S+)", text).group(1)
    return access, secret


SRC, SRC_DATA = serve("source", "[ui]\nsample_secs = 1\nrefresh_secs = 1\n")
DST, DST_DATA = serve("replica", "[ui]\nsession_secs = 3\nrefresh_secs = 1\n", tls=True)
s3 = client(SRC, *ROOT)
s3.create_bucket(Bucket="data")
cli(DST, DST_DATA, "bucket", "create", "mirror")
REPL_KEY = new_key(DST, DST_DATA, "from-source", "mirror=replication")
VIEWER = new_key(SRC, SRC_DATA, "viewer", "*=readonly")
WORKER = new_key(SRC, SRC_DATA, "worker", "data=readwrite")
BLOB = os.urandom(3 << 20)

pw = sync_playwright().start()
browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
admin = browser.new_context(viewport={"width": 1280, "height": 900})
page = admin.new_page()


def field(p, name):
    return p.locator(f"[data-field={name}]").first


def sign_in(p, base, key):
    p.goto(base + "/ui/")
    expect(p).to_have_url(re.compile(r"/ui/login$"))
    p.fill("input[name=access_key]", key[0])
    p.fill("input[name=secret_key]", key[1])
    p.click("form[action='/ui/login'] button")


def wrong_password():
    resp = {}
    page.on("response", lambda r: resp.setdefault(r.url, r.status) if r.request.method == "POST" else None)
    sign_in(page, SRC, (ROOT[0], "not-the-secret"))
    expect(field(page, "error")).to_have_text("Wrong access key or secret key.")
    assert resp.get(SRC + "/ui/login") == 401, resp
    assert "hoard_session" not in json.dumps(admin.cookies())


def ratio_matches_hoard_stats():
    sign_in(page, SRC, ROOT)
    expect(page).to_have_url(SRC + "/ui/")
    expect(field(page, "objects")).to_have_text("0")
    # Three copies of one body: the page, refreshing itself, shows what hoard stats says.
    for i in range(3):
        s3.put_object(Bucket="data", Key=f"copy{i}", Body=BLOB)
    expect(field(page, "objects")).to_have_text("3", timeout=15000)
    stats = json.loads(cli(SRC, SRC_DATA, "stats", "--json"))["total"]
    expect(field(page, "dedup_ratio")).to_have_text(f"{stats['dedup_ratio']:.2f}x")
    expect(field(page, "compression_ratio")).to_have_text(f"{stats['compression_ratio']:.2f}x")
    assert f"{stats['dedup_ratio']:.2f}" == "3.00", stats
    expect(field(page, "logical")).to_have_text("9.00 MiB")
    # The history chart draws the samples taken since start.
    page.reload()
    expect(page.locator("figure.chart polyline.s-logical")).to_have_count(1)


def rule_catches_up():
    ca = os.path.join(DST_DATA, "tls", "ca.pem")
    cli(SRC, SRC_DATA, "replication", "add", "--bucket", "data", "--target", DST,
        "--target-bucket", "mirror", "--target-access-key", REPL_KEY[0],
        "--target-secret-key", REPL_KEY[1], "--target-ca", ca)
    page.goto(SRC + "/ui/replication")
    rule = page.locator("section.rule[data-rule='data/hoard']")
    expect(rule.locator("[data-field=resync]")).to_have_text("done", timeout=30000)
    expect(rule.locator("[data-field=queued]")).to_have_text("0 change(s), 0 B", timeout=30000)
    expect(rule.locator("[data-field=logical_sent]")).to_have_text("9.00 MiB")
    page.goto(SRC + "/ui/buckets")
    expect(page.locator("tr[data-bucket=data] [data-field=replication]")).to_contain_text("in sync")


def newest_segment():
    root = os.path.join(SRC_DATA, "segments")
    files = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]
    return max(files, key=os.path.getmtime)


def flip(path, at=1000):
    with open(path, "r+b") as f:
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ 0x40]))


def requeue_as_admin():
    cli(SRC, SRC_DATA, "replication", "pause", "data")
    s3.put_object(Bucket="data", Key="bad", Body=os.urandom(300_000))
    segment = newest_segment()
    flip(segment)
    cli(SRC, SRC_DATA, "replication", "resume", "data")
    page.goto(SRC + "/ui/replication")
    rule = page.locator("section.rule[data-rule='data/hoard']")
    expect(rule.locator("table.failed")).to_contain_text("bad", timeout=60000)
    flip(segment)
    rule.locator("form[action='/ui/replication/requeue'] button").click()
    expect(field(page, "notice")).to_have_text("Requeued 1 key(s) of data.")
    expect(page.locator("table.failed")).to_have_count(0, timeout=60000)
    dst = boto3.client("s3", endpoint_url=DST, aws_access_key_id=ROOT[0], aws_secret_access_key=ROOT[1],
                       region_name="us-east-1", verify=os.path.join(DST_DATA, "tls", "ca.pem"))
    for _ in range(120):
        try:
            got = dst.head_object(Bucket="mirror", Key="bad")["ContentLength"]
            break
        except Exception:
            time.sleep(0.5)
    else:
        raise AssertionError("the requeued key did not reach the replica")
    assert got == 300_000, got
    expect(rule.locator("[data-field=queued]")).to_have_text("0 change(s), 0 B", timeout=30000)


def gc_as_admin():
    page.goto(SRC + "/ui/cleaner")
    expect(field(page, "no_runs")).to_be_visible()
    page.click("form[action='/ui/gc'] button")
    expect(page.locator("h1")).to_have_text("Run a cleaner pass now?")
    page.click("button.danger")
    expect(field(page, "notice")).to_contain_text("gc pass done")
    expect(page.locator("#gc-runs tbody tr")).to_have_count(1)


def users_as_admin():
    page.goto(SRC + "/ui/users")
    row = page.locator("tr[data-user=worker]")
    expect(row.locator("[data-field=state]")).to_have_text("enabled")
    assert ROOT[1] not in page.content() and WORKER[1] not in page.content()
    row.locator("button").click()
    expect(field(page, "notice")).to_have_text("User worker disabled.")
    expect(row.locator("[data-field=state]")).to_have_text("disabled")
    refused = None
    try:
        client(SRC, *WORKER).list_objects_v2(Bucket="data")
    except Exception as e:
        refused = str(e)
    assert refused and ("AccessDenied" in refused or "InvalidAccessKeyId" in refused), refused
    row.locator("button").click()
    expect(row.locator("[data-field=state]")).to_have_text("enabled")
    client(SRC, *WORKER).list_objects_v2(Bucket="data")


def readonly_sees_cannot_act():
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    p = ctx.new_page()
    sign_in(p, SRC, VIEWER)
    expect(field(p, "role")).to_have_text("look only")
    expect(field(p, "objects")).to_have_text("4")
    p.goto(SRC + "/ui/cleaner")
    expect(p.locator("form[action='/ui/gc']")).to_have_count(0)
    runs = p.locator("#gc-runs tbody tr").count()
    # The form an admin's page would post, posted with this session's own token.
    csrf = p.locator("form[action='/ui/logout'] input[name=csrf]").get_attribute("value")
    p.evaluate("""csrf => { const f = document.createElement('form'); f.method = 'post';
        f.action = '/ui/gc'; for (const [k, v] of [['csrf', csrf], ['confirm', 'yes']]) {
        const i = document.createElement('input'); i.type = 'hidden'; i.name = k; i.value = v;
        f.appendChild(i); } document.body.appendChild(f); f.submit(); }""", csrf)
    expect(field(p, "error")).to_contain_text("may look but not act")
    p.goto(SRC + "/ui/cleaner")
    expect(p.locator("#gc-runs tbody tr")).to_have_count(runs)
    p.goto(SRC + "/ui/users")
    expect(p.locator("#users button")).to_have_count(0)
    ctx.close()


def sign_out():
    page.goto(SRC + "/ui/")
    page.click("form[action='/ui/logout'] button")
    expect(page).to_have_url(SRC + "/ui/login")
    page.goto(SRC + "/ui/buckets")
    expect(page).to_have_url(SRC + "/ui/login")


def expired_session():
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, ignore_https_errors=True)
    p = ctx.new_page()
    sign_in(p, DST, ROOT)
    expect(p).to_have_url(DST + "/ui/")
    cookie = [c for c in ctx.cookies() if c["name"] == "hoard_session"][0]
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict", cookie
    # Three seconds on, the page's own refresh finds the session over.
    expect(p).to_have_url(DST + "/ui/login", timeout=15000)
    ctx.close()


def screenshots():
    os.makedirs(SHOTS, exist_ok=True)
    for width in (1280, 390):
        ctx = browser.new_context(viewport={"width": width, "height": 900})
        p = ctx.new_page()
        sign_in(p, SRC, ROOT)
        for path in ["/ui/", "/ui/buckets", "/ui/streams", "/ui/replication", "/ui/cleaner", "/ui/users"]:
            p.goto(SRC + path)
            p.locator("main h1").first.wait_for()
            name = path.strip("/").replace("ui/", "").replace("ui", "overview") or "overview"
            p.screenshot(path=os.path.join(SHOTS, f"{name}-{width}.png"), full_page=True)
            # Nothing wider than the window: wide tables scroll in their own box.
            wide = p.evaluate("document.documentElement.scrollWidth")
            assert wide <= width, f"{path} at {width} px is {wide} px wide"
        ctx.close()


try:
    step("a wrong secret is refused with 401 and no session", wrong_password)
    step("root signs in; the page follows a PUT and shows hoard stats' ratios", ratio_matches_hoard_stats)
    step("a replication rule catches up on the Replication page", rule_catches_up)
    step("an admin requeues a failed key and it replicates", requeue_as_admin)
    step("an admin runs gc after a confirmation", gc_as_admin)
    step("an admin disables and enables a user; secrets never shown", users_as_admin)
    step("a readonly user sees the pages and is refused an action", readonly_sees_cannot_act)
    step("sign-out ends the session", sign_out)
    step("an expired session goes back to sign-in (TLS: Secure cookie)", expired_session)
    step("every page at 1280 and 390 px, screenshots saved", screenshots)
finally:
    browser.close()
    pw.stop()
    for p in procs:
        p.kill()
    for name in ("source", "replica"):
        log = open(os.path.join(WORK, f"{name}.log")).read()
        if "panicked" in log:
            print(f"FAIL {name} log has a panic")
finish()
