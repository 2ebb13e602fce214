#!/usr/bin/env bash
# Database columns: `rekey rewrap` in place of 1,000,000 text envelopes
# (local keyring) in SQLite and in PostgreSQL, against a plain Python loop
# (scripts/bench_tables_loop.py: one UPDATE per row) in the same run.
#
#   bash scripts/bench-tables.sh              # REKEY_BENCH_ROWS=1000000, 3 runs of rekey each
#
# Each rekey run rewraps every row (the runs alternate between two keys), so
# the median of 3 is over full runs. Peak RSS from /usr/bin/time.
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${REKEY_BENCH_ROWS:-1000000}
runs=${REKEY_BENCH_RUNS:-3}

# shellcheck source=scripts/moto.sh
source scripts/moto.sh
# shellcheck source=scripts/postgres.sh
source scripts/postgres.sh
moto_venv
py=$PWD/.venv/bin/python
trap pg_stop EXIT
pg_start
cargo build --release --quiet -p rotate-cli
rekey=$PWD/target/release/rekey
work=$(mktemp -d "${TMPDIR:-/tmp}/rekey-bench-tables.XXXXXX")
trap 'pg_stop; rm -rf "$work"' EXIT
export REKEY_KEYSTORE=$work/keys
"$rekey" keys create k0 >/dev/null
"$rekey" keys create k1 >/dev/null

echo "== $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $rows rows"
"$py" -c "import sys; [print(f'ssn {i:09}') for i in range($rows)]" >"$work/plain.txt"
"$rekey" encrypt --key local:k0 --lines "$work/plain.txt" -o "$work/envelopes.txt"
awk '{print NR - 1 "\t" $0}' "$work/envelopes.txt" >"$work/rows.tsv"
"$py" - "$work/bench.db" "$work/rows.tsv" <<'PY'
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
conn.execute("CREATE TABLE bench (id INTEGER PRIMARY KEY, ssn TEXT)")
with open(sys.argv[2]) as f:
    conn.executemany("INSERT INTO bench VALUES (?, ?)", (line.rstrip("\n").split("\t") for line in f))
conn.commit()
PY
psql -q -c "CREATE TABLE bench (id bigint PRIMARY KEY, ssn text)" -c "\\copy bench FROM '$work/rows.tsv'"
"$py" scripts/bench_tables_loop.py make-sqlite "$work/bench.db" "$rows"
"$py" scripts/bench_tables_loop.py make-pg "$rows"

median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

# rekey: N runs alternating k0 -> k1 -> k0 ...; prints "rows/s peakRSS(KiB)" per run.
bench_rekey() {
  local url=$1 label=$2 from=k0 to=k1 i
  for ((i = 0; i < runs; i++)); do
    rm -f "$work/j" "$work/j.failures.jsonl"
    /usr/bin/time -f "%M" -o "$work/rss" "$rekey" rewrap --to "local:$to" --from "local:$from" "$url" \
      --table bench --column ssn --id id --journal "$work/j" --json --no-progress >"$work/summary.json"
    "$py" -c "import json, sys; s = json.load(open(sys.argv[1])); assert s['rewrapped'] == $rows, s; print(round(s['rewrapped'] / s['elapsed_seconds']), open(sys.argv[2]).read().strip())" \
      "$work/summary.json" "$work/rss"
    local t=$from; from=$to; to=$t
  done >"$work/$label.runs"
  echo "$label rekey rows/s (runs): $(cut -d' ' -f1 "$work/$label.runs" | tr '\n' ' ')"
  echo "$label rekey rows/s median: $(cut -d' ' -f1 "$work/$label.runs" | median); peak RSS KiB: $(cut -d' ' -f2 "$work/$label.runs" | sort -n | tail -1)"
}

bench_rekey "sqlite:$work/bench.db" sqlite
bench_rekey "$REKEY_TEST_PG_URL" postgres
echo "sqlite python loop (rows, seconds, rows/s): $("$py" scripts/bench_tables_loop.py loop-sqlite "$work/bench.db")"
echo "postgres python loop (rows, seconds, rows/s): $("$py" scripts/bench_tables_loop.py loop-pg)"
