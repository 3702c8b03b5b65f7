#!/usr/bin/env bash
# Fuzzes every target of src/fuzz/ for SECONDS each (default 60), from a
# fresh random seed, two targets at a time; or only the targets named after
# it: `scripts/fuzz.sh 600 job_rewrite calculator`. The test suite runs the
# same targets briefly from a fixed seed (tests/fuzz.rs). A failure prints
# the shrunk input and its seed; `TOOLQ_TEST_FUZZ_SEED=<seed>` replays it.
#
# An optimised build with overflow checks and debug assertions on, without
# the release profile's fat LTO (minutes on two cores), in its own target
# folder so it leaves the release build alone.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds="${1:-60}"
shift || true
filter=()
if [[ $# -gt 0 ]]; then
    expr="$(printf ' | test(=%s)' "$@")"
    filter=(-E "${expr:3}")
fi
export TOOLQ_TEST_FUZZ_SECONDS="$seconds"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/fuzz}"
export CARGO_PROFILE_RELEASE_LTO=false
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
export CARGO_PROFILE_RELEASE_DEBUG=line-tables-only
export CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=true
export CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS=true
exec cargo nextest run --release --features test-tools --test fuzz \
    --no-fail-fast --success-output final --test-threads 2 "${filter[@]}"
