#!/usr/bin/env bash
# The README's demo command: installs what is missing, builds and installs
# pg_stepup, starts a throwaway PostgreSQL 15 cluster and walks through
# presenting assertions in psql. Assertions are minted by PyJWT
# (scripts/mint.py), as an identity provider would: never by the database.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"

"$ROOT/scripts/setup.sh"
"$ROOT/scripts/install.sh"

dir=$(mktemp -d /tmp/stepup-demo.XXXXXX)
port=$(free_port)
trap '"$ROOT/scripts/cluster.sh" stop "$dir"; $SUDO rm -rf "$dir"' EXIT
"$ROOT/scripts/cluster.sh" start "$dir" "$port"
psql_bank() { "$PG_BIN/psql" -X -q "host=$dir/sock port=$port user=postgres dbname=bank" "$@"; }
"$PG_BIN/psql" -X -q "host=$dir/sock port=$port user=postgres" -c "CREATE DATABASE bank"

secret=$("$VENV/bin/python" -c 'import secrets; print(secrets.token_hex(32))')
mint() { "$VENV/bin/python" "$ROOT/scripts/mint.py" --kid idp-2026 --secret "$secret" --aud bank "$@"; }
valid=$(mint --acr aal2)
weak=$(mint --acr aal1)
expired=$(mint --acr aal2 --age 400 --lifetime 300)
# Tampered: the payload of an aal3 assertion under the signature of the aal2 one.
IFS=. read -r h _ s <<<"$valid"
IFS=. read -r _ p3 _ <<<"$(mint --acr aal3)"
tampered="$h.$p3.$s"

psql_bank -v secret="$secret" -v valid="$valid" -v weak="$weak" -v expired="$expired" \
    -v tampered="$tampered" <<'SQL'
\set VERBOSITY verbose
\set SHOW_CONTEXT never
\pset footer off
\echo '== 1. Install the extension and register the IdP''s HS256 key (32 random bytes)'
CREATE EXTENSION pg_stepup;
SELECT stepup.add_key('idp-2026', decode(:'secret', 'hex'));
SELECT kid, alg, status, left(fingerprint, 16) AS fingerprint FROM stepup.key_info;

\echo
\echo '== 2. A valid aal2 assertion, minted by PyJWT: held for this transaction'
BEGIN;
SELECT stepup.present(:'valid') ->> 'acr' AS acr, stepup.current() ->> 'sub' AS sub;
SELECT stepup.satisfied('aal2', '5 minutes') AS aal2_ok, stepup.satisfied('aal3', '5 minutes') AS aal3_ok;
SELECT stepup.require('aal2', '5 minutes') AS required_aal2;
COMMIT;
\echo '-- after COMMIT nothing is held:'
SELECT stepup.current() IS NULL AS nothing_held, stepup.satisfied('aal1', '1 hour') AS satisfied;

\echo
\echo '== 3. A tampered assertion (aal3 payload under the aal2 signature): SU002'
SELECT stepup.present(:'tampered');

\echo
\echo '== 4. An expired assertion: SU002'
SELECT stepup.present(:'expired');

\echo
\echo '== 5. A too-weak assertion (aal1) where aal2 is required: SU001 with the RFC 9470 challenge'
BEGIN;
SELECT stepup.present(:'weak') ->> 'acr' AS acr;
SELECT stepup.require('aal2', '5 minutes');
ROLLBACK;

\echo
\echo '== 6. Settings are for superusers only: an application role cannot widen them'
CREATE ROLE app LOGIN;
SET ROLE app;
SET stepup.leeway = '1 day';
RESET ROLE;
SQL
echo
echo "== demo done (cluster in $dir is removed)"
