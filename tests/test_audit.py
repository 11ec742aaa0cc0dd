"""The audit: one entry per row change of a protected table, append-only,
hash-chained by a sealer, verified, and surviving pg_dump / pg_restore.

Tests that tamper with the chain, or need it to themselves, get their own
database (`fresh`)."""
import os
import subprocess
import threading

import psycopg
import pytest
from psycopg import sql

from conftest import (PGHOST, PGPORT, SUPERUSER, conninfo, expect_error, new_hs256, present, scalar,
                      unique)

PG_BIN = os.environ.get("STEPUP_PG_BIN", "/usr/lib/postgresql/15/bin")


class Fresh:
    """A database of its own with pg_stepup, a key, and a protected table
    `public.payouts` owned by the application role."""

    def __init__(self, name, app_role):
        self.name = name
        self.app_role = app_role
        self.conns = []

    def connect(self, user=SUPERUSER, **kw):
        c = psycopg.connect(conninfo(self.name, user=user, **kw), autocommit=True)
        self.conns.append(c)
        return c

    def app(self, **kw):
        return self.connect(self.app_role, **kw)


@pytest.fixture
def fresh(app_role):
    name = unique("stepup_audit").replace("-", "_")
    with psycopg.connect(conninfo("postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        admin.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
            sql.Identifier(name), sql.Identifier(app_role)))
    db = Fresh(name, app_role)
    su = db.connect()
    su.execute("CREATE EXTENSION pg_stepup")
    db.signer = new_hs256(su, name)
    su.execute("CREATE TABLE public.payouts (id int PRIMARY KEY, owner text, iban text, amount numeric)")
    su.execute("INSERT INTO public.payouts VALUES (1, 'alice', 'DE01', 100), (2, 'bob', 'DE02', 200)")
    su.execute(sql.SQL("ALTER TABLE public.payouts OWNER TO {}").format(sql.Identifier(app_role)))
    su.execute("SELECT stepup.protect('public.payouts')")
    yield db
    for c in db.conns:
        c.close()
    with psycopg.connect(conninfo("postgres"), autocommit=True) as admin:
        for n in (name, name + "_restored"):
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(n)))


def stepped_up(conn, token, statement, params=None):
    with conn.transaction():
        present(conn, token)
        return conn.execute(statement, params).rowcount


def entries(conn):
    return conn.execute("SELECT op, key, changed, old_values, new_values, role_name, session_role, "
                        "kid, jti, sub, acr, amr FROM stepup.audit_log ORDER BY id").fetchall()


def verify(conn, digest=None):
    if digest is None:
        return conn.execute("SELECT ok, entries, first_bad_id, reason FROM stepup.verify_audit()").fetchone()
    return conn.execute("SELECT ok, entries, first_bad_id, reason FROM stepup.verify_audit(%s)",
                        [digest]).fetchone()


# --- entries ----------------------------------------------------------------------

def test_an_entry_per_operation_with_its_fields(fresh):
    su, app = fresh.connect(), fresh.app(application_name="payments-api")
    token = fresh.signer.token(sub="alice", amr=["otp", "hwk"])
    # INSERT is not gated by this policy, and is audited all the same.
    app.execute("INSERT INTO payouts VALUES (3, 'carol', 'DE03', 300)")
    stepped_up(app, token, "UPDATE payouts SET iban = 'XX' WHERE id = 1")
    stepped_up(app, fresh.signer.token(), "DELETE FROM payouts WHERE id = 2")
    jti = token.split(".")[1]
    rows = entries(su)
    assert [r[0] for r in rows] == ["INSERT", "UPDATE", "DELETE"]
    ins, upd, dele = rows
    assert ins[1:5] == ({"id": 3}, ["amount", "iban", "id", "owner"], None,
                        {"amount": 300, "id": 3, "iban": "DE03", "owner": "carol"})
    assert ins[5:7] == (fresh.app_role, fresh.app_role)
    assert ins[7:] == (None, None, None, None, None)
    assert upd[1:5] == ({"id": 1}, ["iban"], {"iban": "DE01"}, {"iban": "XX"})
    assert upd[7] == fresh.signer.kid and upd[9:] == ("alice", "aal2", ["otp", "hwk"])
    assert upd[8] and upd[8] != dele[8] and jti
    assert dele[1:5] == ({"id": 2}, ["amount", "iban", "id", "owner"],
                         {"amount": 200, "id": 2, "iban": "DE02", "owner": "bob"}, None)
    meta = su.execute("SELECT table_name, application_name, txid > 0, at <= now(), auth_time IS NOT NULL, "
                      "old_digest IS NULL, new_digest = stepup.row_digest('payouts', new_values) "
                      "FROM stepup.audit_log WHERE op = 'INSERT'").fetchone()
    assert meta == ("public.payouts", "payments-api", True, True, False, True, True)
    # The trail for people.
    trail = su.execute("SELECT who, \"table\", op, key, changed_columns, sub, acr FROM stepup.audit_trail "
                       "ORDER BY id").fetchall()
    assert trail[1] == (fresh.app_role, "public.payouts", "UPDATE", {"id": 1}, ["iban"], "alice", "aal2")


def test_an_entry_names_the_client_address_over_tcp_and_none_over_a_socket(fresh):
    su = fresh.connect()
    tcp = psycopg.connect(psycopg.conninfo.make_conninfo(host="127.0.0.1", port=PGPORT, user=fresh.app_role,
                                                         dbname=fresh.name), autocommit=True)
    fresh.conns.append(tcp)
    tcp_addr = scalar(tcp, "SELECT inet_client_addr()")
    assert str(tcp_addr) == "127.0.0.1"
    stepped_up(tcp, fresh.signer.token(), "UPDATE payouts SET iban = 'TCP' WHERE id = 1")
    tcp.execute("INSERT INTO payouts VALUES (7, 'tcp', 'DE07', 7)")
    stepped_up(fresh.app(), fresh.signer.token(), "UPDATE payouts SET iban = 'SOCK' WHERE id = 2")
    rows = su.execute("SELECT op, key, client_addr FROM stepup.audit_log ORDER BY id").fetchall()
    assert [(op, key, str(addr) if addr is not None else None) for op, key, addr in rows] == [
        ("UPDATE", {"id": 1}, "127.0.0.1"), ("INSERT", {"id": 7}, "127.0.0.1"), ("UPDATE", {"id": 2}, None)]
    # The address is hashed as inet's output prints it.
    assert verify(su) == (True, 3, None, None)
    inserted = scalar(su, "SELECT id FROM stepup.audit_log WHERE op = 'INSERT'")
    tamper(su, f"UPDATE stepup.audit_log SET client_addr = '127.0.0.2' WHERE id = {inserted}")
    ok, _, first_bad, _ = verify(su)
    assert (ok, first_bad) == (False, inserted)


