"""How long a held assertion lives: transaction scope (the default), savepoints,
session scope, clear(), DISCARD ALL, replacement."""
import psycopg
import pytest
from psycopg import sql

from conftest import current, current_jti, expect_error, jws_payload, present, satisfied, unique


def jti(token):
    return jws_payload(token)["jti"]


def assert_nothing_held(conn):
    assert current(conn) is None
    assert satisfied(conn, "aal1", "1 hour") is False


def assert_holds(conn, token):
    assert current_jti(conn) == jti(token)
    assert satisfied(conn, "aal2", "5 minutes") is True


# --- transaction scope --------------------------------------------------------

@pytest.mark.parametrize("end", ["COMMIT", "ROLLBACK", "END", "ABORT"])
def test_transaction_end_drops_assertion(app, hs, end):
    token = hs.token()
    app.execute("BEGIN")
    present(app, token)
    assert_holds(app, token)
    app.execute(end)
    with app.transaction():
        assert_nothing_held(app)


def test_explicit_transaction_scope_is_the_default(app, hs):
    token = hs.token()
    with app.transaction():
        present(app, token, "transaction")
        assert_holds(app, token)
    with app.transaction():
        assert_nothing_held(app)


def test_autocommit_statement_is_its_own_transaction(app, hs):
    # Behind a transaction pooler every statement may land on another client.
    present(app, hs.token())
    assert_nothing_held(app)


def test_non_autocommit_connection(app_connect, hs):
    conn = app_connect(autocommit=False)
    token = hs.token()
    present(conn, token)
    assert_holds(conn, token)
    conn.commit()
    assert_nothing_held(conn)
    conn.rollback()


def test_failed_transaction_then_commit_drops_assertion(app, hs):
    app.execute("BEGIN")
    present(app, hs.token())
    with pytest.raises(psycopg.errors.DivisionByZero):
        app.execute("SELECT 1/0")
    app.execute("COMMIT")  # reported as ROLLBACK
    assert_nothing_held(app)


def test_prepared_transaction_drops_assertion(su, hs):
    gid = unique("stepup-it")
    su.execute("BEGIN")
    present(su, hs.token())
    su.execute(f"PREPARE TRANSACTION '{gid}'")
    try:
        assert_nothing_held(su)
    finally:
        su.execute(f"ROLLBACK PREPARED '{gid}'")


def test_assertion_is_invisible_to_other_sessions(app_connect, hs):
    first, second = app_connect(), app_connect()
    token = hs.token()
    present(first, token, "session")
    assert_nothing_held(second)
    with second.transaction():
        present(second, hs.token())
    assert_holds(first, token)


# --- savepoints ---------------------------------------------------------------

def test_rollback_to_savepoint_restores_earlier_assertion(app, hs):
    before, inside = hs.token(), hs.token(acr="aal3")
    with app.transaction():
        present(app, before)
        app.execute("SAVEPOINT s")
        present(app, inside)
        assert current_jti(app) == jti(inside)
        assert satisfied(app, "aal3", "5 minutes") is True
        app.execute("ROLLBACK TO SAVEPOINT s")
        assert_holds(app, before)
        assert satisfied(app, "aal3", "5 minutes") is False


def test_rollback_to_savepoint_with_nothing_before(app, hs):
    with app.transaction():
        app.execute("SAVEPOINT s")
        present(app, hs.token())
        app.execute("ROLLBACK TO SAVEPOINT s")
        assert_nothing_held(app)


def test_nested_savepoints(app, hs):
    a, b, c = hs.token(), hs.token(), hs.token()
    with app.transaction():
        present(app, a)
        app.execute("SAVEPOINT s1")
        present(app, b)
        app.execute("SAVEPOINT s2")
        present(app, c)
        app.execute("ROLLBACK TO SAVEPOINT s2")
        assert_holds(app, b)
        app.execute("SAVEPOINT s3")
        present(app, c)
        app.execute("RELEASE SAVEPOINT s3")
        assert_holds(app, c)
        app.execute("ROLLBACK TO SAVEPOINT s1")
        assert_holds(app, a)


def test_released_savepoint_keeps_assertion_until_rollback(app, hs):
    before, inside = hs.token(), hs.token()
    app.execute("BEGIN")
    present(app, before)
    app.execute("SAVEPOINT s")
    present(app, inside)
    app.execute("RELEASE SAVEPOINT s")
    assert_holds(app, inside)
    app.execute("ROLLBACK")
    assert_nothing_held(app)


