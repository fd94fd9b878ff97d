#!/usr/bin/env bash
# End-to-end: boto3 against a real hoard on 127.0.0.1: backup-tool calls
# (boto3_backup.py) and path- and virtual-hosted-style addressing (boto3_styles.py).
# Each script prints one PASS/FAIL line per step. Usage: tests/e2e/boto3.sh PATH/TO/hoard
HOARD=${1:?usage: boto3.sh PATH/TO/hoard}
source "$(dirname "$0")/lib.sh"
for script in boto3_backup.py boto3_styles.py; do
  python3 "$(dirname "$0")/$script" "$ENDPOINT" "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >"$WORK/py.out" 2>&1
  rc=$?
  cat "$WORK/py.out"
  PASS=$((PASS + $(grep -c '^PASS' "$WORK/py.out")))
  FAIL=$((FAIL + $(grep -c '^FAIL' "$WORK/py.out")))
  if [ $rc -ne 0 ] && ! grep -q '^FAIL' "$WORK/py.out"; then
    FAIL=$((FAIL + 1)); echo "FAIL $script exited with status $rc"
  fi
done
finish