def test_digests_match_the_rows(fresh):
    su, app = fresh.connect(), fresh.app()
    stepped_up(app, fresh.signer.token(), "UPDATE payouts SET amount = 150.50 WHERE id = 1")
    old, new = su.execute("SELECT old_digest, new_digest FROM stepup.audit_log").fetchone()
    assert new == scalar(su, "SELECT stepup.row_digest('payouts', to_jsonb(p)) FROM payouts p WHERE id = 1")
    assert old == scalar(su, """SELECT stepup.row_digest('payouts',
                                '{"id": 1, "owner": "alice", "iban": "DE01", "amount": 100}')""")
    assert old != new


def test_refused_and_rolled_back_changes_leave_no_entry(fresh):
    su, app = fresh.connect(), fresh.app()
    expect_error(app, "UPDATE payouts SET iban = 'XX'", None, "SU001")
    app.execute("BEGIN")
    app.execute("INSERT INTO payouts VALUES (5, 'x', 'y', 1)")
    app.execute("ROLLBACK")
    assert scalar(su, "SELECT count(*) FROM stepup.audit_log") == 0


def test_every_row_change_the_guard_lets_through_is_audited_once(fresh):
    """The guard trigger audits each row it allows (one AFTER ROW trigger
    does both): changes outside the policy's columns or row filter need no
    step-up and are audited all the same, each exactly once; a refused
    change writes nothing; the table carries no second row trigger."""
    su = fresh.connect()
    su.execute("CREATE TABLE public.accounts (id int PRIMARY KEY, iban text, note text, region text)")
    su.execute("INSERT INTO public.accounts VALUES (1, 'DE01', '', 'eu'), (2, 'US02', '', 'us')")
    su.execute("SELECT stepup.protect('public.accounts', columns => '{iban}', row_filter => $$region = 'eu'$$)")
    assert [r[0] for r in su.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = 'public.accounts'::regclass "
                                     "ORDER BY 1")] == ["stepup_guard", "stepup_guard_truncate"]
    su.execute("UPDATE public.accounts SET note = 'a'")                  # not a guarded column: 2 rows
    su.execute("UPDATE public.accounts SET iban = 'US03' WHERE id = 2")  # outside the filter
    expect_error(su, "UPDATE public.accounts SET iban = 'XX' WHERE id = 1", sqlstate="SU001")
    expect_error(su, "UPDATE public.accounts SET iban = iban || 'x', note = 'b'", sqlstate="SU001")
    su.execute("INSERT INTO public.accounts VALUES (3, 'FR03', '', 'us')")  # INSERT not gated
    with su.transaction():
        present(su, fresh.signer.token())
        su.execute("UPDATE public.accounts SET iban = 'DE09' WHERE id = 1")
    rows = su.execute("SELECT op, key->>'id', changed FROM stepup.audit_log ORDER BY id").fetchall()
    assert rows == [("UPDATE", "1", ["note"]), ("UPDATE", "2", ["note"]), ("UPDATE", "2", ["iban"]),
                    ("INSERT", "3", ["iban", "id", "note", "region"]), ("UPDATE", "1", ["iban"])]
    assert verify(su)[:3] == (True, 5, None)


