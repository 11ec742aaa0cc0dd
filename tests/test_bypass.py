"""Bypass attempts against a protected table (issue 17), run as an attacker
would run them: the application role owns the table and is not a superuser
(a SQL injection runs as the owner); the superuser only where it is the
actor. Each attack asserts its exact SQLSTATE and that the protected rows
are exactly as before; each class also runs the legitimate path (the same
change or DDL with the right step-up works, and is audited where it must be).

Spec classes covered: 1 renames, 2 decider columns, 3 DDL on subject /
bind_change / plain / one_time tables, 4 session-independent row filters,
9 inheritance, 11 retired keys, 14 guard firing mode and pg_restore,
15 row_security = off, 16 one-time bulk spending."""
import os
import subprocess

import psycopg
import pytest
from psycopg import sql

from conftest import (PGHOST, PGPORT, SUPERUSER, conninfo, protect, expect_error, jws_payload, new_hs256, present,
                      satisfied, scalar, unique)

PG_BIN = os.environ.get("STEPUP_PG_BIN", "/usr/lib/postgresql/15/bin")

ROWS = [(1, "alice", "DE01", 500, "small"), (2, "bob", "DE02", 20000, "large"),
        (3, "alice", "DE03", 15000, "large")]


# --- helpers (copied from test_protect.py, plus table builders) --------------------------------

def ident(prefix):
    return unique(prefix).replace("-", "_")


def stepped_up(conn, token, statement, params=None):
    """Runs `statement` in a transaction that presented `token`; returns its rowcount."""
    with conn.transaction():
        present(conn, token)
        return conn.execute(statement, params).rowcount


def rows(su, table):
    """The payouts rows, read by the superuser (no row security in the way)."""
    return su.execute(f"SELECT id, owner, iban, amount::int, note FROM {table} ORDER BY id").fetchall()


def new_table(su, app_role, columns, values, prefix="payouts"):
    """A fresh table `public.<prefix>_<hex>` with `columns` (SQL), filled with
    `values` by the superuser, then handed to the app role."""
    name = f"public.{ident(prefix)}"
    su.execute(f"CREATE TABLE {name} ({columns})")
    if values:
        marks = ", ".join(["%s"] * len(values[0]))
        su.cursor().executemany(f"INSERT INTO {name} VALUES ({marks})", values)
    su.execute(f"ALTER TABLE {name} OWNER TO {app_role}")
    return name


@pytest.fixture
def make_table(su, app_role):
    """A fresh payouts table (ROWS) owned by the app role; returns its name."""
    def make():
        return new_table(su, app_role, "id int PRIMARY KEY, owner text, iban text, amount numeric, note text",
                         ROWS)
    return make


def attnames(su, table):
    return [r[0] for r in su.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
        "AND NOT attisdropped ORDER BY attnum", [table]).fetchall()]


def guard_state(su, table):
    """tgenabled of the two guard triggers."""
    return dict(su.execute(
        "SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = %s::regclass "
        "AND tgname IN ('stepup_guard', 'stepup_guard_truncate')", [table]).fetchall())


def texts(err):
    d = err.diag
    return " ".join(t for t in (d.message_primary, d.message_detail, d.message_hint) if t)


def ddl_entries(su, table):
    return su.execute("SELECT sub, jti, kid, new_values->>'object' FROM stepup.audit_log "
                      "WHERE op = 'DDL' AND table_name = %s ORDER BY id", [table]).fetchall()


# === 1. renames ===============================================================================

@pytest.mark.parametrize("policy,column", [
    ({"columns": ["iban", "amount"]}, "iban"),
    ({"columns": ["iban", "amount"]}, "amount"),
    ({"subject_column": "owner"}, "owner"),
    ({"row_filter": "amount >= 10000"}, "amount"),
], ids=["columns-iban", "columns-amount", "subject_column", "row_filter"])
def test_1_owner_cannot_rename_a_policy_column(app, su, make_table, policy, column):
    t = make_table()
    protect(su, t, **policy)
    expect_error(app, f"ALTER TABLE {t} RENAME COLUMN {column} TO renamed", None, "SU006")
    assert attnames(su, t) == ["id", "owner", "iban", "amount", "note"]
    assert rows(su, t) == ROWS


