#!/usr/bin/env bash
# Against the local KMS server (moto), in one run: N distinct encrypted data
# keys re-wrapped by `rekey rewrap --items edk` and by the operations
# guide's sequential boto3 ReEncrypt loop. Prints both times and the ratio
# (medians of RUNS runs). moto itself is the bottleneck of both: the ratio
# measures how well each client keeps the server busy, not KMS.
#
#   bash scripts/bench-kms.sh                   # 5,000 keys, 3 runs, straight to moto
#   LATENCY_MS=10 bash scripts/bench-kms.sh     # every request through a loopback proxy adding 10 ms
#
# With LATENCY_MS, both clients talk to scripts/interop/fault_proxy.py,
# which holds every KMS request that long before forwarding it: the round
# trip of KMS inside a region, which is what a sequential loop waits on.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-5000}
RUNS=${RUNS:-3}
CONCURRENCY=${CONCURRENCY:-16}
LATENCY_MS=${LATENCY_MS:-0}
source scripts/moto.sh
work=$(mktemp -d)
proxy_pid=
trap 'moto_stop; [[ -n $proxy_pid ]] && kill "$proxy_pid" 2>/dev/null; rm -rf "$work"' EXIT
moto_start
cargo build --release --quiet -p rotate-cli --bin rekey
py=.venv/bin/python
old=$($py scripts/interop/kms_fixtures.py create-key)
new=$($py scripts/interop/kms_fixtures.py create-key)
echo "making $N data keys with boto3..."
$py scripts/interop/kms_fixtures.py bare-edks "$old" "$N" "$work/keys" '{}'
rm -f "$work/keys.expected.json"
if ((LATENCY_MS > 0)); then
  coproc PROXY { exec "$py" scripts/interop/fault_proxy.py "$AWS_ENDPOINT_URL" --delay-every 1 \
    --delay "$(awk -v ms="$LATENCY_MS" 'BEGIN { print ms / 1000 }')" 2>/dev/null; }
  proxy_pid=$PROXY_PID
  read -r port <&"${PROXY[0]}"
  export AWS_ENDPOINT_URL=http://127.0.0.1:$port
  echo "every KMS request through a proxy adding $LATENCY_MS ms"
fi
echo "== $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"

elapsed() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null; t1=$(date +%s.%N); awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }'; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

rekey_times=() loop_times=()
for run in $(seq "$RUNS"); do
  rm -rf "$work/a" "$work/b" && cp -r "$work/keys" "$work/a" && cp -r "$work/keys" "$work/b"
  rekey_times+=("$(elapsed target/release/rekey rewrap --items edk --from "kms:$old" --to "kms:$new" --concurrency "$CONCURRENCY" \
    --no-progress --journal "$work/j$run" "$work/a")")
  loop_times+=("$(elapsed $py scripts/interop/guide_reencrypt_loop.py "$work/b" "$new")")
done
r=$(printf '%s\n' "${rekey_times[@]}" | median)
l=$(printf '%s\n' "${loop_times[@]}" | median)
echo
echo "| client | $N distinct keys, median of $RUNS | keys/s |"
echo "|---|---|---|"
awk -v n="$N" -v r="$r" -v l="$l" -v c="$CONCURRENCY" 'BEGIN {
  printf "| rekey rewrap --items edk (concurrency %d) | %.2f s | %.0f |\n", c, r, n / r
  printf "| guide: sequential boto3 re_encrypt loop | %.2f s | %.0f |\n", l, n / l
  printf "\nratio (loop time / rekey time): %.2f\n", l / r
}'
