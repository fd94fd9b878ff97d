#!/usr/bin/env bash
# Scale-out (issue 19), one run, release build: aggregate PUT and GET throughput with
# 1, 2 and 3 gateways on PostgreSQL (segments in one s3s-fs), beside one hoard on its
# embedded default (redb, local disk) driven by as many streams. One loadgen per
# stream, each against its own gateway (round-robin on the single hoard), each PUTting
# then GETting OBJECTS new objects of OBJECT_MIB. Prints MB/s, server CPU seconds per
# GiB (gateways; PostgreSQL's and s3s-fs's beside), and PostgreSQL transactions per
# PUT and per GET (pg_stat_database, the idle rate of the gateways' background loops
# subtracted). The redb rows are the embedded default on local disk and the same with
# its segments in s3s-fs, so the PostgreSQL rows compare with both. Then the
# generational workload (bench/generations.py) written through one gateway, and
# round-robin through three, back to back and with a pause between tars: what
# cross-gateway dedup misses.
#
# usage: bench/cluster.sh [OBJECTS=16] [OBJECT_MIB=16] [TREE_MIB=256] [GENERATIONS=10]
set -euo pipefail
cd "$(dirname "$0")/.."
OBJECTS=${1:-16}
OBJ_MIB=${2:-16}
TREE=${3:-256}
GENS=${4:-10}
AK=benchaccesskey SK=benchsecretkey0123456789
WORK=$(mktemp -d /tmp/hoard-cluster.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  bash scripts/pg-cluster.sh stop "$WORK/pg" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
command -v s3s-fs >/dev/null || cargo install s3s-fs@0.14.1 --features binary --locked
cargo build --release --bin hoard --example loadgen
HOARD=target/release/hoard
LOADGEN=target/release/examples/loadgen
TICK=$(getconf CLK_TCK)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
cpu_of() { # cpu_of PID... -> summed CPU seconds
  local sum=0 p
  for p in "$@"; do sum=$(awk -v s="$sum" -v t="$TICK" '{ printf "%.3f", s + ($14 + $15) / t }' "/proc/$p/stat"); done
  echo "$sum"
}
pg_cpu() { # every PostgreSQL process's CPU seconds (the cluster's own user, or ours)
  local owner
  owner=$(stat -c %U "$WORK/pg/data")
  # shellcheck disable=SC2046
  cpu_of $(pgrep -u "$owner" -f 'postgres|postmaster' | tr '\n' ' ')
}

PG_URL=$(bash scripts/pg-cluster.sh start "$WORK/pg" $$)
pg_sql() { # pg_sql DB SQL
  psql -qtAX "${PG_URL%/*}/$1" -c "$2"
}
xacts() { sleep 1.2; pg_sql "$1" "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '$1'"; }

mkdir -p "$WORK/s3"
S3PORT=$(free_port)
s3s-fs --host 127.0.0.1 --port "$S3PORT" --access-key "$AK" --secret-key "$SK" "$WORK/s3" >/dev/null 2>&1 &
S3PID=$!; PIDS+=("$S3PID")
sleep 1

start_gateway() { # start_gateway NAME [META_URL|- SEGMENT_BUCKET] -> appends to GW_PIDS, GW_EPS
  local port cfg=() env=()
  port=$(free_port)
  if [ -n "${3:-}" ]; then
    mkdir -p "$WORK/s3/$3"
    cat >"$WORK/$1.toml" <<TOML
[segments]
backend = "s3"
[segments.s3]
endpoint = "http://127.0.0.1:$S3PORT"
bucket = "$3"
region = "us-east-1"
access_key = "$AK"
secret_key = "$SK"
TOML
    cfg=(--config "$WORK/$1.toml")
    env=(HOARD_SECRETS_KEY=3333333333333333333333333333333333333333333333333333333333333333)
    [ "$2" != - ] && env+=(HOARD_META="$2")
  fi
  env "${env[@]}" HOARD_ROOT_ACCESS_KEY=$AK HOARD_ROOT_SECRET_KEY=$SK "$HOARD" serve \
    --listen "127.0.0.1:$port" --data-dir "$WORK/$1-data" "${cfg[@]}" >/dev/null 2>"$WORK/$1.log" &
  GW_PIDS+=($!); PIDS+=($!); GW_EPS+=("http://127.0.0.1:$port")
  for _ in $(seq 1 200); do curl -sf -o /dev/null "http://127.0.0.1:$port/health" && return; sleep 0.1; done
  echo "gateway $1 did not start: $(cat "$WORK/$1.log")" >&2; exit 1
}

# phase STREAMS OPTIONS... -> seconds for all streams, in parallel
phase() {
  local n=$1 t0 i pids=(); shift
  t0=$(now)
  for ((i = 0; i < n; i++)); do
    "$LOADGEN" "${GW_EPS[$((i % ${#GW_EPS[@]}))]}" $AK $SK objects bench "$OBJECTS" "$OBJ_MIB" $((i + 1)) "$@" >/dev/null &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  echo "$(now) - $t0" | bc -l
}

# run LABEL STREAMS [DB|cloud-NAME]: N gateways on PostgreSQL database DB, or one
# redb hoard (on local disk, or with its segments in s3s-fs: cloud-NAME)
run() {
  local label=$1 n=$2 db=${3:-} i gib c0 c1 p0 p1 s0 s1 x0 x1 idle t
  GW_PIDS=(); GW_EPS=()
  if [[ "$db" == cloud-* ]]; then
    start_gateway "$db" - "$db"
    db=
  elif [ -n "$db" ]; then
    pg_sql postgres "CREATE DATABASE $db" >/dev/null
    for ((i = 0; i < n; i++)); do start_gateway "$db-$i" "${PG_URL%/*}/$db" "$db"; done
  else
    start_gateway "$label"
  fi
  curl -sf --aws-sigv4 aws:amz:us-east-1:s3 --user $AK:$SK -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' \
    -X PUT "${GW_EPS[0]}/bench" >/dev/null
  gib=$(echo "$n * $OBJECTS * $OBJ_MIB / 1024" | bc -l)
  idle=0
  if [ -n "$db" ]; then x0=$(xacts "$db"); sleep 5; x1=$(xacts "$db"); idle=$(echo "($x1 - $x0) / 6.2" | bc -l); fi
  for what in put get; do
    local opts=()
    [ "$what" = get ] && opts=(get-only read)
    c0=$(cpu_of "${GW_PIDS[@]}"); p0=$(pg_cpu); s0=$(cpu_of "$S3PID")
    [ -n "$db" ] && x0=$(xacts "$db")
    t=$(phase "$n" "${opts[@]}")
    c1=$(cpu_of "${GW_PIDS[@]}"); p1=$(pg_cpu); s1=$(cpu_of "$S3PID")
    local per_op="-"
    if [ -n "$db" ]; then
      x1=$(xacts "$db")
      per_op=$(echo "($x1 - $x0 - $idle * ($t + 2.4)) / ($n * $OBJECTS)" | bc -l)
      per_op=$(printf '%.1f' "$per_op")
    fi
    printf '| %-30s | %-3s | %7.1f | %6.2f | %6.2f | %6.2f | %6s |\n' "$label" "$what" \
      "$(echo "$gib * 1073.741824 / $t" | bc -l)" "$(echo "($c1 - $c0) / $gib" | bc -l)" \
      "$(echo "($p1 - $p0) / $gib" | bc -l)" "$(echo "($s1 - $s0) / $gib" | bc -l)" "$per_op"
  done
  for p in "${GW_PIDS[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null || true; done
}

echo "== aggregate throughput: one stream per gateway, $OBJECTS x $OBJ_MIB MiB new objects each =="
echo "| setup                          | op  |    MB/s | hoard cpu-s/GiB | pg cpu-s/GiB | s3s-fs cpu-s/GiB | pg xacts/op |"
echo "|--------------------------------|-----|---------|--------|--------|--------|--------|"
for n in 1 2 3; do
  run "redb+fs, 1 hoard, $n str" "$n"
  run "redb+s3s-fs, 1 hoard, $n str" "$n" "cloud-$n"
  run "postgres+s3s-fs, $n gateway(s)" "$n" "tp$n"
done

echo
echo "== generational workload: $GENS daily tars of a $TREE MiB tree, one gateway vs three round-robin =="
echo "(back to back: each tar PUT the moment the one before was answered; paused: 3 s between)"
python3 bench/generations.py "$WORK/tars" "$TREE" "$GENS" >/dev/null
for setup in 1-0 3-0 3-3; do
  n=${setup%-*} pause=${setup#*-}
  GW_PIDS=(); GW_EPS=()
  db=gen${n}p$pause
  pg_sql postgres "CREATE DATABASE $db" >/dev/null
  for ((i = 0; i < n; i++)); do start_gateway "$db-$i" "${PG_URL%/*}/$db" "$db"; done
  curl -sf --aws-sigv4 aws:amz:us-east-1:s3 --user $AK:$SK -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' \
    -X PUT "${GW_EPS[0]}/gens" >/dev/null
  i=0
  for t in "$WORK"/tars/*.tar; do
    curl -sf --aws-sigv4 aws:amz:us-east-1:s3 --user $AK:$SK -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' \
      -T "$t" "${GW_EPS[$((i % n))]}/gens/$(basename "$t")" >/dev/null
    i=$((i + 1))
    sleep "$pause"
  done
  HOARD_ROOT_ACCESS_KEY=$AK HOARD_ROOT_SECRET_KEY=$SK "$HOARD" stats --json --endpoint "${GW_EPS[0]}" >"$WORK/$db.json"
  for p in "${GW_PIDS[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null || true; done
done
python3 - "$WORK/gen1p0.json" "$WORK/gen3p0.json" "$WORK/gen3p3.json" <<'PY'
import json, sys
cols = [json.load(open(p))["total"] for p in sys.argv[1:4]]
names = ["1 gateway", "3, back to back", "3, paused"]
print("| " + " " * 20 + " | " + " | ".join(f"{n:>15}" for n in names) + " |")
print("|" + "-" * 22 + "|" + "|".join("-" * 17 for _ in names) + "|")
for name, k in [("logical bytes", "logical_bytes"), ("unique bytes", "unique_bytes"),
                ("stored bytes", "stored_bytes")]:
    print(f"| {name:<20} | " + " | ".join(f"{c[k]:>15,}" for c in cols) + " |")
print(f"| {'stored / 1 gateway':<20} | " + " | ".join(f"{c['stored_bytes'] / cols[0]['stored_bytes']:>14.3f}x" for c in cols) + " |")
PY
