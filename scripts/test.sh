#!/usr/bin/env bash
# The README's test command: installs what is missing, then runs every test:
# formatting and lints, the pure core's and the CLI's unit tests, unit tests
# and #[pg_test]s of the extension (cargo pgrx test), and the integration
# tests in tests/ (pytest, psycopg, PyJWT, jose, jwcrypto, a real OpenID
# provider) against a throwaway PostgreSQL 15 cluster with the extension
# installed.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
start=$(date +%s)

"$ROOT/scripts/setup.sh"

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
STEPUP_PGHOST="$dir/sock" STEPUP_PGPORT="$port" "$VENV/bin/pytest" -q tests

echo "== all tests passed in $(( $(date +%s) - start )) s"
