"""Integrity of the audit and of the extension's surface (issue 17), as an
attacker would probe it.

Spec classes covered (/tmp/spec/issue17.md):
 5  non-UTF-8 databases refuse CREATE EXTENSION (0A000, message names UTF8);
 6  sealing cannot be blocked by an advisory lock the app role holds, and the
    app role cannot LOCK the audit tables;
 7  every TRUNCATE of a protected table leaves one audit entry (op TRUNCATE,
    old_values {"rows": n}, the authorising sub/jti), none when rolled back;
 8  (a) the hashing helpers are not executable by the app role (42501);
    (d) verify_audit(NULL) is 22004;
12  which functions of schema stepup PUBLIC / the app role may execute.

Tests that need the audit chain to themselves get a database of their own
(`fresh`), as in test_audit.py."""
import time

import psycopg
import pytest
from psycopg import sql

import test_audit
from conftest import SUPERUSER, conninfo, expect_error, jws_payload, new_hs256, present, scalar, unique

# --- a database of one's own -----------------------------------------------------------------

ROWS = [(1, "alice", "DE01", 500, "small"), (2, "bob", "DE02", 20000, "large"),
        (3, "alice", "DE03", 15000, "large")]


class Fresh(test_audit.Fresh):
    def table(self, su, name="payouts", **policy):
        """public.<name> owned by the app role, filled with ROWS, protected with `policy`."""
        su.execute(f"CREATE TABLE public.{name} (id int PRIMARY KEY, owner text, iban text, "
                   f"amount numeric, note text)")
        su.cursor().executemany(f"INSERT INTO public.{name} VALUES (%s, %s, %s, %s, %s)", ROWS)
        su.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(
            sql.Identifier("public", name), sql.Identifier(self.app_role)))
        args = [sql.Literal(f"public.{name}")] + [
            sql.SQL("{} => {}").format(sql.Identifier(k), sql.Literal(v)) for k, v in policy.items()]
        su.execute(sql.SQL("SELECT stepup.protect({})").format(sql.SQL(", ").join(args)))
        return f"public.{name}"


