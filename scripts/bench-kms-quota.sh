#!/usr/bin/env bash
# rekey at the KMS quota (issue 25): N distinct bare wrapped keys and N
# envelopes rewrapped through the fast fake KMS (benches/src/bin/fake_kms.rs),
# with a round-trip latency and a shared token-bucket quota that answers
# ThrottlingException as KMS does. Prints, per scenario and in one run:
# requests/s sustained, throttles, failed items, CPU µs per KMS request,
# peak RSS, the fake's own CPU per request, and the machine.
#
#   bash scripts/bench-kms-quota.sh                     # all scenarios, N=200000, 1 run
#   RUNS=3 SCENARIOS="quota noquota" bash scripts/bench-kms-quota.sh
#   REKEY=/tmp/rekey-other bash scripts/bench-kms-quota.sh   # another rekey binary
#
# Scenarios: quota (10,000/s, 10 ms; edk and envelope items), noquota (10 ms,
# no quota; edk items), storm (10,000/s, dropping to 2,000/s STORM_AT seconds
# into the run and back to 10,000/s STORM_FOR seconds later; edk items).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-200000}
RUNS=${RUNS:-1}
LATENCY_MS=${LATENCY_MS:-10}
QUOTA=${QUOTA:-10000}
export STORM_QUOTA=${STORM_QUOTA:-2000}
STORM_AT=${STORM_AT:-5}
STORM_FOR=${STORM_FOR:-10}
SCENARIOS=${SCENARIOS:-"quota noquota storm"}
FAKE_THREADS=${FAKE_THREADS:-1}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
work=$(mktemp -d)
fake_pid=
trap '[[ -n $fake_pid ]] && kill "$fake_pid" 2>/dev/null; rm -rf "$work"' EXIT

if [[ -z ${REKEY:-} ]]; then
  cargo build --release --quiet -p rotate-cli --bin rekey
  cp "$CARGO_TARGET_DIR/release/rekey" "$work/rekey"
  REKEY=$work/rekey
fi
cargo build --release --quiet -p rekey-benches --bin fake_kms --bin kms_items
# Copies: the shared target directory may be rebuilt by someone else mid-run.
cp "$CARGO_TARGET_DIR/release/fake_kms" "$CARGO_TARGET_DIR/release/kms_items" "$work/"

coproc FAKE { exec "$work/fake_kms" --latency-ms 0 --quota 0 --threads "$FAKE_THREADS"; }
fake_pid=$FAKE_PID
read -r port <&"${FAKE[0]}"
export AWS_ENDPOINT_URL=http://127.0.0.1:$port AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
unset AWS_PROFILE AWS_ENDPOINT_URL_KMS
kms() { curl -sf -X POST -H "X-Amz-Target: $1" -H 'Content-Type: application/x-amz-json-1.1' -d "${2:-{\}}" "$AWS_ENDPOINT_URL/"; }
arn() { kms TrentService.CreateKey | python3 -c 'import json, sys; print(json.load(sys.stdin)["KeyMetadata"]["Arn"])'; }
old=$(arn)
new=$(arn)

