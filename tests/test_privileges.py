"""What an application role (LOGIN, not superuser) can and cannot do:
settings are superuser-only, the key registry is out of reach, and nothing it
can run makes stepup.satisfied true without a valid assertion."""
import psycopg
import pytest
from psycopg import sql

from conftest import (
    APP_ROLE, assert_rejected, current, expect_error, present, satisfied, scalar, unique,
)

DEFAULTS = {"stepup.leeway": "30s", "stepup.audience": "", "stepup.max_lifetime": "15min"}


def assert_default_settings(conn):
    for name, value in DEFAULTS.items():
        assert scalar(conn, sql.SQL("SHOW {}").format(sql.Identifier(name))) == value, name


def assert_nothing_held(conn):
    with conn.transaction():
        assert current(conn) is None
        assert satisfied(conn, "aal1", "1 hour") is False


# --- settings -----------------------------------------------------------------

SETTING_CHANGES = {
    "set_leeway_out_of_range": "SET stepup.leeway = '100000'",
    "set_leeway_in_range": "SET stepup.leeway = 600",
    "set_audience": "SET stepup.audience = 'x'",
    "set_max_lifetime": "SET stepup.max_lifetime = 86400",
    "set_session": "SET SESSION stepup.max_lifetime = 3600",
    "set_local_leeway": "SET LOCAL stepup.leeway = 600",
    "set_local_audience": "SET LOCAL stepup.audience = 'x'",
    "set_to_default": "SET stepup.leeway TO DEFAULT",
    "reset": "RESET stepup.audience",
    "set_config_session": "SELECT set_config('stepup.leeway', '99999', false)",
    "set_config_local": "SELECT set_config('stepup.audience', 'x', true)",
    "alter_role_set": f"ALTER ROLE {APP_ROLE} SET stepup.leeway = 600",
    "alter_role_in_database_set": f"ALTER ROLE {APP_ROLE} IN DATABASE {{db}} SET stepup.leeway = 600",
    "alter_database_set": "ALTER DATABASE {db} SET stepup.leeway = 600",
    "function_set_clause": "CREATE FUNCTION pg_temp.wide() RETURNS int LANGUAGE sql "
                           "SET stepup.leeway = 600 AS 'SELECT 1'",
}


@pytest.mark.parametrize("statement", SETTING_CHANGES.values(), ids=SETTING_CHANGES.keys())
def test_app_role_cannot_change_settings(app, dbname, statement):
    expect_error(app, statement.format(db=dbname), None, "42501")
    assert_default_settings(app)


def test_superuser_settings_are_what_the_app_role_sees(su, app):
    # The refusals above are about privilege, not about the names.
    su.execute("SET stepup.leeway = 600")
    assert scalar(su, "SHOW stepup.leeway") == "10min"
    assert_default_settings(app)


PRE_LOAD = {
    "set": "SET stepup.leeway = 600",
    "set_config": "SELECT set_config('stepup.leeway', '600', false)",
    "startup_option": None,
}


@pytest.mark.parametrize("how", PRE_LOAD.keys())
def test_leeway_set_before_library_load_is_ignored(app_connect, hs, how):
    """Unless preloaded, the library is loaded by the first stepup call; a
    value set earlier is only a placeholder and must not survive the load."""
    notices = []
    extra = {"options": "-c stepup.leeway=600"} if how == "startup_option" else {}
    conn = app_connect(load=False, notices=notices, **extra)
    try:
        if PRE_LOAD[how]:
            conn.execute(PRE_LOAD[how])
        refused = False
    except psycopg.Error as err:  # library preloaded: refused at once
        assert err.sqlstate == "42501", err
        refused = True
    conn.execute("SELECT stepup.current()")
    if not refused:
        assert notices == [
            ("42501", 'permission denied to set parameter "stepup.leeway"')]
    assert_default_settings(conn)
    # Expired 60 s ago: accepted only if the 600 s leeway had stuck.
    assert_rejected(conn, hs.token(age=360, lifetime=300), "assertion has expired (exp)", hs.material)


