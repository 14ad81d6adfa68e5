#!/usr/bin/env bash
# One command for the herd ask benchmark, against the OpenAI-compatible model at HERD_LLM_URL
# (default http://127.0.0.1:18081/v1) named HERD_LLM_MODEL (default
# qwen2.5-coder-1.5b-instruct): build release herd and herd-bench, then run `herd ask --yes`
# on a table of plain-language administration tasks on a real agent and report what got done.
# Extra arguments go to `herd-bench ask`, e.g. --only mkdir --out ask.json.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET="${CARGO_TARGET_DIR:-target}"
# A small model on a CPU takes minutes per answer: the server waits for it this long.
export HERD_LLM_TIMEOUT="${HERD_LLM_TIMEOUT:-600}"
cargo build --release -p herd -p herd-bench
exec "$TARGET/release/herd-bench" ask --herd "$TARGET/release/herd" "$@"
