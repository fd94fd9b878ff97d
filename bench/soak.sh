#!/usr/bin/env bash
# Long reliability soaks, kept out of CI (which runs short versions of the same tests):
#  - the kill -9 loop: HOARD_CRASH_LOOPS restarts (default 50) under mixed PUT,
#    multipart, copy, delete and gc traffic; after each, every acknowledged write
#    reads back, nothing partial is listed and verify finds no count problem;
#  - cancelled uploads: HOARD_CANCEL_ATTEMPTS (default 5000) uploads cut at random
#    points over HTTP/1.1 and HTTP/2, plain and TLS.
# usage: bench/soak.sh [CRASH_LOOPS=50] [CANCEL_ATTEMPTS=5000]
set -euo pipefail
cd "$(dirname "$0")/.."
export HOARD_CRASH_LOOPS=${1:-50} HOARD_CANCEL_ATTEMPTS=${2:-5000}
cargo test --release --test crash_loop --test cancellation -- --nocapture --test-threads 1
