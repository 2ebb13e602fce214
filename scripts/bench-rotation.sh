#!/usr/bin/env bash
# Rotation benchmarks (not tests): items per second and peak memory of
# `rekey rewrap` and `rekey reencrypt` over 1,000,000-record JSON Lines
# streams, and of `rekey rewrap` over 100,000 small files rewritten in place
# (journal entry, temporary file, fsync, atomic exchange, directory fsync per
# file), with the local keyring. Medians of RUNS runs.
#
#   bash scripts/bench-rotation.sh            # 1,000,000 records, 100,000 files, 3 runs
#   RECORDS=200000 FILES=20000 RUNS=5 bash scripts/bench-rotation.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RECORDS=${RECORDS:-1000000}
RUNS=${RUNS:-3}
FILES=${FILES:-100000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export REKEY_KEYSTORE=$work/keys

cargo build --release --quiet -p rotate-cli --bin rekey --example make_records
rekey=target/release/rekey
make=target/release/examples/make_records
$rekey keys create old >/dev/null
$rekey keys create new >/dev/null
head -c 32 /dev/urandom >"$work/legacy.key"

echo "making $RECORDS envelope records and $RECORDS legacy records..."
$make envelope "$REKEY_KEYSTORE" old "$RECORDS" "$work/envelopes.jsonl"
$make legacy "$work/legacy.key" "$RECORDS" "$work/legacy.jsonl"
echo "making $FILES small envelope files..."
$make files "$REKEY_KEYSTORE" old "$FILES" "$work/files.pristine"

# Runs "$@" RUNS times over N items; prints the median items/s and the largest peak RSS.
measure() {
  local name=$1 n=$2; shift 2
  local rates=() rss=0
  for _ in $(seq "$RUNS"); do
    rm -rf "$work"/out.jsonl* "$work"/files "$work"/files.rekey-journal*
    if [[ $name == *files* ]]; then
      cp -a "$work/files.pristine" "$work/files"
      sync
    fi
    local t0 t1
    t0=$(date +%s.%N)
    /usr/bin/time -f "%M" -o "$work/rss" "$@" >/dev/null
    t1=$(date +%s.%N)
    rates+=("$(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN { print n / (b - a) }')")
    local r; r=$(cat "$work/rss")
    (( r > rss )) && rss=$r
  done
  local median
  median=$(printf '%s\n' "${rates[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  printf '| %s | %d | %.0f | %.1f |\n' "$name" "$n" "$median" "$(awk -v r="$rss" 'BEGIN { print r / 1024 }')"
}

echo
echo "| job | items | items/s (median of $RUNS) | peak RSS MiB |"
echo "|---|---|---|---|"
measure "rewrap JSON Lines, local:old -> local:new" "$RECORDS" \
  $rekey rewrap --to local:new --field /secret --no-progress "$work/envelopes.jsonl" -o "$work/out.jsonl"
measure "reencrypt JSON Lines, legacy CBC -> local:new" "$RECORDS" \
  $rekey reencrypt --items legacy --legacy-key-file "$work/legacy.key" --to local:new --field /secret --no-progress \
  "$work/legacy.jsonl" -o "$work/out.jsonl"
measure "rewrap small files in place, local:old -> local:new" "$FILES" \
  $rekey rewrap --to local:new --no-progress "$work/files"
echo
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
