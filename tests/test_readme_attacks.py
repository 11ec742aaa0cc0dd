"""The README's own configuration, attacked (issue 17).

"Protecting a table" protects payouts with

    stepup.protect('payouts', columns => '{iban,amount}', subject_column => 'owner',
                   one_time => true, bind_change => true)

on a table owned by the application role (a SQL injection runs as the
owner), the policy set by the superuser. Each test below is one attack class
of /tmp/spec/issue17.md run against that configuration, as an attacker would
run it to the end (the whole attack, not only its first step): it asserts
the exact SQLSTATE the attack must meet and that alice's row, and the rest
of the table, are exactly as before. The last test is the control: alice
with the right one-time, change-bound assertion changes her IBAN, audited.
"""
import json
from decimal import Decimal

import psycopg
import pytest
from psycopg import sql

from conftest import (current_jti, expect_error, protect, jws_payload, new_hs256, present, satisfied, scalar,
                      unique)
from mint import change_digest as python_change_digest

ALICE = (1, "alice", "DE01", Decimal(500), "small")
ROWS = [ALICE, (2, "bob", "DE02", Decimal(20000), "large"), (3, "alice", "DE03", Decimal(15000), "large")]
README_POLICY = dict(columns=["iban", "amount"], subject_column="owner", one_time=True, bind_change=True)
SEALER_KEY = 7305551626170716448  # the advisory lock seal() took before issue 17


# --- helpers ---------------------------------------------------------------------------------

def ident(prefix):
    return unique(prefix).replace("-", "_")


@pytest.fixture
def payouts(su, app_role):
    """payouts(extra_columns='', extra_values=(), **policy) -> 'public.payouts_<hex>': the README's
    table (id, owner, iban, amount, note [, extra columns]) with ROWS, owned by the app role,
    protected by the superuser with the README's policy (plus/overridden by `policy`)."""
    def make(extra_columns="", extra_values=None, **policy):
        name = f"public.{ident('payouts')}"
        su.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, owner text, iban text, amount numeric, "
                   f"note text{', ' + extra_columns if extra_columns else ''})")
        for i, row in enumerate(ROWS):
            values = list(row) + (list(extra_values[i]) if extra_values else [])
            su.execute(f"INSERT INTO {name} VALUES ({', '.join(['%s'] * len(values))})", values)
        su.execute(f"ALTER TABLE {name} OWNER TO {app_role}")
        protect(su, name, **{**README_POLICY, **policy})
        return name
    return make


def rows(su, table):
    """Every row the table shows (children included: no ONLY), read by the superuser."""
    return su.execute(f"SELECT id, owner, iban, amount, note FROM {table} ORDER BY id, iban").fetchall()


def alice(su, table):
    return su.execute(f"SELECT id, owner, iban, amount, note FROM {table} WHERE id = 1").fetchall()


def shape(su, table):
    """Columns and their types, the guard triggers and their firing mode, children."""
    cols = su.execute("SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                      "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                      [table]).fetchall()
    trig = su.execute("SELECT tgname, tgenabled::text FROM pg_trigger WHERE tgrelid = %s::regclass "
                      "AND tgname LIKE 'stepup_guard%%' ORDER BY 1", [table]).fetchall()
    kids = scalar(su, "SELECT count(*) FROM pg_inherits WHERE inhparent = %s::regclass", [table])
    return cols, trig, kids


def guard_modes(su, table):
    return dict(shape(su, table)[1])


def digest(conn, table, op, key, changes):
    return scalar(conn, "SELECT stepup.change_digest(%s, %s, %s::jsonb, %s::jsonb)",
                  [table, op, json.dumps(key), json.dumps(changes)])


def attempt(conn, steps, token=None):
    """Runs `steps` in one transaction (after presenting `token`), as far as
    they go. Returns (the error that stopped it or None, the steps done)."""
    done = []
    try:
        with conn.transaction():
            if token is not None:
                present(conn, token)
            for step in steps:
                conn.execute(step)
                done.append(step)
    except psycopg.Error as e:
        return e, done
    return None, done


def state(err):
    return None if err is None else err.sqlstate


def attempts(conn, steps):
    """Runs (token, statement) pairs, each in its own transaction, until one
    fails. Returns (the error or None, the statements done)."""
    done = []
    for token, statement in steps:
        err, _ = attempt(conn, [statement], token)
        if err is not None:
            return err, done
        done.append(statement)
    return None, done


# === 1. rename swap ==========================================================================

