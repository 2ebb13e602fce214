#!/usr/bin/env bash
# A throwaway MariaDB server for tests and benchmarks, on 127.0.0.1.
#
#   source scripts/mariadb.sh && mariadb_start   # server up, REKEY_TEST_MYSQL_* exported
#   mariadb_stop                                 # stopped, directory removed
#
# mariadb_start installs Debian's mariadb-server package when no mariadbd is
# found, initialises a data directory in a temporary directory (owned by the
# mysql system user when run as root: mariadbd refuses to run as root), and
# starts it on a free port of 127.0.0.1 with its socket in that directory.
# It speaks TLS with certificates from a throwaway CA (pg_tls_files from
# scripts/postgres.sh: the server's for localhost and 127.0.0.1, and a second
# CA that signed nothing the server holds).
#
# Users: rekey (password, every privilege, may create databases and users)
# and rekey_tls (password, REQUIRE SSL: refused without TLS). The
# REKEY_TEST_MYSQL_* variables name them for the tests.

# shellcheck source=scripts/postgres.sh
source "$(dirname "${BASH_SOURCE[0]}")/postgres.sh"

mariadb_start() {
  if ! command -v mariadbd >/dev/null && [[ ! -x /usr/sbin/mariadbd ]]; then
    echo "== installing MariaDB (apt-get install mariadb-server)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server >/dev/null || return 1
  fi
  local server
  server=$(command -v mariadbd || echo /usr/sbin/mariadbd)
  MARIADB_DIR=$(mktemp -d "${TMPDIR:-/tmp}/rekey-mariadb.XXXXXX")
  chmod 0755 "$MARIADB_DIR"
  local user=()
  if [[ $(id -u) == 0 ]]; then
    user=(--user=mysql)
  fi
  if ! mariadb-install-db --no-defaults "${user[@]}" --datadir="$MARIADB_DIR/data" \
      --auth-root-authentication-method=normal --skip-test-db >"$MARIADB_DIR/install.log" 2>&1; then
    cat "$MARIADB_DIR/install.log" >&2
    return 1
  fi
  pg_tls_files "$MARIADB_DIR/tls" || return 1
  [[ $(id -u) == 0 ]] && chown -R mysql: "$MARIADB_DIR/data" "$MARIADB_DIR/tls" && chown mysql: "$MARIADB_DIR"
  local port
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  MARIADB_SOCKET=$MARIADB_DIR/mysqld.sock
  "$server" --no-defaults "${user[@]}" --datadir="$MARIADB_DIR/data" --bind-address=127.0.0.1 --port="$port" \
    --socket="$MARIADB_SOCKET" --pid-file="$MARIADB_DIR/mysqld.pid" --log-error="$MARIADB_DIR/server.log" \
    --skip-name-resolve --innodb-buffer-pool-size=512M --innodb-flush-log-at-trx-commit=2 \
    --max-connections=500 --ssl-ca="$MARIADB_DIR/tls/ca.crt" --ssl-cert="$MARIADB_DIR/tls/server.crt" \
    --ssl-key="$MARIADB_DIR/tls/server.key" >/dev/null 2>&1 &
  local i
  for i in $(seq 1 120); do
    mariadb-admin --no-defaults --socket="$MARIADB_SOCKET" -uroot ping >/dev/null 2>&1 && break
    sleep 0.5
  done
  if ! mariadb-admin --no-defaults --socket="$MARIADB_SOCKET" -uroot ping >/dev/null 2>&1; then
    cat "$MARIADB_DIR/server.log" >&2
    return 1
  fi
  local password tls_password
  password=rk-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
  tls_password=tls-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
  mariadb --no-defaults --socket="$MARIADB_SOCKET" -uroot -e "
    CREATE USER 'rekey'@'127.0.0.1' IDENTIFIED BY '$password';
    GRANT ALL PRIVILEGES ON *.* TO 'rekey'@'127.0.0.1' WITH GRANT OPTION;
    CREATE USER 'rekey_tls'@'127.0.0.1' IDENTIFIED BY '$tls_password' REQUIRE SSL;
    GRANT ALL PRIVILEGES ON *.* TO 'rekey_tls'@'127.0.0.1';
    CREATE DATABASE rekey;" || return 1
  export MARIADB_DIR MARIADB_SOCKET
  export REKEY_TEST_MYSQL_URL=mysql://rekey:$password@127.0.0.1:$port/rekey
  export REKEY_TEST_MYSQL_TLS_PASSWORD=$tls_password
  export REKEY_TEST_MYSQL_TLS_CA=$MARIADB_DIR/tls/ca.crt REKEY_TEST_MYSQL_TLS_OTHER_CA=$MARIADB_DIR/tls/other-ca.crt
  echo "== MariaDB $("$server" --version | awk '{print $3}') on 127.0.0.1:$port ($MARIADB_DIR)"
}

mariadb_stop() {
  if [[ -n ${MARIADB_DIR:-} && -d $MARIADB_DIR ]]; then
    local pid
    pid=$(cat "$MARIADB_DIR/mysqld.pid" 2>/dev/null)
    if [[ -n $pid ]]; then
      kill "$pid" 2>/dev/null
      local i
      for i in $(seq 1 60); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
      done
    fi
    rm -rf "$MARIADB_DIR"
    unset MARIADB_DIR MARIADB_SOCKET
  fi
}
