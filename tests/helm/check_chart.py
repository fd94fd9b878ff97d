"""Checks helm/hoard without a cluster: `helm lint` and `helm template` through
helm-python-sdk, every rendered manifest validated against the Kubernetes schemas
(kubernetes-validate --strict, two versions), then hoard started with exactly the
command, arguments and environment the rendered pods of both modes carry (their
Secret and ConfigMap resolved, mount paths mapped to temporary directories, the
listen address to 127.0.0.1) against a private PostgreSQL and s3s-fs, and driven
with boto3: the chart starts what it claims.

usage: python3 tests/helm/check_chart.py path/to/hoard-binary
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import boto3
import helm_python as helm
import yaml
from botocore.config import Config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHART = os.path.join(ROOT, "helm", "hoard")
KUBE_VERSIONS = ["1.30", "1.31"]
CREDS = {
    "rootAccessKey": "chartaccesskey",
    "rootSecretKey": "chartsecretkey0123456789",
    "secretsKey": "33" * 32,
}
failures = []


def step(name, ok, detail=""):
    print(("PASS " if ok else "FAIL ") + name + (f" ({detail})" if detail and not ok else ""))
    if not ok:
        failures.append(name)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def render(values, name="backup"):
    chart = helm.Chart.load(CHART)
    out = chart.render(values, name=name, namespace="hoard")
    docs = []
    for path, text in sorted(out.items()):
        if not path.endswith(".yaml"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                docs.append(doc)
    return docs


def validate(docs, label):
    with tempfile.TemporaryDirectory() as d:
        files = []
        for i, doc in enumerate(docs):
            if doc["kind"] == "ServiceMonitor":
                continue  # a CRD: no schema in kubernetes-validate
            path = os.path.join(d, f"{i}-{doc['kind']}.yaml")
            with open(path, "w") as f:
                yaml.safe_dump(doc, f)
            files.append(path)
        for version in KUBE_VERSIONS:
            r = subprocess.run(
                ["kubernetes-validate", "--strict", "-k", version, "--quiet", *files],
                capture_output=True,
                text=True,
            )
            step(f"{label}: manifests valid for Kubernetes {version}", r.returncode == 0,
                 (r.stdout + r.stderr)[-2000:])


def kinds(docs):
    return sorted(d["kind"] for d in docs)


def pod_of(docs):
    for d in docs:
        if d["kind"] in ("StatefulSet", "Deployment"):
            return d["spec"]["template"]["spec"]
    raise AssertionError("no workload rendered")


def run_rendered(docs, binary, label, workdir):
    """Starts hoard as the rendered pod would run it; answers (process, endpoint, pod)."""
    pod = pod_of(docs)
    container = pod["containers"][0]
    secrets = {}
    for d in docs:
        if d["kind"] == "Secret":
            secrets[d["metadata"]["name"]] = d.get("stringData", {})
    config = next(d for d in docs if d["kind"] == "ConfigMap" and "hoard.toml" in d["data"])
    etc = os.path.join(workdir, "etc")
    data = os.path.join(workdir, "data")
    os.makedirs(etc, exist_ok=True)
    os.makedirs(data, exist_ok=True)
    with open(os.path.join(etc, "hoard.toml"), "w") as f:
        f.write(config["data"]["hoard.toml"])
    mounts = {"/etc/hoard": etc, "/var/lib/hoard": data}
    port = free_port()
    args = []
    for a in container["args"]:
        for path, local in mounts.items():
            if a.startswith(path):
                a = local + a[len(path):]
        if a.startswith("0.0.0.0:"):
            a = f"127.0.0.1:{port}"
        args.append(a)
    env = {"PATH": os.environ["PATH"]}
    for e in container["env"]:
        if "value" in e:
            env[e["name"]] = e["value"]
        else:
            ref = e["valueFrom"]["secretKeyRef"]
            env[e["name"]] = secrets[ref["name"]][ref["key"]]
    log = open(os.path.join(workdir, "hoard.log"), "w")
    proc = subprocess.Popen([binary, *args], env=env, stdout=subprocess.DEVNULL, stderr=log)
    endpoint = f"http://127.0.0.1:{port}"
    probe = container["readinessProbe"]["httpGet"]["path"]
    ready = False
    for _ in range(300):
        try:
            with urllib.request.urlopen(endpoint + probe, timeout=2) as r:
                ready = r.status == 200
        except Exception:
            pass
        if ready or proc.poll() is not None:
            break
        time.sleep(0.1)
    step(f"{label}: hoard started from the rendered pod answers its readiness probe", ready,
         open(os.path.join(workdir, "hoard.log")).read()[-2000:])
    return proc, endpoint, container, env


def exercise(endpoint, container, env, label):
    live = container["livenessProbe"]["httpGet"]["path"]
    with urllib.request.urlopen(endpoint + live, timeout=5) as r:
        step(f"{label}: liveness probe path answers 200", r.status == 200)
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=env["HOARD_ROOT_ACCESS_KEY"],
        aws_secret_access_key=env["HOARD_ROOT_SECRET_KEY"],
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
    )
    s3.create_bucket(Bucket="chart")
    body = os.urandom(3 << 20)
    s3.put_object(Bucket="chart", Key="obj", Body=body)
    got = s3.get_object(Bucket="chart", Key="obj")["Body"].read()
    step(f"{label}: S3 PUT and GET through the rendered gateway", got == body)


def main():
    binary = os.path.abspath(sys.argv[1])
    report = helm.lint(CHART, {"credentials": CREDS}, strict=True)
    problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
    step("helm lint --strict", not problems and not report.get("errors"),
         str(problems or report.get("errors")))

    # Rendering refuses what cannot work.
    try:
        render({})
        step("a render without credentials is refused", False, "rendered")
    except helm.HelmError as e:
        step("a render without credentials is refused", "credentials" in str(e), str(e))
    try:
        render({"mode": "cluster", "credentials": CREDS})
        step("an unknown mode is refused", False, "rendered")
    except helm.HelmError as e:
        step("an unknown mode is refused", "mode must be" in str(e), str(e))

    embedded = render({"credentials": CREDS})
    step("embedded: StatefulSet, Service, ConfigMap, Secret",
         kinds(embedded) == ["ConfigMap", "Secret", "Service", "StatefulSet"], str(kinds(embedded)))
    validate(embedded, "embedded")
    full = render({
        "credentials": CREDS,
        "segments": {"backend": "s3", "s3": {"bucket": "b", "endpoint": "https://s3.example",
                                             "accessKey": "a", "secretKey": "s"}},
        "tls": {"enabled": True, "secretName": "hoard-tls"},
        "serviceMonitor": {"enabled": True},
        "networkPolicy": {"enabled": True, "from": [{"podSelector": {"matchLabels": {"role": "backup"}}}]},
        "grafanaDashboard": {"enabled": True},
    })
    step("embedded with every option: NetworkPolicy, ServiceMonitor, dashboard",
         {"NetworkPolicy", "ServiceMonitor"} <= set(kinds(full))
         and any(d["kind"] == "ConfigMap" and "hoard.json" in d.get("data", {}) for d in full),
         str(kinds(full)))
    validate(full, "embedded with TLS, S3 segments, monitoring")
    probe = pod_of(full)["containers"][0]["readinessProbe"]["httpGet"]
    step("with TLS the probes use HTTPS", probe["scheme"] == "HTTPS")

    with tempfile.TemporaryDirectory() as work:
        # Its own directory under /tmp: the cluster runs as the postgres user, which
        # cannot enter a root-owned temporary directory.
        pg_dir = tempfile.mkdtemp(prefix="hoard-chart-pg")
        pg_url = subprocess.run(
            ["bash", os.path.join(ROOT, "scripts", "pg-cluster.sh"), "start", pg_dir, str(os.getpid())],
            capture_output=True, text=True, check=True).stdout.strip()
        s3_root = os.path.join(work, "s3")
        os.makedirs(os.path.join(s3_root, "segments"))
        s3_port = free_port()
        s3fs = subprocess.Popen(
            ["s3s-fs", "--host", "127.0.0.1", "--port", str(s3_port),
             "--access-key", "chartstoreaccess", "--secret-key", "chartstoresecret0123", s3_root],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs = [s3fs]
        try:
            scale = render({
                "mode": "scaleOut",
                "credentials": CREDS,
                "postgres": {"url": pg_url, "leaseSecs": 9},
                "segments": {"s3": {"bucket": "segments", "endpoint": f"http://127.0.0.1:{s3_port}",
                                    "prefix": "gw", "accessKey": "chartstoreaccess",
                                    "secretKey": "chartstoresecret0123"},
                             "cache": {"memoryMib": 32, "diskMib": 128}},
                "autoscaling": {"enabled": True},
            })
            step("scaleOut: Deployment, HPA, PodDisruptionBudget, Service, ConfigMap, Secret",
                 kinds(scale) == ["ConfigMap", "Deployment", "HorizontalPodAutoscaler",
                                  "PodDisruptionBudget", "Secret", "Service"], str(kinds(scale)))
            validate(scale, "scaleOut")
            sealed = render({
                "mode": "scaleOut", "credentials": CREDS,
                "postgres": {"url": pg_url + "?sslmode=require", "caSecret": "pg-ca"},
                "segments": {"s3": {"bucket": "b", "endpoint": "https://s3.example",
                                    "accessKey": "a", "secretKey": "s"}},
            })
            pod = pod_of(sealed)
            env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
            step("scaleOut with postgres.caSecret: the CA mounted and named in HOARD_META_CA",
                 env.get("HOARD_META_CA") == "/etc/hoard/postgres-ca/ca.crt"
                 and any(v.get("secret", {}).get("secretName") == "pg-ca" for v in pod["volumes"]),
                 str(env))
            validate(sealed, "scaleOut with TLS to PostgreSQL")
            for label, docs in [("embedded", embedded), ("scaleOut", scale)]:
                d = os.path.join(work, label)
                os.makedirs(d)
                proc, endpoint, container, env = run_rendered(docs, binary, label, d)
                procs.append(proc)
                if proc.poll() is None:
                    exercise(endpoint, container, env, label)
            step("scaleOut: the gateway keeps its metadata in PostgreSQL, not on its disk",
                 not os.path.exists(os.path.join(work, "scaleOut", "data", "meta.redb")))
        finally:
            for p in procs:
                p.kill()
                p.wait()
            subprocess.run(["bash", os.path.join(ROOT, "scripts", "pg-cluster.sh"), "stop", pg_dir],
                           capture_output=True)
            shutil.rmtree(pg_dir, ignore_errors=True)
    if failures:
        print("chart failures: " + ", ".join(failures))
        sys.exit(1)


main()
