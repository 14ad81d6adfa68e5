#!/usr/bin/env bash
# What supervision costs an agent: its CPU (all threads: the runtime and the blocking pool
# that reads /proc) while it runs N `sleep` tasks, supervised and with `--no-supervise`, one
# after the other on one server. Each agent's CPU is read from /proc/PID/stat over SECS
# seconds once its N tasks run.
#
#   bench/supervise.sh                 # release build, N=100, SECS=60, ROUNDS=2
#   HERD=target/debug/herd N=100 SECS=30 bench/supervise.sh
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET="${CARGO_TARGET_DIR:-target}"
if [ -z "${HERD:-}" ]; then
    cargo build --release -p herd
    HERD="$TARGET/release/herd"
fi
HERD="$(realpath "$HERD")"
N="${N:-100}"
SECS="${SECS:-60}"
ROUNDS="${ROUNDS:-2}"
HZ="$(getconf CLK_TCK)"

tmp="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$HERD" server --listen "127.0.0.1:$port" --data-dir "$tmp/server" >"$tmp/server.out" 2>"$tmp/server.log" &
pids+=($!)
for _ in $(seq 100); do
    grep -q "admin API key" "$tmp/server.out" 2>/dev/null && break
    sleep 0.1
done
export HERD_SERVER="http://127.0.0.1:$port"
HERD_API_KEY="$(sed -n 's/^admin API key.*: //p' "$tmp/server.out")"
export HERD_API_KEY
export HERD_CONFIG="$tmp/none.toml"

# CPU ticks (user + system, all threads) of process $1.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# One measurement: an agent (with extra arguments $2…) named $1 running N sleeps.
measure() {
    local name="$1"
    shift
    local token
    token="$("$HERD" token create --uses 1 --any-labels --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')"
    HERD_JOIN_TOKEN="$token" "$HERD" agent --server "$HERD_SERVER" --name "$name" \
        --state-dir "$tmp/agents/$name" "$@" 2>"$tmp/$name.log" &
    local agent=$!
    pids+=("$agent")
    for _ in $(seq 100); do
        "$HERD" agents ls 2>/dev/null | grep -q "^$name .*online" && break
        sleep 0.1
    done
    local runs=() run
    for _ in $(seq "$N"); do
        runs+=("$("$HERD" run -t "$name" --detach -- sleep 100000)")
    done
    for _ in $(seq 300); do
        [ "$("$HERD" tasks ls --machine "$name" --state running --limit 1000 --json |
            python3 -c 'import json, sys; print(len(json.load(sys.stdin)))')" -ge "$N" ] && break
        sleep 0.2
    done
    sleep 3
    local t0 t1
    t0="$(ticks "$agent")"
    sleep "$SECS"
    t1="$(ticks "$agent")"
    python3 -c "print(f'$name: {($t1 - $t0) / $HZ:.2f} CPU-s in $SECS s = {100 * ($t1 - $t0) / $HZ / $SECS:.3f} % of a core ($N tasks)')"
    for run in "${runs[@]}"; do "$HERD" runs cancel "$run" >/dev/null; done
    # The agent ends its tasks' processes as they are cancelled: wait for that before it stops.
    for _ in $(seq 300); do
        [ "$("$HERD" tasks ls --machine "$name" --state running --limit 1000 --json |
            python3 -c 'import json, sys; print(len(json.load(sys.stdin)))')" -eq 0 ] && break
        sleep 0.2
    done
    kill "$agent"
    wait "$agent" 2>/dev/null || true
}

echo "herd: $HERD, $N sleeping tasks, $SECS s per measurement, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$ROUNDS"); do
    measure "supervised-$r"
    measure "unsupervised-$r" --no-supervise
done