@pytest.mark.parametrize("settings", [
    {"TimeZone": "UTC", "DateStyle": "ISO, MDY", "extra_float_digits": "1", "client_encoding": "UTF8"},
    {"TimeZone": "Pacific/Chatham", "DateStyle": "German, DMY", "extra_float_digits": "-15",
     "client_encoding": "LATIN1", "IntervalStyle": "sql_standard", "bytea_output": "escape"},
    {"TimeZone": "America/St_Johns", "DateStyle": "SQL, YMD", "extra_float_digits": "3",
     "client_encoding": "UTF8", "IntervalStyle": "iso_8601"},
])
def test_row_digest_ignores_session_settings(fresh, settings):
    su = fresh.connect()
    su.execute("CREATE TABLE public.typed (id int PRIMARY KEY, at timestamptz, d date, f float8, "
               "n numeric, i interval, b bytea, t text, j jsonb)")
    su.execute("INSERT INTO typed VALUES (1, '2026-03-04 05:06:07.891+02', '2026-03-04', 0.1, 1.50, "
               "'1 day 2 hours', '\\x00ff', 'Zo\u00eb', '{\"a\": [1, 2.5]}')")
    su.execute("SELECT stepup.protect('public.typed')")
    su.execute("INSERT INTO typed VALUES (2, now(), NULL, 'NaN', 0, '-3 mons', '', '', '[]')")
    written = scalar(su, "SELECT new_digest FROM stepup.audit_log WHERE key = '{\"id\": 2}'")
    reference = scalar(su, "SELECT stepup.row_digest('typed', to_jsonb(r)) FROM typed r WHERE id = 1")
    for name, value in settings.items():
        su.execute(sql.SQL("SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
    assert scalar(su, "SELECT stepup.row_digest('typed', to_jsonb(r)) FROM typed r WHERE id = 1") == reference
    assert scalar(su, "SELECT stepup.row_digest('typed', to_jsonb(r)) FROM typed r WHERE id = 2") == written


# --- append-only -----------------------------------------------------------------------

@pytest.mark.parametrize("statement", [
    "UPDATE stepup.audit_log SET sub = 'mallory'",
    "DELETE FROM stepup.audit_log",
    "TRUNCATE stepup.audit_log",
    "UPDATE stepup.audit_chain SET link_hash = 'x'",
    "DELETE FROM stepup.audit_chain",
    "TRUNCATE stepup.audit_chain",
])
@pytest.mark.parametrize("replica", [False, True])
def test_audit_is_append_only_even_for_the_superuser(fresh, statement, replica):
    su, app = fresh.connect(), fresh.app()
    stepped_up(app, fresh.signer.token(), "UPDATE payouts SET iban = 'XX' WHERE id = 1")
    su.execute("SELECT stepup.seal()")
    if replica:
        su.execute("SET session_replication_role = replica")
    err = expect_error(su, statement, None, "SU005")
    assert err.diag.message_primary == "audit is append-only"
    # The application role has no privilege on the audit tables at all.
    expect_error(app, statement, None, "42501")
    assert verify(su)[:2] == (True, 1)


# --- chain, seal, verify ------------------------------------------------------------------

def make_entries(fresh, n):
    app = fresh.app()
    for i in range(n):
        stepped_up(app, fresh.signer.token(), "UPDATE payouts SET amount = %s WHERE id = 1", [i])


def tamper(su, statement):
    """What a superuser can still do: switch the append-only triggers off."""
    su.execute("ALTER TABLE stepup.audit_log DISABLE TRIGGER USER")
    su.execute("ALTER TABLE stepup.audit_chain DISABLE TRIGGER USER")
    su.execute(statement)
    for table in ("audit_log", "audit_chain"):
        for trigger in ("append_only", "no_truncate"):
            su.execute(f"ALTER TABLE stepup.{table} ENABLE ALWAYS TRIGGER {table}_{trigger}")


def test_seal_links_each_committed_entry_once(fresh):
    su = fresh.connect()
    make_entries(fresh, 3)
    assert scalar(su, "SELECT stepup.seal()") == 3
    assert scalar(su, "SELECT stepup.seal()") == 0
    make_entries(fresh, 2)
    assert verify(su) == (True, 5, None, None)
    links = su.execute("SELECT seq, entry_id FROM stepup.audit_chain ORDER BY seq").fetchall()
    ids = [r[0] for r in su.execute("SELECT id FROM stepup.audit_log ORDER BY id").fetchall()]
    assert links == list(zip(range(1, 6), ids))


def test_entry_of_a_running_transaction_is_sealed_later(fresh):
    su, app = fresh.connect(), fresh.app()
    app.execute("BEGIN")
    app.execute("INSERT INTO payouts VALUES (7, 'x', 'y', 1)")
    make_entries(fresh, 1)
    assert scalar(su, "SELECT stepup.seal()") == 1
    app.execute("COMMIT")
    assert scalar(su, "SELECT stepup.seal()") == 1
    assert verify(su) == (True, 2, None, None)


@pytest.mark.parametrize("what,statement,bad_index", [
    ("edit a field", "UPDATE stepup.audit_log SET sub = 'mallory' WHERE id = {ids[2]}", 2),
    ("edit a value", "UPDATE stepup.audit_log SET new_values = '{{\"amount\": 99}}' WHERE id = {ids[3]}", 3),
    ("delete a middle entry", "DELETE FROM stepup.audit_log WHERE id = {ids[1]}", 1),
    ("delete a middle link", "DELETE FROM stepup.audit_chain WHERE entry_id = {ids[1]}", 2),
    ("swap two links", "UPDATE stepup.audit_chain SET entry_id = -entry_id WHERE seq IN (2, 3); "
                       "UPDATE stepup.audit_chain c SET entry_id = -o.entry_id, entry_hash = o.entry_hash "
                       "FROM stepup.audit_chain o WHERE (c.seq, o.seq) IN ((2, 3), (3, 2))", 2),
    ("edit a link hash", "UPDATE stepup.audit_chain SET link_hash = repeat('0', 64) WHERE seq = 4", 3),
])
def test_verify_names_the_tampered_entry(fresh, what, statement, bad_index):
    su = fresh.connect()
    make_entries(fresh, 5)
    su.execute("SELECT stepup.seal()")
    ids = [r[0] for r in su.execute("SELECT id FROM stepup.audit_log ORDER BY id").fetchall()]
    assert verify(su)[0] is True
    tamper(su, statement.format(ids=ids))
    ok, _, first_bad, reason = verify(su)
    assert ok is False, what
    assert first_bad == ids[bad_index], (what, reason)


def test_removing_the_newest_entries_fails_against_a_saved_digest(fresh):
    su = fresh.connect()
    make_entries(fresh, 3)
    digest = scalar(su, "SELECT stepup.audit_digest()")
    assert digest["seq"] == 3 and len(digest["hash"]) == 64 and digest["system_identifier"]
    make_entries(fresh, 2)
    assert verify(su, psycopg.types.json.Jsonb(digest))[0] is True
    tamper(su, "DELETE FROM stepup.audit_chain WHERE seq >= 2")
    tamper(su, "DELETE FROM stepup.audit_log WHERE id NOT IN (SELECT entry_id FROM stepup.audit_chain)")
    # Without the digest the shortened chain is self-consistent ...
    assert verify(su)[:2] == (True, 1)
    # ... against it, the removal shows.
    ok, _, first_bad, reason = verify(su, psycopg.types.json.Jsonb(digest))
    assert ok is False and first_bad == digest["entry_id"] and "no longer holds link 3" in reason


def test_a_rewritten_chain_is_named_where_the_rewrite_starts(fresh):
    """A superuser who edits an entry, computes its hash with the
    extension's own helpers and seals the chain again from there gets a
    chain that verifies on its own; against a digest saved before, the
    first link sealed after the digest names the edited entry."""
    su = fresh.connect()
    make_entries(fresh, 5)
    digest = scalar(su, "SELECT stepup.audit_digest()")
    ids = [r[0] for r in su.execute("SELECT id FROM stepup.audit_log ORDER BY id").fetchall()]
    tamper(su, "DELETE FROM stepup.audit_chain WHERE seq >= 2")
    tamper(su, f"UPDATE stepup.audit_log SET sub = 'mallory' WHERE id = {ids[1]}")
    tamper(su, "UPDATE stepup.audit_log l SET entry_hash = stepup.entry_hash(stepup.entry_fields("
               "l.id, l.at, l.txid, l.table_name, l.op, l.key, l.old_digest, l.new_digest, l.changed, "
               "l.old_values, l.new_values, l.role_name, l.session_role, l.application_name, "
               f"l.client_addr, l.kid, l.jti, l.sub, l.acr, l.amr, l.auth_time)) WHERE id = {ids[1]}")
    assert scalar(su, "SELECT stepup.seal()") == 4
    assert verify(su)[:2] == (True, 5)
    ok, _, first_bad, reason = verify(su, psycopg.types.json.Jsonb(digest))
    assert ok is False
    assert first_bad == ids[1], reason
    assert "sealed after the saved digest was taken" in reason
    # The hash helpers are the extension owner's alone.
    app = fresh.app()
    for call in ["SELECT stepup.entry_hash('{a}')", "SELECT stepup.link_hash(1, 1, 'a', 'b')",
                 "SELECT stepup.epoch_us(now())"]:
        expect_error(app, call, None, "42501")


def test_verify_and_digest_bad_input(fresh):
    su = fresh.connect()
    err = expect_error(su, "SELECT * FROM stepup.verify_audit(NULL)", None, "22004")
    assert err.diag.message_primary == "digest must not be NULL"
    expect_error(su, "SELECT * FROM stepup.verify_audit('{}')", None, "22023")
    expect_error(su, "SELECT * FROM stepup.verify_audit('{\"seq\": -1, \"hash\": \"x\"}')", None, "22023")
    # What serde_json cannot hold is a bad digest too, not an internal error.
    err = expect_error(su, "SELECT * FROM stepup.verify_audit('{\"seq\": 1e400, \"hash\": \"x\"}')", None, "22023")
    assert err.diag.message_primary.startswith("digest cannot be read: number out of range")
    expect_error(su, "SELECT * FROM stepup.verify_audit(('{\"seq\": 1, \"hash\": \"x\", \"x\": ' || "
                     "repeat('[', 200) || repeat(']', 200) || '}')::jsonb)", None, "22023")
    expect_error(su, "SELECT stepup.entry_hash('{a}')", None, "22023")
    app = fresh.app()
    expect_error(app, "SELECT * FROM stepup.verify_audit()", None, "42501")
    expect_error(app, "SELECT stepup.seal()", None, "42501")


# --- concurrency ------------------------------------------------------------------------------

def test_concurrent_writers_and_a_sealer(fresh):
    su = fresh.connect()
    # 38 INSERTs, audited too.
    su.execute("INSERT INTO payouts SELECT g, 'u', 'DE', g FROM generate_series(3, 40) g")
    writers, per_writer = 6, 25
    committed = []
    stop = threading.Event()
    errors = []

    def writer(w):
        conn = fresh.app()
        n = 0
        for i in range(per_writer):
            row = 3 + (w * per_writer + i) % 38
            try:
                with conn.transaction():
                    present(conn, fresh.signer.token())
                    conn.execute("UPDATE payouts SET amount = amount + 1 WHERE id = %s", [row])
                    if i % 5 == 4:
                        raise RuntimeError("roll this one back")
                n += 1
            except RuntimeError:
                pass
            except psycopg.Error as e:
                errors.append(e)
        committed.append(n)

    def sealer():
        conn = fresh.connect()
        while not stop.is_set():
            conn.execute("SELECT stepup.seal()")

    s = threading.Thread(target=sealer)
    s.start()
    ws = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    for t in ws:
        t.start()
    for t in ws:
        t.join()
    stop.set()
    s.join()
    assert not errors, errors
    total = sum(committed)
    assert total == writers * per_writer * 4 // 5
    ok, linked, bad, reason = verify(su)
    assert (ok, bad, reason) == (True, None, None)
    assert scalar(su, "SELECT count(*) FROM stepup.audit_log WHERE op = 'UPDATE'") == total
    assert scalar(su, "SELECT count(*) FROM stepup.audit_log") == total + 38 == linked
    assert scalar(su, "SELECT count(DISTINCT entry_id) FROM stepup.audit_chain") == total + 38


# --- dump and restore -------------------------------------------------------------------------

def test_dump_and_restore_keeps_everything_verifiable(fresh, tmp_path):
    su = fresh.connect()
    su.execute("SELECT stepup.define_level('aal4', 4)")
    make_entries(fresh, 3)
    digest = scalar(su, "SELECT stepup.audit_digest()")
    make_entries(fresh, 1)
    dump = tmp_path / "db.dump"
    env = dict(os.environ, PGHOST=PGHOST, PGPORT=PGPORT, PGUSER=SUPERUSER)
    subprocess.run([f"{PG_BIN}/pg_dump", "-Fc", "-f", str(dump), fresh.name], check=True, env=env)
    target = fresh.name + "_restored"
    su.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target)))
    subprocess.run([f"{PG_BIN}/pg_restore", "--exit-on-error", "-d", target, str(dump)], check=True, env=env)
    with psycopg.connect(conninfo(target), autocommit=True) as r:
        assert verify(r) == (True, 4, None, None)
        assert verify(r, psycopg.types.json.Jsonb(digest))[0] is True
        assert scalar(r, "SELECT count(*) FROM stepup.audit_log") == 4
        assert scalar(r, "SELECT string_agg(name || '=' || rank, ',' ORDER BY rank) FROM stepup.levels") == \
            "aal1=1,aal2=2,aal3=3,aal4=4"
        assert scalar(r, "SELECT kid FROM stepup.key_info") == fresh.signer.kid
        assert scalar(r, "SELECT target::text FROM stepup.policies") == "payouts"
        # Protection and audit work in the restored database.
        expect_error(r, "UPDATE payouts SET iban = 'XX' WHERE id = 1", None, "SU001")
        with r.transaction():
            present(r, fresh.signer.token(aud=target))
            r.execute("UPDATE payouts SET iban = 'XX' WHERE id = 1")
        assert verify(r) == (True, 5, None, None)


