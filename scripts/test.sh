#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests and end-to-end tests with real
# processes. Installs what the tests need when missing: iproute2 (network namespaces) and
# PostgreSQL (tests start a throwaway cluster of their own from its binaries; set
# HERD_TEST_POSTGRES=postgres://user@host:port to use a running server instead).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v setsid >/dev/null 2>&1 || need_apt+=(util-linux)
# Debian's postgresql brings the server (initdb, postgres) and psql; the tests do not use the
# cluster the package may create and start.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  need_apt+=(postgresql)
fi
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