def test_audience_set_before_library_load_is_ignored(app_connect, hs, dbname):
    conn = app_connect(load=False)
    conn.execute("SET stepup.audience = 'elsewhere'")
    assert_rejected(conn, hs.token(aud="elsewhere"), "aud does not match stepup.audience", hs.material)
    assert scalar(conn, "SHOW stepup.audience") == ""
    with conn.transaction():
        assert present(conn, hs.token(aud=dbname))["aud"] == dbname


def test_unknown_stepup_setting_before_load_is_removed(app_connect):
    notices = []
    conn = app_connect(load=False, notices=notices)
    conn.execute("SET stepup.anything = 'x'")
    conn.execute("SELECT stepup.current()")
    assert notices == [
        ("42602", 'invalid configuration parameter name "stepup.anything", removing it')]
    expect_error(conn, "SHOW stepup.anything", None, "42704")


@pytest.mark.parametrize("statement", [
    "SET stepup.anything = 'x'",
    "SET stepup.held = '{\"acr\": \"aal3\"}'",
    "SELECT set_config('stepup.current', 'x', false)",
])
def test_stepup_prefix_is_reserved(app, statement):
    err = expect_error(app, statement, None, "42602")
    assert err.diag.message_detail == '"stepup" is a reserved prefix.'


# --- the catalog --------------------------------------------------------------

CATALOG_ATTEMPTS = {
    "select_keys": "SELECT kid, key FROM stepup.keys",
    "select_key_column": "SELECT key FROM stepup.keys",
    "select_key_info": "SELECT * FROM stepup.key_info",
    "copy_keys": "COPY stepup.keys TO STDOUT",
    "insert_key": "INSERT INTO stepup.keys (kid, alg, key) VALUES ('mine', 'HS256', '\\x{secret}')",
    "update_keys": "UPDATE stepup.keys SET not_after = NULL",
    "delete_keys": "DELETE FROM stepup.keys",
    "truncate_keys": "TRUNCATE stepup.keys",
    "insert_level": "INSERT INTO stepup.levels VALUES ('mine', 0)",
    "update_levels": "UPDATE stepup.levels SET rank = 0",
    "delete_levels": "DELETE FROM stepup.levels",
    "truncate_levels": "TRUNCATE stepup.levels",
    "add_key": "SELECT stepup.add_key('mine', '\\x{secret}'::bytea)",
    "add_key_eddsa": "SELECT stepup.add_key('mine', '\\x{secret}'::bytea, 'EdDSA')",
    "retire_key": "SELECT stepup.retire_key('{kid}')",
    "retire_key_at": "SELECT stepup.retire_key('{kid}', now() + interval '1 year')",
    "define_level": "SELECT stepup.define_level('aal3', 0)",
    "catalog_changed": "SELECT stepup.catalog_changed()",
    "grant_keys": f"GRANT SELECT ON stepup.keys TO {APP_ROLE}",
    "disable_trigger": "ALTER TABLE stepup.levels DISABLE TRIGGER levels_changed",
    "drop_keys": "DROP TABLE stepup.keys",
    "drop_extension": "DROP EXTENSION pg_stepup",
    "replace_satisfied": "CREATE OR REPLACE FUNCTION stepup.satisfied(text, interval) RETURNS boolean "
                         "LANGUAGE sql AS 'SELECT true'",
    "create_in_stepup": "CREATE FUNCTION stepup.backdoor() RETURNS boolean LANGUAGE sql AS 'SELECT true'",
    "rename_satisfied": "ALTER FUNCTION stepup.satisfied(text, interval) RENAME TO old_satisfied",
}


@pytest.mark.parametrize("statement", CATALOG_ATTEMPTS.values(), ids=CATALOG_ATTEMPTS.keys())
def test_app_role_cannot_touch_keys_or_levels(app, su, hs, statement):
    expect_error(app, statement.format(kid=hs.kid, secret="ab" * 32), None, "42501")
    assert scalar(su, "SELECT status FROM stepup.key_info WHERE kid = %s", [hs.kid]) == "active"
    assert su.execute("SELECT name, rank FROM stepup.levels WHERE name LIKE 'aal_' ORDER BY name").fetchall() == [
        ("aal1", 1), ("aal2", 2), ("aal3", 3)]


def test_app_role_can_read_levels(app):
    levels = dict(app.execute("SELECT name, rank FROM stepup.levels").fetchall())
    assert {k: levels[k] for k in ("aal1", "aal2", "aal3")} == {"aal1": 1, "aal2": 2, "aal3": 3}