def test_1_rename_swap(app, su, payouts):
    """rename iban -> tmp, note -> iban: the policy's "iban" is now the note.
    Rewrite the real IBAN (tmp) without step-up, then rename everything back."""
    t = payouts()
    before = shape(su, t)
    err, done = attempt(app, [f"ALTER TABLE {t} RENAME COLUMN iban TO tmp",
                              f"ALTER TABLE {t} RENAME COLUMN note TO iban",
                              f"UPDATE {t} SET tmp = 'XX66 ATTACKER' WHERE id = 1",
                              f"ALTER TABLE {t} RENAME COLUMN iban TO note",
                              f"ALTER TABLE {t} RENAME COLUMN tmp TO iban"])
    assert (state(err), done, rows(su, t), shape(su, t)) == ("SU006", [], ROWS, before), err


# === 2. hand the row to mallory and back =====================================================

def test_2_hand_the_row_to_mallory_and_back(app, su, hs, payouts):
    """owner is the subject column, not one of `columns`: give alice's row to
    mallory, change its IBAN with mallory's own (bound, one-time) assertions,
    give it back."""
    t = payouts()
    to_mallory = digest(app, t, "UPDATE", {"id": 1}, {"owner": "mallory"})
    evil_iban = digest(app, t, "UPDATE", {"id": 1}, {"iban": "XX66 MALLORY"})
    back = digest(app, t, "UPDATE", {"id": 1}, {"owner": "alice"})
    give = f"UPDATE {t} SET owner = 'mallory' WHERE id = 1"
    # No assertion at all.
    err, _ = attempt(app, [give])
    assert (state(err), rows(su, t)) == ("SU001", ROWS), err
    # mallory's own assertion, bound to exactly this change: alice owns the old row.
    err, done = attempts(app, [
        (hs.token(sub="mallory", extra={"chg": [to_mallory]}), give),
        (hs.token(sub="mallory", extra={"chg": [evil_iban]}), f"UPDATE {t} SET iban = 'XX66 MALLORY' WHERE id = 1"),
        (hs.token(sub="mallory", extra={"chg": [back]}), f"UPDATE {t} SET owner = 'alice' WHERE id = 1"),
    ])
    assert (state(err), done, rows(su, t)) == ("SU001", [], ROWS), err


# === 3. the owner's own or alice's assertion disables the guard ================================

WEAKENING = {
    "disable_guard": ["ALTER TABLE {t} DISABLE TRIGGER stepup_guard",
                      "UPDATE {t} SET iban = 'XX66 ATTACKER' WHERE id = 1",
                      "ALTER TABLE {t} ENABLE ALWAYS TRIGGER stepup_guard"],
    "disable_all": ["ALTER TABLE {t} DISABLE TRIGGER ALL",
                    "UPDATE {t} SET iban = 'XX66 ATTACKER' WHERE id = 1",
                    "ALTER TABLE {t} ENABLE ALWAYS TRIGGER stepup_guard",
                    "ALTER TABLE {t} ENABLE ALWAYS TRIGGER stepup_guard_truncate"],
    "drop_guard": ["DROP TRIGGER stepup_guard ON {t}",
                   "UPDATE {t} SET iban = 'XX66 ATTACKER' WHERE id = 1"],
    "drop_column": ["ALTER TABLE {t} DROP COLUMN iban",
                    "ALTER TABLE {t} ADD COLUMN iban text DEFAULT 'XX66 ATTACKER'"],
    "alter_type": ["ALTER TABLE {t} ALTER COLUMN amount TYPE float8"],
}


@pytest.mark.parametrize("whose", ["own", "alice"])
@pytest.mark.parametrize("how", list(WEAKENING))
def test_3_owner_with_an_assertion_disables_the_guard(app, su, hs, app_role, payouts, whose, how):
    """For a subject_column / bind_change table no assertion lets the owner
    weaken the protection: only the extension's owner may."""
    t = payouts()
    before = shape(su, t)
    token = hs.token(sub=app_role if whose == "own" else "alice")
    err, done = attempt(app, [s.format(t=t) for s in WEAKENING[how]], token)
    assert (state(err), done, rows(su, t), shape(su, t)) == ("SU006", [], ROWS, before), err
    texts = " ".join(x for x in (err.diag.message_primary, err.diag.message_detail, err.diag.message_hint) if x)
    assert "extension" in texts.lower() and "owner" in texts.lower(), texts
    # The guard is still there.
    expect_error(app, f"UPDATE {t} SET iban = 'XX66 ATTACKER' WHERE id = 1", None, "SU001")
    assert alice(su, t) == [ALICE]


# === 4. TimeZone / DateStyle and the row filter ================================================

