#!/usr/bin/env bash
# Before and after, with the same harness in the same run: a baseline herd binary and this
# tree's on SQLite, then this tree's on PostgreSQL (a cluster the bench starts from the
# machine's binaries, with PostgreSQL's own durability settings). Measures the round trip of
# `true` and a 1 GiB stream (herd-bench spine, without the ssh baseline), `true` on 1,000 and
# 10,000 simulated agents, and results persisted per second (herd-bench scale --no-process).
#
#   bench/compare.sh BASELINE_HERD            e.g. a release build of an earlier commit
#
# Extra arguments after the binary go to every herd-bench call.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then
  echo "usage: bench/compare.sh BASELINE_HERD [herd-bench args]" >&2
  exit 2
fi
old="$1"
shift
extra=("$@")
TARGET="${CARGO_TARGET_DIR:-target}"
cargo build --release -p herd -p herd-bench
new="$TARGET/release/herd"
bench="$TARGET/release/herd-bench"

# label, binary, store
runs=("before $old sqlite" "after $new sqlite" "after $new postgres")
store_flag() { [ "$1" = sqlite ] || echo "--database $1"; }

for r in "${runs[@]}"; do
  set -- $r
  echo "=== spine: $1 ($3)"
  # The baseline binary's herd-bench knows no --database; SQLite is every version's default.
  "$bench" spine --herd "$2" --skip-ssh --rounds 200 --gib-runs 3 --idle-secs 10 $(store_flag "$3") "${extra[@]}"
done
for agents in 1000 10000; do
  for r in "${runs[@]}"; do
    set -- $r
    echo "=== scale $agents: $1 ($3)"
    "$bench" scale --herd "$2" --agents "$agents" --rounds 5 --idle-secs 10 $(store_flag "$3") "${extra[@]}"
  done
done
for r in "${runs[@]}"; do
  set -- $r
  echo "=== results persisted, 10000 agents: $1 ($3)"
  "$bench" scale --herd "$2" --agents 10000 --rounds 5 --idle-secs 5 --no-process $(store_flag "$3") "${extra[@]}"
done