def test_app_role_can_present_and_check(app, hs, ed):
    with app.transaction():
        assert present(app, hs.token(acr="aal2"))["acr"] == "aal2"
        assert satisfied(app, "aal2", "5 minutes") is True
        assert scalar(app, "SELECT stepup.require('aal2', '5 minutes', '{otp}')") is True
        assert present(app, ed.token(acr="aal3"), "session")["acr"] == "aal3"
        assert scalar(app, "SELECT stepup.require('aal3', '5 minutes')") is True


# --- no way around a valid assertion -----------------------------------------

ATTACKS = {
    "search_path_empty": ("SET search_path = ''", None),
    "search_path_public_first": ("SET search_path = public, pg_temp, stepup", None),
    "set_role": ("SET ROLE postgres", "42501"),
    "set_session_authorization": ("SET SESSION AUTHORIZATION postgres", "42501"),
    "load_library": ("LOAD 'pg_stepup'", "42501"),
    "invalid_token": ("SELECT stepup.present('eyJhbGciOiJub25lIn0.e30.')", "SU002"),
    "invalid_token_session": ("SELECT stepup.present('x.y.z', 'session')", "SU002"),
    "clear": ("SELECT stepup.clear()", None),
    "reserved_setting": ("SET stepup.anything = 'x'", "42602"),
    "leeway": ("SET stepup.leeway = 600", "42501"),
    "discard_all": ("DISCARD ALL", None),
    "reset_all": ("RESET ALL", None),
    "replication_role": ("SET session_replication_role = replica", "42501"),
}


@pytest.mark.parametrize("statement,sqlstate", ATTACKS.values(), ids=ATTACKS.keys())
def test_nothing_satisfies_without_a_valid_assertion(app, statement, sqlstate):
    if sqlstate:
        expect_error(app, statement, None, sqlstate)
    else:
        app.execute(statement)
    assert_nothing_held(app)
    assert scalar(app, "SELECT current_user") == APP_ROLE


def test_token_for_another_audience_satisfies_nothing(app, hs):
    assert_rejected(app, hs.token(aud="other_database"), "aud does not match stepup.audience", hs.material)
    assert_nothing_held(app)


def test_shadow_functions_in_own_schema(app, su, hs, dbname):
    schema = unique("shadow").replace("-", "_")
    db = sql.Identifier(dbname)
    su.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(db, sql.Identifier(APP_ROLE)))
    try:
        app.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    finally:
        su.execute(sql.SQL("REVOKE CREATE ON DATABASE {} FROM {}").format(db, sql.Identifier(APP_ROLE)))
    assert scalar(app, "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = %s", [schema]) == APP_ROLE
    for fn in [
        "satisfied(text, interval) RETURNS boolean LANGUAGE sql AS 'SELECT true'",
        "satisfied(text, interval, text[]) RETURNS boolean LANGUAGE sql AS 'SELECT true'",
        "current() RETURNS jsonb LANGUAGE sql AS $$SELECT '{\"acr\": \"aal3\"}'::jsonb$$",
        "now() RETURNS timestamptz LANGUAGE sql AS $$SELECT '2000-01-01'::timestamptz$$",
    ]:
        app.execute(f"CREATE FUNCTION {schema}.{fn}")
    # Ahead of pg_catalog and stepup, also for the extension's first catalog load.
    app.execute(f"SET search_path = {schema}, pg_catalog, stepup")
    assert scalar(app, "SELECT satisfied('aal1', '1 hour')") is True  # the shadow is reachable
    assert scalar(app, "SELECT stepup.satisfied('aal1', '1 hour')") is False
    assert scalar(app, "SELECT stepup.satisfied('aal1', '1 hour', '{otp}')") is False
    assert scalar(app, "SELECT stepup.current()") is None
    expect_error(app, "SELECT stepup.require('aal1', '1 hour')", None, "SU001")
    # The real thing still works under the hostile search_path.
    with app.transaction():
        present(app, hs.token())
        assert scalar(app, "SELECT stepup.satisfied('aal2', '5 minutes')") is True
        assert scalar(app, "SELECT stepup.satisfied('aal3', '5 minutes')") is False