# --- a third party's verification, from docs/audit-encoding.md alone ---------------------------

def _field(value):
    if value is None:
        return b"\x00"
    data = value.encode()
    return b"\x01" + len(data).to_bytes(4, "big") + data


def _sha(data):
    import hashlib
    return hashlib.sha256(data).hexdigest()


def test_python_reimplementation(fresh):
    su, app = fresh.connect(), fresh.app()
    app.execute("INSERT INTO payouts VALUES (3, 'Zoë', 'DE ✓', 12345678901234567890.123)")
    stepped_up(app, fresh.signer.token(amr=["hwk", "otp"]), "UPDATE payouts SET iban = NULL WHERE id = 1")
    stepped_up(app, fresh.signer.token(), "DELETE FROM payouts WHERE id = 2")
    su.execute("SELECT stepup.seal()")
    rows = su.execute("""
        SELECT l.id, l.entry_hash, stepup.entry_fields(l.id, l.at, l.txid, l.table_name, l.op, l.key,
                   l.old_digest, l.new_digest, l.changed, l.old_values, l.new_values, l.role_name,
                   l.session_role, l.application_name, l.client_addr, l.kid, l.jti, l.sub, l.acr,
                   l.amr, l.auth_time),
               c.seq, c.entry_hash, c.prev_hash, c.link_hash
          FROM stepup.audit_chain c JOIN stepup.audit_log l ON l.id = c.entry_id ORDER BY c.seq""").fetchall()
    assert len(rows) == 3
    prev = "0" * 64
    for seq_expected, (entry_id, stored, fields, seq, link_entry, prev_hash, link) in enumerate(rows, 1):
        assert len(fields) == 21
        assert _sha(b"pg_stepup entry v1\n" + b"".join(_field(f) for f in fields)) == stored == link_entry
        assert seq == seq_expected and prev_hash == prev
        assert _sha(b"pg_stepup link v1\n" + _field(str(seq)) + _field(str(entry_id))
                    + _field(stored) + _field(prev_hash)) == link
        prev = link
    # The row digest, from the row's text output under the documented settings.
    su.execute("SET TimeZone = 'UTC'")
    values = su.execute("SELECT id::text, owner, iban, amount::text FROM payouts WHERE id = 3").fetchone()
    cols = list(zip(["id", "owner", "iban", "amount"], values))
    cols.sort(key=lambda c: c[0].encode())
    expected = _sha(b"pg_stepup row v1\n" + len(cols).to_bytes(4, "big")
                    + b"".join(_field(n) + _field(v) for n, v in cols))
    assert expected == scalar(su, "SELECT new_digest FROM stepup.audit_log WHERE op = 'INSERT'")


