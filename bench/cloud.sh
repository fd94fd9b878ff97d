#!/usr/bin/env bash
# Mode "cloud" side by side with its baselines, one run, release build, one client
# (aws-cli) for all: SIZE_MIB of random data PUT and GET straight to s3s-fs, through
# hoard with its segments in that s3s-fs (sealed), and through hoard on local files,
# plain and sealed (the local tier of mode "tiered" is sealed by default).
# The GETs through the cloud store are cold (the cache is empty after a PUT) then
# warm. Prints MB/s, hoard's CPU seconds per GiB (/proc/PID/stat), the ratios the
# issue names, and the object-store requests per GiB written and restored.
# usage: bench/cloud.sh [SIZE_MIB=1024] [TREE_MIB=128] [GENERATIONS=5]
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-1024}
AK=benchaccesskey SK=benchsecretkey0123456789
WORK=$(mktemp -d /tmp/hoard-cloud.XXXXXX)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$WORK"' EXIT
cargo build --release --bin hoard
HOARD=target/release/hoard
TICK=$(getconf CLK_TCK)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
cpu_secs() { awk -v t="$TICK" '{ printf "%.3f", ($14 + $15) / t }' "/proc/$1/stat"; }
now() { date +%s.%N; }

mkdir -p "$WORK/s3/direct" "$WORK/s3/segs"
S3PORT=$(free_port)
s3s-fs --host 127.0.0.1 --port "$S3PORT" --access-key "$AK" --secret-key "$SK" "$WORK/s3" >/dev/null 2>&1 &
PIDS+=($!)
head -c $((SIZE << 20)) /dev/urandom >"$WORK/data"
export AWS_ACCESS_KEY_ID=$AK AWS_SECRET_ACCESS_KEY=$SK AWS_DEFAULT_REGION=us-east-1
sleep 1

# transfer ENDPOINT SRC DST -> seconds
transfer() { local t0; t0=$(now); aws --endpoint-url "$1" s3 cp --only-show-errors "$2" "$3"; echo "$(now) - $t0" | bc -l; }
mbps() { echo "$SIZE * 1.048576 / $1" | bc -l; }
per_gib() { echo "$1 * 1024 / $SIZE" | bc -l; }

