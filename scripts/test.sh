#!/usr/bin/env bash
# Every test, on a fresh clone: formatting, lints, the workspace's tests
# against a local KMS server (moto, installed into .venv), doc tests, and a
# short run of every fuzz target when a nightly toolchain is present.
#
#   bash scripts/test.sh            # everything
#   REKEY_FUZZ_SECONDS=60 bash scripts/test.sh
#   bash scripts/test.sh --no-fuzz
set -euo pipefail
cd "$(dirname "$0")/.."
fuzz=1
[[ ${1:-} == --no-fuzz ]] && fuzz=0

# shellcheck source=scripts/moto.sh
source scripts/moto.sh
trap moto_stop EXIT

echo "== cargo fmt"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

moto_start

echo "== cargo test"
cargo test --workspace --all-targets --no-fail-fast
echo "== doc tests"
cargo test --workspace --doc

if (( fuzz )) && [[ -f fuzz/Cargo.toml ]]; then
  if rustup toolchain list | grep -q nightly; then
    command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
    seconds=${REKEY_FUZZ_SECONDS:-5}
    for target in $(cd fuzz && cargo +nightly fuzz list); do
      echo "== fuzz $target (${seconds}s)"
      mkdir -p "fuzz/corpus/$target"
      (cd fuzz && cargo +nightly fuzz run "$target" "corpus/$target" -- -max_total_time="$seconds" -print_final_stats=0 >/dev/null 2>&1) \
        || { echo "fuzz target $target failed; reproduce with: cd fuzz && cargo +nightly fuzz run $target" >&2; exit 1; }
    done
  else
    echo "== fuzz: skipped, no nightly toolchain (rustup toolchain install nightly)"
  fi
fi
echo "== all tests passed"