def test_1_swap_attack_fails_at_the_first_rename(app, su, make_table):
    """rename iban -> tmp, note -> iban; the policy's "iban" is now the
    note: rewrite the real IBAN (tmp) unguarded and rename back."""
    t = make_table()
    protect(su, t, columns=["iban", "amount"])
    steps = [f"ALTER TABLE {t} RENAME COLUMN iban TO tmp",
             f"ALTER TABLE {t} RENAME COLUMN note TO iban",
             f"UPDATE {t} SET tmp = 'ATTACKER' WHERE id = 1",
             f"ALTER TABLE {t} RENAME COLUMN iban TO note",
             f"ALTER TABLE {t} RENAME COLUMN tmp TO iban"]
    done = []
    with pytest.raises(psycopg.Error) as caught:
        with app.transaction():
            for step in steps:
                app.execute(step)
                done.append(step)
    assert caught.value.sqlstate == "SU006", caught.value
    assert done == [], f"steps that succeeded before the refusal: {done}"
    assert attnames(su, t) == ["id", "owner", "iban", "amount", "note"]
    assert rows(su, t) == ROWS


def test_1_type_change_without_rewrite_of_a_policy_column(app, su, app_role):
    t = new_table(su, app_role, "id int PRIMARY KEY, owner text, iban varchar(10), amount numeric, note text",
                  ROWS)
    protect(su, t, columns=["iban"])
    expect_error(app, f"ALTER TABLE {t} ALTER COLUMN iban TYPE text", None, "SU006")
    assert scalar(su, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                      "WHERE attrelid = %s::regclass AND attname = 'iban'", [t]) == "character varying(10)"
    assert rows(su, t) == ROWS


def test_1_rename_of_an_unprotected_column_or_the_table_needs_nothing(app, su, make_table, app_role):
    t = make_table()
    protect(su, t, columns=["iban", "amount"])
    app.execute(f"ALTER TABLE {t} RENAME COLUMN note TO remark")
    renamed = f"{t}_r"
    # Renaming a table needs CREATE on its schema.
    su.execute(f"GRANT CREATE ON SCHEMA public TO {app_role}")
    try:
        app.execute(f"ALTER TABLE {t} RENAME TO {renamed.split('.')[1]}")
    finally:
        su.execute(f"REVOKE CREATE ON SCHEMA public FROM {app_role}")
    expect_error(app, f"UPDATE {renamed} SET iban = 'XX' WHERE id = 1", None, "SU001")
    assert app.execute(f"UPDATE {renamed} SET remark = 'free' WHERE id = 1").rowcount == 1
    assert su.execute(f"SELECT iban, remark FROM {renamed} WHERE id = 1").fetchone() == ("DE01", "free")


def test_1_rename_with_step_up_and_the_policy_follows(app, su, hs, make_table, app_role):
    t = make_table()
    protect(su, t, columns=["iban", "amount"])
    with app.transaction():
        present(app, hs.token(sub=app_role))
        app.execute(f"ALTER TABLE {t} RENAME COLUMN iban TO account")
    assert scalar(su, "SELECT columns FROM stepup.policies WHERE target = %s::regclass", [t]) == \
        ["account", "amount"]
    expect_error(app, f"UPDATE {t} SET account = 'XX' WHERE id = 1", None, "SU001")
    assert app.execute(f"UPDATE {t} SET note = 'free' WHERE id = 1").rowcount == 1
    assert su.execute(f"SELECT account, note FROM {t} WHERE id = 1").fetchone() == ("DE01", "free")
    assert stepped_up(app, hs.token(), f"UPDATE {t} SET account = 'XX' WHERE id = 1") == 1


