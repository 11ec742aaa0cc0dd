"""stepup.protect: every policy option, its happy path and its rejection.

Tables are owned by the application role, the worst case: a SQL injection
runs as the owner. Policies are set by the superuser."""
import psycopg
import pytest
from psycopg import sql

from conftest import expect_error, present, protect, scalar, unique

ROWS = [(1, "alice", "DE01", 500, "small"), (2, "bob", "DE02", 20000, "large"),
        (3, "alice", "DE03", 15000, "large")]


@pytest.fixture
def make_table(su, app_role):
    """Creates a fresh payouts table owned by the app role; returns its name."""
    def make(rls=None):
        name = f"public.{unique('payouts').replace('-', '_')}"
        su.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, owner text, iban text, "
                   f"amount numeric, note text)")
        su.cursor().executemany(f"INSERT INTO {name} VALUES (%s, %s, %s, %s, %s)", ROWS)
        su.execute(f"ALTER TABLE {name} OWNER TO {app_role}")
        if rls:
            su.execute(f"ALTER TABLE {name} ENABLE ROW LEVEL SECURITY")
        return name
    return make


@pytest.fixture
def table(make_table, su):
    """A table protected with the defaults (UPDATE, DELETE at aal2)."""
    name = make_table()
    protect(su, name)
    return name


def rows(conn, table):
    return conn.execute(f"SELECT id, owner, iban, amount::int, note FROM {table} ORDER BY id").fetchall()


def stepped_up(conn, token, statement, params=None):
    """Runs `statement` in a transaction that presented `token`; returns its rowcount."""
    with conn.transaction():
        present(conn, token)
        return conn.execute(statement, params).rowcount


# --- the default policy -------------------------------------------------------

def test_owner_update_without_step_up_is_an_error_not_update_0(app, table):
    err = expect_error(app, f"UPDATE {table} SET iban = 'XX' WHERE id = 1", None, "SU001")
    assert err.diag.message_primary == "step-up authentication required"
    assert 'insufficient_user_authentication acr_values="aal2" max_age=300' in err.diag.message_detail
    assert "no step-up assertion is held" in err.diag.message_detail
    assert rows(app, table)[0][2] == "DE01"


def test_stepped_up_update_and_delete(app, hs, table):
    assert stepped_up(app, hs.token(), f"UPDATE {table} SET iban = 'XX' WHERE id = 1") == 1
    assert rows(app, table)[0][2] == "XX"
    assert stepped_up(app, hs.token(), f"DELETE FROM {table} WHERE id = 1") == 1
    assert [r[0] for r in rows(app, table)] == [2, 3]


def test_level_too_low_and_too_old(app, hs, table):
    with app.transaction():
        present(app, hs.token(acr="aal1"))
        err = expect_error(app, f"UPDATE {table} SET note = 'x'", None, "SU001")
        assert 'held acr "aal1"' in err.diag.message_detail
    with app.transaction():
        present(app, hs.token(auth_age=600))
        err = expect_error(app, f"DELETE FROM {table}", None, "SU001")
        assert "longer than max_age" in err.diag.message_detail


def test_insert_not_gated_by_default(app, table):
    app.execute(f"INSERT INTO {table} VALUES (9, 'carol', 'DE09', 1, NULL)")
    assert len(rows(app, table)) == 4


def test_update_touching_no_row_is_update_0(app, table):
    assert app.execute(f"UPDATE {table} SET iban = 'XX' WHERE id = 999").rowcount == 0
    assert app.execute(f"DELETE FROM {table} WHERE false").rowcount == 0


def test_multi_row_update_with_one_protected_row(app, hs, make_table, su):
    name = make_table()
    protect(su, name, row_filter="amount >= 10000")
    # Row 1 is small, rows 2 and 3 are protected: the statement fails as a whole.
    expect_error(app, f"UPDATE {name} SET note = 'all'", None, "SU001")
    assert [r[4] for r in rows(app, name)] == ["small", "large", "large"]
    # A WHERE that is not leakproof (numeric <) still decides which rows are touched.
    assert app.execute(f"UPDATE {name} SET note = 'ok' WHERE amount < 10000").rowcount == 1
    expect_error(app, f"DELETE FROM {name} WHERE amount > 100", None, "SU001")
    assert stepped_up(app, hs.token(), f"UPDATE {name} SET note = 'all'") == 3
    assert app.execute(f"DELETE FROM {name} WHERE amount < 10000").rowcount == 1


