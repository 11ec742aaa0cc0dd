"""A database made on PostgreSQL 15 — protected tables (a row filter over an
enum and a function of the database's own, a change-bound table of ~40
column types), a key, policies and a sealed audit chain — dumped with
`pg_dump -Fc` and restored on every version the suite runs on: on 15 into
another database (new OIDs for every type and function the filter names),
on 17 and 18 into theirs. There the chain verifies against the digest saved
on 15, protected writes still need step-up, and every row digest and every
change digest is the one 15 computed: the row renderings they hash do not
change across these versions.

The 15 run writes the dump and what it expects into STEPUP_XVER_DIR
(default target/across-versions, which the roots of scripts/pgroot.sh see
at the same place). A 17 or 18 run without it skips, unless
STEPUP_XVER_REQUIRED=1 (as .ci/run sets it): then it fails.
"""
import json
import os
import secrets
import subprocess
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from conftest import (PGHOST, PGPORT, SUPERUSER, conninfo, expect_error, mint, present, register_key,
                      scalar)

PG_BIN = os.environ.get("STEPUP_PG_BIN", "/usr/lib/postgresql/15/bin")
XVER_DIR = Path(os.environ.get("STEPUP_XVER_DIR", Path(__file__).parent.parent / "target" / "across-versions"))
REQUIRED = os.environ.get("STEPUP_XVER_REQUIRED") == "1"
DUMP = XVER_DIR / "pg15.dump"
EXPECT = XVER_DIR / "pg15.json"

SCHEMA = """
CREATE TYPE public.xv_state AS ENUM ('open', 'locked');
CREATE TYPE public.xv_pair AS (a int, b text);
CREATE DOMAIN public.xv_pos AS int CHECK (VALUE > 0);
CREATE FUNCTION public.xv_big(numeric) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT $1 >= 1000';
CREATE TABLE public.payouts (id int PRIMARY KEY, owner text, iban text, amount numeric,
                             state public.xv_state NOT NULL DEFAULT 'open');
CREATE TABLE public.ledger (id int PRIMARY KEY, {columns});
"""