echo "making $N bare wrapped keys and $N envelopes (one GenerateDataKey each, no latency)..."
"$work/kms_items" edk "$old" "$N" "$work/edk.jsonl" purpose=bench
"$work/kms_items" envelope "$old" "$N" "$work/env.jsonl" purpose=bench

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# run NAME KIND QUOTA [STORM]: one rekey rewrap; prints a JSON line of figures.
run() {
  local name=$1 kind=$2 quota=$3 storm=${4:-}
  kms FakeKms.Reset >/dev/null
  kms FakeKms.SetQuota "{\"Quota\": $quota, \"LatencyMs\": $LATENCY_MS}" >/dev/null
  local args=(rewrap --from "kms:$old" --to "kms:$new" --no-progress --json --journal "$work/j-$name" -o "$work/out-$name.jsonl")
  if [[ $kind == edk ]]; then
    args+=(--items edk --source-context purpose=bench --field /k "$work/edk.jsonl")
  else
    args+=(--field /v "$work/env.jsonl")
  fi
  rm -f "$work/j-$name" "$work/j-$name".* "$work/out-$name.jsonl"
  local fake_before storm_pid=
  fake_before=$(cpu_ticks "$fake_pid")
  if [[ -n $storm ]]; then
    ( sleep "$STORM_AT"; kms FakeKms.SetQuota "{\"Quota\": $STORM_QUOTA}" >/dev/null
      sleep "$STORM_FOR"; kms FakeKms.SetQuota "{\"Quota\": $quota}" >/dev/null ) &
    storm_pid=$!
  fi
  local load
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  /usr/bin/time -v -o "$work/time-$name" "$REKEY" "${args[@]}" >"$work/summary-$name.json" 2>"$work/err-$name" || true
  [[ -n $storm_pid ]] && wait "$storm_pid" 2>/dev/null || true
  local fake_after
  fake_after=$(cpu_ticks "$fake_pid")
  kms FakeKms.Stats >"$work/stats-$name.json"
  python3 - "$name" "$work" "$(( fake_after - fake_before ))" "$hz" "$load" "$kind" "${storm:+$STORM_AT}" "$STORM_FOR" <<'EOF'
import json, os, re, sys
name, work, fake_ticks, hz, load, kind, storm_at, storm_for = sys.argv[1:9]
time = open(f"{work}/time-{name}").read()
def field(label):
    return re.search(rf"{re.escape(label)}: (.*)", time).group(1).strip()
user, sys_ = float(field("User time (seconds)")), float(field("System time (seconds)"))
wall = field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":")
wall = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall)))
rss = int(field("Maximum resident set size (kbytes)")) / 1024
try:
    summary = json.load(open(f"{work}/summary-{name}.json"))
except Exception:
    print(open(f"{work}/err-{name}").read(), file=sys.stderr)
    raise
stats = json.load(open(f"{work}/stats-{name}.json"))
requests, throttles = stats["Requests"], stats["Throttles"]
admitted = requests - throttles
timeline = stats["Timeline"]
# Sustained: the median of the whole seconds between the first and the last.
inner = sorted(ok for ok, _ in timeline[1:-1]) or [admitted]
row = {
    "scenario": name, "items": kind, "wall_s": round(wall, 2),
    "rewrapped": summary.get("rewrapped"), "failed": summary.get("failed"),
    "kms_requests": requests, "throttles": throttles,
    "rekey_counted_throttles": (summary.get("kms") or {}).get("throttles"),
    "admitted_per_s_overall": round(admitted / wall), "admitted_per_s_median_second": inner[len(inner) // 2],
    "cpu_s": round(user + sys_, 2), "cpu_us_per_request": round((user + sys_) * 1e6 / max(requests, 1), 1),
    "cpu_us_per_admitted": round((user + sys_) * 1e6 / max(admitted, 1), 1),
    "peak_rss_mib": round(rss, 1), "fake_cpu_us_per_request": round(int(fake_ticks) / int(hz) * 1e6 / max(requests, 1), 1),
    "load_before": load,
}
if storm_at:
    at, until = int(storm_at), int(storm_at) + int(storm_for)
    row["timeline_sent_admitted"] = [[ok + th, ok] for ok, th in timeline]
    # The first second after the drop from which, until the quota comes back, the client
    # sends on average at most 110% of the new quota (the timeline starts at rekey's first
    # request, a moment after the storm's timer: its last second is left out).
    limit = 1.1 * float(os.environ["STORM_QUOTA"])
    sent = [ok + th for ok, th in timeline]
    follow = next((s - at for s in range(at, until - 1) if sum(sent[s:until - 1]) / len(sent[s:until - 1]) <= limit), None)
    row["storm_seconds_to_follow"] = follow
print(json.dumps(row))
EOF
}

echo "== $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $(uptime)"
echo "== rekey $REKEY; fake KMS: latency $LATENCY_MS ms, $FAKE_THREADS thread(s), SigV4 not checked"
for scenario in $SCENARIOS; do
  for r in $(seq "$RUNS"); do
    case $scenario in
      quota) run "quota-edk-$r" edk "$QUOTA"; run "quota-env-$r" envelope "$QUOTA" ;;
      noquota) run "noquota-edk-$r" edk 0 ;;
      storm) run "storm-edk-$r" edk "$QUOTA" storm ;;
      *) echo "unknown scenario $scenario" >&2; exit 2 ;;
    esac
  done
done
echo "== $(uptime)"
