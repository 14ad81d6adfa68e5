#!/usr/bin/env bash
# One command for the dashboard's benchmarks, measured in Debian's Chromium against a release
# herd: the fleet page's first load with 10,000 simulated machines (compressed script bytes,
# time until the table shows them all, beside the floor of fetching and parsing the same list
# in the same page), and a run's terminal under 100 MB of output (key-press delay and frame
# gaps during the stream, beside the same with no stream).
#   bench/web.sh [--machines N] [--rounds R]
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
(cd web && npm ci --no-audit --no-fund --loglevel=error && npm run build)
cargo build --release -p herd
export HERD_BIN="$TARGET/release/herd"
echo "fleet page:"
node web/bench/fleet.mjs "$@"
echo "terminal under 100 MB of output:"
node web/bench/terminal.mjs
