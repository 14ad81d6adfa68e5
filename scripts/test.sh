#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests, the store's conformance suite on
# SQLite and PostgreSQL, and end-to-end tests with real processes, once with the server's
# records in SQLite and once in PostgreSQL. Installs what the tests need when missing:
# iproute2 (network namespaces), python3 and node (script steps of workflows), PostgreSQL (tests start a throwaway cluster of their own
# from its binaries; set HERD_TEST_POSTGRES=postgres://user@host:port to use a running server
# instead), the API tester schemathesis, the SMTP server aiosmtpd and LangFlow (each in a
# virtual environment under ~/.cache), npm and Chromium (the dashboard's build and its browser
# tests).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v setsid >/dev/null 2>&1 || need_apt+=(util-linux)
# Workflow tests run script steps in python3 and node.
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
# The dashboard's tests drive a real browser.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
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

# The property-based API tester, pinned, in a virtual environment of its own outside the
# repository (reused by later runs).
SCHEMATHESIS_VERSION=4.32.5
venv="${XDG_CACHE_HOME:-$HOME/.cache}/herd-test/schemathesis-$SCHEMATHESIS_VERSION"
if [ ! -x "$venv/bin/schemathesis" ]; then
  rm -rf "$venv"
  if ! python3 -m venv "$venv" </dev/null; then
    if [ "$(id -u)" = 0 ]; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv </dev/null
      python3 -m venv "$venv" </dev/null
    else
      echo "test.sh: cannot create a Python virtual environment (install python3-venv)" >&2
      exit 1
    fi
  fi
  "$venv/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION" </dev/null
fi
export HERD_SCHEMATHESIS="$venv/bin/schemathesis"

# A real SMTP server for the email tests (herd-actions starts it on a free port), pinned, in a
# virtual environment of its own beside the tester's.
AIOSMTPD_VERSION=1.4.6
smtp_venv="${XDG_CACHE_HOME:-$HOME/.cache}/herd-test/aiosmtpd-$AIOSMTPD_VERSION"
if ! "$smtp_venv/bin/python" -c 'import aiosmtpd' </dev/null >/dev/null 2>&1; then
  rm -rf "$smtp_venv"
  if ! python3 -m venv "$smtp_venv" </dev/null; then
    if [ "$(id -u)" = 0 ]; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv </dev/null
      python3 -m venv "$smtp_venv" </dev/null
    else
      echo "test.sh: cannot create a Python virtual environment (install python3-venv)" >&2
      exit 1
    fi
  fi
  "$smtp_venv/bin/pip" install -q "aiosmtpd==$AIOSMTPD_VERSION" </dev/null
fi
export HERD_AIOSMTPD_PYTHON="$smtp_venv/bin/python"

# A real LangFlow for the LangFlow client's tests (herd-testkit starts it on a free port with a
# database of its own), pinned, installed with uv (itself from PyPI, in a virtual environment
# beside the others) with the machine's python3: uv downloads no Python.
LANGFLOW_VERSION=1.13.0
UV_VERSION=0.13.9
uv_venv="${XDG_CACHE_HOME:-$HOME/.cache}/herd-test/uv"
lf_venv="${XDG_CACHE_HOME:-$HOME/.cache}/herd-test/langflow-$LANGFLOW_VERSION"
if [ ! -x "$lf_venv/bin/langflow" ]; then
  if [ ! -x "$uv_venv/bin/uv" ]; then
    rm -rf "$uv_venv"
    if ! python3 -m venv "$uv_venv" </dev/null; then
      if [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv </dev/null
        python3 -m venv "$uv_venv" </dev/null
      else
        echo "test.sh: cannot create a Python virtual environment (install python3-venv)" >&2
        exit 1
      fi
    fi
    "$uv_venv/bin/pip" install -q "uv==$UV_VERSION" </dev/null
  fi
  rm -rf "$lf_venv"
  UV_PYTHON_DOWNLOADS=never "$uv_venv/bin/uv" venv -q --python "$(command -v python3)" "$lf_venv" </dev/null
  UV_PYTHON_DOWNLOADS=never VIRTUAL_ENV="$lf_venv" "$uv_venv/bin/uv" pip install -q \
    --python "$lf_venv/bin/python" "langflow-base==$LANGFLOW_VERSION" </dev/null
fi
export HERD_LANGFLOW="$lf_venv/bin/langflow"

# The dashboard: its built assets (web/dist, which herd embeds) are committed so that building
# herd needs only Rust; they are rebuilt here from web/src with the locked npm packages, and
# any difference fails the run.
(cd web && npm ci --no-audit --no-fund --loglevel=error </dev/null && npm run build </dev/null)
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  if [ -n "$(git status --porcelain -- web/dist)" ]; then
    git status --short -- web/dist >&2
    echo "test.sh: web/dist differs from a build of web/src — run 'npm run build' in web/ and commit web/dist" >&2
    exit 1
  fi
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked --no-fail-fast
# The end-to-end suite again, every server's records in a real PostgreSQL.
HERD_TEST_DATABASE=postgres cargo test -p herd --test it --locked --no-fail-fast
# The dashboard in a real Chromium against real `herd up` fleets (screenshots in
# web/test-results/).
cargo build -p herd --locked
HERD_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/herd" npm --prefix web test </dev/null