def test_operations_insert_and_truncate(app, hs, make_table, su):
    name = make_table()
    protect(su, name, operations=["insert", "TRUNCATE"])
    expect_error(app, f"INSERT INTO {name} VALUES (9, 'x', 'y', 1, NULL)", None, "SU001")
    # UPDATE and DELETE are not in this policy.
    assert app.execute(f"UPDATE {name} SET note = 'n' WHERE id = 1").rowcount == 1
    expect_error(app, f"TRUNCATE {name}", None, "SU001")
    assert stepped_up(app, hs.token(), f"INSERT INTO {name} VALUES (9, 'x', 'y', 1, NULL)") == 1
    stepped_up(app, hs.token(), f"TRUNCATE {name}")
    assert rows(app, name) == []


def test_truncate_is_gated_when_delete_is(app, hs, table):
    expect_error(app, f"TRUNCATE {table}", None, "SU001")
    assert len(rows(app, table)) == 3
    stepped_up(app, hs.token(), f"TRUNCATE {table}")
    assert rows(app, table) == []


def test_superuser_is_guarded_too(su, table):
    expect_error(su, f"UPDATE {table} SET iban = 'XX' WHERE id = 1", None, "SU001")
    expect_error(su, f"DELETE FROM {table}", None, "SU001")


def test_replica_mode_does_not_skip_the_guard(su, table):
    su.execute("SET session_replication_role = replica")
    expect_error(su, f"UPDATE {table} SET iban = 'XX' WHERE id = 1", None, "SU001")
    expect_error(su, f"TRUNCATE {table}", None, "SU001")
    su.execute("RESET session_replication_role")


def test_copy_and_on_conflict_are_guarded(app, make_table, su):
    name = make_table()
    protect(su, name, operations=["INSERT", "UPDATE"])
    with pytest.raises(psycopg.Error) as e:
        with app.transaction():
            with app.cursor().copy(f"COPY {name} FROM STDIN") as copy:
                copy.write_row((10, "x", "y", 1, None))
    assert e.value.sqlstate == "SU001"
    protect_update_only = make_table()
    protect(su, protect_update_only)
    expect_error(app, f"INSERT INTO {protect_update_only} VALUES (1, 'x', 'y', 1, NULL) "
                      f"ON CONFLICT (id) DO UPDATE SET iban = 'hijack'", None, "SU001")


# --- columns -------------------------------------------------------------------

def test_columns(app, hs, make_table, su):
    name = make_table()
    protect(su, name, columns=["iban", "amount"])
    assert app.execute(f"UPDATE {name} SET note = 'free'").rowcount == 3
    # Setting a protected column to the value it has is no change.
    assert app.execute(f"UPDATE {name} SET iban = iban, note = 'same'").rowcount == 3
    expect_error(app, f"UPDATE {name} SET iban = 'XX' WHERE id = 1", None, "SU001")
    expect_error(app, f"UPDATE {name} SET amount = NULL WHERE id = 1", None, "SU001")
    assert stepped_up(app, hs.token(), f"UPDATE {name} SET iban = 'XX' WHERE id = 1") == 1
    expect_error(app, f"DELETE FROM {name} WHERE id = 1", None, "SU001")


# --- row_filter -----------------------------------------------------------------

def test_row_filter_binds_owner_through_rls(app, hs, make_table, su):
    name = make_table()
    protect(su, name, row_filter="amount >= 10000", operations=["INSERT", "UPDATE", "DELETE"])
    forced = scalar(su, "SELECT relrowsecurity AND relforcerowsecurity FROM pg_class WHERE oid = %s::regclass",
                    [name])
    assert forced is True
    # Unprotected rows read and write as before, for the owner too.
    assert len(rows(app, name)) == 3
    assert app.execute(f"UPDATE {name} SET note = 'n' WHERE id = 1").rowcount == 1
    app.execute(f"INSERT INTO {name} VALUES (4, 'x', 'y', 5, NULL)")
    assert app.execute(f"DELETE FROM {name} WHERE id = 4").rowcount == 1
    # Protected rows raise, whichever way they are reached.
    expect_error(app, f"UPDATE {name} SET note = 'n' WHERE id = 2", None, "SU001")
    expect_error(app, f"DELETE FROM {name} WHERE id = 3", None, "SU001")
    expect_error(app, f"INSERT INTO {name} VALUES (5, 'x', 'y', 50000, NULL)", None, "SU001")
    # Moving a row into the filter is a protected change too.
    expect_error(app, f"UPDATE {name} SET amount = 99999 WHERE id = 1", None, "SU001")
    assert stepped_up(app, hs.token(), f"UPDATE {name} SET note = 'ok' WHERE id = 2") == 1


def test_row_filter_for_superuser_is_enforced_by_the_trigger(su, hs, make_table):
    name = make_table()
    protect(su, name, row_filter="amount >= 10000")
    assert su.execute(f"UPDATE {name} SET note = 'n' WHERE id = 1").rowcount == 1
    expect_error(su, f"UPDATE {name} SET note = 'n' WHERE id = 2", None, "SU001")


