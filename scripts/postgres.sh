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
#
# The same cluster speaks TLS (ssl=on) with certificates from a throwaway
# CA made with openssl: the server's for localhost and 127.0.0.1, a client
# certificate for the role rekey_cert, and a second CA that signed nothing
# the server holds. Three roles may connect only over TLS, as on RDS with
# rds.force_ssl: rekey_tls (password, SCRAM), rekey_cert (client
# certificate, `cert` in pg_hba.conf) and rekey_iam (a cleartext password,
# as RDS takes IAM tokens). The REKEY_TEST_PG_TLS_* variables name them
# for the tests.

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
  pg_tls_files "$PG_DIR/tls" || return 1
  [[ $(id -u) == 0 ]] && chown postgres: "$PG_DIR/tls/server.key" "$PG_DIR/tls/server.crt" "$PG_DIR/tls/ca.crt"
  printf '%s\n' "ssl = on" "ssl_cert_file = '$PG_DIR/tls/server.crt'" "ssl_key_file = '$PG_DIR/tls/server.key'" \
    "ssl_ca_file = '$PG_DIR/tls/ca.crt'" >>"$PG_DIR/data/postgresql.conf"
  # First match wins: the TLS-only roles before initdb's trust lines.
  local hba=$PG_DIR/data/pg_hba.conf
  {
    echo "hostssl   all rekey_cert 127.0.0.1/32 cert"
    echo "hostssl   all rekey_tls  127.0.0.1/32 scram-sha-256"
    echo "hostssl   all rekey_iam  127.0.0.1/32 password"
    echo "hostnossl all rekey_cert,rekey_tls,rekey_iam 127.0.0.1/32 reject"
    cat "$hba"
  } >"$hba.new" && mv "$hba.new" "$hba"
  [[ $(id -u) == 0 ]] && chown postgres: "$hba"
  if ! "${as[@]}" "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
      -o "-k $PG_DIR -p $port -h 127.0.0.1" start >/dev/null; then
    cat "$PG_DIR/server.log" >&2
    return 1
  fi
  PG_CTL=$bin/pg_ctl
  export PG_DIR PG_CTL
  export PGHOST=127.0.0.1 PGPORT=$port PGUSER=rekey PGDATABASE=postgres
  export REKEY_TEST_PG_URL=postgres://rekey@127.0.0.1:$port/postgres
  REKEY_TEST_PG_TLS_PASSWORD=tls-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
  "$bin/psql" -q -h "$PG_DIR" -p "$port" -U rekey -d postgres -v ON_ERROR_STOP=1 \
    -c "CREATE ROLE rekey_tls LOGIN SUPERUSER PASSWORD '$REKEY_TEST_PG_TLS_PASSWORD'" \
    -c "CREATE ROLE rekey_cert LOGIN SUPERUSER" \
    -c "CREATE ROLE rekey_iam LOGIN PASSWORD 'not-an-iam-token'" >/dev/null || return 1
  export REKEY_TEST_PG_TLS_PASSWORD
  export REKEY_TEST_PG_TLS_CA=$PG_DIR/tls/ca.crt REKEY_TEST_PG_TLS_OTHER_CA=$PG_DIR/tls/other-ca.crt
  export REKEY_TEST_PG_TLS_CERT=$PG_DIR/tls/client.crt REKEY_TEST_PG_TLS_KEY=$PG_DIR/tls/client.key
  echo "== PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port ($PG_DIR)"
}

# A CA, the server's certificate (localhost, 127.0.0.1), a client
# certificate for rekey_cert, and another CA; EC P-256, valid two days.
pg_tls_files() {
  local dir=$1
  mkdir -p "$dir" && chmod 0755 "$dir"
  (
    set -e
    cd "$dir"
    ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
    for ca in ca other-ca; do
      openssl req -x509 "${ec[@]}" -days 2 -subj "/CN=rekey test $ca" -keyout "$ca.key" -out "$ca.crt" 2>/dev/null
    done
    sign() { # NAME CN EXTENSION...
      local name=$1 cn=$2
      shift 2
      openssl req "${ec[@]}" -subj "/CN=$cn" -keyout "$name.key" -out "$name.csr" 2>/dev/null
      printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" "$@" >"$name.ext"
      openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile "$name.ext" \
        -out "$name.crt" 2>/dev/null
      chmod 0600 "$name.key"
    }
    sign server localhost "extendedKeyUsage=serverAuth" "subjectAltName=DNS:localhost,IP:127.0.0.1"
    sign client rekey_cert "extendedKeyUsage=clientAuth"
    chmod 0644 ca.crt other-ca.crt server.crt client.crt
  ) || { echo "openssl could not make the test certificates" >&2; return 1; }
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
