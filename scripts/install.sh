#!/usr/bin/env bash
# Builds pg_stepup and installs it into the system PostgreSQL 15.
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
echo "== installed pg_stepup into $($PG_CONFIG --sharedir)/extension"
