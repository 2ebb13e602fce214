#!/usr/bin/env bash
# DynamoDB rewrap against the local server (moto: DynamoDB and KMS), in one
# run: rekey (parallel scan segments, bounded parallelism) against a plain
# boto3 loop (Scan, ReEncrypt each blob, conditional UpdateItem, one item
# after another), each on its own table of N items made the same way (two
# blobs per item, one binary, one base64 text). Prints seconds, items/s,
# KMS calls and the ratio.
#
#   bash scripts/bench-dynamodb.sh [N]   (default 5000; REKEY_BIN to pick a binary)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-5000}
REKEY_BIN=${REKEY_BIN:-target/release/rekey}
[[ -x $REKEY_BIN ]] || cargo build --release -p rotate-cli
source scripts/moto.sh
moto_start >/dev/null
trap moto_stop EXIT
PY=.venv/bin/python
FX=scripts/interop/dynamodb_fixtures.py
K1=$($PY scripts/interop/kms_fixtures.py create-key)
K2=$($PY scripts/interop/kms_fixtures.py create-key)
WORK=$(mktemp -d)
trap 'moto_stop; rm -rf "$WORK"' EXIT
for t in bench-rekey bench-loop; do
  $PY $FX create-table $t
  $PY $FX fill $t "$N" 50 "$K1" "$WORK/$t.json"
done
$PY $FX loop bench-loop "$K1" "$K2" >"$WORK/loop.json"
t1=$(date +%s.%N)
(cd "$WORK" && "$OLDPWD/$REKEY_BIN" rewrap dynamodb://bench-rekey --items edk --attribute edk_b --attribute edk_s \
  --from "kms:$K1" --to "kms:$K2" --concurrency "${CONCURRENCY:-16}" --no-progress --json >"$WORK/rekey.json")
t2=$(date +%s.%N)
python3 - "$N" "$t1" "$t2" "$WORK/rekey.json" "$WORK/loop.json" <<'PY'
import json, sys
n, t1, t2 = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
s, loop = json.load(open(sys.argv[4])), json.load(open(sys.argv[5]))
assert s["rewrapped"] == 2 * n and s["failed"] == 0, s
assert loop["items"] == n, loop
rekey, plain = t2 - t1, loop["seconds"]
calls = sum(v for k, v in (s.get("kms") or {}).get("calls", {}).items()) if isinstance((s.get("kms") or {}).get("calls"), dict) else s.get("kms")
print(f"{n} items ({2*n} blobs): boto3 loop {plain:.1f} s ({n/plain:.0f} items/s, {loop['kms_calls']} KMS calls); "
      f"rekey {rekey:.1f} s ({n/rekey:.0f} items/s, KMS: {json.dumps(calls)}); ratio {plain/rekey:.1f}x")
PY
