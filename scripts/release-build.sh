#!/usr/bin/env bash
# Builds the release binary a fleet runs, `cargo build-static` (glibc linked
# in, its code laid out by link/hot-text.txt: .cargo/config.toml, build.rs),
# and prints its path, for the scripts that measure it:
#   TOOLQ=$(bash scripts/release-build.sh)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build-static --quiet >&2
echo "${CARGO_TARGET_DIR:-$PWD/target}/$(rustc --print host-tuple)/release/toolq"