def test_row_filter_keeps_the_tables_own_policies(app_connect, su, make_table, app_role):
    name = make_table(rls=True)
    reader = unique("reader").replace("-", "_")
    su.execute(f"CREATE ROLE {reader} LOGIN")
    try:
        su.execute(f"GRANT SELECT, UPDATE ON {name} TO {reader}")
        su.execute(f"CREATE POLICY mine ON {name} USING (owner = 'alice')")
        protect(su, name, row_filter="amount >= 10000")
        conn = app_connect()
        # The owner kept its bypass of the table's own (not forced) policies.
        assert len(rows(conn, name)) == 3
        other = psycopg.connect(conn.info.dsn.replace(f"user={app_role}", f"user={reader}"), autocommit=True)
        try:
            assert [r[0] for r in rows(other, name)] == [1, 3]
            assert other.execute(f"UPDATE {name} SET note = 'n' WHERE id = 1").rowcount == 1
            assert other.execute(f"UPDATE {name} SET note = 'n' WHERE id = 2").rowcount == 0
            expect_error(other, f"UPDATE {name} SET note = 'n' WHERE id = 3", None, "SU001")
        finally:
            other.close()
    finally:
        su.execute(f"DROP OWNED BY {reader}")
        su.execute(f"DROP ROLE {reader}")


# --- subject_column -----------------------------------------------------------------

def test_subject_column(app, hs, make_table, su):
    name = make_table()
    protect(su, name, subject_column="owner")
    assert stepped_up(app, hs.token(sub="alice"), f"UPDATE {name} SET note = 'a' WHERE id = 1") == 1
    with app.transaction():
        present(app, hs.token(sub="alice"))
        err = expect_error(app, f"UPDATE {name} SET note = 'a' WHERE id = 2", None, "SU001")
        assert "sub is not the row's \"owner\"" in err.diag.message_detail
        # Handing one's row to someone else is refused too.
        expect_error(app, f"UPDATE {name} SET owner = 'mallory' WHERE id = 1", None, "SU001")
        expect_error(app, f"TRUNCATE {name}", None, "SU001")
    assert stepped_up(app, hs.token(sub="bob"), f"DELETE FROM {name} WHERE id = 2") == 1


# --- methods -------------------------------------------------------------------------

def test_methods(app, hs, make_table, su):
    name = make_table()
    protect(su, name, methods=["hwk", "fpt", "face"])
    with app.transaction():
        present(app, hs.token(amr=["otp"]))
        err = expect_error(app, f"UPDATE {name} SET note = 'x' WHERE id = 1", None, "SU001")
        assert 'amr_values="hwk fpt face"' in err.diag.message_detail
        assert "amr [otp] holds none of the methods accepted" in err.diag.message_detail
    assert stepped_up(app, hs.token(amr=["pwd", "hwk"]), f"UPDATE {name} SET note = 'x' WHERE id = 1") == 1


# --- one_time ---------------------------------------------------------------------------

def test_one_time_replay_from_another_connection(app, app_connect, hs, make_table, su):
    name = make_table()
    protect(su, name, one_time=True)
    token = hs.token()
    with app.transaction():
        present(app, token)
        # One transaction may write several rows and statements with it.
        assert app.execute(f"UPDATE {name} SET note = 'a' WHERE id = 1").rowcount == 1
        assert app.execute(f"UPDATE {name} SET note = 'b' WHERE id > 1").rowcount == 2
    other = app_connect()
    with other.transaction():
        present(other, token)
        err = expect_error(other, f"UPDATE {name} SET note = 'c' WHERE id = 1", None, "SU003")
        assert err.diag.message_primary == "step-up assertion already used"
        assert scalar(other, "SELECT stepup.current()->>'jti'") in err.diag.message_detail
    with app.transaction():
        present(app, token)
        expect_error(app, f"DELETE FROM {name} WHERE id = 1", None, "SU003")
    assert [r[4] for r in rows(app, name)] == ["a", "b", "b"]


def test_one_time_rolled_back_use_spends_nothing(app, app_connect, hs, make_table, su):
    name = make_table()
    protect(su, name, one_time=True)
    token = hs.token()
    app.execute("BEGIN")
    present(app, token)
    app.execute(f"UPDATE {name} SET note = 'rolled back' WHERE id = 1")
    app.execute("ROLLBACK")
    # A savepoint rolled back gives the jti back as well.
    other = app_connect()
    with other.transaction():
        present(other, token)
        with pytest.raises(psycopg.errors.DivisionByZero):
            with other.transaction():
                other.execute(f"UPDATE {name} SET note = 'x' WHERE id = 1")
                other.execute("SELECT 1/0")
        assert other.execute(f"UPDATE {name} SET note = 'kept' WHERE id = 1").rowcount == 1
    assert rows(app, name)[0][4] == "kept"
    with app.transaction():
        present(app, token)
        expect_error(app, f"UPDATE {name} SET note = 'again' WHERE id = 1", None, "SU003")


