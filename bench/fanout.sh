#!/usr/bin/env bash
# Replication fan-out and plain S3 targets (issue 20), one release build, every
# server on an empty data dir, over loopback. Bucket `src` gets COUNT x SIZE_MIB of
# new random data once; then, one after the other, each from the rule's resync:
#   1. one rule to a replica hoard R1 (the one-replica figure);
#   2. two rules at once, to fresh replica hoards R2 and R3: time until both have it;
#   3. one rule to a plain S3 bucket on s3s-fs (no dedup on that wire: every version
#      read back and written whole).
# Prints each step's seconds, logical MB/s, the bytes sent, and the source's CPU
# seconds per logical GiB (from /proc/PID/stat) during the step.
# usage: bench/fanout.sh [COUNT=16] [SIZE_MIB=256]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-16}
SIZE=${2:-256}
export HOARD_ROOT_ACCESS_KEY=benchaccesskey HOARD_ROOT_SECRET_KEY=benchsecretkey0123456789
WORK=$(mktemp -d /tmp/hoard-fanout.XXXXXX)
trap 'kill -9 $(cat "$WORK/pids" 2>/dev/null) 2>/dev/null || true; rm -rf "$WORK"' EXIT
cargo build --release --bin hoard --example loadgen
command -v s3s-fs >/dev/null || cargo install s3s-fs@0.14.1 --features binary --locked
HOARD=target/release/hoard
LOADGEN=target/release/examples/loadgen

start() { # start NAME [serve flags...] -> prints the endpoint
  local name=$1; shift
  "$HOARD" serve --listen 127.0.0.1:0 --data-dir "$WORK/$name" "$@" >"$WORK/$name.stdout" 2>"$WORK/$name.log" &
  echo $! >>"$WORK/pids"
  echo $! >"$WORK/$name.pid"
  for _ in $(seq 1 300); do
    local ep; ep=$(sed -n 's|^hoard: listening on ||p' "$WORK/$name.stdout" | head -1)
    [ -n "$ep" ] && { echo "$ep"; return; }
    sleep 0.1
  done
  echo "$name did not start" >&2; exit 1
}
cpu() { awk '{print $14 + $15}' "/proc/$(cat "$WORK/$1.pid")/stat"; } # clock ticks

SRC=$(start source)
S() { "$HOARD" "$@" --endpoint "$SRC"; }
S bucket create src >/dev/null
"$LOADGEN" "$SRC" "$HOARD_ROOT_ACCESS_KEY" "$HOARD_ROOT_SECRET_KEY" objects src "$N" "$SIZE" 1 >/dev/null
declare -A EP
for r in r1 r2 r3; do
  EP[$r]=$(start "$r" --tls)
  "$HOARD" bucket create mirror --endpoint "${EP[$r]}" --ca "$WORK/$r/tls/ca.pem" >/dev/null
  "$HOARD" user add link --grant mirror=replication --endpoint "${EP[$r]}" --ca "$WORK/$r/tls/ca.pem" >"$WORK/$r.key"
done
S3PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$WORK/s3fs/copies"
s3s-fs --host 127.0.0.1 --port "$S3PORT" --access-key fanoutaccess --secret-key fanoutsecret0123456789 "$WORK/s3fs" >/dev/null 2>&1 &
echo $! >>"$WORK/pids"
sleep 1

add() { # add RULE REPLICA
  local ak sk; ak=$(sed -n 's/^ *access key: //p' "$WORK/$2.key"); sk=$(sed -n 's/^ *secret key: //p' "$WORK/$2.key")
  S replication add --bucket src --rule "$1" --target "${EP[$2]}" --target-bucket mirror \
    --target-access-key "$ak" --target-secret-key "$sk" --target-ca "$WORK/$2/tls/ca.pem" >/dev/null
}
wait_done() { # wait_done RULE...: until each rule's resync and backlog are done
  for rule in "$@"; do
    while :; do
      S replication status src --rule "$rule" --json >"$WORK/status.json"
      python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); sys.exit(0 if s["resync_after"] is None and s["queued"] == 0 else 1)' "$WORK/status.json" && break
      sleep 0.2
    done
  done
}
report() { # report NAME T0 CPU0 RULE...
  local name=$1 t0=$2 c0=$3; shift 3
  local t1 c1 sent=0; t1=$(date +%s.%N); c1=$(cpu source)
  for rule in "$@"; do
    S replication status src --rule "$rule" --json >"$WORK/status.json"
    sent=$((sent + $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sent_bytes"])' "$WORK/status.json")))
  done
  python3 - "$name" "$t0" "$t1" "$c0" "$c1" "$sent" "$((N * SIZE * 1024 * 1024))" "$(getconf CLK_TCK)" <<'PY'
import sys
name, t0, t1, c0, c1, sent, logical, tck = sys.argv[1], *map(float, sys.argv[2:])
secs = t1 - t0
print(f"{name:<34} {secs:7.1f} s  {logical / secs / 1e6:7.1f} MB/s logical  sent {sent / 2**30:6.2f} GiB  source {(c1 - c0) / tck / (logical / 2**30):5.2f} CPU s/GiB")
PY
}

t0=$(date +%s.%N); c0=$(cpu source)
add one r1; wait_done one
report "one replica" "$t0" "$c0" one
t0=$(date +%s.%N); c0=$(cpu source)
add near r2; add far r3; wait_done near far
report "two replicas at once" "$t0" "$c0" near far
t0=$(date +%s.%N); c0=$(cpu source)
S replication add --bucket src --rule s3 --target "http://127.0.0.1:$S3PORT" --target-bucket copies \
  --target-access-key fanoutaccess --target-secret-key fanoutsecret0123456789 --target-kind s3 >/dev/null
wait_done s3
report "plain S3 target (s3s-fs)" "$t0" "$c0" s3
