#!/usr/bin/env bash
# Database columns: `rekey rewrap` in place of 1,000,000 text envelopes
# (local keyring) in SQLite, in PostgreSQL, without TLS (sslmode=disable)
# and over TLS (verify-full, the test cluster's CA, a role that may connect
# only over TLS), and in MariaDB (scripts/mariadb.sh, over TCP on loopback,
# plain and over TLS with VERIFY_IDENTITY),
# against a plain Python loop (scripts/bench_tables_loop.py: one UPDATE per
# row; psycopg, pymysql) in the same run.
#
#   bash scripts/bench-tables.sh              # REKEY_BENCH_ROWS=1000000, 3 runs of rekey each
#   REKEY_BENCH_LOOPS=0 bash scripts/bench-tables.sh   # rekey only, without the Python loops
#   REKEY_BENCH_DBS="mariadb" bash scripts/bench-tables.sh   # some of: sqlite postgres mariadb
#
# Each rekey run rewraps every row (the runs alternate between two keys), so
# the median of 3 is over full runs; PostgreSQL's plain and TLS runs take
# turns on the same table. Peak RSS from /usr/bin/time.
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${REKEY_BENCH_ROWS:-1000000}
runs=${REKEY_BENCH_RUNS:-3}

# shellcheck source=scripts/moto.sh
source scripts/moto.sh
# shellcheck source=scripts/postgres.sh
source scripts/postgres.sh
# shellcheck source=scripts/mariadb.sh
source scripts/mariadb.sh
dbs=" ${REKEY_BENCH_DBS:-sqlite postgres mariadb} "
moto_venv
py=$PWD/.venv/bin/python
trap 'pg_stop; mariadb_stop' EXIT
[[ $dbs == *" postgres "* ]] && pg_start
[[ $dbs == *" mariadb "* ]] && mariadb_start
loops=${REKEY_BENCH_LOOPS:-1}
cargo build --release --quiet -p rotate-cli
work=$(mktemp -d "${TMPDIR:-/tmp}/rekey-bench-tables.XXXXXX")
trap 'pg_stop; mariadb_stop; rm -rf "$work"' EXIT
# A copy: a target directory shared with other builds may change under the runs.
cp "${CARGO_TARGET_DIR:-$PWD/target}/release/rekey" "$work/rekey"
rekey=$work/rekey
export REKEY_KEYSTORE=$work/keys
"$rekey" keys create k0 >/dev/null
"$rekey" keys create k1 >/dev/null

echo "== $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $rows rows"
"$py" -c "import sys; [print(f'ssn {i:09}') for i in range($rows)]" >"$work/plain.txt"
"$rekey" encrypt --key local:k0 --lines "$work/plain.txt" -o "$work/envelopes.txt"
awk '{print NR - 1 "\t" $0}' "$work/envelopes.txt" >"$work/rows.tsv"
[[ $dbs == *" sqlite "* ]] && "$py" - "$work/bench.db" "$work/rows.tsv" <<'PY'
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
conn.execute("CREATE TABLE bench (id INTEGER PRIMARY KEY, ssn TEXT)")
with open(sys.argv[2]) as f:
    conn.executemany("INSERT INTO bench VALUES (?, ?)", (line.rstrip("\n").split("\t") for line in f))
conn.commit()
PY
if [[ $dbs == *" sqlite "* ]]; then
  "$py" scripts/bench_tables_loop.py make-sqlite "$work/bench.db" "$rows"
fi
if [[ $dbs == *" postgres "* ]]; then
  psql -q -c "CREATE TABLE bench (id bigint PRIMARY KEY, ssn text)" -c "\\copy bench FROM '$work/rows.tsv'"
  "$py" scripts/bench_tables_loop.py make-pg "$rows"
fi
if [[ $dbs == *" mariadb "* ]]; then
  chmod 0644 "$work/rows.tsv" && chmod 0755 "$work"
  mariadb --no-defaults --socket="$MARIADB_SOCKET" -uroot --local-infile=1 rekey \
    -e "CREATE TABLE bench (id BIGINT PRIMARY KEY, ssn TEXT); LOAD DATA LOCAL INFILE '$work/rows.tsv' INTO TABLE bench"
  "$py" scripts/bench_tables_loop.py make-mysql "$rows"
fi

median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