def test_one_time_concurrent_use_lets_one_win(app_connect, hs, make_table, su):
    name = make_table()
    protect(su, name, one_time=True)
    token = hs.token()
    a, b = app_connect(autocommit=False), app_connect(autocommit=False)
    present(a, token)
    present(b, token)
    a.execute(f"UPDATE {name} SET note = 'a' WHERE id = 1")
    # b's spend waits on a's uncommitted row; make it fail fast once a commits.
    import threading
    result = {}

    def run_b():
        try:
            b.execute(f"UPDATE {name} SET note = 'b' WHERE id = 2")
            result["b"] = "ok"
        except psycopg.Error as e:
            result["b"] = e.sqlstate
    t = threading.Thread(target=run_b)
    t.start()
    t.join(0.5)
    a.commit()
    t.join(10)
    b.rollback()
    assert result["b"] == "SU003"


# --- bind_change ------------------------------------------------------------------------

def test_bind_change_refuses_without_digest_and_names_it(app, hs, make_table, su):
    name = make_table()
    protect(su, name, bind_change=True)
    with app.transaction():
        present(app, hs.token())
        err = expect_error(app, f"UPDATE {name} SET iban = 'XX' WHERE id = 1", None, "SU004")
    expected = err.diag.message_detail.split()[3]
    assert expected == scalar(app, "SELECT stepup.change_digest(%s, 'UPDATE', '{\"id\": 1}', '{\"iban\": \"XX\"}')",
                              [name])
    assert stepped_up(app, hs.token(extra={"chg": expected}), f"UPDATE {name} SET iban = 'XX' WHERE id = 1") == 1
    # The same assertion does not authorise a different change.
    with app.transaction():
        present(app, hs.token(extra={"chg": [expected]}))
        expect_error(app, f"UPDATE {name} SET iban = 'YY' WHERE id = 1", None, "SU004")
        expect_error(app, f"UPDATE {name} SET iban = 'XX' WHERE id = 2", None, "SU004")
        expect_error(app, f"TRUNCATE {name}", None, "SU004")


def test_bind_change_every_row_of_a_statement(app, hs, make_table, su):
    name = make_table()
    protect(su, name, bind_change=True, operations=["DELETE"])
    d1, d2 = (scalar(app, "SELECT stepup.change_digest(%s, 'DELETE', %s::jsonb, '{}')", [name, f'{{"id": {i}}}'])
              for i in (1, 2))
    with app.transaction():
        present(app, hs.token(extra={"chg": [d1]}))
        expect_error(app, f"DELETE FROM {name} WHERE id IN (1, 2)", None, "SU004")
    assert stepped_up(app, hs.token(extra={"chg": [d1, d2]}), f"DELETE FROM {name} WHERE id IN (1, 2)") == 2


def test_bind_change_refuses_a_change_it_cannot_digest(app, hs, make_table, su):
    """JSON nested 128 levels deep has no digest: the change is refused as
    SU004 with the reason, never allowed and never an internal error;
    change_digest refuses the same value (22023), so no assertion could
    ever bind it. A numeric beyond an IEEE double (1e400) does have one
    now: its exact text, as a string."""
    name = make_table()
    su.execute(f"ALTER TABLE {name} ADD COLUMN meta jsonb")
    protect(su, name, bind_change=True)
    deep = "(repeat('[', 200) || repeat(']', 200))::jsonb"
    d = scalar(app, "SELECT stepup.change_digest(%s, 'UPDATE', '{\"id\": 1}', '{\"meta\": [[1]]}')", [name])
    with app.transaction():
        present(app, hs.token(extra={"chg": [d]}))
        err = expect_error(app, f"UPDATE {name} SET meta = {deep} WHERE id = 1", None, "SU004")
    assert err.diag.message_detail.startswith("this change has no digest: a value of the row cannot be canonicalized")
    assert "128 levels" in err.diag.message_hint
    expect_error(app, f"SELECT stepup.change_digest(%s, 'UPDATE', '{{\"id\": 1}}', jsonb_build_object('meta', {deep}))",
                 [name], "22023")
    # The same table still binds a change it can digest.
    assert stepped_up(app, hs.token(extra={"chg": [d]}), f"UPDATE {name} SET meta = '[[1]]' WHERE id = 1") == 1
    # 1e400 is bound by its 401-digit text.
    from test_change_digest import python_digest
    d400 = python_digest(name, "UPDATE", {"id": 1}, {"amount": 10**400})
    assert d400 == scalar(app, "SELECT stepup.change_digest(%s, 'UPDATE', '{\"id\": 1}', '{\"amount\": 1e400}')",
                          [name])
    assert stepped_up(app, hs.token(extra={"chg": [d400]}), f"UPDATE {name} SET amount = 1e400 WHERE id = 1") == 1
    # A row already holding JSON that deep (INSERT is not gated here) cannot
    # be bound either, whatever the change: the old row is rendered for the key.
    app.execute(f"INSERT INTO {name} (id, meta) VALUES (100, {deep})")
    d2 = scalar(app, "SELECT stepup.change_digest(%s, 'UPDATE', '{\"id\": 100}', '{\"note\": \"x\"}')", [name])
    with app.transaction():
        present(app, hs.token(extra={"chg": [d2]}))
        err = expect_error(app, f"UPDATE {name} SET note = 'x' WHERE id = 100", None, "SU004")
    assert "cannot be canonicalized" in err.diag.message_detail
    assert scalar(su, f"SELECT note FROM {name} WHERE id = 100") is None


