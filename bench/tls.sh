#!/usr/bin/env bash
# PUT and GET over TLS against the same over plain HTTP, side by side in one run:
# two hoards from the same release build, each on an empty data dir on 127.0.0.1,
# one serving HTTPS with its generated ECDSA P-256 certificate (TLS 1.3), one plain.
# Each gets COUNT x SIZE_MIB objects of new random data, one stream at a time, then
# reads them back. Prints both and the ratio TLS / plain (target >= 0.8).
# usage: bench/tls.sh [COUNT=4] [SIZE_MIB=256]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-4}
SIZE=${2:-256}
export HOARD_ROOT_ACCESS_KEY=benchaccesskey HOARD_ROOT_SECRET_KEY=benchsecretkey0123456789
WORK=$(mktemp -d /tmp/hoard-tlsbench.XXXXXX)
PID=
trap '[ -n "$PID" ] && kill -9 "$PID" 2>/dev/null; rm -rf "$WORK"' EXIT
cargo build --release --bin hoard --example loadgen
HOARD=target/release/hoard
LOADGEN=target/release/examples/loadgen

run() { # run NAME [serve flags...] -> prints the loadgen JSON
  local name=$1; shift
  "$HOARD" serve --listen 127.0.0.1:0 --data-dir "$WORK/$name" "$@" >"$WORK/$name.stdout" 2>"$WORK/$name.log" &
  PID=$!
  local ep=
  for _ in $(seq 1 100); do
    ep=$(sed -n 's|^hoard: listening on ||p' "$WORK/$name.stdout" | head -1); [ -n "$ep" ] && break; sleep 0.1
  done
  local ca=
  [ -f "$WORK/$name/tls/ca.pem" ] && ca="--ca $WORK/$name/tls/ca.pem"
  "$HOARD" bucket create tlsb --endpoint "$ep" $ca >/dev/null
  HOARD_CA=${ca#--ca } "$LOADGEN" "$ep" "$HOARD_ROOT_ACCESS_KEY" "$HOARD_ROOT_SECRET_KEY" objects tlsb "$N" "$SIZE" 1 read
  kill -9 "$PID"; wait "$PID" 2>/dev/null || true; PID=
}

plain=$(run plain)
tls=$(run tls --tls)
echo "plain: $plain"
echo "tls:   $tls"
python3 - "$plain" "$tls" <<'PY'
import json, sys
p, t = (json.loads(x) for x in sys.argv[1:3])
for k, name in (("put_mbps", "PUT"), ("get_mbps", "GET")):
    print(f"{name} over TLS / plain: {t[k] / p[k]:.2f}x ({t[k]:.1f} / {p[k]:.1f} MB/s)")
PY