def test_failed_present_in_savepoint_keeps_earlier_assertion(app, hs):
    before = hs.token()
    with app.transaction():
        present(app, before)
        app.execute("SAVEPOINT s")
        with pytest.raises(psycopg.Error) as caught:
            present(app, hs.token(acr="gold"))
        assert caught.value.sqlstate == "SU002"
        app.execute("ROLLBACK TO SAVEPOINT s")
        assert_holds(app, before)


@pytest.mark.parametrize("fail,expect_inner", [(True, False), (False, True)])
def test_plpgsql_exception_block(app, hs, fail, expect_inner):
    # An EXCEPTION block is a subtransaction: an error in it undoes its present().
    before, inner = hs.token(), hs.token()
    block = sql.SQL("""DO $do$ BEGIN
        PERFORM stepup.present({inner});
        IF {fail} THEN RAISE EXCEPTION 'boom'; END IF;
    EXCEPTION WHEN raise_exception THEN NULL;
    END $do$""").format(inner=sql.Literal(inner), fail=sql.Literal(fail))
    with app.transaction():
        present(app, before)
        app.execute(block)
        assert_holds(app, inner if expect_inner else before)


def test_clear_in_rolled_back_savepoint_is_undone(app, hs):
    token = hs.token()
    with app.transaction():
        present(app, token)
        app.execute("SAVEPOINT s")
        app.execute("SELECT stepup.clear()")
        assert_nothing_held(app)
        app.execute("ROLLBACK TO SAVEPOINT s")
        assert_holds(app, token)


# --- session scope ------------------------------------------------------------

def test_session_scope_survives_commit(app, hs):
    token = hs.token()
    with app.transaction():
        present(app, token, "session")
    with app.transaction():
        assert_holds(app, token)
    assert_holds(app, token)  # and autocommit statements


def test_session_scope_dropped_by_clear(app, hs):
    present(app, hs.token(), "session")
    app.execute("SELECT stepup.clear()")
    assert_nothing_held(app)


def test_session_scope_dropped_by_discard_all(app, hs):
    present(app, hs.token(), "session")
    app.execute("DISCARD ALL")
    assert_nothing_held(app)


@pytest.mark.parametrize("statement", ["DISCARD PLANS", "DISCARD TEMP", "RESET ALL"])
def test_session_scope_kept_by_lesser_resets(app, hs, statement):
    token = hs.token()
    present(app, token, "session")
    app.execute(statement)
    assert_holds(app, token)


def test_rollback_restores_session_assertion(app, hs):
    held = hs.token()
    present(app, held, "session")
    for change in (lambda: present(app, hs.token()), lambda: app.execute("SELECT stepup.clear()")):
        app.execute("BEGIN")
        change()
        assert current_jti(app) != jti(held)
        app.execute("ROLLBACK")
        assert_holds(app, held)


def test_transaction_scoped_replacement_of_session_assertion_ends_at_commit(app, hs):
    present(app, hs.token(), "session")
    with app.transaction():
        present(app, hs.token())
    assert_nothing_held(app)


def test_session_clear_committed_is_final(app, hs):
    present(app, hs.token(), "session")
    with app.transaction():
        app.execute("SELECT stepup.clear()")
    assert_nothing_held(app)


# --- replacement and arguments ------------------------------------------------

@pytest.mark.parametrize("scope", ["transaction", "session"])
def test_second_present_replaces_first(app, hs, scope):
    first, second = hs.token(acr="aal3"), hs.token(acr="aal1")
    with app.transaction():
        present(app, first, scope)
        assert current_jti(app) == jti(first)
        present(app, second, scope)
        assert current_jti(app) == jti(second)
        assert satisfied(app, "aal2", "5 minutes") is False


@pytest.mark.parametrize("scope", ["forever", "", None])
def test_invalid_scope(app, hs, scope):
    err = expect_error(app, "SELECT stepup.present(%s, %s::text)", [hs.token(), scope], "22023")
    assert err.diag.message_primary == "scope must be 'transaction' or 'session'"


def test_session_assertion_presented_in_a_prepared_transaction_is_discarded(su, hs):
    """The prepared transaction's fate is decided later, elsewhere: what it
    changed in this backend is discarded at PREPARE, as on abort."""
    gid = unique("stepup-it")
    su.execute("BEGIN")
    present(su, hs.token(), "session")
    su.execute(f"PREPARE TRANSACTION '{gid}'")
    try:
        assert_nothing_held(su)
    finally:
        su.execute(f"ROLLBACK PREPARED '{gid}'")
    assert_nothing_held(su)