# Column, type, and three values as SQL literals: a plain row, edge values,
# and what the restored database changes row 1 to (every column differs).
COLUMNS = [
    ("i2", "smallint", "12", "-32768", "13"),
    ("i8", "bigint", "9007199254740993", "-9223372036854775808", "9223372036854775807"),
    ("n", "numeric", "12345678901234567890.123", "'NaN'", "0.000000000000000000001"),
    ("n2", "numeric(12,4)", "1.5", "-0.0001", "99999999.9999"),
    ("f4", "real", "0.1", "'-Infinity'", "3.4028235e38"),
    ("f8", "double precision", "0.1", "'-0'", "1e-300"),
    ("f8b", "double precision", "1.7976931348623157e308", "'NaN'", "2.5"),
    ("b", "boolean", "true", "false", "false"),
    ("t", "text", "'Zoë ✓ \"quoted\" \\ back'", "E'tab\\tnew\\nline\\u0001'", "''"),
    ("vc", "varchar(20)", "'short'", "'x'", "'longer text'"),
    ("ch", "char(5)", "'ab'", "'abcde'", "'z'"),
    ("by", "bytea", "'\\xdeadbeef'", "''", "'\\x00ff'"),
    ("d", "date", "'2024-02-29'", "'infinity'", "'0044-03-15 BC'"),
    ("ts", "timestamp", "'2024-02-29 12:34:56.789'", "'-infinity'", "'1999-12-31 23:59:59.999999'"),
    ("tstz", "timestamptz", "'2024-02-29 12:34:56.789+05:30'", "'infinity'", "'1970-01-01 00:00:00+00'"),
    ("tm", "time", "'23:59:59.999999'", "'00:00'", "'12:00'"),
    ("tmtz", "timetz", "'12:00+02'", "'00:00-11:30'", "'13:14:15+00'"),
    ("iv", "interval", "'1 year 2 months 3 days 04:05:06.789'", "'-178000000 years'", "'1 second'"),
    ("u", "uuid", "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", "'00000000-0000-0000-0000-000000000000'",
     "'ffffffff-ffff-ffff-ffff-ffffffffffff'"),
    ("j", "json", "'{\"b\": 1, \"a\": [1.0, \"x\"]}'", "'null'", "'[]'"),
    ("jb", "jsonb", "'{\"b\": 1, \"a\": [1.0, 1e400, \"x\"]}'", "'{}'", "'\"s\"'"),
    ("ip", "inet", "'192.168.1.5/24'", "'::1'", "'10.0.0.1'"),
    ("cid", "cidr", "'10.1.0.0/16'", "'2001:db8::/32'", "'192.168.0.0/24'"),
    ("mac", "macaddr", "'08:00:2b:01:02:03'", "'ff:ff:ff:ff:ff:ff'", "'00:00:00:00:00:00'"),
    ("mac8", "macaddr8", "'08:00:2b:01:02:03:04:05'", "'00:00:00:00:00:00:00:00'", "'01:02:03:04:05:06:07:08'"),
    ("bits", "bit(8)", "B'10101010'", "B'00000000'", "B'11111111'"),
    ("vb", "varbit", "B'101'", "B''", "B'1'"),
    ("pt", "point", "'(1.5,-2)'", "'(1e300,-0)'", "'(0,0)'"),
    ("bx", "box", "'((0,0),(1,1))'", "'((-1,-1),(1e-10,1e10))'", "'((2,2),(3,3))'"),
    ("cir", "circle", "'<(0,0),0.1>'", "'<(1,1),1e30>'", "'<(2,2),2>'"),
    ("ln", "lseg", "'[(0,0),(1,1)]'", "'[(0.1,0.2),(0.3,0.4)]'", "'[(5,5),(6,6)]'"),
    ("pth", "path", "'[(0,0),(1,1),(2,0)]'", "'((0,0),(1,0),(0,1))'", "'[(9,9),(8,8)]'"),
    ("pol", "polygon", "'((0,0),(1,0),(0,1))'", "'((0.5,0.5))'", "'((3,3),(4,3),(3,4))'"),
    ("tsv", "tsvector", "'a fat cat:3 sat'", "''", "'rat'"),
    ("tsq", "tsquery", "'fat & (rat | cat)'", "'!x'", "'dog'"),
    ("r", "int4range", "'[1,10)'", "'empty'", "'(,5]'"),
    ("tr", "tstzrange", "'[2024-01-01 00:00+00,2024-06-01 00:00+02)'", "'(,)'", "'[2000-01-01 00:00+00,)'"),
    ("nr", "numrange", "'[1.5,2.25]'", "'(,)'", "'[0,0]'"),
    ("mr", "int4multirange", "'{[1,3), [5,8)}'", "'{}'", "'{[10,20)}'"),
    ("ia", "int[]", "'{1,2,NULL,4}'", "'{}'", "'{{1,2},{3,4}}'"),
    ("ta", "text[]", "'{\"a b\",NULL,\"\\\\\\\"q\"}'", "'{}'", "'{z}'"),
    ("e", "public.xv_state", "'locked'", "'open'", "'open'"),
    ("comp", "public.xv_pair", "ROW(1, 'x y')", "ROW(NULL, NULL)", "ROW(2, '')"),
    ("dom", "public.xv_pos", "7", "2147483647", "8"),
    ("x", "xml", "'<a b=\"1\">t &amp; u</a>'", "'text only'", "'<z/>'"),
    ("lsn", "pg_lsn", "'16/B374D848'", "'0/0'", "'FFFFFFFF/FFFFFFFF'"),
    ("oid", "oid", "4294967295", "0", "1"),
]
NAMES = [c[0] for c in COLUMNS]


def values(i):
    """Row i's values (1: plain, 2: edge values, 3: what row 1 becomes) as `(lit, lit, ...)`."""
    return "(" + ", ".join(f"({c[i + 1]})::{c[1]}" for c in COLUMNS) + ")"