start_hoard() { # start_hoard NAME [CONFIG] -> sets HPID HPORT
  HPORT=$(free_port)
  local cfg=()
  [ -n "${2:-}" ] && cfg=(--config "$2")
  HOARD_ROOT_ACCESS_KEY=$AK HOARD_ROOT_SECRET_KEY=$SK "$HOARD" serve --listen "127.0.0.1:$HPORT" \
    --data-dir "$WORK/$1-data" "${cfg[@]}" >/dev/null 2>"$WORK/$1.log" &
  HPID=$!; PIDS+=("$HPID")
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$HPORT") 2>/dev/null && break; sleep 0.1; done
}
metric() { curl -s "http://127.0.0.1:$HPORT/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }

# hoard_run NAME [CONFIG]: PUT, GET, GET; prints a line per phase
hoard_run() {
  start_hoard "$@"
  local ep=http://127.0.0.1:$HPORT c0 c1 t
  aws --endpoint-url "$ep" s3 mb s3://bench >/dev/null
  for phase in put get-1 get-2; do
    c0=$(cpu_secs "$HPID")
    if [ "$phase" = put ]; then t=$(transfer "$ep" "$WORK/data" s3://bench/data)
    else t=$(transfer "$ep" s3://bench/data "$WORK/out"); cmp -s "$WORK/data" "$WORK/out" || { echo "FAIL $1 $phase: bytes differ"; exit 1; }; fi
    c1=$(cpu_secs "$HPID")
    printf '%-8s %-6s %8.1f MB/s %6.2f cpu-s/GiB\n' "$1" "$phase" "$(mbps "$t")" "$(per_gib "$(echo "$c1 - $c0" | bc -l)")"
    echo "$1 $phase $(mbps "$t")" >>"$WORK/rates"
  done
}

direct=http://127.0.0.1:$S3PORT
t=$(transfer "$direct" "$WORK/data" s3://direct/data); echo "direct put $(mbps "$t")" >>"$WORK/rates"
printf '%-8s %-6s %8.1f MB/s\n' direct put "$(mbps "$t")"
t=$(transfer "$direct" s3://direct/data "$WORK/out"); echo "direct get $(mbps "$t")" >>"$WORK/rates"
printf '%-8s %-6s %8.1f MB/s\n' direct get "$(mbps "$t")"

cat >"$WORK/cloud.toml" <<TOML
[segments]
backend = "s3"
[segments.s3]
endpoint = "$direct"
bucket = "segs"
region = "us-east-1"
access_key = "$AK"
secret_key = "$SK"
TOML
hoard_run cloud "$WORK/cloud.toml"
objects=$(find "$WORK/s3/segs/segments" -type f | wc -l)
misses=$(metric hoard_cache_misses_total)
kill -9 "$HPID"
hoard_run local
kill -9 "$HPID"
# The local tier of mode "tiered" seals its segments by default: the same store sealed.
printf '[segments]\nencrypt = true\n' >"$WORK/sealed.toml"
hoard_run sealed "$WORK/sealed.toml"

rate() { awk -v n="$1" -v p="$2" '$1 == n && $2 == p { print $3 }' "$WORK/rates"; }
echo "ratios: cloud put / direct put $(echo "$(rate cloud put) / $(rate direct put)" | bc -l | cut -c1-5)," \
  "cold get / direct get $(echo "$(rate cloud get-1) / $(rate direct get)" | bc -l | cut -c1-5)," \
  "warm get / local get $(echo "$(rate cloud get-2) / $(rate local get-2)" | bc -l | cut -c1-5)," \
  "warm get / sealed local get $(echo "$(rate cloud get-2) / $(rate sealed get-2)" | bc -l | cut -c1-5)"
echo "object-store requests: $(per_gib "$objects" | cut -c1-6) PUTs per GiB written," \
  "$(per_gib "${misses:-0}" | cut -c1-6) GETs per GiB restored (cold)"

# The generational workload (bench/generations.py) in each mode: what hoard counts as
# stored, and what the store holds in files or objects (the difference is the seal:
# a header per segment and 28 bytes per chunk).
TREE=${2:-128} GENS=${3:-5}
echo "== generational workload: $GENS daily tars of a $TREE MiB tree =="
python3 bench/generations.py "$WORK/tars" "$TREE" "$GENS" >/dev/null
kill -9 "$HPID"
bytes_in() { find "$1" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'; }
gen_run() { # gen_run NAME SEGMENT_DIR [CONFIG]
  start_hoard "$1" "${3:-}"
  local ep=http://127.0.0.1:$HPORT
  aws --endpoint-url "$ep" s3 mb s3://gens >/dev/null
  for t in "$WORK"/tars/*.tar; do
    curl -sf --aws-sigv4 aws:amz:us-east-1:s3 --user "$AK:$SK" -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' \
      -T "$t" "$ep/gens/$(basename "$t")" >/dev/null
  done
  HOARD_ROOT_ACCESS_KEY=$AK HOARD_ROOT_SECRET_KEY=$SK "$HOARD" stats --json --endpoint "$ep" >"$WORK/$1-gen.json"
  echo "$1 $(bytes_in "$2")" >>"$WORK/held"
  kill -9 "$HPID"
}
mkdir -p "$WORK/s3/gens"
sed 's/bucket = "segs"/bucket = "gens"/' "$WORK/cloud.toml" >"$WORK/gens.toml"
gen_run gen-local "$WORK/gen-local-data/segments"
gen_run gen-sealed "$WORK/gen-sealed-data/segments" "$WORK/sealed.toml"
gen_run gen-cloud "$WORK/s3/gens/segments" "$WORK/gens.toml"
python3 - "$WORK" <<'PY'
import json, sys
w = sys.argv[1]
held = dict(l.split() for l in open(f"{w}/held"))
print(f"| {'mode':<18} | {'logical':>14} | {'stored (stats)':>14} | {'held by the store':>17} |")
print(f"|{'-'*20}|{'-'*16}|{'-'*16}|{'-'*19}|")
for name, label in [("gen-local", "fs"), ("gen-sealed", "fs, sealed"), ("gen-cloud", "cloud (sealed)")]:
    t = json.load(open(f"{w}/{name}-gen.json"))["total"]
    print(f"| {label:<18} | {t['logical_bytes']:>14,} | {t['stored_bytes']:>14,} | {int(held[name]):>17,} |")
base = int(held["gen-local"])
print(f"held: cloud / fs {int(held['gen-cloud']) / base:.4f}, sealed fs / fs {int(held['gen-sealed']) / base:.4f}")
PY
