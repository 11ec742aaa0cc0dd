#!/usr/bin/env bash
# The README's test command: installs what is missing, then runs every test:
# formatting and lints, the pure core's and the CLI's unit tests, unit tests
# and #[pg_test]s of the extension (cargo pgrx test), and the integration
# tests in tests/ (pytest, psycopg, PyJWT, jose, jwcrypto, a real OpenID
# provider) against a throwaway PostgreSQL 15 cluster with the extension
# installed.
#   test.sh            PostgreSQL 15, the host's (Debian 12)
#   test.sh --pg NN    PostgreSQL NN (17, 18) inside a Debian root made and
#                      cached by scripts/pgroot.sh; the same tree, at /src
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
start=$(date +%s)

pg=15
while [ $# -gt 0 ]; do
    case "$1" in
    --pg) [ $# -ge 2 ] || { echo "test.sh: --pg needs a version" >&2; exit 2; }; pg=$2; shift 2 ;;
    --pg=*) pg=${1#--pg=}; shift ;;
    *) echo "usage: test.sh [--pg 15|17|18]" >&2; exit 2 ;;
    esac
done
case "$pg" in
15|17|18) ;;
*) echo "test.sh: PostgreSQL '$pg' is not supported (15, 17, 18)" >&2; exit 2 ;;
esac
if [ -n "${STEPUP_IN_PGROOT:-}" ]; then
    [ "$pg" = "$PG_MAJOR" ] || { echo "test.sh: --pg $pg inside the PostgreSQL $PG_MAJOR root" >&2; exit 2; }
elif [ "$pg" != "$PG_MAJOR" ]; then
    # The host's setup first: cargo-pgrx (the root runs the host's binary)
    # and the node packages of tests/oidc (in the tree, shared with the root).
    "$ROOT/scripts/setup.sh"
    echo "== PostgreSQL $pg: the suite runs in the root of scripts/pgroot.sh"
    "$ROOT/scripts/pgroot.sh" "$pg" run scripts/test.sh --pg "$pg"
    echo "== PostgreSQL $pg: all tests passed in $(( $(date +%s) - start )) s (root included)"
    exit 0
fi

"$ROOT/scripts/setup.sh"

if [ "$PG_MAJOR" = 15 ]; then
    echo "== cargo fmt --check and clippy"
    cargo fmt --all -- --check
    cargo clippy --all-targets --no-default-features --features "pg$PG_MAJOR pg_test" -q -- -D warnings
    cargo clippy -p stepup-core -p stepup-cli --all-targets -q -- -D warnings

    echo "== the core crate has no pgrx in its dependency tree"
    if cargo tree -p stepup-core -e normal,build | grep -i pgrx; then
        echo "stepup-core depends on pgrx (above): it must stay pure" >&2
        exit 1
    fi

    echo "== unit tests of the core and the CLI"
    cargo test -q -p stepup-core -p stepup-cli
else
    # Formatting, the core and the CLI do not depend on the PostgreSQL
    # version (the PG15 suite checks them); the extension's code does.
    echo "== clippy for PostgreSQL $PG_MAJOR"
    cargo clippy --all-targets --no-default-features --features "pg$PG_MAJOR pg_test" -q -- -D warnings
fi

echo "== the Postgres functions the extension declares itself, against PostgreSQL $PG_MAJOR's headers"
"$ROOT/scripts/declarations.sh" "$PG_CONFIG"

echo "== cargo pgrx test (unit tests and #[pg_test])"
# As postgres in both cases: initdb refuses root, and with --runas pgrx
# installs into the system PostgreSQL with sudo when not root.
pgdata=/tmp/stepup-pgrx-test
$SUDO rm -rf "$pgdata"
cargo pgrx test "pg$PG_MAJOR" --runas postgres --pgdata "$pgdata"

echo "== integration tests (pytest against a throwaway cluster)"
"$ROOT/scripts/install.sh"
# The stepup CLI the sync tests run (a debug build: no LTO, quicker to make).
cargo build -q -p stepup-cli
export STEPUP_CLI="$(cargo metadata --format-version 1 --no-deps |
    "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/stepup"
dir=$(mktemp -d /tmp/stepup-it.XXXXXX)
port=$(free_port)
trap '"$ROOT/scripts/cluster.sh" stop "$dir"; $SUDO rm -rf "$dir"' EXIT
"$ROOT/scripts/cluster.sh" start "$dir" "$port"
STEPUP_PGHOST="$dir/sock" STEPUP_PGPORT="$port" STEPUP_PG_BIN="$PG_BIN" "$VENV/bin/pytest" -q tests

echo "== PostgreSQL $PG_MAJOR: all tests passed in $(( $(date +%s) - start )) s"