# --- the writer renders entries exactly as SQL does ---------------------------------

AWKWARD = '''CREATE TABLE public.awkward (
    "id, ""k""" int, part text, "NULL" text, "a b" numeric, "{x}" float8, t timestamptz,
    i interval, b bytea, j jsonb, arr int[], "ünï" text, flag bool, d date,
    PRIMARY KEY ("id, ""k""", part))'''


def test_entries_match_sql_rendering_for_awkward_types_and_names(fresh):
    """The trigger builds each entry in Rust; SQL (to_jsonb, entry_fields,
    entry_hash) must agree on every field for types whose text depends on
    settings and for column names that array output has to quote."""
    su = fresh.connect()
    su.execute(AWKWARD)
    su.execute("SELECT stepup.protect('public.awkward', operations => '{DELETE}')")
    for tz, style, digits in [("Pacific/Chatham", "SQL, DMY", "3"), ("UTC", "ISO, MDY", "0")]:
        c = fresh.connect(options=f"-c TimeZone={tz} -c DateStyle={style.replace(' ', '')} "
                                  f"-c extra_float_digits={digits} -c IntervalStyle=sql_standard")
        c.execute("""INSERT INTO public.awkward VALUES (1, %s, 'NULL', 1.50, 0.1, '2026-03-04 05:06:07.891+13',
                     '1 day 2 hours', '\\x00ff', '{"z": 1, "a": [1.0, null]}', '{1,NULL,3}', 'é"\\', true,
                     '2026-01-02')""", [tz])
        c.execute("""UPDATE public.awkward SET "a b" = 1.500, "{x}" = 1e-7, t = t + interval '1 us',
                     j = '{"k": "tab\\tq\\"uote"}', "ünï" = NULL WHERE part = %s""", [tz])
        c.execute("UPDATE public.awkward SET \"a b\" = \"a b\" WHERE part = %s", [tz])
    with su.transaction():
        present(su, fresh.signer.token())
        su.execute("DELETE FROM public.awkward")
    rows = su.execute("""
        SELECT l.op, l.changed, l.key, l.old_values, l.new_values,
               l.entry_hash = stepup.entry_hash(stepup.entry_fields(l.id, l.at, l.txid, l.table_name,
                   l.op, l.key, l.old_digest, l.new_digest, l.changed, l.old_values, l.new_values,
                   l.role_name, l.session_role, l.application_name, l.client_addr, l.kid, l.jti,
                   l.sub, l.acr, l.amr, l.auth_time))
          FROM stepup.audit_log l WHERE l.table_name = 'public.awkward' ORDER BY l.id""").fetchall()
    assert [r[0] for r in rows] == ["INSERT", "UPDATE", "UPDATE", "INSERT", "UPDATE", "UPDATE",
                                    "DELETE", "DELETE"]
    assert all(r[5] for r in rows), "an entry hash differs from SQL's rendering"
    every = sorted(['id, "k"', "part", "NULL", "a b", "{x}", "t", "i", "b", "j", "arr", "ünï", "flag", "d"],
                   key=lambda s: s.encode())
    assert rows[0][1] == every and rows[6][1] == every
    # numeric 1.50 -> 1.500 is a change of the stored value; a = a is not.
    assert rows[1][1] == sorted(["a b", "{x}", "t", "j", "ünï"], key=lambda s: s.encode())
    assert rows[2][1] == [] and rows[2][3] == {} and rows[2][4] == {}
    assert rows[0][2] == {'id, "k"': 1, "part": "Pacific/Chatham"}
    # Values as to_jsonb renders them in UTC with default float digits, whatever the session had.
    new = rows[0][4]
    assert new["t"] == "2026-03-03T16:06:07.891+00:00" and new["i"] == "1 day 02:00:00"
    assert new["{x}"] == 0.1 and new["b"] == "\\x00ff" and new["arr"] == [1, None, 3]
    assert new["ünï"] == 'é"\\' and new["NULL"] == "NULL" and new["d"] == "2026-01-02"
    assert rows[4][4]["t"] == "2026-03-03T16:06:07.891001+00:00"
    assert verify(su)[:3] == (True, 8, None)


