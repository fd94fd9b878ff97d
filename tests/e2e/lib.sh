# Shared by the end-to-end scripts: starts a real hoard on 127.0.0.1 with its own data
# dir, runs named steps (one PASS/FAIL line each) and prints "N passed, M failed".
# Source it after setting HOARD (the binary); it sets WORK, ADDR, PORT and ENDPOINT.
set -uo pipefail
WORK=$(mktemp -d)
PASS=0
FAIL=0
HOARD_PID=

e2e_cleanup() {
  if [ -n "$HOARD_PID" ]; then kill -9 "$HOARD_PID" 2>/dev/null; wait "$HOARD_PID" 2>/dev/null; fi
  rm -rf "$WORK"
}
trap e2e_cleanup EXIT

step() { # step NAME COMMAND...
  local name=$1; shift
  if "$@" >"$WORK/step.out" 2>&1; then
    PASS=$((PASS + 1)); echo "PASS $name"
  else
    FAIL=$((FAIL + 1)); echo "FAIL $name"; sed 's/^/    /' "$WORK/step.out" | tail -20
  fi
}

step_fn() { # step_fn NAME FUNCTION: runs the function in a child bash with errexit
  export -f "$2"
  step "$1" bash -ec "$2"
}

finish() {
  step "no panic in the server log" bash -c "! grep -q panicked '$WORK/server.log'"
  echo "$PASS passed, $FAIL failed"
  [ "$FAIL" -eq 0 ]
}

# Plain HTTP on loopback: a CA bundle from the environment only confuses clients
# (rclone's AWS SDK refuses to start with one).
unset AWS_CA_BUNDLE
export AWS_ACCESS_KEY_ID=e2eaccesskey AWS_SECRET_ACCESS_KEY=e2esecretkey0123456789 AWS_DEFAULT_REGION=us-east-1
export HOARD_ROOT_ACCESS_KEY=$AWS_ACCESS_KEY_ID HOARD_ROOT_SECRET_KEY=$AWS_SECRET_ACCESS_KEY

"$HOARD" serve --listen 127.0.0.1:0 --data-dir "$WORK/data" >"$WORK/stdout" 2>"$WORK/server.log" &
HOARD_PID=$!
for _ in $(seq 1 100); do
  ADDR=$(sed -n 's|^hoard: listening on http://||p' "$WORK/stdout")
  [ -n "$ADDR" ] && break
  sleep 0.1
done
[ -n "${ADDR:-}" ] || { echo "FAIL hoard did not start"; cat "$WORK/server.log"; echo "0 passed, 1 failed"; exit 1; }
PORT=${ADDR##*:}
ENDPOINT=http://$ADDR