def server_major(conn):
    return int(scalar(conn, "SHOW server_version_num")) // 10000


def run(*args):
    env = dict(os.environ, PGHOST=PGHOST, PGPORT=PGPORT, PGUSER=SUPERUSER)
    return subprocess.run(list(args), check=True, env=env, capture_output=True, text=True)


def recreate(name):
    with psycopg.connect(conninfo("postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop(name):
    with psycopg.connect(conninfo("postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


class Minter:
    def __init__(self, kid, secret, aud):
        self.kid, self.secret, self.aud = kid, secret, aud

    def token(self, **claims):
        claims.setdefault("aud", self.aud)
        return mint(self.kid, self.secret, alg="HS256", **claims)


def stepped_up(conn, token, statement, params=None):
    with conn.transaction():
        present(conn, token)
        conn.execute(statement, params)


def row_digests(conn):
    """Every row's digest, by table and id, as stepup.row_digest computes it."""
    out = {}
    for table in ("payouts", "ledger"):
        for rid, digest in conn.execute(sql.SQL(
                "SELECT whole.id, stepup.row_digest({}::regclass, to_jsonb(whole)) FROM public.{} whole "
                "ORDER BY whole.id").format(
                    sql.Literal(f"public.{table}"), sql.Identifier(table))).fetchall():
            out[f"{table}/{rid}"] = digest
    return out


def newest_digests(conn):
    """The new_digest of each row's newest audit entry, by table and id."""
    return {f"{t.split('.')[-1]}/{k['id']}": d for t, k, d in conn.execute(
        "SELECT DISTINCT ON (table_name, key) table_name, key, new_digest FROM stepup.audit_log "
        "WHERE new_digest IS NOT NULL ORDER BY table_name, key, id DESC").fetchall()}


def verify(conn, digest=None):
    if digest is None:
        return conn.execute("SELECT ok, entries, first_bad_id, reason FROM stepup.verify_audit()").fetchone()
    return conn.execute("SELECT ok, entries, first_bad_id, reason FROM stepup.verify_audit(%s)",
                        [Jsonb(digest)]).fetchone()


def change_digest(conn, changes_sql):
    """stepup.change_digest of an UPDATE of ledger row 1 to the values of
    `changes_sql` (a row of ledger's columns), as to_jsonb renders them here."""
    return scalar(conn, f"""
        SELECT stepup.change_digest('public.ledger', 'UPDATE', '{{"id": 1}}', to_jsonb(p) - 'id')
          FROM (SELECT 1 AS id, v.* FROM (VALUES {changes_sql}) AS v({", ".join(NAMES)})) p""")


def planned_update(values_sql):
    return f"UPDATE ledger SET ({', '.join(NAMES)}) = {values_sql} WHERE id = 1"


class RolledBack(Exception):
    pass


def old_digests(conn, after_id):
    """The old_digest of each entry after `after_id`, by table and id."""
    return {f"{t.split('.')[-1]}/{k['id']}": d for t, k, d in conn.execute(
        "SELECT table_name, key, old_digest FROM stepup.audit_log WHERE id > %s ORDER BY id",
        [after_id]).fetchall()}


# --- made on 15 ---------------------------------------------------------------------------------

def test_a_database_made_on_15_is_dumped(app_role):
    with psycopg.connect(conninfo("postgres"), autocommit=True) as c:
        if server_major(c) != 15:
            pytest.skip("the dump is made on PostgreSQL 15 (scripts/test.sh)")
    name = f"stepup_xver_{os.getpid()}"
    recreate(name)
    try:
        with psycopg.connect(conninfo(name), autocommit=True) as su, \
                psycopg.connect(conninfo(name, user=app_role), autocommit=True) as app:
            su.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                sql.Identifier(name), sql.Identifier(app_role)))
            su.execute("CREATE EXTENSION pg_stepup")
            secret = secrets.token_bytes(32)
            kid = register_key(su, "HS256", secret)
            su.execute("SELECT stepup.define_level('aal4', 4)")
            su.execute(SCHEMA.format(columns=", ".join(f"{c[0]} {c[1]}" for c in COLUMNS)))
            for t in ("payouts", "ledger"):
                su.execute(sql.SQL("ALTER TABLE public.{} OWNER TO {}").format(
                    sql.Identifier(t), sql.Identifier(app_role)))
            su.execute("SELECT stepup.protect('public.payouts', "
                       "row_filter => $$state = 'locked' OR public.xv_big(amount)$$)")
            su.execute("SELECT stepup.protect('public.ledger', bind_change => true)")
            m = Minter(kid, secret, name)

            app.execute("INSERT INTO payouts VALUES (1, 'alice', 'DE01', 100, 'open'), "
                        "(2, 'bob', 'DE02', 5000, 'open'), (3, 'carol', 'DE03', 10, 'locked')")
            app.execute("UPDATE payouts SET iban = 'DE11' WHERE id = 1")
            stepped_up(app, m.token(), "UPDATE payouts SET iban = 'DE22' WHERE id = 2")
            expect_error(app, "UPDATE payouts SET iban = 'XX' WHERE id = 3", sqlstate="SU001")
            for i in (1, 2):
                app.execute(f"INSERT INTO ledger VALUES ({i}, {values(i)[1:]}")
            app.execute("INSERT INTO ledger (id) VALUES (3)")
            # A change bound by its digest, as 15 computes it.
            chg = scalar(su, "SELECT stepup.change_digest('public.ledger', 'UPDATE', '{\"id\": 2}', "
                             "'{\"t\": \"changed on 15\"}')")
            stepped_up(app, m.token(extra={"chg": [chg]}), "UPDATE ledger SET t = 'changed on 15' WHERE id = 2")
            su.execute("SELECT stepup.seal()")
            digest = scalar(su, "SELECT stepup.audit_digest()")
            app.execute("INSERT INTO payouts VALUES (4, 'dave', 'DE04', 1, 'open')")
            entries = scalar(su, "SELECT count(*) FROM stepup.audit_log")
            assert verify(su) == (True, entries, None, None)

            rows = row_digests(su)
            stored = newest_digests(su)
            # stepup.row_digest over to_jsonb is the digest of the stored
            # row, but for what JSON does not carry (docs/audit-encoding.md):
            # row 1's json column, row 2's -0 and its json null.
            assert {k for k in rows if rows[k] != stored[k]} == {"ledger/1", "ledger/2"}
            # What row 1 becomes on the newer version, made here and rolled
            # back: its change digest and the entry's new row digest.
            plan = values(3)
            plan_chg = change_digest(su, plan)
            with pytest.raises(RolledBack):
                with su.transaction():
                    present(su, m.token(extra={"chg": [plan_chg]}))
                    su.execute(planned_update(plan))
                    planned_new = scalar(su, "SELECT new_digest FROM stepup.audit_log "
                                              "WHERE table_name = 'public.ledger' ORDER BY id DESC LIMIT 1")
                    raise RolledBack
            expect = {
                "kid": kid, "secret": secret.hex(), "digest": digest, "entries": entries,
                "row_digests": rows, "stored_digests": stored,
                "touch": [scalar(su, "SELECT stepup.change_digest('public.ledger', 'UPDATE', %s, "
                                     "'{\"t\": \"touched\"}')", [Jsonb({"id": i})]) for i in (2, 3)],
                "planned": {"values": plan, "chg": plan_chg, "new_digest": planned_new},
                "state": {t: s for t, s in su.execute(
                    "SELECT target::text, state FROM stepup.protected ORDER BY 1").fetchall()},
                "server_version": scalar(su, "SHOW server_version"),
            }
        XVER_DIR.mkdir(parents=True, exist_ok=True)
        run(f"{PG_BIN}/pg_dump", "-Fc", "-f", str(DUMP), name)
        EXPECT.write_text(json.dumps(expect, indent=1))
    finally:
        drop(name)


# --- restored on each version -------------------------------------------------------------------

def test_the_15_dump_restores_protected_and_verifiable(app_role):
    if not DUMP.exists() or not EXPECT.exists():
        message = f"no dump from PostgreSQL 15 in {XVER_DIR}: run scripts/test.sh (15) first"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    expect = json.loads(EXPECT.read_text())
    with psycopg.connect(conninfo("postgres"), autocommit=True) as c:
        major = server_major(c)
    name = f"stepup_xver_r{major}_{os.getpid()}"
    recreate(name)
    try:
        with psycopg.connect(conninfo(name), autocommit=True) as su:
            su.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                sql.Identifier(name), sql.Identifier(app_role)))
        run(f"{PG_BIN}/pg_restore", "--exit-on-error", "-d", name, str(DUMP))
        with psycopg.connect(conninfo(name), autocommit=True) as su, \
                psycopg.connect(conninfo(name, user=app_role), autocommit=True) as app:
            m = Minter(expect["kid"], bytes.fromhex(expect["secret"]), name)
            n = expect["entries"]
            # The chain, against the head saved on 15.
            assert verify(su) == (True, n, None, None)
            assert verify(su, expect["digest"]) == (True, n, None, None)
            # What protect() installed is what the DDL guard expects.
            assert {t: s for t, s in su.execute(
                "SELECT target::text, stepup.protection_state(target) FROM stepup.protected ORDER BY 1")} \
                == expect["state"]
            # stepup.row_digest gives what it gave on 15.
            assert row_digests(su) == expect["row_digests"]

            # Every stored row digests here as it did on 15: each row's
            # entry here (old_digest) against its newest entry there.
            last = scalar(su, "SELECT max(id) FROM stepup.audit_log")
            with app.transaction():
                present(app, m.token(extra={"chg": expect["touch"]}))
                app.execute("UPDATE ledger SET t = 'touched' WHERE id IN (2, 3)")
                app.execute("UPDATE payouts SET iban = iban || '.'")
            # The change-bound table: a change confirmed by its digest as
            # 15 computed it is the change made here, to the same new row.
            plan = expect["planned"]
            change = planned_update(plan["values"])
            expect_error(app, change, sqlstate="SU001")
            with pytest.raises(psycopg.Error) as caught:
                stepped_up(app, m.token(), change)
            assert caught.value.sqlstate == "SU004"
            assert change_digest(su, plan["values"]) == plan["chg"]
            stepped_up(app, m.token(extra={"chg": [plan["chg"]]}), change)
            assert old_digests(su, last) == expect["stored_digests"]
            assert scalar(su, "SELECT new_digest FROM stepup.audit_log ORDER BY id DESC LIMIT 1") \
                == plan["new_digest"]

            # The row filter names a type and a function that have other
            # OIDs here: it still protects the same rows.
            expect_error(app, "UPDATE payouts SET iban = 'XX' WHERE id = 3", sqlstate="SU001")  # locked
            expect_error(app, "UPDATE payouts SET iban = 'XX' WHERE id = 2", sqlstate="SU001")  # xv_big
            expect_error(app, "UPDATE payouts SET state = 'locked' WHERE id = 1", sqlstate="SU001")
            app.execute("UPDATE payouts SET iban = 'DE41' WHERE id = 4")  # open, small: not protected
            stepped_up(app, m.token(), "UPDATE payouts SET iban = 'DE33' WHERE id = 3")
            # Its policy cannot be weakened without step-up, by its owner either.
            expect_error(app, "ALTER POLICY stepup_filter ON payouts USING (true)", sqlstate="SU006")
            expect_error(app, "DROP POLICY stepup_filter ON payouts", sqlstate="SU006")

            # Everything since is chained after what came from 15.
            assert verify(su, expect["digest"]) == (True, n + 9, None, None)
    finally:
        drop(name)
