#!/usr/bin/env bash
# hoard vs s3s-fs, side by side in one run, each on an empty data dir on 127.0.0.1.
# Prints both results and the ratio hoard / s3s-fs, then the generational backup
# workload: dedup ratio vs restic's repository on the same tars.
#
# usage: bench/run.sh [SIZE_MIB=1024] [TREE_MIB=256] [GENERATIONS=10]
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-1024}
TREE=${2:-256}
GENS=${3:-10}
AK=benchaccesskey SK=benchsecretkey0123456789
WORK=$(mktemp -d /tmp/hoard-bench.XXXXXX)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$WORK"' EXIT

command -v s3s-fs >/dev/null || cargo install s3s-fs@0.14.1 --features binary --locked
command -v restic >/dev/null || { apt-get update -qq && apt-get install -y -qq restic; }
cargo build --release --bin hoard --example loadgen
HOARD=target/release/hoard
LOADGEN=target/release/examples/loadgen

peak_rss_mib() { awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }

start_hoard() { # start_hoard DIR -> sets PID, EP
  HOARD_ROOT_ACCESS_KEY=$AK HOARD_ROOT_SECRET_KEY=$SK "$HOARD" serve --listen 127.0.0.1:0 --data-dir "$1" \
    >"$1.stdout" 2>"$1.log" &
  PID=$!; PIDS+=("$PID")
  for _ in $(seq 1 100); do
    EP=$(sed -n 's|^hoard: listening on ||p' "$1.stdout"); [ -n "$EP" ] && return; sleep 0.1
  done
  echo "hoard did not start" >&2; exit 1
}

start_s3sfs() { # start_s3sfs DIR PORT -> sets PID, EP
  mkdir -p "$1"
  s3s-fs --host 127.0.0.1 --port "$2" --access-key $AK --secret-key $SK "$1" >"$1.log" 2>&1 &
  PID=$!; PIDS+=("$PID")
  EP=http://127.0.0.1:$2
  for _ in $(seq 1 100); do curl -s -o /dev/null "$EP" && return; sleep 0.1; done
  echo "s3s-fs did not start" >&2; exit 1
}

run_load() { # run_load NAME -> writes $WORK/NAME.json (needs PID, EP)
  local json
  json=$("$LOADGEN" "$EP" $AK $SK "$SIZE")
  echo "${json%\}}, \"peak_rss_mib\": $(peak_rss_mib "$PID")}" > "$WORK/$1.json"
  kill -9 "$PID" 2>/dev/null; wait "$PID" 2>/dev/null || true
}

echo "== throughput: ${SIZE} MiB objects, 10,000 x 4 KiB PUTs (16 in flight) =="
start_s3sfs "$WORK/s3sfs" 18014; run_load s3sfs
start_hoard "$WORK/hoard"; run_load hoard
python3 - "$WORK/hoard.json" "$WORK/s3sfs.json" <<'PY'
import json, sys
h, s = (json.load(open(p)) for p in sys.argv[1:3])
rows = [("PUT 1 stream, unique data (MB/s)", "put_unique_mbps"),
        ("GET 1 stream (MB/s)", "get_mbps"),
        ("PUT 1 stream, already-stored data (MB/s)", "put_again_mbps"),
        ("PUT 4 streams, unique data (MB/s)", "put_4_streams_mbps"),
        ("PUT 4 KiB objects (ops/s)", "small_put_ops"),
        ("multipart 1 GiB, 4 parts in parallel (MB/s)", "multipart_4_parts_mbps"),
        ("CopyObject of the 1 GiB object (ms)", "copy_ms"),
        ("server peak RSS (MiB)", "peak_rss_mib")]
print(f"| {'measure':<42} | {'hoard':>9} | {'s3s-fs':>9} | {'hoard/s3s-fs':>12} |")
print(f"|{'-'*44}|{'-'*11}|{'-'*11}|{'-'*14}|")
for name, k in rows:
    print(f"| {name:<42} | {h[k]:>9.1f} | {s[k]:>9.1f} | {h[k]/s[k]:>11.2f}x |")
PY

echo
echo "== generational backup workload: ${GENS} daily tars of a ${TREE} MiB tree =="
python3 bench/generations.py "$WORK/tars" "$TREE" "$GENS" >/dev/null
start_hoard "$WORK/hoard-gen"
curl -sf --aws-sigv4 aws:amz:us-east-1:s3 --user $AK:$SK -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' -X PUT "$EP/gens" >/dev/null
for t in "$WORK"/tars/*.tar; do
  curl -sf --aws-sigv4 aws:amz:us-east-1:s3 --user $AK:$SK -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' \
    -T "$t" "$EP/gens/$(basename "$t")" >/dev/null
done
HOARD_ROOT_ACCESS_KEY=$AK HOARD_ROOT_SECRET_KEY=$SK "$HOARD" stats --json --endpoint "$EP" > "$WORK/gen-stats.json"
export RESTIC_PASSWORD=bench RESTIC_REPOSITORY=$WORK/restic
restic init --repository-version 2 >/dev/null
for t in "$WORK"/tars/*.tar; do
  restic backup --quiet --stdin --stdin-filename gens.tar < "$t"
done
RESTIC_BYTES=$(du -sb "$WORK/restic" | cut -f1)
python3 - "$WORK/gen-stats.json" "$RESTIC_BYTES" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))["total"]
restic = int(sys.argv[2])
logical, stored = t["logical_bytes"], t["stored_bytes"]
print(f"| {'':<34} | {'hoard':>14} | {'restic':>14} |")
print(f"|{'-'*36}|{'-'*16}|{'-'*16}|")
print(f"| {'logical bytes':<34} | {logical:>14,} | {logical:>14,} |")
print(f"| {'stored bytes (repository size)':<34} | {stored:>14,} | {restic:>14,} |")
print(f"| {'dedup+compression ratio':<34} | {logical/stored:>13.2f}x | {logical/restic:>13.2f}x |")
print(f"| {'hoard dedup ratio / compression':<34} | {t['dedup_ratio']:>6.2f}x / {t['compression_ratio']:.2f}x | {'':>14} |")
print(f"hoard stores {stored/restic:.2f}x what restic stores")
PY
exit 0
