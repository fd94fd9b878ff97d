#!/usr/bin/env bash
# Replication over loopback TLS between two hoards from the same release build, each
# on an empty data dir: the replica serves HTTPS with its generated certificate, the
# source trusts its CA.
#   1. first replication of unique data: bucket `src` gets COUNT x SIZE_MIB of new
#      random data, then a rule src -> mirror is added; its resync sends it all.
#   2. the same with 4 connections: bucket `src3` gets other new random data, rule
#      src3 -> mirror3 with --connections 4.
#   3. the replica already holds the chunks: bucket `src2` gets the data of step 1
#      again (the source dedups it), then a rule src2 -> mirror2; only chunk ids and
#      manifests need to travel.
# Prints, for each, the logical MB/s (object bytes / time until the replica has
# everything) and the bytes sent, from `hoard replication status`.
# usage: bench/replication.sh [COUNT=16] [SIZE_MIB=256]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-16}
SIZE=${2:-256}
export HOARD_ROOT_ACCESS_KEY=benchaccesskey HOARD_ROOT_SECRET_KEY=benchsecretkey0123456789
WORK=$(mktemp -d /tmp/hoard-replbench.XXXXXX)
# start() runs in a command substitution (a subshell), so the servers' pids go to a
# file the trap reads, not to a shell variable.
trap 'kill -9 $(cat "$WORK/pids" 2>/dev/null) 2>/dev/null || true; rm -rf "$WORK"' EXIT
cargo build --release --bin hoard --example loadgen
HOARD=target/release/hoard
LOADGEN=target/release/examples/loadgen

start() { # start NAME [serve flags...] -> prints the endpoint
  local name=$1; shift
  "$HOARD" serve --listen 127.0.0.1:0 --data-dir "$WORK/$name" "$@" >"$WORK/$name.stdout" 2>"$WORK/$name.log" &
  echo $! >>"$WORK/pids"
  for _ in $(seq 1 300); do
    local ep; ep=$(sed -n 's|^hoard: listening on ||p' "$WORK/$name.stdout" | head -1)
    [ -n "$ep" ] && { echo "$ep"; return; }
    sleep 0.1
  done
  echo "$name did not start" >&2; exit 1
}

SRC=$(start source)
DST=$(start replica --tls)
CA=$WORK/replica/tls/ca.pem
R() { "$HOARD" "$@" --endpoint "$DST" --ca "$CA"; }
S() { "$HOARD" "$@" --endpoint "$SRC"; }
R bucket create mirror >/dev/null
R bucket create mirror2 >/dev/null
R bucket create mirror3 >/dev/null
R user add link --grant mirror=replication --grant mirror2=replication --grant mirror3=replication >"$WORK/key"
AK=$(sed -n 's/^ *access key: //p' "$WORK/key"); SK=$(sed -n 's/^ *secret key: //p' "$WORK/key")

replicate() { # replicate SRC_BUCKET DST_BUCKET CONNECTIONS -> prints a JSON line
  local b=$1 m=$2 c=$3 t0 t1
  sleep 2 # the sender drops the events of buckets without a rule; the resync sends them
  t0=$(date +%s.%N)
  S replication add --bucket "$b" --target "$DST" --target-bucket "$m" \
    --target-access-key "$AK" --target-secret-key "$SK" --target-ca "$CA" --connections "$c" >/dev/null
  while :; do
    S replication status "$b" --json >"$WORK/status.json"
    python3 - "$WORK/status.json" <<'PY' && break
import json, sys
s = json.load(open(sys.argv[1]))
sys.exit(0 if s["resync_after"] is None and s["queued"] == 0 else 1)
PY
    sleep 0.2
  done
  t1=$(date +%s.%N)
  python3 - "$WORK/status.json" "$t0" "$t1" <<'PY'
import json, sys
s = json.load(open(sys.argv[1])); secs = float(sys.argv[3]) - float(sys.argv[2])
print(json.dumps({"seconds": round(secs, 2), "logical_bytes": s["logical_bytes"],
                  "sent_bytes": s["sent_bytes"], "logical_mbps": round(s["logical_bytes"] / secs / 1e6, 1)}))
PY
}

load() { "$LOADGEN" "$SRC" "$HOARD_ROOT_ACCESS_KEY" "$HOARD_ROOT_SECRET_KEY" objects "$1" "$N" "$SIZE" "$2" >/dev/null; }
for b in src src2 src3; do S bucket create $b >/dev/null; done
load src 1
one=$(replicate src mirror 1)
load src3 3
four=$(replicate src3 mirror3 4)
load src2 1
known=$(replicate src2 mirror2 1)
echo "unique data, 1 connection:         $one"
echo "unique data, 4 connections:        $four"
echo "replica holds the chunks, 1 conn.: $known"