def test_bind_change_big_integer_keys_do_not_collapse(app, hs, su, app_role):
    """A double cannot tell 2^53 + 1 from 2^53: a chg for the change of row
    9007199254740993 must not authorise the same change of row
    9007199254740992, and does authorise its own."""
    from test_change_digest import python_digest
    name = f"public.{unique('bigkey').replace('-', '_')}"
    su.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, note text)")
    su.execute(f"INSERT INTO {name} VALUES (9007199254740992, 'a'), (9007199254740993, 'b')")
    su.execute(f"ALTER TABLE {name} OWNER TO {app_role}")
    protect(su, name, bind_change=True)
    d = python_digest(name, "UPDATE", {"id": 9007199254740993}, {"note": "x"})
    assert d == scalar(app, "SELECT stepup.change_digest(%s, 'UPDATE', '{\"id\": 9007199254740993}', "
                            "'{\"note\": \"x\"}')", [name])
    assert d != python_digest(name, "UPDATE", {"id": 9007199254740992}, {"note": "x"})
    with app.transaction():
        present(app, hs.token(extra={"chg": [d]}))
        err = expect_error(app, f"UPDATE {name} SET note = 'x' WHERE id = 9007199254740992", None, "SU004")
        assert d not in err.diag.message_detail
    assert stepped_up(app, hs.token(extra={"chg": [d]}),
                      f"UPDATE {name} SET note = 'x' WHERE id = 9007199254740993") == 1
    assert su.execute(f"SELECT id, note FROM {name} ORDER BY id").fetchall() == [
        (9007199254740992, "a"), (9007199254740993, "x")]


# --- DDL that would weaken protection (SU006) -----------------------------------------

WEAKENINGS = [
    "ALTER TABLE {t} DISABLE TRIGGER stepup_guard",
    "ALTER TABLE {t} DISABLE TRIGGER ALL",
    "ALTER TABLE {t} RENAME COLUMN amount TO amt",
    "ALTER TABLE {t} DROP COLUMN amount CASCADE",
    "DROP TRIGGER stepup_guard ON {t}",
    "DROP TRIGGER stepup_guard_truncate ON {t}",
    "DROP POLICY stepup_update ON {t}",
    "DROP POLICY stepup_open ON {t}",
    "ALTER POLICY stepup_update ON {t} WITH CHECK (true)",
    "DROP POLICY stepup_filter ON {t}",
    "ALTER POLICY stepup_filter ON {t} USING (true)",
    "ALTER POLICY stepup_filter ON {t} USING (true OR amount >= 1e9)",
    "ALTER POLICY stepup_filter ON {t} TO nobody_at_all",
    "ALTER POLICY stepup_filter ON {t} RENAME TO other",
    "ALTER POLICY stepup_update ON {t} TO nobody_at_all",
    "ALTER TABLE {t} NO FORCE ROW LEVEL SECURITY",
    "ALTER TABLE {t} DISABLE ROW LEVEL SECURITY",
    "ALTER TABLE {t} ALTER COLUMN id TYPE bigint",
    "DROP TABLE {t}",
]


