#!/usr/bin/env bash
# End-to-end: rclone (s3 remote, provider Other) against a real hoard on 127.0.0.1:
# copy (multipart), sync, check, lsf -R, server-side copy, delete, purge.
# Prints one PASS/FAIL line per step and "N passed, M failed"; exits non-zero on any
# failure. Usage: tests/e2e/rclone.sh PATH/TO/hoard
HOARD=${1:?usage: rclone.sh PATH/TO/hoard}
source "$(dirname "$0")/lib.sh"

export RCLONE_CONFIG_HOARD_TYPE=s3 RCLONE_CONFIG_HOARD_PROVIDER=Other
export RCLONE_CONFIG_HOARD_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID RCLONE_CONFIG_HOARD_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
export RCLONE_CONFIG_HOARD_ENDPOINT=$ENDPOINT RCLONE_CONFIG_HOARD_REGION=us-east-1
export RCLONE_CONFIG=$WORK/rclone.conf
touch "$RCLONE_CONFIG"
# Files over 5 MiB go multipart in 5 MiB parts.
RC="rclone --s3-upload-cutoff 5M --s3-chunk-size 5M"

mkdir -p "$WORK/tree/a/b" "$WORK/tree/c"
head -c 31457280 /dev/urandom > "$WORK/tree/disk.img"
for i in 1 2 3 4 5; do head -c $((i * 50000)) /dev/urandom > "$WORK/tree/a/f$i"; done
head -c 7000 /dev/urandom > "$WORK/tree/a/b/deep"
echo "hello" > "$WORK/tree/c/hello.txt"
: > "$WORK/tree/c/empty"

step "mkdir bucket" $RC mkdir hoard:rc-bucket
step "copy up (30 MiB goes multipart)" $RC copy "$WORK/tree" hoard:rc-bucket/tree
step "check: sizes and hashes match" $RC check "$WORK/tree" hoard:rc-bucket/tree
step "lsf -R lists every file" bash -c "diff <(cd '$WORK/tree' && find . -type f | sed 's|^\./||' | sort) <($RC lsf -R --files-only hoard:rc-bucket/tree | sort)"
change_tree() {
  rm "$WORK/tree/a/f2"
  head -c 90000 /dev/urandom > "$WORK/tree/a/f6"
  echo "changed" >> "$WORK/tree/c/hello.txt"
}
step "change the local tree" change_tree
step "sync up" $RC sync "$WORK/tree" hoard:rc-bucket/tree
step "check after sync" $RC check "$WORK/tree" hoard:rc-bucket/tree
step "sync removed the deleted file" bash -c "$RC lsf hoard:rc-bucket/tree/a > '$WORK/ls' && grep -qx f6 '$WORK/ls' && ! grep -qx f2 '$WORK/ls'"
step "server-side copy" $RC copyto hoard:rc-bucket/tree/disk.img hoard:rc-bucket/copies/disk.img
step "copy down is identical" bash -c "$RC copy hoard:rc-bucket/tree '$WORK/back' && diff -r '$WORK/tree' '$WORK/back' && $RC cat hoard:rc-bucket/copies/disk.img | cmp - '$WORK/tree/disk.img'"
step "delete one file" bash -c "$RC delete hoard:rc-bucket/tree/a/f1 && $RC lsf hoard:rc-bucket/tree/a > '$WORK/ls' && grep -qx f4 '$WORK/ls' && ! grep -qx f1 '$WORK/ls'"
step "rclone used multipart upload and server-side copy" bash -c "curl -sf $ENDPOINT/metrics > '$WORK/metrics' && grep -q 'operation=\"CompleteMultipartUpload\"' '$WORK/metrics' && grep -q 'operation=\"CopyObject\"' '$WORK/metrics'"
step "purge" $RC purge hoard:rc-bucket
step "bucket is gone" bash -c "$RC lsd hoard: > '$WORK/ls' && ! grep -q rc-bucket '$WORK/ls'"
finish
