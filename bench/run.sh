#!/usr/bin/env bash
# The benchmark: builds pg_stepup with --release, starts its own PostgreSQL 15
# cluster, and runs every scenario of bench/bench.py side by side; prints
# TPS, latency and ratios, and writes them to bench/results-latest.txt.
#   bench/run.sh [bench.py options: --duration 5 --repeats 7 --clients 1,4,8 --only 2,1b ...]
# Takes about 20 minutes with the defaults. Not part of the test command.
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"

"$ROOT/scripts/setup.sh"
"$ROOT/scripts/install.sh" --release
dir=$(mktemp -d /tmp/stepup-bench.XXXXXX)
port=$(free_port)
trap '"$ROOT/scripts/cluster.sh" stop "$dir"; $SUDO rm -rf "$dir"' EXIT
# CPU cost, not disk: commits do not wait for WAL flush (fsync is off in
# every throwaway cluster here). No autovacuum: bench.py vacuums every table
# between repeats, so no background vacuum lands in one cell and not another.
"$ROOT/scripts/cluster.sh" start "$dir" "$port" "synchronous_commit = off" \
    "shared_buffers = 512MB" "max_wal_size = 4GB" "checkpoint_timeout = 30min" \
    "autovacuum = off"
"$VENV/bin/python" "$ROOT/bench/bench.py" --host "$dir/sock" --port "$port" --pg-bin "$PG_BIN" "$@"