def test_1_enum_label_renames_keep_protection_with_the_locked_rows(app, su, hs, app_role):
    """Renaming what the row filter names changes the filter as written
    (what a dump holds): it needs the table's step-up, as renaming a column
    the filter reads does. With it, protection stays with the same rows."""
    typ = ident("st")
    su.execute(f"CREATE TYPE public.{typ} AS ENUM ('open', 'locked')")
    su.execute(f"ALTER TYPE public.{typ} OWNER TO {app_role}")
    t = new_table(su, app_role, f"id int PRIMARY KEY, status public.{typ}, note text",
                  [(1, "locked", "was locked"), (2, "open", "was open")], prefix="accounts")
    protect(su, t, row_filter="status = 'locked'")
    expect_error(app, f"DELETE FROM {t} WHERE id = 1", None, "SU001")
    expect_error(app, f"ALTER TYPE public.{typ} RENAME VALUE 'locked' TO 'x'", None, "SU006")
    with app.transaction():
        present(app, hs.token())
        app.execute(f"ALTER TYPE public.{typ} RENAME VALUE 'locked' TO 'x'")
    with app.transaction():
        present(app, hs.token())
        app.execute(f"ALTER TYPE public.{typ} RENAME VALUE 'open' TO 'locked'")
    # The filter follows the rows: its label 'x' now, where a dump writes it.
    assert "status = 'x'::" in scalar(su, "SELECT pg_get_expr(polqual, polrelid) FROM pg_policy "
                                          "WHERE polrelid = %s::regclass AND polname = 'stepup_filter'", [t])
    expect_error(app, f"DELETE FROM {t} WHERE id = 1", None, "SU001")
    assert su.execute(f"SELECT id, status::text, note FROM {t} ORDER BY id").fetchall() == \
        [(1, "x", "was locked"), (2, "locked", "was open")]
    assert app.execute(f"DELETE FROM {t} WHERE id = 2").rowcount == 1
    assert su.execute(f"SELECT id, status::text FROM {t} ORDER BY id").fetchall() == [(1, "x")]


# === 2. decider columns =======================================================================

def test_2_subject_column_is_a_decider(app, su, hs, make_table):
    t = make_table()
    protect(su, t, columns=["iban", "amount"], subject_column="owner")
    expect_error(app, f"UPDATE {t} SET owner = 'mallory' WHERE id = 1", None, "SU001")
    assert rows(su, t) == ROWS
    with app.transaction():
        present(app, hs.token(sub="mallory"))
        expect_error(app, f"UPDATE {t} SET owner = 'mallory' WHERE id = 1", None, "SU001")
    assert rows(su, t) == ROWS
    # Legitimate: a column that decides nothing, and alice's own protected change.
    assert app.execute(f"UPDATE {t} SET note = 'n' WHERE id = 1").rowcount == 1
    assert stepped_up(app, hs.token(sub="alice"), f"UPDATE {t} SET iban = 'XX' WHERE id = 1") == 1
    assert rows(su, t) == [(1, "alice", "XX", 500, "n")] + ROWS[1:]


def test_2_primary_key_of_a_bind_change_table_is_a_decider(app, su, hs, make_table):
    """With bind_change a confirmed change names its row by primary key:
    moving keys around (so that a change alice confirmed for row 1 lands on
    bob's row) needs step-up like the protected columns."""
    t = make_table()
    protect(su, t, columns=["iban"], bind_change=True)
    for statement in [f"UPDATE {t} SET id = 99 WHERE id = 1",
                      f"UPDATE {t} SET id = -id WHERE id IN (1, 2)"]:
        expect_error(app, statement, None, "SU001")
        assert rows(su, t) == ROWS
    assert app.execute(f"UPDATE {t} SET note = 'n' WHERE id = 1").rowcount == 1


def test_2_row_filter_column_is_a_decider(app, su, hs, app_role):
    t = new_table(su, app_role, "id int PRIMARY KEY, owner text, iban text, amount numeric, note text, "
                                "locked boolean", [r + (i != 1,) for i, r in enumerate(ROWS, 1)])
    protect(su, t, row_filter="locked", columns=["amount"])

    def state():
        return su.execute(f"SELECT id, owner, iban, amount::int, note, locked FROM {t} ORDER BY id").fetchall()
    before = state()
    expect_error(app, f"UPDATE {t} SET locked = false WHERE id = 2", None, "SU001")
    assert state() == before
    # A column that decides nothing is free, on a locked row too.
    assert app.execute(f"UPDATE {t} SET note = 'n' WHERE id = 2").rowcount == 1
    # With the step-up the filter column changes, and the change is audited.
    token = hs.token(sub=app_role)
    with app.transaction():
        jti = present(app, token)["jti"]
        assert app.execute(f"UPDATE {t} SET locked = false WHERE id = 2").rowcount == 1
    assert state()[1] == (2, "bob", "DE02", 20000, "n", False)
    entry = su.execute("SELECT op, changed, sub, kid FROM stepup.audit_log "
                       "WHERE table_name = %s AND jti = %s", [t, jti]).fetchall()
    assert len(entry) == 1 and entry[0][0] == "UPDATE" and "locked" in entry[0][1], entry
    assert entry[0][2:] == (app_role, hs.kid)


# === 3. DDL on subject / bind_change / plain / one_time tables ================================