FILTERS = {
    # 2026-01-01 23:30 UTC is 2026-01-02 in Tokyo: outside the filter there.
    "timezone": dict(extra_columns="created_at timestamptz",
                     extra_values=[("2026-01-01 23:30+00",), ("2026-02-01 00:00+00",), ("2025-06-01 00:00+00",)],
                     row_filter="created_at::date <= '2026-01-01'",
                     setting="SET TimeZone = 'Asia/Tokyo'"),
    # '04/03/2026' is April 3 as protect() read it (ISO, MDY); March 4 under DMY,
    # which would leave alice's row (due March 20) outside the filter.
    "datestyle": dict(extra_columns="due date",
                      extra_values=[("2026-03-20",), ("2026-05-01",), ("2026-01-15",)],
                      row_filter="due < '04/03/2026'",
                      setting="SET DateStyle = 'DMY'"),
}


@pytest.mark.parametrize("statement", ["DELETE FROM {t} WHERE id = 1",
                                       "UPDATE {t} SET iban = 'XX66 ATTACKER' WHERE id = 1"],
                         ids=["delete", "update"])
@pytest.mark.parametrize("variant", list(FILTERS))
def test_4_session_settings_move_alice_out_of_the_row_filter(app, app_connect, su, payouts, variant, statement):
    f = FILTERS[variant]
    su.execute("SET TimeZone = 'UTC'")
    su.execute("SET DateStyle = 'ISO, MDY'")
    t = payouts(extra_columns=f["extra_columns"], extra_values=f["extra_values"], row_filter=f["row_filter"])
    su.execute("RESET TimeZone")
    su.execute("RESET DateStyle")
    # Without the setting the row is protected ...
    err, _ = attempt(app, [statement.format(t=t)])
    assert state(err) == "SU001", err
    # ... and with it, it must stay so: in a session that sets it before
    # its first write (a filter parsed per session would read the literal,
    # and keep it in a cached plan, under the writer's DateStyle).
    writer = app_connect()
    writer.execute(f["setting"])
    err, done = attempt(writer, [statement.format(t=t)])
    assert (state(err), rows(su, t)) == ("SU001", ROWS), err


# === 6. an advisory lock does not stop sealing =================================================

def test_6_advisory_lock_does_not_block_seal_verify_digest(app, app_connect, su, payouts):
    t = payouts()
    app.execute(f"INSERT INTO {t} VALUES (4, 'carol', 'DE04', 1, NULL)")  # INSERT: audited, not gated
    holder = app_connect()
    holder.execute(f"SELECT pg_advisory_lock({SEALER_KEY})")
    holder.execute("SELECT pg_advisory_lock(0), pg_advisory_lock(1)")
    holder.execute("BEGIN")
    holder.execute(f"SELECT pg_advisory_xact_lock({SEALER_KEY})")
    su.execute("SET statement_timeout = '5s'")
    try:
        err, _ = attempt(su, ["SELECT stepup.seal()",
                              "SELECT * FROM stepup.verify_audit()",
                              "SELECT stepup.audit_digest()"])
        ok = scalar(su, "SELECT ok FROM stepup.verify_audit()") if err is None else None
    finally:
        su.execute("RESET statement_timeout")
        holder.execute("ROLLBACK")
        holder.execute("SELECT pg_advisory_unlock_all()")
    assert (state(err), ok) == (None, True), err
    assert scalar(su, "SELECT count(*) FROM stepup.audit_chain c JOIN stepup.audit_log l ON l.id = c.entry_id "
                      "WHERE l.table_name = %s AND l.op = 'INSERT'", [t]) == 1
    # The attacker gained nothing else: alice's row is as it was.
    assert alice(su, t) == [ALICE]
    expect_error(app, "LOCK TABLE stepup.audit_chain IN SHARE ROW EXCLUSIVE MODE", None, "42501")


# === 7. TRUNCATE ===============================================================================

def truncates(su, table):
    return su.execute("SELECT old_values, sub, jti FROM stepup.audit_log WHERE op = 'TRUNCATE' "
                      "AND table_name = %s ORDER BY id", [table]).fetchall()


def test_7_truncate_of_the_readme_table_is_refused_and_leaves_nothing(app, su, payouts):
    t = payouts()
    for conn, statement in [(app, f"TRUNCATE {t}"), (app, f"TRUNCATE ONLY {t} CASCADE"),
                            (su, f"TRUNCATE {t}")]:
        err, _ = attempt(conn, [statement])
        assert (state(err), rows(su, t)) == ("SU001", ROWS), (statement, err)
    su.execute("SET session_replication_role = replica")
    try:
        err, _ = attempt(su, [f"TRUNCATE {t}"])
    finally:
        su.execute("RESET session_replication_role")
    assert (state(err), rows(su, t)) == ("SU001", ROWS), err
    assert truncates(su, t) == []


