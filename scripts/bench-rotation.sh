#!/usr/bin/env bash
# Rotation benchmarks (not tests): records per second and peak memory of
# `rekey rewrap` and `rekey reencrypt` over 1,000,000-record JSON Lines
# streams with the local keyring. Medians of RUNS runs.
#
#   bash scripts/bench-rotation.sh            # 1,000,000 records, 3 runs
#   RECORDS=200000 RUNS=5 bash scripts/bench-rotation.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RECORDS=${RECORDS:-1000000}
RUNS=${RUNS:-3}
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

# Runs "$@" RUNS times; prints the median records/s and the largest peak RSS.
measure() {
  local name=$1; shift
  local rates=() rss=0
  for _ in $(seq "$RUNS"); do
    rm -f "$work"/out.jsonl*
    local t0 t1
    t0=$(date +%s.%N)
    /usr/bin/time -f "%M" -o "$work/rss" "$@" >/dev/null
    t1=$(date +%s.%N)
    rates+=("$(awk -v n="$RECORDS" -v a="$t0" -v b="$t1" 'BEGIN { print n / (b - a) }')")
    local r; r=$(cat "$work/rss")
    (( r > rss )) && rss=$r
  done
  local median
  median=$(printf '%s\n' "${rates[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  printf '| %s | %d | %.0f | %.1f |\n' "$name" "$RECORDS" "$median" "$(awk -v r="$rss" 'BEGIN { print r / 1024 }')"
}

echo
echo "| job | records | records/s (median of $RUNS) | peak RSS MiB |"
echo "|---|---|---|---|"
measure "rewrap local:old -> local:new" \
  $rekey rewrap --to local:new --field /secret --no-progress "$work/envelopes.jsonl" -o "$work/out.jsonl"
measure "reencrypt legacy CBC -> local:new" \
  $rekey reencrypt --items legacy --legacy-key-file "$work/legacy.key" --to local:new --field /secret --no-progress \
  "$work/legacy.jsonl" -o "$work/out.jsonl"
echo
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