WEAKENING = {
    "disable_trigger": "ALTER TABLE {t} DISABLE TRIGGER stepup_guard",
    "drop_trigger": "DROP TRIGGER stepup_guard ON {t}",
    "alter_column_type": "ALTER TABLE {t} ALTER COLUMN id TYPE bigint",
    "drop_column": "ALTER TABLE {t} DROP COLUMN note",
    "no_force_rls": "ALTER TABLE {t} NO FORCE ROW LEVEL SECURITY",
}


def protection_intact(su, app, t):
    assert guard_state(su, t) == {"stepup_guard": "A", "stepup_guard_truncate": "A"}
    assert scalar(su, "SELECT relrowsecurity AND relforcerowsecurity FROM pg_class WHERE oid = %s::regclass",
                  [t]) is True
    assert scalar(su, "SELECT atttypid::regtype::text FROM pg_attribute "
                      "WHERE attrelid = %s::regclass AND attname = 'id'", [t]) == "integer"
    assert attnames(su, t) == ["id", "owner", "iban", "amount", "note"]
    assert rows(su, t) == ROWS
    expect_error(app, f"UPDATE {t} SET iban = 'XX' WHERE id = 2", None, "SU001")
    assert rows(su, t) == ROWS


@pytest.mark.parametrize("ddl", WEAKENING.values(), ids=WEAKENING.keys())
@pytest.mark.parametrize("policy", [
    {"columns": ["iban", "amount"], "subject_column": "owner", "row_filter": "amount >= 10000"},
    {"bind_change": True, "row_filter": "amount >= 10000"},
], ids=["subject", "bind_change"])
def test_3_owner_with_any_assertion_cannot_weaken_subject_or_bind_tables(app, su, hs, make_table, app_role,
                                                                        policy, ddl):
    t = make_table()
    protect(su, t, **policy)
    for sub in (app_role, "alice"):
        with app.transaction():
            present(app, hs.token(sub=sub))
            err = expect_error(app, ddl.format(t=t), None, "SU006")
        text = texts(err).lower()
        assert "only the extension" in text and "owner" in text, texts(err)
        protection_intact(su, app, t)
    # Not even the superuser without step-up: only the extension's owner,
    # holding the table's step-up, may.
    expect_error(su, ddl.format(t=t), None, "SU006")
    protection_intact(su, app, t)
    token = hs.token(sub="operator")
    with su.transaction():
        jti = present(su, token)["jti"]
        su.execute(ddl.format(t=t))
    assert [(e[0], e[1]) for e in ddl_entries(su, t)] == [("operator", jti)]


PLAIN_DDL = {  # the DDL and a word its audit entry's object must name
    "disable_trigger": (WEAKENING["disable_trigger"], "stepup_guard"),
    "drop_trigger": (WEAKENING["drop_trigger"], "stepup_guard"),
    "alter_column_type": (WEAKENING["alter_column_type"], None),  # names the table
    "drop_column": (WEAKENING["drop_column"], "note"),
    "no_force_rls": (WEAKENING["no_force_rls"], "row level security"),
}


def test_3_superuser_restores_a_subject_table_without_step_up(su, hs, app_role, tmp_path):
    """A full pg_dump / pg_restore as a superuser creates what protect()
    installed one piece at a time: completing a table is not weakening it,
    so the restore needs no step-up, and the restored table is protected."""
    source, target = ident("dumped"), ident("restored")
    env = dict(os.environ, PGHOST=PGHOST, PGPORT=PGPORT, PGUSER=SUPERUSER)
    dump = tmp_path / "db.dump"
    try:
        su.execute(f"CREATE DATABASE {source}")
        with psycopg.connect(conninfo(source), autocommit=True) as c:
            c.execute("CREATE EXTENSION pg_stepup")
            signer = new_hs256(c, source)
            t = new_table(c, app_role, "id int PRIMARY KEY, owner text, iban text, amount numeric, note text",
                          ROWS)
            protect(c, t, columns=["iban", "amount"], subject_column="owner", row_filter="amount >= 10000",
                    operations=["INSERT", "UPDATE", "DELETE"], bind_change=True)
        subprocess.run([f"{PG_BIN}/pg_dump", "-Fc", "-f", str(dump), source], check=True, env=env)
        su.execute(f"CREATE DATABASE {target}")
        subprocess.run([f"{PG_BIN}/pg_restore", "--exit-on-error", "-d", target, str(dump)], check=True, env=env)
        with psycopg.connect(conninfo(target), autocommit=True) as r:
            assert guard_state(r, t) == {"stepup_guard": "A", "stepup_guard_truncate": "A"}
            assert rows(r, t) == ROWS
            # Intact, and as strict as before: the superuser still needs step-up.
            assert r.execute("SELECT g.object FROM stepup.protected p, "
                             "stepup.protection_gaps(p.target, p.state) g").fetchall() == []
            expect_error(r, f"ALTER TABLE {t} DISABLE TRIGGER stepup_guard", None, "SU006")
            expect_error(r, f"UPDATE {t} SET iban = 'XX' WHERE id = 2", None, "SU001")
            with r.transaction():
                present(r, signer.token(aud=target, sub="bob"))
                expect_error(r, f"UPDATE {t} SET iban = 'XX' WHERE id = 2", None, "SU004")
    finally:
        for db in (source, target):
            su.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


