#!/usr/bin/env bash
# Builds pg_stepup and installs it into the system PostgreSQL 15 (inside a
# root of scripts/pgroot.sh: that root's PostgreSQL 17 or 18).
#   install.sh [--release]
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
sudo_flag=()
[ -z "$SUDO" ] || sudo_flag=(--sudo)
log=$(mktemp)
if ! cargo pgrx install "${sudo_flag[@]}" --pg-config "$PG_CONFIG" "$@" >"$log" 2>&1; then
    cat "$log"; rm -f "$log"; exit 1
fi
rm -f "$log"
# Earlier releases' install scripts, so that CREATE EXTENSION ... VERSION
# '0.1.0' followed by ALTER EXTENSION ... UPDATE can be run (and tested):
# cargo pgrx install copies only the upgrade scripts.
$SUDO cp "$ROOT"/sql/releases/pg_stepup--*.sql "$($PG_CONFIG --sharedir)/extension/"
echo "== installed pg_stepup into $($PG_CONFIG --sharedir)/extension"
