#!/usr/bin/env bash
# One command for the workflow benchmark: build release herd and herd-bench, then time
# workflow runs (40 sequential `true` steps, 40 python3 fibo(10) steps, fan-ins of 100 and
# 1,000 parallel steps) beside the floor of the same processes started in a row.
# Extra arguments go to `herd-bench workflows`, e.g. --out results.json, --rounds 20.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET="${CARGO_TARGET_DIR:-target}"
cargo build --release -p herd -p herd-bench
exec "$TARGET/release/herd-bench" workflows --herd "$TARGET/release/herd" "$@"
