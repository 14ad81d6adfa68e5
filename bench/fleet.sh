#!/usr/bin/env bash
# One command for the fan-out benchmark: build release herd and herd-bench, set up N loopback
# machines for the baselines (bench/setup-fleet-ssh.sh N, needs root), then run `true` on all
# of them through herd, parallel-ssh and Ansible and print a table of medians and ratios.
#   bench/fleet.sh [--machines N] [herd-bench fleet args…]    (N defaults to 50)
# Other arguments go to `herd-bench fleet`, e.g. --out results.json, --skip-ssh, --rounds 50.
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
exec "$TARGET/release/herd-bench" fleet --herd "$TARGET/release/herd" "${extra[@]}" "$@"