@pytest.fixture
def filtered(make_table, su):
    name = make_table()
    protect(su, name, row_filter="amount >= 10000")
    su.execute("DO $$ BEGIN CREATE ROLE nobody_at_all; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    return name


def test_postgres_keeps_the_filters_columns(app, filtered):
    """The filter is a policy of the table: Postgres itself refuses to drop
    a column it reads (with CASCADE, the guard refuses: above)."""
    err = expect_error(app, f"ALTER TABLE {filtered} DROP COLUMN amount", None, "2BP01")
    assert "policy stepup_filter" in err.diag.message_detail
    expect_error(app, f"UPDATE {filtered} SET note = 'n' WHERE id = 2", None, "SU001")


def test_in_row_filter_reads_only_rows_of_the_table(app, filtered):
    """A row of another type is refused, never read as the table's columns."""
    for row in ("ROW(1, 2, 3)", "ROW(2, 'x'::text, 'y'::text, 99999, 'n')"):
        expect_error(app, f"SELECT stepup.in_row_filter('{filtered}', {row})", None, "22023")
    assert scalar(app, f"SELECT bool_and(stepup.in_row_filter('{filtered}', t) = (t.amount >= 10000)) "
                       f"FROM {filtered} t") is True


@pytest.mark.parametrize("ddl", WEAKENINGS)
def test_owner_cannot_weaken_protection(app, filtered, ddl):
    err = expect_error(app, ddl.format(t=filtered), None, "SU006")
    assert "object:" in err.diag.message_detail
    # Nothing changed: the guard still refuses.
    expect_error(app, f"UPDATE {filtered} SET note = 'n' WHERE id = 2", None, "SU001")


@pytest.mark.parametrize("ddl", [WEAKENINGS[0], WEAKENINGS[4], WEAKENINGS[6], WEAKENINGS[10], WEAKENINGS[13]])
def test_owner_with_step_up_may(app, hs, filtered, ddl):
    with app.transaction():
        present(app, hs.token())
        app.execute(ddl.format(t=filtered))


@pytest.mark.parametrize("ddl", ["ALTER TABLE {t} ENABLE REPLICA TRIGGER stepup_guard",
                                 "ALTER TABLE {t} ENABLE TRIGGER stepup_guard_truncate",
                                 "ALTER TABLE {t} ENABLE TRIGGER ALL"])
def test_guard_triggers_are_kept_always(app, su, filtered, ddl):
    """A guard that fires only for some sessions (origin or replica) is set
    back to ALWAYS by the DDL guard itself: nothing to refuse, nothing lost."""
    app.execute(ddl.format(t=filtered))
    assert su.execute("SELECT array_agg(tgenabled::text ORDER BY tgname) FROM pg_trigger "
                      "WHERE tgrelid = %s::regclass AND tgname LIKE 'stepup_guard%%'",
                      [filtered]).fetchone()[0] == ["A", "A"]
    expect_error(app, f"UPDATE {filtered} SET note = 'n' WHERE id = 2", None, "SU001")


def test_superuser_is_the_ddl_exception(su, filtered):
    su.execute(f"ALTER TABLE {filtered} DISABLE TRIGGER stepup_guard")
    su.execute(f"ALTER TABLE {filtered} ENABLE ALWAYS TRIGGER stepup_guard")


def test_harmless_ddl_passes(app, su, filtered, app_role):
    su.execute(f"GRANT CREATE ON SCHEMA public TO {app_role}")
    app.execute(f"CREATE INDEX ON {filtered} (owner)")
    app.execute(f"ALTER TABLE {filtered} ADD COLUMN extra int")
    app.execute(f"COMMENT ON TABLE {filtered} IS 'payouts'")
    app.execute(f"CREATE POLICY more ON {filtered} AS RESTRICTIVE FOR UPDATE USING (true)")
    app.execute(f"ALTER TABLE {filtered} RENAME TO {filtered.split('.')[1]}_renamed")
    app.execute(f"ALTER TABLE {filtered}_renamed RENAME TO {filtered.split('.')[1]}")
    su.execute(f"REVOKE CREATE ON SCHEMA public FROM {app_role}")
    # The guard still works after all that.
    expect_error(app, f"UPDATE {filtered} SET note = 'n' WHERE id = 2", None, "SU001")


def test_dropped_table_is_forgotten(su, hs, app, make_table):
    name = make_table()
    protect(su, name)
    with app.transaction():
        present(app, hs.token())
        app.execute(f"DROP TABLE {name}")
    assert scalar(su, "SELECT count(*) FROM stepup.policies WHERE target::text = %s", [name]) == 0


# --- protect / unprotect / policies -----------------------------------------------------

def test_policies_view(su, app, make_table):
    name = make_table()
    protect(su, name, level="aal3", max_age="2 minutes", columns=["iban"], operations=["update"],
            methods=["hwk"], subject_column="owner")
    row = app.execute("SELECT target::text, level, max_age::text, operations, columns, row_filter, "
                      "subject_column, one_time, bind_change, methods FROM stepup.policies "
                      "WHERE target = %s::regclass", [name]).fetchone()
    assert row == (name.split(".")[1], "aal3", "00:02:00", ["UPDATE"], ["iban"], None, "owner", False, False, ["hwk"])


def test_reprotect_replaces_and_needs_the_current_step_up(su, hs, make_table, app):
    name = make_table()
    protect(su, name, level="aal3")
    with pytest.raises(psycopg.Error) as e:
        protect(su, name, level="aal1")
    assert e.value.sqlstate == "SU001"
    with su.transaction():
        present(su, hs.token(acr="aal3"))
        protect(su, name, level="aal1", operations=["DELETE"])
    assert scalar(su, "SELECT level FROM stepup.policies WHERE target = %s::regclass", [name]) == "aal1"
    assert app.execute(f"UPDATE {name} SET note = 'free now'").rowcount == 3


def test_unprotect_needs_step_up_and_restores(su, hs, make_table, app):
    name = make_table()
    protect(su, name, row_filter="amount >= 10000")
    expect_error(su, "SELECT stepup.unprotect(%s)", [name], "SU001")
    with su.transaction():
        present(su, hs.token())
        su.execute("SELECT stepup.unprotect(%s)", [name])
    assert app.execute(f"UPDATE {name} SET note = 'free'").rowcount == 3
    state = su.execute("SELECT relrowsecurity, relforcerowsecurity, "
                       "(SELECT count(*) FROM pg_trigger WHERE tgrelid = c.oid), "
                       "(SELECT count(*) FROM pg_policy WHERE polrelid = c.oid) "
                       "FROM pg_class c WHERE oid = %s::regclass", [name]).fetchone()
    assert state == (False, False, 0, 0)
    expect_error(su, "SELECT stepup.unprotect(%s)", [name], "42704")


@pytest.mark.parametrize("options,sqlstate", [
    ({"level": "aal9"}, "22023"),
    ({"level": None}, "22004"),
    ({"max_age": "0 seconds"}, "22023"),
    ({"operations": []}, "22023"),
    ({"operations": ["MERGE"]}, "22023"),
    ({"operations": ["UPDATE", None]}, "22023"),
    ({"columns": []}, "22023"),
    ({"columns": ["nope"]}, "42703"),
    ({"columns": ["iban"], "operations": ["DELETE"]}, "22023"),
    ({"subject_column": "nope"}, "42703"),
    ({"methods": []}, "22023"),
    ({"methods": [""]}, "22023"),
    ({"row_filter": " "}, "22023"),
    ({"row_filter": "no_such_column > 1"}, "42703"),
    ({"row_filter": "amount"}, "42804"),
])
def test_protect_bad_arguments(su, make_table, options, sqlstate):
    name = make_table()
    with pytest.raises(psycopg.Error) as e:
        protect(su, name, **options)
    assert e.value.sqlstate == sqlstate, e.value
    assert scalar(su, "SELECT count(*) FROM stepup.policies WHERE target = %s::regclass", [name]) == 0


def test_protect_refuses_what_is_not_a_table(su):
    su.execute("CREATE OR REPLACE VIEW public.v_protect AS SELECT 1 AS x")
    expect_error(su, "SELECT stepup.protect('public.v_protect')", None, "42809")
    expect_error(su, "SELECT stepup.protect('stepup.keys')", None, "42809")
    su.execute("CREATE TABLE IF NOT EXISTS public.no_pk (x int)")
    expect_error(su, "SELECT stepup.protect('public.no_pk', bind_change => true)", None, "42P16")


def test_app_role_cannot_protect_or_unprotect(app, table):
    expect_error(app, "SELECT stepup.protect(%s)", [table], "42501")
    expect_error(app, "SELECT stepup.unprotect(%s)", [table], "42501")
    expect_error(app, "DELETE FROM stepup.protected", None, "42501")
    expect_error(app, "SELECT stepup.remove_protection(%s)", [table], "42501")


def test_require_in_a_users_own_policy(su, hs, make_table, app):
    """The README example: large transfers need aal3 within 2 minutes."""
    name = make_table(rls=True)
    su.execute(f"CREATE POLICY everyone ON {name} USING (true)")
    su.execute(f"CREATE POLICY big ON {name} AS RESTRICTIVE FOR UPDATE "
               f"USING (amount < 10000 OR stepup.require('aal3', '2 minutes'))")
    su.execute(f"ALTER TABLE {name} FORCE ROW LEVEL SECURITY")
    assert app.execute(f"UPDATE {name} SET note = 'n' WHERE id = 1").rowcount == 1
    err = expect_error(app, f"UPDATE {name} SET note = 'n' WHERE id = 2", None, "SU001")
    assert 'acr_values="aal3" max_age=120' in err.diag.message_detail
    assert stepped_up(app, hs.token(acr="aal3"), f"UPDATE {name} SET note = 'n' WHERE id = 2") == 1


def test_bind_change_digest_computed_in_python(app, hs, su, app_role):
    """What an IdP signs, computed without the database, authorises the change:
    text, numeric, timestamptz, jsonb, NULL and unicode values, whatever the
    session's TimeZone, DateStyle and float settings."""
    from test_change_digest import python_digest
    name = f"public.{unique('typed').replace('-', '_')}"
    su.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, name text, amount numeric, "
               f"at timestamptz, meta jsonb, note text, ratio float8)")
    su.execute(f"INSERT INTO {name} VALUES (1, 'a', 1, now(), '{{}}', 'x', 0.5)")
    su.execute(f"ALTER TABLE {name} OWNER TO {app_role}")
    protect(su, name, bind_change=True, operations=["INSERT", "UPDATE"])
    app.execute("SET TimeZone = 'Asia/Kolkata'")
    app.execute("SET DateStyle = 'German, DMY'")
    app.execute("SET extra_float_digits = -3")
    update = (f"UPDATE {name} SET name = %s, amount = 10000.50, at = '2026-01-02 04:04:05.5+01', "
              f"meta = '{{\"b\": [1, 2], \"a\": null}}', note = NULL, ratio = 0.1 WHERE id = 1")
    changes = {"name": "Zoë ✓ 😀 \"q\"", "amount": 10000.5, "at": "2026-01-02T03:04:05.5+00:00",
               "meta": {"a": None, "b": [1, 2]}, "note": None, "ratio": 0.1}
    digest = python_digest(name, "UPDATE", {"id": 1}, changes)
    with app.transaction():
        present(app, hs.token(extra={"chg": [python_digest(name, "UPDATE", {"id": 1}, {"name": "other"})]}))
        err = expect_error(app, update, [changes["name"]], "SU004")
        assert digest in err.diag.message_detail
    assert stepped_up(app, hs.token(extra={"chg": digest}), update, [changes["name"]]) == 1
    inserted = {"id": 2, "name": "ü", "amount": 0.000001, "at": "1999-12-31T23:59:59+00:00",
                "meta": [1, {"x": "y"}], "note": None, "ratio": -2.5e-10}
    insert = (f"INSERT INTO {name} VALUES (2, 'ü', 0.000001, '1999-12-31 23:59:59Z', "
              f"'[1, {{\"x\": \"y\"}}]', NULL, -2.5e-10)")
    expect_error(app, insert, None, "SU001")
    assert stepped_up(app, hs.token(extra={"chg": [python_digest(name, "INSERT", {"id": 2}, inserted)]}),
                      insert) == 1


