#!/usr/bin/env bash
# One command for the spine benchmark: build release herd and herd-bench, set up the
# ssh baseline (bench/setup-ssh.sh, needs root), then measure herd beside ssh.
# Extra arguments go to `herd-bench spine`, e.g. --out results.json, --skip-ssh, --rounds 500.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET="${CARGO_TARGET_DIR:-target}"
cargo build --release -p herd -p herd-bench
skip=0
for arg in "$@"; do [ "$arg" = --skip-ssh ] && skip=1; done
if [ "$skip" = 0 ]; then
    bash bench/setup-ssh.sh
fi
exec "$TARGET/release/herd-bench" spine --herd "$TARGET/release/herd" "$@"
