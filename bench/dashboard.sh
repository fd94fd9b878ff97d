#!/usr/bin/env bash
# The dashboard's cost on the data path (issue 21): the same PUT then GET load on a
# fresh hoard with the dashboard off ([ui] enabled = false), and on one with it on
# and a browser's worth of polling: a signed-in session fetching the Overview,
# Buckets, Streams and Replication pages every second (five times the default
# refresh), with the history sampled every 5 s. Rounds alternate (off, on, off, on)
# so both see the same machine. Prints MB/s and server CPU seconds per GiB (from
# /proc/PID/stat) of each phase, and the ratios on/off of the medians.
# usage: bench/dashboard.sh [COUNT=4] [SIZE_MIB=256] [ROUNDS=2]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-4}
SIZE=${2:-256}
ROUNDS=${3:-2}
AK=benchaccesskey SK=benchsecretkey0123456789
WORK=$(mktemp -d /tmp/hoard-dashboard.XXXXXX)
trap 'kill -9 $(cat "$WORK/pids" 2>/dev/null) 2>/dev/null || true; rm -rf "$WORK"' EXIT
cargo build --release --bin hoard --example loadgen
HOARD=target/release/hoard
LOADGEN=target/release/examples/loadgen
TICK=$(getconf CLK_TCK)

start() { # start NAME CONFIG -> sets PID, EP
  printf '%s\n' "$2" >"$WORK/$1.toml"
  HOARD_ROOT_ACCESS_KEY=$AK HOARD_ROOT_SECRET_KEY=$SK "$HOARD" serve --listen 127.0.0.1:0 \
    --data-dir "$WORK/$1" --config "$WORK/$1.toml" >"$WORK/$1.stdout" 2>"$WORK/$1.log" &
  PID=$!; echo $PID >>"$WORK/pids"
  for _ in $(seq 1 100); do
    EP=$(sed -n 's|^hoard: listening on ||p' "$WORK/$1.stdout"); [ -n "$EP" ] && return; sleep 0.1
  done
  echo "$1 did not start" >&2; exit 1
}
cpu() { awk '{print $14 + $15}' "/proc/$PID/stat"; }

poll_pages() { # a signed-in browser refreshing four pages every second, until killed
  local cookie
  cookie=$(curl -s -o /dev/null -D - -X POST -d "access_key=$AK&secret_key=$SK" "$EP/ui/login" \
    | sed -n 's/^set-cookie: \(hoard_session=[^;]*\).*/\1/ip')
  [ -n "$cookie" ] || { echo "sign-in failed" >&2; exit 1; }
  while true; do
    for p in / /buckets /streams /replication; do
      curl -s -o /dev/null -H "cookie: $cookie" -H 'x-hoard-fragment: 1' "$EP/ui$p"
    done
    sleep 1
  done
}

phase() { # phase ROUND MODE -> one line: mode put_mbps put_cpu get_mbps get_cpu
  local c0 c1 c2 put get
  curl -sf --aws-sigv4 aws:amz:us-east-1:s3 --user $AK:$SK -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' \
    -X PUT "$EP/load" >/dev/null
  c0=$(cpu)
  put=$("$LOADGEN" "$EP" $AK $SK objects load "$N" "$SIZE" "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["put_mbps"])')
  c1=$(cpu)
  get=$("$LOADGEN" "$EP" $AK $SK objects load "$N" "$SIZE" "$1" get-only read | python3 -c 'import json,sys; print(json.load(sys.stdin)["get_mbps"])')
  c2=$(cpu)
  python3 - "$2" "$put" "$get" "$c0" "$c1" "$c2" "$TICK" "$N" "$SIZE" <<'PY'
import sys
mode, put, get, c0, c1, c2, tick, n, size = sys.argv[1:]
gib = int(n) * int(size) / 1024
per = lambda a, b: (float(b) - float(a)) / float(tick) / gib
print(mode, put, f"{per(c0, c1):.2f}", get, f"{per(c1, c2):.2f}")
PY
}

: >"$WORK/results"
for r in $(seq 1 "$ROUNDS"); do
  start "off$r" $'[ui]\nenabled = false'
  phase "$r" off >>"$WORK/results"
  kill -9 "$PID"
  start "on$r" $'[ui]\nsample_secs = 5'
  poll_pages & POLLER=$!; echo $POLLER >>"$WORK/pids"
  sleep 1
  phase "$r" on >>"$WORK/results"
  kill "$POLLER"; kill -9 "$PID"
done
python3 - "$WORK/results" "$N" "$SIZE" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
print(f"load: {sys.argv[2]} x {sys.argv[3]} MiB PUT then GET, per round")
print(f"| dashboard | PUT MB/s | PUT CPU s/GiB | GET MB/s | GET CPU s/GiB |")
print("|---|---|---|---|---|")
for r in rows:
    print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} |")
med = {m: [statistics.median(float(r[i]) for r in rows if r[0] == m) for i in range(1, 5)] for m in ("off", "on")}
names = ["PUT MB/s", "PUT CPU s/GiB", "GET MB/s", "GET CPU s/GiB"]
print("medians, on/off: " + ", ".join(f"{n} {med['on'][i]:.2f}/{med['off'][i]:.2f} = {med['on'][i] / med['off'][i]:.2f}x" for i, n in enumerate(names)))
PY