def test_settings_free_types_render_the_same_under_any_settings(fresh):
    """A table whose column types render without reading a setting is
    rendered without pinning settings (src/rows/mod.rs, SETTINGS_FREE): its
    entries must still not depend on the session's settings."""
    su = fresh.connect()
    su.execute("""CREATE TABLE public.plain (id int8, part text, b bool, s int2, i int4, n numeric,
                  o oid, v varchar(9), c char(3), nm name, ch "char", u uuid, jb jsonb,
                  ip inet, net cidr, ints int4[], texts text[], nums numeric[], uuids uuid[],
                  PRIMARY KEY (id, part))""")
    su.execute("SELECT stepup.protect('public.plain', operations => '{DELETE}')")
    values = """(1, %s, true, -2, 3, 1.50, 42, 'vé"r', 'c', 'nm', 'x',
                 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"k": 1.50}',
                 '10.0.0.1/24', '10.0.0.0/8', '{1,NULL}', '{"a b",NULL,"é"}', '{1.0,NaN}',
                 '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}')"""
    sessions = ["-c TimeZone=UTC -c DateStyle=ISO,MDY -c extra_float_digits=1",
                "-c TimeZone=Pacific/Chatham -c DateStyle=German,DMY -c extra_float_digits=-15 "
                "-c IntervalStyle=sql_standard -c bytea_output=escape -c search_path=pg_temp,public "
                "-c lc_monetary=C -c client_encoding=LATIN1"]
    for part, options in enumerate(sessions):
        c = fresh.connect(options=options)
        c.execute("INSERT INTO public.plain VALUES " + values, [str(part)])
        c.execute("UPDATE public.plain SET n = n * 10, jb = jb || '{\"z\": null}' WHERE part = %s", [str(part)])
    rows = su.execute("""
        SELECT l.op, l.key->>'part', l.new_digest, l.new_values, l.changed,
               l.entry_hash = stepup.entry_hash(stepup.entry_fields(l.id, l.at, l.txid, l.table_name,
                   l.op, l.key, l.old_digest, l.new_digest, l.changed, l.old_values, l.new_values,
                   l.role_name, l.session_role, l.application_name, l.client_addr, l.kid, l.jti,
                   l.sub, l.acr, l.amr, l.auth_time))
          FROM stepup.audit_log l WHERE l.table_name = 'public.plain' ORDER BY l.id""").fetchall()
    assert [(r[0], r[1]) for r in rows] == [("INSERT", "0"), ("UPDATE", "0"), ("INSERT", "1"), ("UPDATE", "1")]
    assert all(r[5] for r in rows), "an entry hash differs from SQL's rendering"
    # Same values written under default and under odd settings: same entry.
    without_part = [(r[0], r[3] if r[0] == "UPDATE" else {k: v for k, v in r[3].items() if k != "part"},
                     r[4]) for r in rows]
    assert without_part[0] == without_part[2] and without_part[1] == without_part[3]
    assert rows[1][3] == {"n": 15.0, "jb": {"k": 1.50, "z": None}}
    assert rows[0][3]["v"] == 'vé"r' and rows[0][3]["nums"] == [1.0, "NaN"]
    for r, part in ((rows[1], 0), (rows[3], 1)):
        assert r[2] == scalar(su, "SELECT stepup.row_digest('plain', to_jsonb(p)) FROM plain p WHERE part = %s",
                              [str(part)])
    assert verify(su)[:3] == (True, 4, None)


def test_values_are_to_jsonb_of_the_row(fresh):
    """Audit values are built column by column (src/rows/render.rs), the commonest
    types without to_jsonb itself: each must be exactly what to_jsonb(row)
    gives, at the edges of every such type."""
    su = fresh.connect()
    su.execute("""CREATE TABLE public.edges (id int PRIMARY KEY, s int2, i int4, b int8, t text,
                  v varchar(20), f bool, n numeric, arr int8[], j jsonb, c char(4))""")
    su.execute("SELECT stepup.protect('public.edges', operations => '{DELETE}')")
    su.execute("""INSERT INTO public.edges VALUES
        (1, -32768, -2147483648, -9223372036854775808, '', '', false, 'NaN', '{}', 'null', 'a'),
        (2, 32767, 2147483647, 9223372036854775807, e'tab\\t"q" \\\\ \\u00e9 \\U0001F600', 'x',
         true, '-0.000100', '{1,NULL}', '{"a": {"b": [1, "2"]}}', 'abcd'),
        (3, 0, 0, 0, repeat('long ', 2000), NULL, NULL, 'Infinity', NULL, '[]', NULL)""")
    before = dict(su.execute("SELECT id, to_jsonb(e)::text FROM public.edges e").fetchall())
    su.execute("UPDATE public.edges SET s = -(s + 1), t = t || '!', f = NOT f, n = n * 2 WHERE id < 3")
    after = dict(su.execute("SELECT id, to_jsonb(e)::text FROM public.edges e").fetchall())
    entries = su.execute("""SELECT l.op, (l.key->>'id')::int, l.old_values::text, l.new_values::text,
                                   l.key::text, l.changed
                              FROM stepup.audit_log l WHERE l.table_name = 'public.edges' ORDER BY l.id""").fetchall()
    assert [(e[0], e[1]) for e in entries] == [("INSERT", 1), ("INSERT", 2), ("INSERT", 3), ("UPDATE", 1),
                                               ("UPDATE", 2)]
    only = "SELECT (%s::jsonb - array(SELECT k FROM jsonb_object_keys(%s::jsonb) k WHERE k <> ALL(%s)))::text"
    for op, id_, old, new, key, changed in entries:
        assert key == f'{{"id": {id_}}}'
        if op == "INSERT":
            assert old is None and new == before[id_]
        else:
            assert sorted(changed) == (["f", "n", "s", "t"] if id_ == 2 else ["f", "s", "t"])
            assert new == scalar(su, only, [after[id_], after[id_], changed])
            assert old == scalar(su, only, [before[id_], before[id_], changed])
    assert verify(su)[:3] == (True, 5, None)


def test_a_column_added_with_a_default_reads_as_that_default_in_older_rows(fresh):
    """ADD COLUMN with a constant default rewrites nothing: older rows hold
    no value for it and read as the default. Their entries must say so too
    (the trigger takes rows apart with heap_deform_tuple)."""
    su = fresh.connect()
    su.execute("ALTER TABLE public.payouts ADD COLUMN currency text NOT NULL DEFAULT 'EUR'")
    before = scalar(su, "SELECT to_jsonb(p) FROM public.payouts p WHERE id = 1")
    assert before["currency"] == "EUR"
    app = fresh.app()
    with app.transaction():
        present(app, fresh.signer.token())
        app.execute("UPDATE public.payouts SET currency = 'USD' WHERE id = 1")
    old, new, changed, old_digest = su.execute(
        "SELECT old_values, new_values, changed, old_digest FROM stepup.audit_log "
        "ORDER BY id DESC LIMIT 1").fetchone()
    assert (old, new, changed) == ({"currency": "EUR"}, {"currency": "USD"}, ["currency"])
    assert old_digest == scalar(su, "SELECT stepup.row_digest('public.payouts', %s)", [psycopg.types.json.Jsonb(before)])
    assert verify(su)[:3] == (True, 1, None)


