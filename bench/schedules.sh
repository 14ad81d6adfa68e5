#!/usr/bin/env bash
# One command for the schedules benchmark: build release herd and herd-bench, then measure
# how late a one-second schedule's runs start (10 minutes) beside a plain API run of `true`,
# and the idle server's CPU with 10,000 schedules not due beside none.
# Extra arguments go to `herd-bench schedules`, e.g. --out results.json, --duration 60.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET="${CARGO_TARGET_DIR:-target}"
cargo build --release -p herd -p herd-bench
exec "$TARGET/release/herd-bench" schedules --herd "$TARGET/release/herd" "$@"
