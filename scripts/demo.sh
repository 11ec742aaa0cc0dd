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
# For the protected tables: who stepped up, with what, for which change.
bob=$(mint --sub bob)
alice_other=$(mint --sub alice --bind public.payouts UPDATE '{"id": 1}' '{"iban": "DE00 EVIL"}')
# alice confirmed the new IBAN, and (for 7f) changing it back.
alice_bound=$(mint --sub alice --bind public.payouts UPDATE '{"id": 1}' '{"iban": "DE99 1234"}' \
    --bind public.payouts UPDATE '{"id": 1}' '{"iban": "DE11 5555"}')
otp=$(mint --amr otp)
hwk=$(mint --amr hwk)

psql_bank -v secret="$secret" -v valid="$valid" -v weak="$weak" -v expired="$expired" \
    -v tampered="$tampered" -v bob="$bob" -v alice_other="$alice_other" \
    -v alice_bound="$alice_bound" -v otp="$otp" -v hwk="$hwk" <<'SQL'
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

\echo
\echo '== 7. Protect payouts: changing iban or amount needs aal2 from the row''s owner,'
\echo '==    one assertion per change, bound to the exact change (the IdP signs its digest)'
CREATE TABLE payouts (id int PRIMARY KEY, owner text NOT NULL, iban text, amount numeric, note text);
INSERT INTO payouts VALUES (1, 'alice', 'DE11 5555', 120, NULL), (2, 'bob', 'DE22 6666', 80, NULL);
ALTER TABLE payouts OWNER TO app;
SELECT stepup.protect('payouts', columns => '{iban,amount}', subject_column => 'owner',
                      one_time => true, bind_change => true);
SELECT target, level, max_age, operations, columns, subject_column, one_time, bind_change FROM stepup.policies;
SET ROLE app;
\echo '-- 7a. The table owner, without step-up: SU001 (an error, not "UPDATE 0")'
UPDATE payouts SET iban = 'DE99 1234' WHERE id = 1;
\echo '-- 7b. note is not a protected column: no step-up needed'
UPDATE payouts SET note = 'checked' WHERE id = 1;
\echo '-- 7c. bob''s assertion on alice''s row: SU001'
BEGIN;
SELECT stepup.present(:'bob') ->> 'sub' AS sub;
UPDATE payouts SET iban = 'DE99 1234' WHERE id = 1;
ROLLBACK;
\echo '-- 7d. alice confirmed a different IBAN at the IdP: SU004 names the digest expected'
BEGIN;
SELECT stepup.present(:'alice_other') -> 'chg' AS chg;
UPDATE payouts SET iban = 'DE99 1234' WHERE id = 1;
ROLLBACK;
\echo '-- 7e. alice confirmed exactly this change: it succeeds'
BEGIN;
SELECT stepup.present(:'alice_bound') -> 'chg' AS chg;
UPDATE payouts SET iban = 'DE99 1234' WHERE id = 1;
COMMIT;
SELECT id, owner, iban, note FROM payouts ORDER BY id;
\echo '-- 7f. The same assertion in a later transaction (or another connection), for a change'
\echo '--     it also names: SU003, it was spent by 7e'
BEGIN;
SELECT stepup.present(:'alice_bound') ->> 'jti' AS jti;
UPDATE payouts SET iban = 'DE11 5555' WHERE id = 1;
ROLLBACK;
\echo '-- 7g. The owner cannot switch the guard off without step-up: SU006'
ALTER TABLE payouts DISABLE TRIGGER stepup_guard;
DROP TABLE payouts;
TRUNCATE payouts;
RESET ROLE;

\echo
\echo '== 8. transfers: only rows of 10000 or more are protected (row-level security),'
\echo '==    and only a hardware key (amr hwk) will do'
CREATE TABLE transfers (id int PRIMARY KEY, amount numeric NOT NULL, payee text);
ALTER TABLE transfers OWNER TO app;
SELECT stepup.protect('transfers', row_filter => 'amount >= 10000', methods => '{hwk}',
                      operations => '{INSERT,UPDATE,DELETE}');
SET ROLE app;
INSERT INTO transfers VALUES (1, 250, 'coffee');
\echo '-- 8a. A large transfer without step-up: SU001'
INSERT INTO transfers VALUES (2, 50000, 'car');
\echo '-- 8b. With an OTP assertion: SU001 names the methods accepted'
BEGIN;
SELECT stepup.present(:'otp') -> 'amr' AS amr;
INSERT INTO transfers VALUES (2, 50000, 'car');
ROLLBACK;
\echo '-- 8c. With a hardware key: it succeeds'
BEGIN;
SELECT stepup.present(:'hwk') -> 'amr' AS amr;
INSERT INTO transfers VALUES (2, 50000, 'car');
COMMIT;
TABLE transfers;
\echo '-- 8d. Raising a small transfer into the protected range is protected too: SU001'
UPDATE transfers SET amount = 20000 WHERE id = 1;
RESET ROLE;

\echo
\echo '== 9. The audit: every change to a protected table, with the assertion that authorised it'
SELECT id, who, "table", op, key, changed_columns, sub, acr FROM stepup.audit_trail ORDER BY id;
SELECT stepup.seal() AS sealed;
SELECT * FROM stepup.verify_audit();
\echo '-- 9a. Nobody edits the audit, not even a superuser: SU005'
UPDATE stepup.audit_log SET sub = 'mallory';
\echo '-- 9b. A superuser who switches that off first is caught by verify_audit'
ALTER TABLE stepup.audit_log DISABLE TRIGGER audit_log_append_only;
UPDATE stepup.audit_log SET sub = 'mallory' WHERE op = 'UPDATE';
SELECT * FROM stepup.verify_audit();
SQL
echo
echo "== demo done (cluster in $dir is removed)"