def test_search_path_cannot_redefine_the_row_filter(su, app, app_role, make_table):
    """An operator planted ahead of pg_catalog would make `amount >= 10000`
    false; the guard evaluates the filter with search_path pinned."""
    name = make_table()
    protect(su, name, row_filter="amount >= 10000")
    schema = unique("evil").replace("-", "_")
    su.execute(f"CREATE SCHEMA {schema} AUTHORIZATION {app_role}")
    app.execute(f"CREATE FUNCTION {schema}.never(numeric, integer) RETURNS boolean "
                f"LANGUAGE sql IMMUTABLE AS 'SELECT false'")
    app.execute(f"CREATE OPERATOR {schema}.>= (LEFTARG = numeric, RIGHTARG = integer, FUNCTION = {schema}.never)")
    app.execute(f"SET search_path = {schema}, pg_catalog")
    assert scalar(app, "SELECT 20000::numeric >= 10000") is False
    expect_error(app, f"UPDATE {name} SET note = 'n' WHERE id = 2", None, "SU001")
    # The superuser bypasses row security: only the trigger stands here.
    su.execute(f"SET search_path = {schema}, pg_catalog")
    expect_error(su, f"UPDATE {name} SET note = 'n' WHERE id = 2", None, "SU001")
    su.execute("RESET search_path")
    su.execute(f"DROP SCHEMA {schema} CASCADE")


def test_app_role_cannot_touch_spent_assertions(app):
    for statement in ["SELECT * FROM stepup.used_jti", "DELETE FROM stepup.used_jti",
                      "INSERT INTO stepup.used_jti VALUES ('j', 'k', 's', 1, now(), now())",
                      "UPDATE stepup.protected SET level = 'aal1'"]:
        expect_error(app, statement, None, "42501")
