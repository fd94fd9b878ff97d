#!/usr/bin/env bash
# The cleaner's cost, on a release build:
#  1. a gc pass over ~1,000,000 chunks: OBJECTS x OBJECT_MIB of new random data in a
#     bucket with 16 KiB average chunks, every other object deleted;
#  2. compaction: a 1 GiB object of which a 1 MiB slice per 4 MiB is kept;
#  3. PUT throughput (4 x 256 MiB, one stream at a time) alone and while a gc pass
#     runs over 4 GiB of freshly deleted data; the ratio must stay >= 0.8.
# usage: bench/gc.sh [OBJECTS=64] [OBJECT_MIB=256]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-64}
SIZE=${2:-256}
export HOARD_ROOT_ACCESS_KEY=benchaccesskey HOARD_ROOT_SECRET_KEY=benchsecretkey0123456789
WORK=$(mktemp -d /tmp/hoard-gcbench.XXXXXX)
PID=
trap '[ -n "$PID" ] && kill -9 "$PID" 2>/dev/null; rm -rf "$WORK"' EXIT
cargo build --release --bin hoard --example loadgen
HOARD=target/release/hoard
LOADGEN=target/release/examples/loadgen

"$HOARD" serve --listen 127.0.0.1:0 --data-dir "$WORK/data" >"$WORK/stdout" 2>"$WORK/log" &
PID=$!
for _ in $(seq 1 100); do
  EP=$(sed -n 's|^hoard: listening on ||p' "$WORK/stdout"); [ -n "$EP" ] && break; sleep 0.1
done
load() { "$LOADGEN" "$EP" "$HOARD_ROOT_ACCESS_KEY" "$HOARD_ROOT_SECRET_KEY" "$@"; }
chunks() { "$HOARD" stats --json --endpoint "$EP" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"]["unique_chunks"])'; }
gc() { "$HOARD" gc --grace-period 0s --endpoint "$EP"; }

echo "== 1. gc pass over $N x $SIZE MiB in 16 KiB chunks, every other object deleted =="
"$HOARD" bucket create gcb --chunk-avg 16384 --endpoint "$EP" >/dev/null
ingest=$(load objects gcb "$N" "$SIZE" 1 delete-odd)
echo "ingest: $ingest"
echo "chunks in the store before gc: $(chunks)"
gc
echo "chunks in the store after gc: $(chunks)"

echo "== 2. compaction: 1 GiB object, a 1 MiB slice of every 4 MiB kept =="
"$HOARD" bucket create cmp --endpoint "$EP" >/dev/null
sparse=$(load sparse cmp 1024)
gc

echo "== 3. PUT throughput (4 x 256 MiB) alone and during a gc pass =="
alone=$(load objects gcb 4 256 7)
echo "alone: $alone"
load objects gcb 32 256 8 delete-odd >/dev/null
gc > "$WORK/gc3.out" &
GC=$!
during=$(load objects gcb 4 256 9)
wait "$GC"
echo "during gc: $during"
echo "gc pass that ran meanwhile: $(cat "$WORK/gc3.out")"
python3 - "$alone" "$during" <<'PY'
import json, sys
a, d = (json.loads(x)["put_mbps"] for x in sys.argv[1:3])
print(f"PUT during gc / alone: {d / a:.2f}x ({d:.1f} / {a:.1f} MB/s)")
PY