# The key each table's rows are under now: every run moves them to the other one.
declare -A under=([sqlite]=k0 [postgres]=k0 [mariadb]=k0)

# One rekey run over `url` (table `table`): appends "rows/s peakRSS(KiB)" to $work/LABEL.runs.
rekey_run() {
  local url=$1 label=$2 table=$3
  local from=${under[$table]} to
  to=$([[ $from == k0 ]] && echo k1 || echo k0)
  rm -f "$work/j" "$work/j.failures.jsonl"
  /usr/bin/time -f "%M" -o "$work/rss" "$rekey" rewrap --to "local:$to" --from "local:$from" "$url" \
    --table bench --column ssn --id id --journal "$work/j" --json --no-progress >"$work/summary.json"
  "$py" -c "import json, sys; s = json.load(open(sys.argv[1])); assert s['rewrapped'] == $rows, s; print(round(s['rewrapped'] / s['elapsed_seconds']), open(sys.argv[2]).read().strip())" \
    "$work/summary.json" "$work/rss" >>"$work/$label.runs"
  under[$table]=$to
}

report() {
  local label=$1
  echo "$label rekey rows/s (runs): $(cut -d' ' -f1 "$work/$label.runs" | tr '\n' ' ')"
  echo "$label rekey rows/s median: $(cut -d' ' -f1 "$work/$label.runs" | median); peak RSS KiB: $(cut -d' ' -f2 "$work/$label.runs" | sort -n | tail -1)"
}

if [[ $dbs == *" sqlite "* ]]; then
  for ((i = 0; i < runs; i++)); do
    rekey_run "sqlite:$work/bench.db" sqlite sqlite
  done
  report sqlite
fi
if [[ $dbs == *" postgres "* ]]; then
  plain_url="$REKEY_TEST_PG_URL?sslmode=disable"
  tls_url="postgres://rekey_tls:$REKEY_TEST_PG_TLS_PASSWORD@127.0.0.1:$PGPORT/postgres?sslmode=verify-full&sslrootcert=$REKEY_TEST_PG_TLS_CA"
  for ((i = 0; i < runs; i++)); do
    rekey_run "$plain_url" postgres postgres
    rekey_run "$tls_url" postgres-tls postgres
  done
  report postgres
  report postgres-tls
  echo "postgres-tls / postgres (medians): $("$py" -c "import sys; print(round(int(sys.argv[2]) / int(sys.argv[1]), 3))" \
    "$(cut -d' ' -f1 "$work/postgres.runs" | median)" "$(cut -d' ' -f1 "$work/postgres-tls.runs" | median)")"
fi
if [[ $dbs == *" mariadb "* ]]; then
  # Plain, as the Python loop connects; and over TLS, VERIFY_IDENTITY against the test CA.
  my_tls_url="mysql://rekey_tls:$REKEY_TEST_MYSQL_TLS_PASSWORD@localhost:${REKEY_TEST_MYSQL_URL##*:}?ssl-mode=VERIFY_IDENTITY&ssl-ca=$REKEY_TEST_MYSQL_TLS_CA"
  for ((i = 0; i < runs; i++)); do
    rekey_run "$REKEY_TEST_MYSQL_URL?ssl-mode=DISABLED" mariadb mariadb
    rekey_run "$my_tls_url" mariadb-tls mariadb
  done
  report mariadb
  report mariadb-tls
fi
if ((loops)); then
  if [[ $dbs == *" sqlite "* ]]; then
    echo "sqlite python loop (rows, seconds, rows/s): $("$py" scripts/bench_tables_loop.py loop-sqlite "$work/bench.db")"
  fi
  if [[ $dbs == *" postgres "* ]]; then
    echo "postgres python loop (rows, seconds, rows/s): $(PGSSLMODE=disable "$py" scripts/bench_tables_loop.py loop-pg)"
  fi
  if [[ $dbs == *" mariadb "* ]]; then
    loop=$("$py" scripts/bench_tables_loop.py loop-mysql)
    echo "mariadb python loop (rows, seconds, rows/s): $loop"
    echo "mariadb rekey / python loop (median rows/s): $("$py" -c "import sys; print(round(int(sys.argv[1]) / int(sys.argv[2]), 1))" \
      "$(cut -d' ' -f1 "$work/mariadb.runs" | median)" "${loop##* }")"
  fi
fi
