#!/usr/bin/env bash
# Backup software end to end in mode "cloud": rclone and restic against a hoard whose
# segments live in an S3 bucket of a real S3 server (s3s-fs) on 127.0.0.1. Runs
# tests/e2e/{rclone,restic}.sh with HOARD_CONFIG naming the bucket, then checks that
# the segments are objects in the bucket (tests/cloud.rs checks none is on the disk).
# usage: tests/e2e/cloud.sh path/to/hoard
set -uo pipefail
HOARD=${1:?usage: cloud.sh path/to/hoard}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(mktemp -d)
S3FS_PID=
trap '[ -n "$S3FS_PID" ] && { kill -9 "$S3FS_PID"; wait "$S3FS_PID"; } 2>/dev/null; rm -rf "$ROOT"' EXIT
mkdir -p "$ROOT/store/segs"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
s3s-fs --host 127.0.0.1 --port "$PORT" --access-key e2etieraccess --secret-key e2etiersecret0123456789 \
  "$ROOT/store" >"$ROOT/s3s-fs.log" 2>&1 &
S3FS_PID=$!
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
failed=0
for client in rclone restic; do
  # Each client's hoard is a store of its own (own metadata, own secrets key), so
  # it gets a prefix of its own: two stores never share one.
  cat >"$ROOT/$client.toml" <<TOML
[segments]
backend = "s3"
[segments.s3]
endpoint = "http://127.0.0.1:$PORT"
bucket = "segs"
prefix = "e2e-$client"
region = "us-east-1"
access_key = "e2etieraccess"
secret_key = "e2etiersecret0123456789"
TOML
  echo "== cloud mode: $client =="
  HOARD_CONFIG=$ROOT/$client.toml bash "$HERE/$client.sh" "$HOARD" || failed=1
done
segments=$(find "$ROOT"/store/segs/e2e-*/segments -type f 2>/dev/null | wc -l)
if [ "$segments" -gt 0 ]; then
  echo "PASS segments are objects in the bucket ($segments)"
else
  echo "FAIL no segment reached the bucket"; failed=1
fi
exit $failed