@pytest.mark.parametrize("ddl,word", PLAIN_DDL.values(), ids=PLAIN_DDL.keys())
def test_3_plain_policy_ddl_with_step_up_is_audited(app, su, hs, make_table, app_role, ddl, word):
    t = make_table()
    protect(su, t, row_filter="amount >= 10000")
    # The attack: the same DDL without step-up.
    expect_error(app, ddl.format(t=t), None, "SU006")
    protection_intact(su, app, t)
    assert ddl_entries(su, t) == []
    # The legitimate path.
    with app.transaction():
        jti = present(app, hs.token(sub=app_role))["jti"]
        app.execute(ddl.format(t=t))
    entries = ddl_entries(su, t)
    assert entries, "no audit entry (op = 'DDL') for DDL allowed by step-up"
    for sub, entry_jti, kid, _ in entries:
        assert (sub, entry_jti, kid) == (app_role, jti, hs.kid)
    objects = " | ".join(e[3] or "" for e in entries)
    assert any(t.split(".")[1] in (e[3] or "") for e in entries), objects
    if word:
        assert word in objects.lower(), objects


def test_3_one_time_ddl_spends_the_assertion(app, su, hs, make_table, app_role):
    t = make_table()
    protect(su, t, one_time=True)
    token = hs.token(sub=app_role)
    with app.transaction():
        jti = present(app, token)["jti"]
        app.execute(f"ALTER TABLE {t} DROP COLUMN note")
    entries = ddl_entries(su, t)
    assert entries and {e[1] for e in entries} == {jti}, entries
    with app.transaction():
        present(app, token)
        expect_error(app, f"UPDATE {t} SET iban = 'XX' WHERE id = 1", None, "SU003")
    assert su.execute(f"SELECT id, owner, iban, amount::int FROM {t} ORDER BY id").fetchall() == \
        [r[:4] for r in ROWS]
    # A fresh assertion still works.
    assert stepped_up(app, hs.token(sub=app_role), f"UPDATE {t} SET iban = 'XX' WHERE id = 1") == 1


# === 4. session-independent row filters =======================================================

def test_4_timezone_cannot_move_a_row_out_of_the_filter(app, su, hs, app_role):
    t = new_table(su, app_role, "id int PRIMARY KEY, created_at timestamptz, note text",
                  [(1, "2026-01-01 23:30+00", "inside"), (2, "2026-03-01 00:00+00", "outside")], prefix="events")
    su.execute("SET TimeZone = 'UTC'")
    protect(su, t, row_filter="created_at::date <= '2026-01-01'", operations=["INSERT", "UPDATE", "DELETE"])

    def state():
        return su.execute(f"SELECT id, created_at, note FROM {t} ORDER BY id").fetchall()
    before = state()
    app.execute("SET TimeZone = 'UTC'")
    expect_error(app, f"DELETE FROM {t} WHERE id = 1", None, "SU001")
    app.execute("SET TimeZone = 'Asia/Tokyo'")
    expect_error(app, f"DELETE FROM {t} WHERE id = 1", None, "SU001")
    expect_error(app, f"UPDATE {t} SET note = 'x' WHERE id = 1", None, "SU001")
    expect_error(app, f"INSERT INTO {t} VALUES (3, '2026-01-01 23:45+00', 'new inside')", None, "SU001")
    assert state() == before
    # Legitimate: rows outside the filter are free, inside ones take the step-up.
    app.execute(f"INSERT INTO {t} VALUES (4, '2026-02-01 00:00+00', 'new outside')")
    assert app.execute(f"DELETE FROM {t} WHERE id IN (2, 4)").rowcount == 2
    assert stepped_up(app, hs.token(), f"DELETE FROM {t} WHERE id = 1") == 1
    assert state() == []


