#!/usr/bin/env bash
# S3 method A against the local server (moto: S3 and KMS), in one run:
# rekey (bounded parallelism) against the operations guide's own boto3 loop
# (HeadObject, ReEncrypt, CopyObject, one object after another), each on its
# own bucket of N objects made the same way. Prints seconds, objects/s and
# the ratio.
#
#   bash scripts/bench-s3.sh [N]        (default 5000; REKEY_BIN to pick a binary)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-5000}
REKEY_BIN=${REKEY_BIN:-target/release/rekey}
[[ -x $REKEY_BIN ]] || cargo build --release -p rotate-cli
source scripts/moto.sh
moto_start >/dev/null
trap moto_stop EXIT
PY=.venv/bin/python
K1=$($PY scripts/interop/kms_fixtures.py create-key)
K2=$($PY scripts/interop/kms_fixtures.py create-key)
K3=$($PY scripts/interop/kms_fixtures.py create-key)
CTX='{"purpose":"s3-object"}'
NEW='{"purpose":"s3-object","rotated":"2026-11"}'
WORK=$(mktemp -d)
for b in bench-rekey bench-guide; do
  $PY scripts/interop/s3_fixtures.py create-bucket $b
  $PY scripts/interop/s3_fixtures.py edk-objects $b docs/ "$N" "$K1" "$K3" "$CTX" "$WORK/$b.json"
done
t0=$(date +%s.%N)
$PY scripts/interop/guide_s3_loop.py bench-guide docs/ "$K2" "$CTX" "$NEW" >/dev/null
t1=$(date +%s.%N)
(cd "$WORK" && "$OLDPWD/$REKEY_BIN" rewrap s3://bench-rekey/docs/ --metadata-key edk --from "kms:$K1" --to "kms:$K2" \
  --source-context purpose=s3-object --dest-context purpose=s3-object --dest-context rotated=2026-11 \
  --concurrency "${CONCURRENCY:-32}" --no-progress --json >"$WORK/rekey.json")
t2=$(date +%s.%N)
python3 - "$N" "$t0" "$t1" "$t2" "$WORK/rekey.json" <<'PY'
import json, sys
n, t0, t1, t2 = int(sys.argv[1]), *map(float, sys.argv[2:5])
s = json.load(open(sys.argv[5]))
assert s["rewrapped"] == n and s["failed"] == 0, s
guide, rekey = t1 - t0, t2 - t1
print(f"{n} objects: guide boto3 loop {guide:.1f} s ({n/guide:.0f} objects/s); rekey {rekey:.1f} s ({n/rekey:.0f} objects/s); ratio {guide/rekey:.1f}x")
PY