def test_7_an_ungated_truncate_leaves_a_trace(app, su, payouts):
    """The README policy with operations => '{UPDATE}' does not gate TRUNCATE:
    the owner empties the table, which must show in the audit."""
    t = payouts(operations=["UPDATE"])
    app.execute("BEGIN")
    app.execute(f"TRUNCATE {t}")
    app.execute("ROLLBACK")
    assert (truncates(su, t), rows(su, t)) == ([], ROWS)
    app.execute(f"TRUNCATE {t}")
    assert truncates(su, t) == [({"rows": 3}, None, None)]
    assert scalar(su, "SELECT ok FROM stepup.verify_audit()") is True


# === 9. an inheritance child =================================================================

@pytest.mark.parametrize("how", ["create_inherits", "alter_inherit"])
def test_9_inheritance_child_smuggles_a_row(app, su, payouts, app_schema, how):
    """A child's rows show in every read of payouts (no ONLY): the payout run
    reading alice's IBAN gets the attacker's."""
    t = payouts()
    child = f"{app_schema}.evil"
    forged = f"INSERT INTO {child} VALUES (1, 'alice', 'XX66 ATTACKER', 500, 'small')"
    if how == "create_inherits":
        steps = [f"CREATE TABLE {child} () INHERITS ({t})", forged]
    else:
        app.execute(f"CREATE TABLE {child} (id int NOT NULL, owner text, iban text, amount numeric, note text)")
        steps = [f"ALTER TABLE {child} INHERIT {t}", forged]
    err, done = attempt(app, steps)
    assert (state(err), done, rows(su, t), alice(su, t)) == ("SU006", [], ROWS, [ALICE]), err
    assert shape(su, t)[2] == 0


# === 11. a retired key =======================================================================

def test_11_session_assertion_of_a_retired_key(app, su, payouts, dbname):
    """alice's session assertion, bound to a change and not yet spent; the key
    is retired (compromised); the same session then makes that change."""
    signer = new_hs256(su, dbname)
    t = payouts()
    new_iban = "DE99 1234"
    token = signer.token(sub="alice", extra={"chg": [digest(app, t, "UPDATE", {"id": 1}, {"iban": new_iban})]})
    present(app, token, "session")
    assert satisfied(app, "aal2", "5 minutes") is True
    su.execute("SELECT stepup.retire_key(%s)", [signer.kid])
    err, _ = attempt(app, [f"UPDATE {t} SET iban = '{new_iban}' WHERE id = 1"])
    assert (state(err), rows(su, t)) == ("SU001", ROWS), err
    assert "retired" in (err.diag.message_detail or ""), err.diag.message_detail
    assert satisfied(app, "aal2", "5 minutes") is False
    app.execute("SELECT stepup.clear()")


# === 14. DISABLE / ENABLE TRIGGER ALL, then a replica write ====================================

def test_14_enable_trigger_all_then_replica_write(su, hs, payouts):
    """What pg_restore --data-only --disable-triggers ends with: the guard
    must still fire under session_replication_role = replica."""
    t = payouts()
    # The README's table binds rows to subjects: even a superuser needs
    # step-up to switch its guard off.
    err, _ = attempt(su, [f"ALTER TABLE {t} DISABLE TRIGGER ALL"])
    assert state(err) == "SU006", err
    with su.transaction():
        present(su, hs.token(sub="operator"))
        su.execute(f"ALTER TABLE {t} DISABLE TRIGGER ALL")
    su.execute(f"ALTER TABLE {t} ENABLE TRIGGER ALL")
    modes = guard_modes(su, t)
    su.execute("SET session_replication_role = replica")
    try:
        err, _ = attempt(su, [f"UPDATE {t} SET iban = 'XX66 ATTACKER' WHERE id = 1"])
        err_delete, _ = attempt(su, [f"DELETE FROM {t} WHERE id = 1"])
    finally:
        su.execute("RESET session_replication_role")
    assert (modes, state(err), state(err_delete), rows(su, t)) == (
        {"stepup_guard": "A", "stepup_guard_truncate": "A"}, "SU001", "SU001", ROWS), (err, err_delete)
    su.execute(f"ALTER TABLE {t} ENABLE REPLICA TRIGGER stepup_guard")
    assert guard_modes(su, t) == {"stepup_guard": "A", "stepup_guard_truncate": "A"}


# === 15. row_security = off ==================================================================

