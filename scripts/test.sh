#!/usr/bin/env bash
# Runs every test: unit and integration tests (aws-sdk-s3 against the real binary),
# then the end-to-end scripts for aws-cli, boto3, rclone and restic. Installs what it
# needs on a fresh Debian machine with a Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v curl >/dev/null || need_apt+=(curl)
command -v python3 >/dev/null || need_apt+=(python3 python3-pip)
command -v rclone >/dev/null || need_apt+=(rclone)
command -v restic >/dev/null || need_apt+=(restic)
# PostgreSQL for the scale-out metadata engine (tests/postgres.rs and the run below).
ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1 || need_apt+=(postgresql-15)
# A real browser for the dashboard's end-to-end test (tests/e2e/dashboard.py).
command -v chromium >/dev/null || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq "${need_apt[@]}"
fi
if ! command -v aws >/dev/null || ! aws --version >/dev/null 2>&1; then
  pip install --quiet awscli 2>/dev/null || pip install --quiet --break-system-packages awscli \
    || { apt-get update -qq && apt-get install -y -qq awscli; }
  hash -r
fi
python3 -c "import boto3" 2>/dev/null || pip install --quiet boto3 2>/dev/null || pip install --quiet --break-system-packages boto3
# The Helm chart's checks without a cluster (tests/helm/check_chart.py).
python3 -c "import helm_python, yaml" 2>/dev/null && command -v kubernetes-validate >/dev/null \
  || pip install --quiet helm-python-sdk kubernetes-validate pyyaml 2>/dev/null \
  || pip install --quiet --break-system-packages helm-python-sdk kubernetes-validate pyyaml
# Playwright drives Debian's chromium (never `playwright install`: no browser download).
python3 -c "import playwright" 2>/dev/null || pip install --quiet playwright 2>/dev/null \
  || pip install --quiet --break-system-packages playwright
# Real S3 servers for the cloud tier's tests (tests/cloud.rs): s3s-fs, and moto's.
command -v s3s-fs >/dev/null || cargo install s3s-fs@0.14.1 --features binary --locked
command -v moto_server >/dev/null || pip install --quiet "moto[server]" 2>/dev/null \
  || pip install --quiet --break-system-packages "moto[server]"
hash -r
aws --version
rclone version | sed -n 1p  # reads all of it: head would end the pipe early (SIGPIPE)
restic version

cargo build --all-targets
cargo test --all-targets -- --test-threads 2
# The behaviour suites again with the metadata in PostgreSQL (tests/common: every
# server gets a database of its own in one private cluster, stopped when this exits).
echo "== metadata on PostgreSQL: the behaviour suites =="
pg_dir=$(mktemp -d)
HOARD_TEST_POSTGRES=$(bash scripts/pg-cluster.sh start "$pg_dir" $$)
export HOARD_TEST_POSTGRES
trap 'bash scripts/pg-cluster.sh stop "$pg_dir" >/dev/null 2>&1 || true' EXIT
cargo test --test s3_api --test operations --test multipart --test versioning --test copy \
  --test gc --test conditional --test object_lock --test users --test durability \
  --test dedup --test acl --test policy --test lifecycle --test quota \
  --test replication --test crash_loop --test ui -- --test-threads 2
unset HOARD_TEST_POSTGRES

failed=()
for client in awscli boto3 rclone restic; do
  echo "== end-to-end: $client =="
  bash "tests/e2e/$client.sh" target/debug/hoard || failed+=("$client")
done
echo "== end-to-end: cloud mode (segments in s3s-fs) =="
bash tests/e2e/cloud.sh target/debug/hoard || failed+=(cloud)
echo "== end-to-end: the dashboard in chromium (screenshots in target/ui-screenshots) =="
SHOTS=target/ui-screenshots python3 tests/e2e/dashboard.py target/debug/hoard || failed+=(dashboard)
echo "== the Helm chart: lint, render, validate, start what it renders =="
python3 tests/helm/check_chart.py target/debug/hoard || failed+=(helm)
if [ ${#failed[@]} -gt 0 ]; then
  echo "end-to-end failures: ${failed[*]}"
  exit 1
fi