def test_4_datestyle_cannot_reinterpret_the_filter_literal(app, su, hs, app_role):
    # '04/03/2026' is April 3 as protect() parses it (ISO, MDY); March 4 under DMY.
    t = new_table(su, app_role, "id int PRIMARY KEY, due date, note text",
                  [(1, "2026-03-20", "inside"), (2, "2026-05-01", "outside")], prefix="invoices")
    su.execute("SET DateStyle = 'ISO, MDY'")
    protect(su, t, row_filter="due < '04/03/2026'", operations=["INSERT", "UPDATE", "DELETE"])

    def state():
        return su.execute(f"SELECT id, due::text, note FROM {t} ORDER BY id").fetchall()
    before = state()
    # Before this backend's first write: a literal parsed per session (and
    # kept in a cached plan) would take the writer's DateStyle.
    app.execute("SET DateStyle = 'ISO, DMY'")
    expect_error(app, f"DELETE FROM {t} WHERE id = 1", None, "SU001")
    expect_error(app, f"UPDATE {t} SET note = 'x' WHERE id = 1", None, "SU001")
    expect_error(app, f"INSERT INTO {t} VALUES (3, '2026-03-25', 'new inside')", None, "SU001")
    assert state() == before
    assert app.execute(f"DELETE FROM {t} WHERE id = 2").rowcount == 1
    assert stepped_up(app, hs.token(), f"DELETE FROM {t} WHERE id = 1") == 1
    assert state() == []


@pytest.mark.parametrize("row_filter", ["amount >= (SELECT 10000)", "EXISTS (SELECT 1)",
                                        "id IN (SELECT generate_series(1, 3))"])
def test_4_a_filter_with_a_subquery_is_refused(su, make_table, row_filter):
    t = make_table()
    expect_error(su, "SELECT stepup.protect(%s, row_filter => %s)", [t, row_filter], "0A000")
    assert scalar(su, "SELECT count(*) FROM stepup.policies WHERE target = %s::regclass", [t]) == 0
    assert guard_state(su, t) == {}


# === 9. inheritance ===========================================================================

def test_9_owner_cannot_give_a_protected_table_a_child(app, su, hs, make_table, app_schema, app_role):
    t = make_table()
    protect(su, t)
    evil = f"{app_schema}.evil"
    # Even with the table's step-up.
    for token in (None, hs.token(sub=app_role)):
        with app.transaction():
            if token:
                present(app, token)
            expect_error(app, f"CREATE TABLE {evil} () INHERITS ({t})", None, "SU006")
    other = f"{app_schema}.other"
    app.execute(f"CREATE TABLE {other} (id int NOT NULL, owner text, iban text, amount numeric, note text)")
    app.execute(f"INSERT INTO {other} VALUES (9, 'mallory', 'EVIL', 1, 'planted')")
    expect_error(app, f"ALTER TABLE {other} INHERIT {t}", None, "SU006")
    assert scalar(su, "SELECT count(*) FROM pg_inherits WHERE inhparent = %s::regclass", [t]) == 0
    assert scalar(su, "SELECT to_regclass(%s)", [evil]) is None
    assert rows(su, t) == ROWS


def test_9_superuser_cannot_give_a_protected_table_a_child_either(su, make_table):
    t = make_table()
    protect(su, t)
    child = f"public.{ident('child')}"
    expect_error(su, f"CREATE TABLE {child} () INHERITS ({t})", None, "SU006")
    assert scalar(su, "SELECT count(*) FROM pg_inherits WHERE inhparent = %s::regclass", [t]) == 0
    assert scalar(su, "SELECT to_regclass(%s)", [child]) is None
    assert rows(su, t) == ROWS
    # Legitimate: an unprotected table may have children.
    plain = make_table()
    su.execute(f"CREATE TABLE {child} () INHERITS ({plain})")
    su.execute(f"DROP TABLE {child}")


def test_9_protect_refuses_a_table_with_children(su, make_table):
    t = make_table()
    child = f"public.{ident('child')}"
    su.execute(f"CREATE TABLE {child} () INHERITS ({t})")
    expect_error(su, "SELECT stepup.protect(%s)", [t], "42809")
    assert scalar(su, "SELECT count(*) FROM stepup.policies WHERE target = %s::regclass", [t]) == 0
    assert guard_state(su, t) == {}
    su.execute(f"DROP TABLE {child}")
    protect(su, t)
    assert guard_state(su, t) == {"stepup_guard": "A", "stepup_guard_truncate": "A"}