def test_15_row_security_off(app, su, payouts, app_schema):
    t = payouts()
    app.execute("SET row_security = off")
    create, _ = attempt(app, [f"CREATE TABLE {app_schema}.t2 (x int)"])
    err, done = attempt(app, [f"ALTER TABLE {t} DISABLE TRIGGER stepup_guard",
                              f"UPDATE {t} SET iban = 'XX66 ATTACKER' WHERE id = 1",
                              f"ALTER TABLE {t} ENABLE ALWAYS TRIGGER stepup_guard"])
    assert (state(create), state(err), done, rows(su, t)) == (None, "SU006", [], ROWS), (create, err)


# === 16. one-time bulk =======================================================================

def test_16_one_time_bulk_spends_once_and_purges(app, su, hs, payouts):
    """One assertion, bound to 60 row changes of alice's, spent by one
    statement: one spent id written (not one write per row), a long-expired
    spent id purged; the assertion replayed on alice's row 1 -> SU003."""
    t = payouts()
    su.execute(f"INSERT INTO {t} SELECT g, 'alice', 'DE' || g, 100, 'bulk' FROM generate_series(10, 69) g")
    bulk = [digest(app, t, "UPDATE", {"id": i}, {"amount": 101}) for i in range(10, 70)]
    row1 = digest(app, t, "UPDATE", {"id": 1}, {"iban": "DE99 1234"})
    token = hs.token(sub="alice", extra={"chg": bulk + [row1]})
    assert len(token) <= 8192
    stale = ident("stale-jti")
    su.execute("INSERT INTO stepup.used_jti VALUES (%s, 'k', 's', 1, now() - interval '3 days', "
               "now() - interval '2 days')", [stale])
    with app.transaction():
        jti = present(app, token)["jti"]
        assert app.execute(f"UPDATE {t} SET amount = 101 WHERE id >= 10").rowcount == 60
        stats = app.execute("SELECT pg_stat_get_xact_tuples_updated('stepup.used_jti'::regclass), "
                            "pg_stat_get_xact_tuples_inserted('stepup.used_jti'::regclass)").fetchone()
    assert stats == (0, 1)
    assert scalar(su, "SELECT count(*) FROM stepup.used_jti WHERE jti = %s", [jti]) == 1
    assert scalar(su, "SELECT count(*) FROM stepup.used_jti WHERE jti = %s", [stale]) == 0
    assert scalar(su, f"SELECT count(*) FROM {t} WHERE id >= 10 AND amount = 101") == 60
    # The replay, on a change the assertion does bind.
    err, _ = attempt(app, [f"UPDATE {t} SET iban = 'DE99 1234' WHERE id = 1"], token)
    assert (state(err), alice(su, t)) == ("SU003", [ALICE]), err
    assert [r for r in rows(su, t) if r[0] < 10] == ROWS


# === control: the legitimate change ==========================================================

def test_control_alice_changes_her_iban(app, su, hs, payouts):
    t = payouts()
    new_iban = "DE89 3704 0044 0532 0130 00"
    d = digest(app, t, "UPDATE", {"id": 1}, {"iban": new_iban})
    assert d == python_change_digest(t, "UPDATE", {"id": 1}, {"iban": new_iban})
    # The assertion also binds the change back, for the replay below.
    d_back = python_change_digest(t, "UPDATE", {"id": 1}, {"iban": "DE01"})
    token = hs.token(sub="alice", extra={"chg": [d, d_back]})
    with app.transaction():
        present(app, token)
        jti = current_jti(app)
        assert app.execute(f"UPDATE {t} SET iban = %s WHERE id = 1", [new_iban]).rowcount == 1
    assert jti == jws_payload(token)["jti"]
    assert rows(su, t) == [(1, "alice", new_iban, Decimal(500), "small")] + ROWS[1:]
    entry = su.execute("SELECT op, key, changed, old_values, new_values, sub, jti, kid, acr FROM stepup.audit_log "
                       "WHERE table_name = %s AND op IN ('INSERT', 'UPDATE', 'DELETE') ORDER BY id",
                       [t]).fetchall()
    assert entry == [("UPDATE", {"id": 1}, ["iban"], {"iban": "DE01"}, {"iban": new_iban}, "alice", jti,
                      hs.kid, "aal2")]
    # The same assertion again, on a change it binds: spent.
    err, _ = attempt(app, [f"UPDATE {t} SET iban = 'DE01' WHERE id = 1"], token)
    assert (state(err), alice(su, t)) == ("SU003", [(1, "alice", new_iban, Decimal(500), "small")]), err
