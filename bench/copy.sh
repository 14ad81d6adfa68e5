#!/usr/bin/env bash
# One command for the copy benchmark: build release herd and herd-bench, set up N loopback
# machines for the baseline (bench/setup-fleet-ssh.sh N, needs root), then copy one file
# (100 MB, pseudo-random) to all of them through `herd cp` and parallel-scp, alternately,
# and print a table of medians and ratios.
#   bench/copy.sh [--machines N] [herd-bench copy args…]    (N defaults to 50)
# Other arguments go to `herd-bench copy`, e.g. --rounds 5, --size-mb 100, --out results.json,
# --skip-ssh.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET="${CARGO_TARGET_DIR:-target}"
n=50
given=0
skip=0
prev=
for arg in "$@"; do
    case "$arg" in
        --skip-ssh) skip=1 ;;
        --machines=*) n="${arg#--machines=}"; given=1 ;;
    esac
    if [ "$prev" = --machines ]; then n="$arg"; given=1; fi
    prev="$arg"
done
cargo build --release -p herd -p herd-bench
if [ "$skip" = 0 ]; then
    bash bench/setup-fleet-ssh.sh "$n" >&2
fi
extra=()
if [ "$given" = 0 ]; then extra=(--machines "$n"); fi
exec "$TARGET/release/herd-bench" copy --herd "$TARGET/release/herd" "${extra[@]}" "$@"
