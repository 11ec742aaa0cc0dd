#!/usr/bin/env bash
# present() per algorithm against the raw verify rate of the same library
# (bench/algs.py): builds pg_stepup with --release and the verify_rate
# example, starts its own PostgreSQL 15 cluster, writes bench/results-algs.txt.
#   bench/algs.sh [algs.py options: --tokens 4000 --repeats 5 --same-calls 1000000]
# Takes about 2 minutes after the build. Not part of the test command.
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"

"$ROOT/scripts/setup.sh"
"$ROOT/scripts/install.sh" --release
cargo build -q --release -p stepup-core --example verify_rate --manifest-path "$ROOT/Cargo.toml"
target=$(cargo metadata --format-version 1 --no-deps --manifest-path "$ROOT/Cargo.toml" |
         "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
dir=$(mktemp -d /tmp/stepup-algs.XXXXXX)
port=$(free_port)
trap '"$ROOT/scripts/cluster.sh" stop "$dir"; $SUDO rm -rf "$dir"' EXIT
"$ROOT/scripts/cluster.sh" start "$dir" "$port" "synchronous_commit = off"
"$VENV/bin/python" "$ROOT/bench/algs.py" --host "$dir/sock" --port "$port" \
    --verify-rate "$target/release/examples/verify_rate" "$@"
