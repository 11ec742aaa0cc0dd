#!/usr/bin/env bash
# How many stepup.present() verifications one backend does per second, next
# to a plain `SELECT 1` loop in the same backend, in the same run.
#   bench/present.sh [iterations] [repeats]
# Runs the three loops interleaved, `repeats` times, and prints the median
# rate of each and the ratios. Builds the extension with --release.
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
iterations=${1:-20000}
repeats=${2:-5}

"$ROOT/scripts/setup.sh"
"$ROOT/scripts/install.sh" --release
dir=$(mktemp -d /tmp/stepup-bench.XXXXXX)
port=$(free_port)
trap '"$ROOT/scripts/cluster.sh" stop "$dir"; $SUDO rm -rf "$dir"' EXIT
"$ROOT/scripts/cluster.sh" start "$dir" "$port"
db() { "$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 "host=$dir/sock port=$port user=postgres dbname=postgres" "$@"; }

py() { "$VENV/bin/python" "$@"; }
secret=$(py -c 'import secrets; print(secrets.token_hex(32))')
seed=$(py -c 'import secrets; print(secrets.token_hex(32))')
edpub=$(py "$ROOT/scripts/mint.py" --kid x --ed25519-seed "$seed" --public-key)
hs=$(py "$ROOT/scripts/mint.py" --kid hs --secret "$secret" --lifetime 900)
ed=$(py "$ROOT/scripts/mint.py" --kid ed --ed25519-seed "$seed" --lifetime 900)

db -v secret="$secret" -v edpub="$edpub" >/dev/null <<'SQL'
CREATE EXTENSION pg_stepup;
SELECT stepup.add_key('hs', decode(:'secret', 'hex'));
SELECT stepup.add_key('ed', decode(:'edpub', 'hex'), 'EdDSA');
CREATE SCHEMA bench;
-- Calls per second over n iterations in this backend; tok NULL = SELECT 1.
CREATE FUNCTION bench.rate(tok text, n int) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz;
BEGIN
    IF tok IS NULL THEN
        t0 := clock_timestamp();
        FOR i IN 1..n LOOP PERFORM 1; END LOOP;
    ELSE
        PERFORM stepup.present(tok);  -- load the key cache first
        t0 := clock_timestamp();
        FOR i IN 1..n LOOP PERFORM stepup.present(tok); END LOOP;
    END IF;
    RETURN n / extract(epoch FROM clock_timestamp() - t0);
END $$;
SQL

declare -A rates
for _ in $(seq "$repeats"); do
    rates[select1]+="$(db -c "SELECT bench.rate(NULL, $iterations)") "
    rates[hs256]+="$(db -v t="$hs" <<<"SELECT bench.rate(:'t', $iterations)") "
    rates[eddsa]+="$(db -v t="$ed" <<<"SELECT bench.rate(:'t', $iterations)") "
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {printf "%.0f", a[int((NR+1)/2)]}'; }
s1=$(median <<<"${rates[select1]}")
hsr=$(median <<<"${rates[hs256]}")
edr=$(median <<<"${rates[eddsa]}")
echo "== stepup.present() in one backend: median of $repeats runs x $iterations calls"
printf '%-28s %12s/s\n' "SELECT 1 (PERFORM 1) loop" "$s1" "present() HS256" "$hsr" "present() EdDSA" "$edr"
awk -v a="$hsr" -v b="$edr" -v s="$s1" 'BEGIN {
    printf "ratio present(HS256) / SELECT 1: %.3f\nratio present(EdDSA) / SELECT 1: %.3f\n", a/s, b/s }'
