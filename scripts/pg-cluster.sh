#!/usr/bin/env bash
# A private PostgreSQL cluster for the tests and the bench, on 127.0.0.1 only.
#   scripts/pg-cluster.sh start DIR [WATCH_PID]  prints the cluster's URL; the cluster
#                                                stops by itself when WATCH_PID exits
#   scripts/pg-cluster.sh stop DIR
#   scripts/pg-cluster.sh resume DIR             starts a stopped cluster again
# Installs Debian's postgresql-15 when missing. initdb refuses to run as root, so as
# root the cluster runs as the `postgres` user the package creates.
set -euo pipefail
cmd=${1:?start or stop}
dir=${2:?directory}

bin_dir() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1
}

if [ -z "$(bin_dir)" ]; then
  apt-get update -qq && apt-get install -y -qq postgresql-15 >/dev/null
fi
bin=$(bin_dir)

as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

case "$cmd" in
start)
  watch=${3:-}
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  as_owner "$bin/initdb" -D "$dir/data" -U hoard --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1
  cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 300
CONF
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null
  if [ -n "$watch" ]; then
    # Stops the cluster when the process that asked for it is gone.
    nohup bash -c "while kill -0 $watch 2>/dev/null; do sleep 2; done; \
      $(declare -f as_owner); as_owner '$bin/pg_ctl' -D '$dir/data' -m fast stop" \
      >/dev/null 2>&1 &
  fi
  echo "postgres://hoard@127.0.0.1:$port/postgres"
  ;;
stop)
  as_owner "$bin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null
  ;;
resume)
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null
  ;;
*)
  echo "usage: $0 start DIR [WATCH_PID] | stop DIR | resume DIR" >&2
  exit 2
  ;;
esac
