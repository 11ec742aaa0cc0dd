#!/usr/bin/env bash
# stepup verify (offline, on the CSV export) against stepup.verify_audit()
# (in the database) over the same chain of 1M entries: builds both with
# --release, starts its own PostgreSQL 15 cluster, makes and seals the
# entries, exports them with psql's \copy, and times the two side by side.
# Writes bench/results-verify-export.txt.
#   bench/verify_export.sh [verify_export.py options: --entries 1000000 --repeats 3 ...]
# Installs into the system PostgreSQL (scripts/install.sh --release), which
# other checkouts may share: it waits while another install runs.
# Takes about 5 minutes; needs ~2 GB free under /tmp. Not part of the test command.
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"

"$ROOT/scripts/setup.sh"
while pgrep -f "cargo pgrx install" >/dev/null; do
    echo "== waiting for another cargo pgrx install to finish"; sleep 10
done
"$ROOT/scripts/install.sh" --release
cd "$ROOT"
cargo build --release -q -p stepup-cli
target=$(cargo metadata --format-version 1 --no-deps |
    "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
dir=$(mktemp -d /tmp/stepup-bench-verify.XXXXXX)
work=$(mktemp -d /tmp/stepup-bench-export.XXXXXX)
port=$(free_port)
trap '"$ROOT/scripts/cluster.sh" stop "$dir"; $SUDO rm -rf "$dir" "$work"' EXIT
# As bench/run.sh: CPU cost, not disk; no background vacuum in one timing
# and not the other.
"$ROOT/scripts/cluster.sh" start "$dir" "$port" "synchronous_commit = off" \
    "shared_buffers = 512MB" "max_wal_size = 4GB" "checkpoint_timeout = 30min" \
    "autovacuum = off"
"$VENV/bin/python" "$ROOT/bench/verify_export.py" --host "$dir/sock" --port "$port" \
    --pg-bin "$PG_BIN" --cli "$target/release/stepup" --work "$work" "$@"