# === 11. retired key ==========================================================================

def test_11_session_assertion_of_a_retired_key_stops_authorising(app, su, make_table, dbname):
    signer = new_hs256(su, dbname)
    t = make_table()
    protect(su, t)
    present(app, signer.token(), "session")
    assert app.execute(f"UPDATE {t} SET iban = 'OK' WHERE id = 1").rowcount == 1
    expected = [(1, "alice", "OK", 500, "small")] + ROWS[1:]
    assert rows(su, t) == expected
    su.execute("SELECT stepup.retire_key(%s)", [signer.kid])
    err = expect_error(app, f"UPDATE {t} SET iban = 'EVIL' WHERE id = 1", None, "SU001")
    assert "retired" in (err.diag.message_detail or ""), err.diag.message_detail
    expect_error(app, f"DELETE FROM {t} WHERE id = 2", None, "SU001")
    assert satisfied(app, "aal1", "1 hour") is False
    assert rows(su, t) == expected


# === 14. guard firing mode ====================================================================

def test_14_enable_trigger_all_leaves_the_guard_always(su, hs, make_table):
    t = make_table()
    protect(su, t)
    su.execute(f"ALTER TABLE {t} DISABLE TRIGGER ALL")
    su.execute(f"ALTER TABLE {t} ENABLE TRIGGER ALL")
    assert guard_state(su, t) == {"stepup_guard": "A", "stepup_guard_truncate": "A"}
    su.execute("SET session_replication_role = replica")
    try:
        expect_error(su, f"UPDATE {t} SET iban = 'XX' WHERE id = 1", None, "SU001")
        expect_error(su, f"DELETE FROM {t} WHERE id = 2", None, "SU001")
        expect_error(su, f"TRUNCATE {t}", None, "SU001")
    finally:
        su.execute("RESET session_replication_role")
    assert rows(su, t) == ROWS
    su.execute(f"ALTER TABLE {t} ENABLE REPLICA TRIGGER stepup_guard")
    su.execute(f"ALTER TABLE {t} ENABLE REPLICA TRIGGER stepup_guard_truncate")
    assert guard_state(su, t) == {"stepup_guard": "A", "stepup_guard_truncate": "A"}
    su.execute("SET session_replication_role = replica")
    try:
        expect_error(su, f"UPDATE {t} SET iban = 'XX' WHERE id = 1", None, "SU001")
    finally:
        su.execute("RESET session_replication_role")
    assert rows(su, t) == ROWS
    # Legitimate: the write with step-up, audited.
    token = hs.token()
    with su.transaction():
        jti = present(su, token)["jti"]
        assert su.execute(f"UPDATE {t} SET iban = 'XX' WHERE id = 1").rowcount == 1
    assert scalar(su, "SELECT count(*) FROM stepup.audit_log WHERE table_name = %s AND jti = %s", [t, jti]) == 1


def test_14_pg_restore_data_only_disable_triggers(su, su_connect, make_table, dbname, app_role, tmp_path):
    source = make_table()
    protect(su, source)
    dump = tmp_path / "data.dump"
    env = dict(os.environ, PGHOST=PGHOST, PGPORT=PGPORT, PGUSER=SUPERUSER)
    subprocess.run([f"{PG_BIN}/pg_dump", "-Fc", "--data-only", "-t", source, "-f", str(dump), dbname],
                   check=True, env=env, capture_output=True)
    target = ident("stepup_restore")
    su.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target)))
    try:
        with psycopg.connect(conninfo(target), autocommit=True) as r:
            r.execute("CREATE EXTENSION pg_stepup")
            r.execute(f"CREATE TABLE {source} (id int PRIMARY KEY, owner text, iban text, amount numeric, "
                      f"note text)")
            r.execute(f"ALTER TABLE {source} OWNER TO {app_role}")
            protect(r, source)
        restore = [f"{PG_BIN}/pg_restore", "--exit-on-error", "--data-only", "--disable-triggers"]
        script = subprocess.run(restore + ["-f", "-", str(dump)], env=env, capture_output=True, text=True,
                                check=True).stdout
        assert "DISABLE TRIGGER ALL" in script and "ENABLE TRIGGER ALL" in script
        done = subprocess.run(restore + ["-d", target, str(dump)], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        with psycopg.connect(conninfo(target), autocommit=True) as r:
            r.execute("SELECT stepup.current()")
            assert rows(r, source) == ROWS
            assert guard_state(r, source) == {"stepup_guard": "A", "stepup_guard_truncate": "A"}
            r.execute("SET session_replication_role = replica")
            expect_error(r, f"UPDATE {source} SET iban = 'XX' WHERE id = 1", None, "SU001")
            expect_error(r, f"DELETE FROM {source} WHERE id = 2", None, "SU001")
            r.execute("RESET session_replication_role")
            assert rows(r, source) == ROWS
            # Legitimate: a step-up write in the restored database.
            signer = new_hs256(r, target)
            assert stepped_up(r, signer.token(), f"UPDATE {source} SET iban = 'XX' WHERE id = 1") == 1
            assert rows(r, source)[0][2] == "XX"
    finally:
        su.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(target)))


