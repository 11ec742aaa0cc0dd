#!/usr/bin/env bash
# Instructions per transaction of scenarios 1b, 2 and 3, counted by
# callgrind in a single-user backend (bench/instructions.py): repeatable to
# the instruction, for comparing builds on a noisy machine.
#   bench/instructions.sh [--transactions 2000] [--scenarios 1b,2,3] [--keep]
# Takes about 2 minutes. Not part of the test command.
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"

"$ROOT/scripts/setup.sh"
command -v valgrind >/dev/null || $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
"$ROOT/scripts/install.sh" --release
dir=$(mktemp -d /tmp/stepup-instructions.XXXXXX)
port=$(free_port)
# --keep leaves the directory (and its callgrind files) for callgrind_annotate.
if [[ " $* " == *" --keep "* ]]; then
    trap '"$ROOT/scripts/cluster.sh" stop "$dir"; echo "callgrind files kept in $dir"' EXIT
else
    trap '"$ROOT/scripts/cluster.sh" stop "$dir"; $SUDO rm -rf "$dir"' EXIT
fi
"$ROOT/scripts/cluster.sh" start "$dir" "$port" "synchronous_commit = off" "shared_buffers = 256MB"
# The tables of bench/run.sh, and the key the counted assertions are signed with.
"$VENV/bin/python" "$ROOT/bench/bench.py" --host "$dir/sock" --port "$port" --pg-bin "$PG_BIN" \
    --only none --out "$dir/setup.txt" >/dev/null
"$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 "host=$dir/sock port=$port user=postgres dbname=bench" \
    -c "SELECT stepup.add_key('instructions', decode(repeat('ab', 32), 'hex'))" -c "VACUUM ANALYZE" >/dev/null
"$ROOT/scripts/cluster.sh" stop "$dir"
as_postgres cp -a "$dir/data" "$dir/pristine"
"$VENV/bin/python" "$ROOT/bench/instructions.py" --dir "$dir" --pg-bin "$PG_BIN" "$@"
