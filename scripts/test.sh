#!/usr/bin/env bash
# Every test, on a fresh clone: formatting, lints, the workspace's tests
# against a local KMS server (moto, installed into .venv) and a throwaway
# PostgreSQL cluster (scripts/postgres.sh) and MariaDB server
# (scripts/mariadb.sh), doc tests, and a
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
# shellcheck source=scripts/postgres.sh
source scripts/postgres.sh
# shellcheck source=scripts/mariadb.sh
source scripts/mariadb.sh
trap 'moto_stop; pg_stop; mariadb_stop' EXIT

echo "== cargo fmt"
cargo fmt --all -- --check

echo "== module cycles"
python3 scripts/check_module_cycles.py

echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

moto_start
pg_start
mariadb_start

echo "== cargo test"
# Benches are compiled by clippy above and run by `cargo bench`; in test mode their 1 GiB cases would dominate.
cargo test --workspace --lib --bins --tests --examples --no-fail-fast -- --include-ignored
echo "== doc tests"
cargo test --workspace --doc

if (( fuzz )) && [[ -f fuzz/Cargo.toml ]]; then
  if rustup toolchain list | grep -q nightly; then
    command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
    seconds=${REKEY_FUZZ_SECONDS:-5}
    scratch=$(mktemp -d)
    for target in $(cd fuzz && cargo +nightly fuzz list); do
      echo "== fuzz $target (${seconds}s)"
      # New inputs go to a scratch directory; the committed seeds are only read.
      mkdir -p "$scratch/$target"
      if ! (cd fuzz && cargo +nightly fuzz run "$target" "$scratch/$target" "corpus/$target" -- -max_total_time="$seconds" >"$scratch/$target.log" 2>&1); then
        tail -n 40 "$scratch/$target.log" >&2
        echo "fuzz target $target failed; the input is in fuzz/artifacts/$target/" >&2
        exit 1
      fi
    done
    rm -rf "$scratch"
  else
    echo "== fuzz: skipped, no nightly toolchain (rustup toolchain install nightly)"
  fi
fi
echo "== all tests passed"
