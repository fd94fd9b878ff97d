#!/usr/bin/env bash
# End-to-end: boto3 against a real hoard on 127.0.0.1: backup-tool calls
# (boto3_backup.py), path- and virtual-hosted-style addressing (boto3_styles.py), bucket
# controls: lifecycle and CORS (boto3_controls.py), and
# Object Lock as Veeam and Commvault use it (boto3_lock.py).
# Each script prints one PASS/FAIL line per step. Usage: tests/e2e/boto3.sh PATH/TO/hoard
HOARD=${1:?usage: boto3.sh PATH/TO/hoard}
source "$(dirname "$0")/lib.sh"
for script in boto3_backup.py boto3_styles.py boto3_controls.py; do
  python3 "$(dirname "$0")/$script" "$ENDPOINT" "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >"$WORK/py.out" 2>&1
  rc=$?
  cat "$WORK/py.out"
  PASS=$((PASS + $(grep -c '^PASS' "$WORK/py.out")))
  FAIL=$((FAIL + $(grep -c '^FAIL' "$WORK/py.out")))
  if [ $rc -ne 0 ] && ! grep -q '^FAIL' "$WORK/py.out"; then
    FAIL=$((FAIL + 1)); echo "FAIL $script exited with status $rc"
  fi
done

# Object Lock as Veeam and Commvault use it, with a backup key and a privileged one.
export HOARD_ENDPOINT=$ENDPOINT
key_of() { # key_of NAME GRANT: creates the user, prints "ACCESS SECRET"
  "$HOARD" user add "$1" --grant "$2" | awk -F': *' '/access key:/{a=$2} /secret key:/{s=$2} END{print a, s}'
}
read -r BACKUP_KEY BACKUP_SECRET < <(key_of cv-backup commvault=readwrite)
read -r PRIV_KEY PRIV_SECRET < <(key_of cv-admin commvault=bypass-governance)
python3 "$(dirname "$0")/boto3_lock.py" "$ENDPOINT" "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" \
  "$BACKUP_KEY" "$BACKUP_SECRET" "$PRIV_KEY" "$PRIV_SECRET" "$HOARD" >"$WORK/py.out" 2>&1
rc=$?
cat "$WORK/py.out"
PASS=$((PASS + $(grep -c '^PASS' "$WORK/py.out")))
FAIL=$((FAIL + $(grep -c '^FAIL' "$WORK/py.out")))
if [ $rc -ne 0 ] && ! grep -q '^FAIL' "$WORK/py.out"; then
  FAIL=$((FAIL + 1)); echo "FAIL boto3_lock.py exited with status $rc"
fi
finish