# === 15. row_security = off ===================================================================

def test_15_row_security_off_does_not_break_ddl_nor_the_guard(app, su, hs, make_table, app_schema, app_role):
    t = make_table()
    protect(su, t, row_filter="amount >= 10000")
    app.execute("SET row_security = off")
    app.execute(f"CREATE TABLE {app_schema}.t2 (x int)")
    assert scalar(su, "SELECT to_regclass(%s) IS NOT NULL", [f"{app_schema}.t2"]) is True
    for ddl in (WEAKENING["disable_trigger"], WEAKENING["no_force_rls"], WEAKENING["drop_column"]):
        expect_error(app, ddl.format(t=t), None, "SU006")
    assert guard_state(su, t) == {"stepup_guard": "A", "stepup_guard_truncate": "A"}
    assert rows(su, t) == ROWS
    # Legitimate: with the step-up the DDL goes through under row_security = off too.
    with app.transaction():
        present(app, hs.token(sub=app_role))
        app.execute(f"ALTER TABLE {t} DROP COLUMN note")
    assert attnames(su, t) == ["id", "owner", "iban", "amount"]


# === 16. one-time bulk ========================================================================

def test_16_one_time_bulk_update_spends_once(app, su, hs, app_role):
    t = new_table(su, app_role, "id int PRIMARY KEY, owner text, iban text, amount numeric, note text", [],
                  prefix="bulk")
    su.execute(f"INSERT INTO {t} SELECT g, 'alice', 'DE' || g, g, 'n' FROM generate_series(1, 2000) g")
    protect(su, t, one_time=True)
    expect_error(app, f"UPDATE {t} SET note = 'free'", None, "SU001")
    assert scalar(su, f"SELECT count(*) FROM {t} WHERE note = 'n'") == 2000
    token = hs.token()
    with app.transaction():
        jti = present(app, token)["jti"]
        assert app.execute(f"UPDATE {t} SET note = 'bulk'").rowcount == 2000
        assert scalar(app, "SELECT pg_stat_get_xact_tuples_updated('stepup.used_jti'::regclass)") == 0
        assert scalar(app, "SELECT pg_stat_get_xact_tuples_inserted('stepup.used_jti'::regclass)") == 1
    assert scalar(su, f"SELECT count(*) FROM {t} WHERE note = 'bulk'") == 2000
    assert scalar(su, "SELECT count(*) FROM stepup.used_jti WHERE jti = %s", [jti]) == 1
    with app.transaction():
        present(app, token)
        expect_error(app, f"UPDATE {t} SET note = 'again' WHERE id = 1", None, "SU003")
    assert scalar(su, f"SELECT count(*) FROM {t} WHERE note = 'bulk'") == 2000


def test_16_long_expired_spent_ids_are_purged_on_the_next_spend(app, su, hs, make_table):
    t = make_table()
    protect(su, t, one_time=True)
    old = unique("old-jti")
    su.execute("INSERT INTO stepup.used_jti VALUES (%s, 'k', 'alice', 1, now() - interval '3 days', "
               "now() - interval '2 days')", [old])
    token = hs.token()
    assert stepped_up(app, token, f"UPDATE {t} SET note = 'spent' WHERE id = 1") == 1
    assert scalar(su, "SELECT count(*) FROM stepup.used_jti WHERE jti = %s", [old]) == 0
    # The new spend is kept.
    assert scalar(su, "SELECT count(*) FROM stepup.used_jti WHERE jti = %s",
                  [jws_payload(token)["jti"]]) == 1
