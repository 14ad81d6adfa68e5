#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests and end-to-end tests with real
# processes. Installs what the tests need (iproute2 for network namespaces) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v setsid >/dev/null 2>&1 || need_apt+=(util-linux)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq </dev/null
    apt-get install -y -qq "${need_apt[@]}" </dev/null
  else
    echo "test.sh: missing ${need_apt[*]} (install them, or run as root)" >&2
  fi
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
