#!/usr/bin/env bash
# Cold-cache GETs through hoard (mode "cloud", segments in s3s-fs) beside direct GETs
# of the same GiB from the same s3s-fs, N rounds, each with an empty restore cache
# (hoard restarted, its cache dir removed). Prints each round's MB/s, the CPU
# seconds per GiB of hoard and of s3s-fs (/proc/PID/stat), and the ratio; release
# build. usage: bench/cold_get.sh [ROUNDS=3]
set -euo pipefail
cd /work/main
N=${1:-3}; SIZE=1024
AK=benchaccesskey SK=benchsecretkey0123456789
WORK=$(mktemp -d /tmp/cold.XXXXXX)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$WORK"' EXIT
cargo build --release --bin hoard
HOARD=target/release/hoard
TICK=$(getconf CLK_TCK)
cpu() { awk -v t="$TICK" '{ printf "%.3f", ($14 + $15) / t }' "/proc/$1/stat"; }
now() { date +%s.%N; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
mkdir -p "$WORK/s3/direct" "$WORK/s3/segs"
S3PORT=$(free_port)
s3s-fs --host 127.0.0.1 --port "$S3PORT" --access-key "$AK" --secret-key "$SK" "$WORK/s3" >/dev/null 2>&1 &
S3PID=$!; PIDS+=($S3PID)
head -c $((SIZE << 20)) /dev/urandom >"$WORK/data"
export AWS_ACCESS_KEY_ID=$AK AWS_SECRET_ACCESS_KEY=$SK AWS_DEFAULT_REGION=us-east-1
sleep 1
direct=http://127.0.0.1:$S3PORT
aws --endpoint-url "$direct" s3 cp --only-show-errors "$WORK/data" s3://direct/data
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
start() {
  HPORT=$(free_port)
  HOARD_ROOT_ACCESS_KEY=$AK HOARD_ROOT_SECRET_KEY=$SK "$HOARD" serve --listen "127.0.0.1:$HPORT" \
    --data-dir "$WORK/h" --config "$WORK/cloud.toml" >/dev/null 2>"$WORK/h.log" &
  HPID=$!; PIDS+=("$HPID")
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$HPORT") 2>/dev/null && break; sleep 0.1; done
}
start
aws --endpoint-url "http://127.0.0.1:$HPORT" s3 mb s3://bench >/dev/null
aws --endpoint-url "http://127.0.0.1:$HPORT" s3 cp --only-show-errors "$WORK/data" s3://bench/data
for r in $(seq 1 "$N"); do
  s0=$(cpu $S3PID); t0=$(now)
  aws --endpoint-url "$direct" s3 cp --only-show-errors s3://direct/data "$WORK/out"
  t1=$(now); s1=$(cpu $S3PID)
  kill -9 "$HPID"; sleep 0.5; rm -rf "$WORK/h/cache"; sync; start
  h0=$(cpu $HPID); s2=$(cpu $S3PID); t2=$(now)
  aws --endpoint-url "http://127.0.0.1:$HPORT" s3 cp --only-show-errors s3://bench/data "$WORK/out"
  t3=$(now); h1=$(cpu $HPID); s3=$(cpu $S3PID)
  echo "$t1 $t0 $t3 $t2 $s1 $s0 $h1 $h0 $s3 $s2" | awk -v S=$SIZE '{ d=S*1.048576/($1-$2); c=S*1.048576/($3-$4);
    printf "round: direct %.0f MB/s (s3s-fs %.2f cpu-s/GiB)  cold %.0f MB/s (hoard %.2f, s3s-fs %.2f cpu-s/GiB)  ratio %.2f\n",
    d, ($5-$6)*1024/S, c, ($7-$8)*1024/S, ($9-$10)*1024/S, c/d }'
done
