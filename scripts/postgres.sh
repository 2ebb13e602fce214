#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests and benchmarks, on 127.0.0.1.
#
#   source scripts/postgres.sh && pg_start    # cluster up, PG* and REKEY_TEST_PG_URL exported
#   pg_stop                                  # stopped, directory removed
#
# pg_start installs Debian's postgresql package when no initdb is found,
# initialises a cluster in a temporary directory (as the postgres system
# user when run as root: initdb refuses root), starts it on a free port with
# its socket in that directory, and waits until it answers. Trust
# authentication for the one local user, rekey: nothing listens beyond
# loopback.

pg_bindir() {
  local dir
  for dir in $(command -v pg_config >/dev/null && pg_config --bindir) /usr/lib/postgresql/*/bin; do
    if [[ -x $dir/initdb && -x $dir/pg_ctl ]]; then
      echo "$dir"
      return 0
    fi
  done
  return 1
}

pg_start() {
  local bin
  if ! bin=$(pg_bindir); then
    echo "== installing PostgreSQL (apt-get install postgresql)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null || return 1
    bin=$(pg_bindir) || { echo "initdb not found after installing postgresql" >&2; return 1; }
  fi
  PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/rekey-pg.XXXXXX")
  local as=()
  if [[ $(id -u) == 0 ]]; then
    chown postgres: "$PG_DIR"
    as=(runuser -u postgres --)
  fi
  local port
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  if ! "${as[@]}" "$bin/initdb" -D "$PG_DIR/data" -U rekey --auth=trust -E UTF8 --no-locale >"$PG_DIR/initdb.log" 2>&1; then
    cat "$PG_DIR/initdb.log" >&2
    return 1
  fi
  if ! "${as[@]}" "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
      -o "-k $PG_DIR -p $port -h 127.0.0.1" start >/dev/null; then
    cat "$PG_DIR/server.log" >&2
    return 1
  fi
  PG_CTL=$bin/pg_ctl
  export PG_DIR PG_CTL
  export PGHOST=127.0.0.1 PGPORT=$port PGUSER=rekey PGDATABASE=postgres
  export REKEY_TEST_PG_URL=postgres://rekey@127.0.0.1:$port/postgres
  echo "== PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port ($PG_DIR)"
}

pg_stop() {
  if [[ -n ${PG_DIR:-} && -d $PG_DIR ]]; then
    local as=()
    [[ $(id -u) == 0 ]] && as=(runuser -u postgres --)
    "${as[@]}" "$PG_CTL" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
    unset PG_DIR
  fi
}
