#!/usr/bin/env bash
# This tree against a baseline commit, side by side in one run on a release build:
# PUT of COUNT x SIZE_MIB objects of unique data, then the same data again (every
# chunk already stored), one stream, each server on an empty data dir. Prints MB/s
# and server CPU seconds per GiB (utime + stime from /proc/PID/stat) for both, and
# the ratios this / baseline (medians). The runs alternate, ROUNDS times, to even
# out the shared machine.
# usage: bench/ab.sh BASE_REV [COUNT=4] [SIZE_MIB=256] [ROUNDS=2]
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${1:?usage: bench/ab.sh BASE_REV [COUNT] [SIZE_MIB] [ROUNDS]}
COUNT=${2:-4}; SIZE=${3:-256}; ROUNDS=${4:-2}
AK=benchaccesskey SK=benchsecretkey0123456789
WORK=$(mktemp -d /tmp/hoard-ab.XXXXXX)
PID=
trap '[ -n "$PID" ] && kill -9 "$PID" 2>/dev/null; git worktree remove --force "$WORK/base-src" 2>/dev/null; rm -rf "$WORK"' EXIT
cargo build --release --bin hoard --example loadgen
git worktree add --detach "$WORK/base-src" "$BASE" >/dev/null
# The baseline's build is kept under target/ab/ (its dependencies are built once).
(cd "$WORK/base-src" && CARGO_TARGET_DIR="$OLDPWD/target/ab" cargo build --release --bin hoard)
BASE_BIN=$WORK/base-hoard
cp target/ab/release/hoard "$BASE_BIN"
LOADGEN=target/release/examples/loadgen
TICK=$(getconf CLK_TCK)

cpu_secs() { awk -v t="$TICK" '{ printf "%.3f", ($14 + $15) / t }' "/proc/$1/stat"; }

run() { # run NAME BINARY -> appends "NAME phase mbps cpu_s_per_gib" lines
  local dir=$WORK/$1-data
  rm -rf "$dir"
  HOARD_ROOT_ACCESS_KEY=$AK HOARD_ROOT_SECRET_KEY=$SK "$2" serve --listen 127.0.0.1:0 --data-dir "$dir" >"$dir.stdout" 2>"$dir.log" &
  PID=$!
  local ep=
  for _ in $(seq 1 100); do ep=$(sed -n 's|^hoard: listening on ||p' "$dir.stdout" 2>/dev/null); [ -n "$ep" ] && break; sleep 0.1; done
  curl -sf --aws-sigv4 aws:amz:us-east-1:s3 --user $AK:$SK -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' -X PUT "$ep/abtest" >/dev/null
  local gib
  gib=$(python3 -c "print($COUNT * $SIZE / 1024)")
  for phase in unique stored; do
    local c0 c1 out
    c0=$(cpu_secs "$PID")
    out=$("$LOADGEN" "$ep" $AK $SK objects abtest "$COUNT" "$SIZE" 7)
    c1=$(cpu_secs "$PID")
    python3 -c "import json,sys; print('$1', '$phase', json.loads(sys.argv[1])['put_mbps'], round(($c1 - $c0) / $gib, 2))" "$out" >> "$WORK/results"
  done
  kill -9 "$PID"; wait "$PID" 2>/dev/null || true; PID=
}

# Which goes first alternates, so neither always follows the other's writeback.
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) -eq 1 ]; then
    run base "$BASE_BIN"; run this target/release/hoard
  else
    run this target/release/hoard; run base "$BASE_BIN"
  fi
done
cat "$WORK/results"
python3 - "$WORK/results" "$BASE" <<'PY'
import sys, statistics
rows = {}
for line in open(sys.argv[1]):
    name, phase, mbps, cpu = line.split()
    rows.setdefault((name, phase), []).append((float(mbps), float(cpu)))
print(f"baseline {sys.argv[2]}; medians of {len(rows[('base', 'unique')])} runs")
print(f"| {'PUT, 1 stream':<28} | {'base MB/s':>9} | {'this MB/s':>9} | {'ratio':>6} | {'base CPU s/GiB':>14} | {'this CPU s/GiB':>14} | {'ratio':>6} |")
print(f"|{'-'*30}|{'-'*11}|{'-'*11}|{'-'*8}|{'-'*16}|{'-'*16}|{'-'*8}|")
for phase, label in [("unique", "unique data"), ("stored", "already-stored data")]:
    b = rows[("base", phase)]; t = rows[("this", phase)]
    bm, tm = statistics.median(x[0] for x in b), statistics.median(x[0] for x in t)
    bc, tc = statistics.median(x[1] for x in b), statistics.median(x[1] for x in t)
    print(f"| {label:<28} | {bm:>9.1f} | {tm:>9.1f} | {tm/bm:>5.2f}x | {bc:>14.2f} | {tc:>14.2f} | {tc/bc:>5.2f}x |")
PY
