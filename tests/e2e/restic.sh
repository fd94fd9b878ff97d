#!/usr/bin/env bash
# End-to-end: restic (s3 backend) against a real hoard on 127.0.0.1: init, two backups
# of a changing tree, snapshots, restore and diff, check --read-data, forget --prune.
# Prints one PASS/FAIL line per step and "N passed, M failed"; exits non-zero on any
# failure. Usage: tests/e2e/restic.sh PATH/TO/hoard
HOARD=${1:?usage: restic.sh PATH/TO/hoard}
source "$(dirname "$0")/lib.sh"

export RESTIC_REPOSITORY=s3:$ENDPOINT/restic-bucket RESTIC_PASSWORD=e2e-restic-password
export RESTIC_CACHE_DIR=$WORK/restic-cache

mkdir -p "$WORK/tree/docs" "$WORK/tree/db"
for i in $(seq 1 20); do head -c $((i * 9000)) /dev/urandom > "$WORK/tree/docs/d$i"; done
head -c 25165824 /dev/urandom > "$WORK/tree/db/data.db"

step "mb" aws --endpoint-url "$ENDPOINT" s3 mb s3://restic-bucket
step "init" restic init
step "first backup" restic backup "$WORK/tree"
change_tree() {
  rm "$WORK/tree/docs/d3"
  head -c 50000 /dev/urandom > "$WORK/tree/docs/new"
  # Rewrite one 8 KiB page in the middle of the database file.
  head -c 8192 /dev/urandom | dd of="$WORK/tree/db/data.db" bs=8192 seek=1000 conv=notrunc status=none
}
step "change the tree" change_tree
step "second backup" restic backup "$WORK/tree"
step "snapshots lists two" bash -c "[ \$(restic snapshots --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))') -eq 2 ]"
step "restore latest and diff" bash -c "restic restore latest --target '$WORK/restored' && diff -r '$WORK/tree' '$WORK/restored$WORK/tree'"
step "check --read-data" restic check --read-data
step "forget --keep-last 1 --prune" restic forget --keep-last 1 --prune
step "one snapshot left, repository consistent" bash -c "[ \$(restic snapshots --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))') -eq 1 ] && restic check --read-data"
finish