def test_entries_follow_the_tables_shape_within_one_session(fresh):
    """The trigger keeps each table's columns and primary key per backend
    (rows::shape, dropped on the table's relcache invalidation): a session
    that already wrote entries must see every ALTER TABLE in its next one."""
    su = fresh.connect()
    app = fresh.app()

    def change(statement):
        with app.transaction():
            present(app, fresh.signer.token())
            app.execute(statement)
        last = su.execute("SELECT key, new_values, changed, new_digest FROM stepup.audit_log "
                          "ORDER BY id DESC LIMIT 1").fetchone()
        row = scalar(su, "SELECT to_jsonb(p) FROM public.payouts p WHERE id = 1")
        assert last[3] == scalar(su, "SELECT stepup.row_digest('public.payouts', %s)",
                                 [psycopg.types.json.Jsonb(row)])
        return last[:3]

    assert change("UPDATE public.payouts SET amount = 1 WHERE id = 1") == ({"id": 1}, {"amount": 1}, ["amount"])
    su.execute("ALTER TABLE public.payouts RENAME COLUMN amount TO total")
    assert change("UPDATE public.payouts SET total = 2 WHERE id = 1") == ({"id": 1}, {"total": 2}, ["total"])
    su.execute("ALTER TABLE public.payouts ADD COLUMN note text")
    assert change("UPDATE public.payouts SET note = 'x' WHERE id = 1") == ({"id": 1}, {"note": "x"}, ["note"])
    su.execute("ALTER TABLE public.payouts DROP COLUMN iban")
    assert change("UPDATE public.payouts SET total = 3 WHERE id = 1") == ({"id": 1}, {"total": 3}, ["total"])
    su.execute("ALTER TABLE public.payouts DROP CONSTRAINT payouts_pkey, ADD PRIMARY KEY (id, owner)")
    assert change("UPDATE public.payouts SET total = 4 WHERE id = 1") == \
        ({"id": 1, "owner": "alice"}, {"total": 4}, ["total"])
    assert verify(su)[:3] == (True, 5, None)


def test_entries_follow_renamed_tables_schemas_and_roles_within_one_session(fresh):
    """A session keeps table names (rows::shape) and role names (per
    backend, dropped on any role change): a renamed table, schema or role
    must show in its next entry. A role cannot be renamed while it is the
    current user, so the session switches to it only to write."""
    su = fresh.connect()
    app = fresh.app()
    role = fresh.name + "_clerk"
    su.execute(f"CREATE ROLE {role}")
    su.execute(f"GRANT {role} TO {fresh.app_role}")
    su.execute(f"GRANT USAGE ON SCHEMA stepup TO {role}")
    su.execute(f"GRANT SELECT, UPDATE ON public.payouts TO {role}")
    su.execute("CREATE SCHEMA money")
    su.execute("ALTER TABLE public.payouts SET SCHEMA money")
    su.execute(f"GRANT USAGE ON SCHEMA money TO {fresh.app_role}, {role}")

    def change(table, as_role):
        with app.transaction():
            present(app, fresh.signer.token())
            app.execute(f"SET LOCAL ROLE {as_role}")
            app.execute(f"UPDATE {table} SET amount = amount + 1 WHERE id = 1")
        return su.execute("SELECT table_name, role_name, session_role FROM stepup.audit_log "
                          "ORDER BY id DESC LIMIT 1").fetchone()

    assert change("money.payouts", role) == ("money.payouts", role, fresh.app_role)
    su.execute(f"ALTER ROLE {role} RENAME TO {role}_2")
    assert change("money.payouts", role + "_2") == ("money.payouts", role + "_2", fresh.app_role)
    su.execute("ALTER SCHEMA money RENAME TO treasury")
    assert change("treasury.payouts", role + "_2") == ("treasury.payouts", role + "_2", fresh.app_role)
    su.execute("ALTER TABLE treasury.payouts RENAME TO transfers")
    assert change("treasury.transfers", role + "_2") == \
        ("treasury.transfers", role + "_2", fresh.app_role)
    assert verify(su)[:3] == (True, 4, None)
    su.execute(f"DROP OWNED BY {role}_2")
    su.execute(f"DROP ROLE {role}_2")


def test_entries_of_awkward_keys_values_and_names_hash_as_the_server_prints_them(fresh):
    """The writer renders an entry's jsonb (key, old/new values) and text[]
    (changed, amr) itself, as jsonb_out and array_out print them
    (src/pg/pgtext.rs); verify_audit prints them with the server's functions.
    Keys of every length (jsonb orders them shortest first), strings that
    need escaping, booleans, negative integers, NULLs, and column names or
    amr values that array_out must quote must all verify."""
    su = fresh.connect()
    su.execute("""CREATE TABLE public.odd (
        "k" text, "kk" int, "z" bigint, "aa" boolean, "we""ird" text, "a b" smallint,
        "NULL" text, "ключ" text, "x" numeric, PRIMARY KEY ("k", "kk"))""")
    su.execute("SELECT stepup.protect('public.odd')")
    strings = ["", "tab\there", 'quote " and \\ backslash', "ctl \x01\x1f\x08\x0c\r\n", "é ключ 🎉", "null"]
    with su.transaction():
        present(su, fresh.signer.token(amr=["otp", "hwk"]))
        for i, s in enumerate(strings):
            su.execute('INSERT INTO public.odd VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)',
                       [s, -i, -(2 ** 63) + i, i % 2 == 0, s, -i, s, s, i])
    with su.transaction():
        present(su, fresh.signer.token(amr=["otp pin", "NULL", ""]))
        su.execute("""UPDATE public.odd SET "z" = "z" + 1, "aa" = NOT "aa", "we""ird" = "we""ird" || '"',
                      "a b" = NULL, "NULL" = 'x', "ключ" = NULL, "x" = "x" + 0.5""")
    with su.transaction():
        present(su, fresh.signer.token(amr=["pwd"]))
        su.execute('DELETE FROM public.odd WHERE "kk" < -3')
    # The stored entries hold what the rows say, and every hash checks out.
    keys = su.execute("SELECT key FROM stepup.audit_log WHERE op = 'INSERT' ORDER BY id").fetchall()
    assert [k[0] for k in keys] == [{"k": s, "kk": -i} for i, s in enumerate(strings)]
    changed = scalar(su, "SELECT changed FROM stepup.audit_log WHERE op = 'UPDATE' LIMIT 1")
    assert changed == sorted(["z", "aa", 'we"ird', "a b", "NULL", "ключ", "x"], key=str.encode)
    amrs = [r[0] for r in su.execute("SELECT DISTINCT amr::text FROM stepup.audit_log ORDER BY 1")]
    assert amrs == ['{"otp pin","NULL",""}', "{otp,hwk}", "{pwd}"]
    assert scalar(su, "SELECT count(*) FROM stepup.audit_log") == 6 + 6 + 2
    assert verify(su)[:3] == (True, 14, None)
    # Row digests, recomputed from each column's output function text
    # (format's %s; the writer renders integers, booleans and text itself).
    names = ["k", "kk", "z", "aa", 'we"ird', "a b", "NULL", "ключ", "x"]
    rows = su.execute('SELECT "k", format(\'%s\', "kk"), format(\'%s\', "z"), format(\'%s\', "aa"), '
                      '"we""ird", "a b"::text, "NULL", "ключ", "x"::text FROM public.odd').fetchall()
    assert len(rows) == 4
    digests = dict(su.execute("SELECT key->>'k', new_digest FROM stepup.audit_log WHERE op = 'UPDATE'"))
    for row in rows:
        cols = sorted(zip(names, row), key=lambda c: c[0].encode())
        assert digests[row[0]] == _sha(b"pg_stepup row v1\n" + len(cols).to_bytes(4, "big")
                                       + b"".join(_field(n) + _field(v) for n, v in cols)), row