@pytest.fixture
def fresh(app_role):
    name = unique("stepup_integrity").replace("-", "_")
    with psycopg.connect(conninfo("postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        admin.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
            sql.Identifier(name), sql.Identifier(app_role)))
    db = Fresh(name, app_role)
    try:
        su = db.connect()
        su.execute("CREATE EXTENSION pg_stepup")
        db.signer = new_hs256(su, name)
        yield db
    finally:
        for c in db.conns:
            c.close()
        with psycopg.connect(conninfo("postgres"), autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def verify(conn):
    return conn.execute("SELECT ok, entries, first_bad_id, reason FROM stepup.verify_audit()").fetchone()


def audit_count(conn):
    return scalar(conn, "SELECT count(*) FROM stepup.audit_log")


# === 5. non-UTF-8 databases ====================================================================

@pytest.mark.parametrize("encoding", ["LATIN1", "SQL_ASCII", "EUC_JP"])
def test_5_create_extension_in_a_non_utf8_database_is_refused(encoding):
    name = unique(f"stepup_{encoding.lower()}").replace("-", "_")
    ident = sql.Identifier(name)
    with psycopg.connect(conninfo("postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} ENCODING {} LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
                      .format(ident, sql.Literal(encoding)))
    try:
        with psycopg.connect(conninfo(name), autocommit=True) as c:
            server_encoding = scalar(c, "SELECT getdatabaseencoding()")
            if isinstance(server_encoding, bytes):  # SQL_ASCII: psycopg returns text as bytes
                server_encoding = server_encoding.decode()
            assert server_encoding == encoding
            err = expect_error(c, "CREATE EXTENSION pg_stepup", None, "0A000")
            texts = " ".join(t for t in (err.diag.message_primary, err.diag.message_detail,
                                         err.diag.message_hint) if t)
            assert err.diag.message_primary == f"pg_stepup needs a UTF8 database; this one is {encoding}", texts
            assert "ENCODING 'UTF8'" in err.diag.message_hint
            assert scalar(c, "SELECT count(*) FROM pg_extension WHERE extname = 'pg_stepup'") == 0
            assert scalar(c, "SELECT count(*) FROM pg_namespace WHERE nspname = 'stepup'") == 0
    finally:
        with psycopg.connect(conninfo("postgres"), autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))


# === 6. sealing cannot be blocked ==============================================================

# The key seal() took before issue 17 (pg_advisory_xact_lock), and a few others.
SEALER_KEY = 7305551626170716448
ADVISORY_LOCKS = [
    f"SELECT pg_advisory_lock({SEALER_KEY})",
    "SELECT pg_advisory_lock(0)",
    "SELECT pg_advisory_lock(1)",
    "SELECT pg_advisory_lock(-1)",
    f"SELECT pg_advisory_lock({SEALER_KEY >> 32}, {SEALER_KEY & 0x7fffffff})",
    "SELECT pg_advisory_lock_shared(2)",
]


def test_6_an_advisory_lock_held_by_the_app_role_does_not_block_sealing(fresh):
    su = fresh.connect()
    t = fresh.table(su)
    app = fresh.app()
    with app.transaction():
        present(app, fresh.signer.token())
        app.execute(f"UPDATE {t} SET iban = 'XX' WHERE id = 1")
    app.execute(f"INSERT INTO {t} VALUES (4, 'carol', 'DE04', 1, NULL)")
    # The lock holder: a session of the app role, locks held (session level),
    # and a transaction left open that holds a transaction-level one too.
    holder = fresh.app()
    for statement in ADVISORY_LOCKS:
        holder.execute(statement)
    holder.execute("BEGIN")
    holder.execute(f"SELECT pg_advisory_xact_lock({SEALER_KEY})")
    holder.execute("SELECT pg_advisory_xact_lock(3)")
    assert scalar(su, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = %s",
                  [holder.info.backend_pid]) >= len(ADVISORY_LOCKS)
    su.execute("SET statement_timeout = '5s'")
    try:
        assert scalar(su, "SELECT stepup.seal()") >= 2
        assert verify(su) == (True, audit_count(su), None, None)
        digest = scalar(su, "SELECT stepup.audit_digest()")
        assert digest["seq"] == audit_count(su)
        # Another entry while the locks are still held: sealed as well.
        app.execute(f"INSERT INTO {t} VALUES (5, 'dave', 'DE05', 1, NULL)")
        assert scalar(su, "SELECT stepup.seal()") == 1
        ok, entries, bad, reason = verify(su)
        assert (ok, entries, bad, reason) == (True, audit_count(su), None, None)
    finally:
        su.execute("RESET statement_timeout")
        holder.execute("ROLLBACK")
        holder.execute("SELECT pg_advisory_unlock_all()")


@pytest.mark.parametrize("table", ["stepup.audit_chain", "stepup.audit_log"])
@pytest.mark.parametrize("mode", ["ACCESS SHARE", "ROW SHARE", "ROW EXCLUSIVE", "SHARE UPDATE EXCLUSIVE",
                                  "SHARE", "SHARE ROW EXCLUSIVE", "EXCLUSIVE", "ACCESS EXCLUSIVE"])
def test_6_the_app_role_cannot_lock_the_audit_tables(fresh, table, mode):
    app = fresh.app()
    app.execute("BEGIN")
    try:
        expect_error(app, f"LOCK TABLE {table} IN {mode} MODE NOWAIT", None, "42501")
    finally:
        app.execute("ROLLBACK")
    su = fresh.connect()
    su.execute("SET statement_timeout = '5s'")
    assert scalar(su, "SELECT stepup.seal()") == 0


# === 7. TRUNCATE leaves a trace ================================================================

def truncate_entries(su, table):
    return su.execute("SELECT old_values, new_values, key, sub, jti, kid, role_name FROM stepup.audit_log "
                      "WHERE op = 'TRUNCATE' AND table_name = %s ORDER BY id", [table]).fetchall()


def test_7_an_ungated_truncate_is_an_audit_entry(fresh):
    su = fresh.connect()
    t = fresh.table(su, operations=["INSERT", "UPDATE"])
    app = fresh.app()
    # A TRUNCATE that rolls back leaves nothing.
    before = audit_count(su)
    app.execute("BEGIN")
    app.execute(f"TRUNCATE {t}")
    app.execute("ROLLBACK")
    assert audit_count(su) == before
    assert truncate_entries(su, t) == []
    assert scalar(su, f"SELECT count(*) FROM {t}") == 3
    # The owner's TRUNCATE (not gated by this policy): one entry, no assertion.
    app.execute(f"TRUNCATE {t}")
    assert scalar(su, f"SELECT count(*) FROM {t}") == 0
    entries = truncate_entries(su, t)
    assert len(entries) == 1, entries
    old_values, _, _, sub, jti, kid, role = entries[0]
    assert old_values == {"rows": 3}
    assert (sub, jti, kid) == (None, None, None)
    assert role == fresh.app_role
    assert audit_count(su) == before + 1
    # The superuser's TRUNCATE of the table refilled (INSERT is gated here): one entry each.
    with su.transaction():
        present(su, fresh.signer.token())
        su.cursor().executemany(f"INSERT INTO {t} VALUES (%s, %s, %s, %s, %s)", ROWS[:2])
    su.execute(f"TRUNCATE {t}")
    entries = truncate_entries(su, t)
    assert [e[0] for e in entries] == [{"rows": 3}, {"rows": 2}]
    assert entries[1][6] == SUPERUSER
    assert verify(su) == (True, audit_count(su), None, None)


def test_7_a_truncate_authorised_by_step_up_names_the_assertion(fresh):
    su = fresh.connect()
    t = fresh.table(su)  # UPDATE, DELETE: TRUNCATE is gated too
    app = fresh.app()
    expect_error(app, f"TRUNCATE {t}", None, "SU001")
    assert truncate_entries(su, t) == []
    token = fresh.signer.token(sub="alice")
    jti = jws_payload(token)["jti"]
    # Rolled back after step-up: still nothing.
    app.execute("BEGIN")
    present(app, token)
    app.execute(f"TRUNCATE {t}")
    app.execute("ROLLBACK")
    assert truncate_entries(su, t) == []
    assert scalar(su, f"SELECT count(*) FROM {t}") == 3
    with app.transaction():
        present(app, token)
        app.execute(f"TRUNCATE {t}")
    assert scalar(su, f"SELECT count(*) FROM {t}") == 0
    entries = truncate_entries(su, t)
    assert len(entries) == 1, entries
    old_values, _, _, sub, entry_jti, kid, _ = entries[0]
    assert old_values == {"rows": 3}
    assert (sub, entry_jti, kid) == ("alice", jti, fresh.signer.kid)
    assert verify(su) == (True, audit_count(su), None, None)


# === 8. helpers and NULL digests ===============================================================

ENTRY_FIELDS_CALL = ("SELECT stepup.entry_fields(NULL::bigint, NULL::timestamptz, NULL::bigint, NULL::text, "
                     "NULL::text, NULL::jsonb, NULL::text, NULL::text, NULL::text[], NULL::jsonb, NULL::jsonb, "
                     "NULL::text, NULL::text, NULL::text, NULL::inet, NULL::text, NULL::text, NULL::text, "
                     "NULL::text, NULL::text[], NULL::timestamptz)")


@pytest.mark.parametrize("call", [
    "SELECT stepup.entry_hash('{a}')",
    "SELECT stepup.entry_hash(ARRAY['x', NULL, 'y'])",
    "SELECT stepup.link_hash(1, 1, repeat('0', 64), repeat('0', 64))",
    ENTRY_FIELDS_CALL,
], ids=["entry_hash", "entry_hash_nulls", "link_hash", "entry_fields"])
def test_8a_the_app_role_cannot_compute_entry_or_link_hashes(app, call):
    expect_error(app, call, None, "42501")


def test_8d_verify_audit_of_a_null_digest_is_22004(su):
    expect_error(su, "SELECT * FROM stepup.verify_audit(NULL)", None, "22004")
    expect_error(su, "SELECT * FROM stepup.verify_audit(NULL::jsonb)", None, "22004")
    # The form without a digest still works.
    assert scalar(su, "SELECT ok FROM stepup.verify_audit()") is True


# === 12. who may execute what ==================================================================

# Signature (regprocedure text) -> may PUBLIC / the app role execute it.
# Exactly the API an application or a policy calls; every other function of
# schema stepup (administration, sealing and verification, the hash helpers,
# the DDL guard's internals, trigger and event-trigger functions, which fire
# without EXECUTE) must NOT be executable (sql/finalize.sql grants in one
# place).
EXPECTED_EXECUTE = {
    "stepup.present(text)": True,
    "stepup.present(text,text)": True,
    "stepup.current()": True,
    "stepup.clear()": True,
    "stepup.satisfied(text,interval)": True,
    "stepup.satisfied(text,interval,text[])": True,
    "stepup.require(text,interval)": True,
    "stepup.require(text,interval,text[])": True,
    "stepup.change_digest(regclass,text,jsonb,jsonb)": True,
    "stepup.row_digest(regclass,jsonb)": True,
    # what stepup.row_digest (LANGUAGE sql, not SECURITY DEFINER) calls
    "stepup.row_digest_text(regclass,text)": True,
    # the row filter as the stepup_insert/stepup_update policies call it: a
    # policy expression runs with the writer's privileges
    "stepup.in_row_filter(regclass,record)": True,
}


def function_grants(conn, role):
    """{signature: (public_may_execute, role_may_execute, prokind)} for every function of schema stepup."""
    rows = conn.execute("""
        SELECT p.oid::regprocedure::text,
               p.proacl IS NULL OR EXISTS (SELECT FROM aclexplode(p.proacl) a
                                            WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE'),
               has_function_privilege(%s, p.oid, 'EXECUTE'),
               p.prokind::text
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = 'stepup'
         ORDER BY 1""", [role]).fetchall()
    return {sig: (public, mine, kind) for sig, public, mine, kind in rows}


def test_12_function_execute_privileges(su, app_role):
    actual = function_grants(su, app_role)
    listing = "\n".join(f"  {sig}: PUBLIC={'yes' if p else 'no'} {app_role}={'yes' if a else 'no'}"
                        for sig, (p, a, _) in sorted(actual.items()))
    wrong = []
    for sig, (public, app_may, _) in sorted(actual.items()):
        expected = EXPECTED_EXECUTE.get(sig, False)
        if public != expected or app_may != expected:
            wrong.append(f"  {sig}: expected {'executable' if expected else 'NOT executable'}, "
                         f"PUBLIC={public} {app_role}={app_may}")
    missing = [sig for sig, expected in EXPECTED_EXECUTE.items() if expected is True and sig not in actual]
    assert not wrong and not missing, (
        "EXECUTE privileges on schema stepup differ from the expected list:\n" + "\n".join(wrong)
        + ("\nmissing public API: " + ", ".join(missing) if missing else "")
        + "\nactual list:\n" + listing)


def test_12_the_app_role_really_cannot_call_the_internals(app, su, app_role):
    """What the catalog says, checked by calling: every function that must
    not be executable refuses the app role with 42501."""
    actual = function_grants(su, app_role)
    calls = {
        "stepup.protection_state(regclass)": "SELECT stepup.protection_state('stepup.keys')",
        "stepup.remove_protection(regclass)": "SELECT stepup.remove_protection('stepup.keys')",
        "stepup.epoch_us(timestamp with time zone)": "SELECT stepup.epoch_us(now())",
        "stepup.seal()": "SELECT stepup.seal()",
        "stepup.audit_digest()": "SELECT stepup.audit_digest()",
        "stepup.verify_audit()": "SELECT * FROM stepup.verify_audit()",
        "stepup.define_level(text,integer)": "SELECT stepup.define_level('aal9', 9)",
    }
    for sig, call in calls.items():
        if sig in actual:
            expect_error(app, call, None, "42501")
    for sig in [s for s in actual if s.startswith("stepup.protection_gaps(")]:
        expect_error(app, "SELECT * FROM stepup.protection_gaps('stepup.keys', '{}')", None, "42501")
    expect_error(app, "SELECT * FROM stepup.ddl_gaps(0, true)", None, "42501")
    expect_error(app, "SELECT stepup.accept_ddl('stepup.keys')", None, "42501")


# === 8b. sealing on a schedule =================================================================

def test_8b_a_preloaded_library_seals_every_database_on_a_schedule():
    """With shared_preload_libraries = 'pg_stepup' and stepup.seal_interval,
    a background worker seals each database that has pg_stepup, with nobody
    calling seal(); 0 turns it off (after a reload)."""
    from soak import Cluster  # scripts/, on sys.path through conftest
    cluster = Cluster("shared_preload_libraries = 'pg_stepup'", "stepup.seal_interval = 1")
    try:
        cluster.start()
        with psycopg.connect(cluster.conninfo("postgres"), autocommit=True) as admin:
            for db in ("sealed_a", "sealed_b", "no_extension"):
                admin.execute(f"CREATE DATABASE {db}")
        for db in ("sealed_a", "sealed_b"):
            with psycopg.connect(cluster.conninfo(db), autocommit=True) as c:
                c.execute("CREATE EXTENSION pg_stepup")
                c.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
                c.execute("SELECT stepup.protect('t')")
                c.execute("INSERT INTO t VALUES (1, 'a'), (2, 'b')")  # audited, not gated

        def links(db):
            with psycopg.connect(cluster.conninfo(db), autocommit=True) as c:
                return scalar(c, "SELECT count(*) FROM stepup.audit_chain")

        deadline = time.time() + 30
        while not (links("sealed_a") == 2 and links("sealed_b") == 2):
            assert time.time() < deadline, "the sealer worker sealed nothing within 30 s"
            time.sleep(0.5)
        with psycopg.connect(cluster.conninfo("sealed_a"), autocommit=True) as c:
            assert c.execute("SELECT ok, entries FROM stepup.verify_audit()").fetchone() == (True, 2)
            # A superuser who terminates the launcher does not end sealing:
            # the postmaster starts it again (restart time 10 s).
            launcher = "FROM pg_stat_activity WHERE backend_type = 'pg_stepup sealer' AND coalesce(datid, 0) = 0"
            assert scalar(c, f"SELECT count(pg_terminate_backend(pid)) {launcher}") == 1
            c.execute("INSERT INTO t VALUES (4, 'd')")
            deadline = time.time() + 30
            while links("sealed_a") != 3:
                assert time.time() < deadline, "no sealing within 30 s of terminating the launcher"
                time.sleep(0.5)
            assert scalar(c, f"SELECT count(*) {launcher}") == 1
            # Off: after a reload, new entries stay unsealed.
            c.execute("ALTER SYSTEM SET stepup.seal_interval = 0")
            c.execute("SELECT pg_reload_conf()")
            time.sleep(2)
            c.execute("INSERT INTO t VALUES (3, 'c')")
            time.sleep(3)
            assert scalar(c, "SELECT count(*) FROM stepup.audit_chain") == 3
            # An application role cannot change the schedule.
            c.execute("CREATE ROLE app_sealer LOGIN")
        with psycopg.connect(cluster.conninfo("sealed_a", user="app_sealer"), autocommit=True) as app:
            expect_error(app, "SET stepup.seal_interval = 1", None, "55P02")
            with pytest.raises(psycopg.Error) as caught:
                app.execute("ALTER SYSTEM SET stepup.seal_interval = 1")
            assert caught.value.sqlstate == "42501"
    finally:
        cluster.remove()
