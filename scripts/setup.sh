#!/usr/bin/env bash
# Installs what pg_stepup needs on a bare Debian 12 machine, and skips what
# is already there: apt packages, cargo-pgrx, `cargo pgrx init`, a Python
# venv with psycopg, PyJWT and pytest.
set -euo pipefail
source "$(dirname "$0")/env.sh"

packages=(postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR libclang-dev clang
          build-essential pkg-config sudo pgbouncer)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then missing+=(python3-venv); fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "== setup: apt-get install ${missing[*]}"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -f "$("$PG_CONFIG" --includedir-server 2>/dev/null)/postgres.h" ]; then
    echo "setup: no PostgreSQL $PG_MAJOR server headers behind $PG_CONFIG; install postgresql-server-dev-$PG_MAJOR" >&2
    exit 1
fi

if ! command -v cargo >/dev/null; then
    echo "setup: cargo not found; install Rust (rustup) first" >&2
    exit 1
fi
if [ "$(cargo pgrx --version 2>/dev/null)" != "cargo-pgrx $PGRX_VERSION" ]; then
    echo "== setup: cargo install cargo-pgrx $PGRX_VERSION (about 3 minutes)"
    cargo install cargo-pgrx --version "$PGRX_VERSION" --locked --force
fi
if ! grep -qs "^pg$PG_MAJOR = " "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
    echo "== setup: cargo pgrx init --pg$PG_MAJOR"
    cargo pgrx init --pg$PG_MAJOR "$PG_CONFIG"
fi

if ! "$VENV/bin/python" -c 'import psycopg, jwt, pytest, cryptography, rfc8785' 2>/dev/null; then
    echo "== setup: Python venv with psycopg, PyJWT, pytest"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check \
        'psycopg[binary]>=3.1,<4' 'pyjwt[crypto]>=2.8,<3' 'pytest>=8,<9' 'rfc8785>=0.1,<1'
fi

# Node packages (node-oidc-provider, jose) and jwcrypto for the OpenID tests.
"$ROOT/scripts/setup_oidc.sh"