# --- values over the copy limit (docs/audit-encoding.md) --------------------------

VALUE_LIMIT = 65536


def _omitted(text):
    import hashlib
    return f"pg_stepup:omitted size={len(text)} sha256={hashlib.sha256(text).hexdigest()}"


def _owned_and_protected(fresh, su, ddl, name, **options):
    su.execute(ddl)
    su.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(sql.Identifier(name),
                                                            sql.Identifier(fresh.app_role)))
    su.execute("SELECT stepup.protect(%s, operations => %s)", [name, options.get("operations", "{UPDATE,DELETE}")])


def test_a_huge_value_cannot_make_the_audit_unverifiable(fresh):
    """The application role, with no assertion (INSERT is audited, not
    gated), inserts one row holding 180 MB of control characters. Copied,
    the entry's new_values would print (jsonb_out, \\u0001 per byte) beyond
    1 GB and verify_audit() would fail with 54000 forever. The entry holds
    a marker with the value's size and SHA-256 instead; the row digest
    still covers the whole value; a value of exactly the limit is copied."""
    su, app = fresh.connect(), fresh.app()
    _owned_and_protected(fresh, su, "CREATE TABLE public.docs (id int PRIMARY KEY, body text, note text)", "docs")
    n = 180_000_000
    app.execute("INSERT INTO docs VALUES (1, repeat(chr(1), %s), 'huge')", [n])
    app.execute("INSERT INTO docs VALUES (2, repeat(chr(1), %s), 'at the limit')", [VALUE_LIMIT])
    app.execute("INSERT INTO docs VALUES (3, repeat('x', %s), 'one byte over')", [VALUE_LIMIT + 1])
    stepped_up(app, fresh.signer.token(), "UPDATE docs SET body = 'short' WHERE id = 1")
    assert scalar(su, "SELECT stepup.seal()") == 4
    assert verify(su)[:3] == (True, 4, None)
    rows = su.execute("SELECT op, key, old_values, new_values, new_digest, entry_hash = "
                      "stepup.entry_hash(stepup.entry_fields(id, at, txid, table_name, op, key, old_digest, "
                      "new_digest, changed, old_values, new_values, role_name, session_role, application_name, "
                      "client_addr, kid, jti, sub, acr, amr, auth_time)) "
                      "FROM stepup.audit_log WHERE table_name = 'public.docs' ORDER BY id").fetchall()
    huge = _omitted(b"\x01" * n)
    assert rows[0][3] == {"id": 1, "body": huge, "note": "huge"}
    assert rows[1][3]["body"] == "\x01" * VALUE_LIMIT
    assert rows[2][3]["body"] == _omitted(b"x" * (VALUE_LIMIT + 1))
    assert rows[3][0] == "UPDATE" and rows[3][2:4] == ({"body": huge}, {"body": "short"})
    assert all(r[5] for r in rows), "an entry hash differs from SQL's rendering"
    # The row digest (docs/audit-encoding.md) covers the whole 180 MB.
    fields = [("body", "\x01" * n), ("id", "1"), ("note", "huge")]
    assert rows[0][4] == _sha(b"pg_stepup row v1\n" + (3).to_bytes(4, "big")
                              + b"".join(_field(k) + _field(v) for k, v in fields))


def test_values_over_the_limit_in_keys_and_in_rows_postgres_builds(fresh):
    """The other writer path (a numeric column: the object is built by
    Postgres) and the primary key are bounded the same way; a bytea's
    marker is over its text output."""
    su, app = fresh.connect(), fresh.app()
    _owned_and_protected(fresh, su, "CREATE TABLE public.blobs (k text PRIMARY KEY, b bytea, amount numeric, "
                                    "body text)", "blobs")
    big_key = "k" * 100_000
    app.execute("INSERT INTO blobs VALUES (%s, decode(repeat('ab', %s), 'hex'), 1.5, repeat('y', %s))",
                [big_key, VALUE_LIMIT + 1, VALUE_LIMIT + 1])
    app.execute("INSERT INTO blobs VALUES ('small', decode(repeat('ab', %s), 'hex'), 2, repeat('y', %s))",
                [VALUE_LIMIT, VALUE_LIMIT])
    assert verify(su)[:3] == (True, 2, None)
    rows = su.execute("SELECT key, new_values FROM stepup.audit_log WHERE table_name = 'public.blobs' "
                      "ORDER BY id").fetchall()
    marker_key = _omitted(big_key.encode())
    assert rows[0][0] == {"k": marker_key}
    assert rows[0][1] == {"k": marker_key, "b": _omitted(("\\x" + "ab" * (VALUE_LIMIT + 1)).encode()),
                          "amount": 1.5, "body": _omitted(b"y" * (VALUE_LIMIT + 1))}
    assert rows[1][1] == {"k": "small", "b": "\\x" + "ab" * VALUE_LIMIT, "amount": 2, "body": "y" * VALUE_LIMIT}


def test_a_bytea_too_large_to_print_is_refused_with_54000(fresh):
    """Over 512 MB a bytea's hex text passes 1 GB: no row digest can cover
    it, so the change is refused as a limit (54000), not an internal error."""
    su, app = fresh.connect(), fresh.app()
    _owned_and_protected(fresh, su, "CREATE TABLE public.big (id int PRIMARY KEY, b bytea)", "big")
    err = expect_error(app, "INSERT INTO big VALUES (1, convert_to(repeat('a', 600000000), 'UTF8'))", None, "54000")
    assert "too large to audit" in err.diag.message_primary
    assert scalar(su, "SELECT count(*) FROM big") == 0
    assert verify(su)[:3] == (True, 0, None)
