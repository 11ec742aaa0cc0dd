"""Defences found in review: roles that bypass table privileges, a squatted
schema, replica-mode catalog changes, key material in errors, parallel query."""
import uuid

import psycopg
import pytest
from psycopg import sql

from conftest import (assert_no_secrets, conninfo, expect_error, new_hs256, present, satisfied,
                      scalar)


@pytest.fixture
def bypass_role(su, dbname):
    """A login role made a member of pg_read_all_data and pg_write_all_data."""
    name = f"bypass_{uuid.uuid4().hex[:8]}"
    role = sql.Identifier(name)
    su.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE pg_read_all_data, pg_write_all_data").format(role))
    su.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(dbname), role))
    conn = psycopg.connect(conninfo(dbname, user=name), autocommit=True)
    yield conn
    conn.close()
    su.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(sql.Identifier(dbname), role))
    su.execute(sql.SQL("DROP ROLE {}").format(role))


def test_read_all_data_cannot_read_keys(su, bypass_role, hs):
    assert scalar(su, "SELECT count(*) FROM stepup.keys") >= 1
    assert scalar(bypass_role, "SELECT count(*) FROM stepup.keys") == 0
    levels = "SELECT count(*) FROM stepup.levels"
    assert scalar(bypass_role, levels) == scalar(su, levels) >= 3


def test_write_all_data_cannot_plant_a_key_or_rerank_levels(su, bypass_role, dbname):
    secret = bytes(range(32))
    expect_error(bypass_role, "INSERT INTO stepup.keys (kid, alg, key) VALUES ('mine', 'HS256', %s)",
                 [secret], "42501")
    bypass_role.execute("UPDATE stepup.levels SET rank = 99 WHERE name = 'aal1'")
    assert scalar(su, "SELECT rank FROM stepup.levels WHERE name = 'aal1'") == 1


def test_extension_refuses_a_schema_owned_by_another_role(su_connect, dbname):
    name = f"stepup_squat_{uuid.uuid4().hex[:8]}"
    role = f"squatter_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(conninfo("postgres"), autocommit=True)
    try:
        admin.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(role)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        with psycopg.connect(conninfo(name), autocommit=True) as c:
            c.execute(sql.SQL("CREATE SCHEMA stepup AUTHORIZATION {}").format(sql.Identifier(role)))
            err = expect_error(c, "CREATE EXTENSION pg_stepup", None, "42P06")
            assert "owned by another role" in err.diag.message_primary
            c.execute("DROP SCHEMA stepup")
            c.execute("CREATE EXTENSION pg_stepup")
            assert scalar(c, "SELECT count(*) FROM stepup.levels") == 3
    finally:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        admin.close()


def test_retirement_in_replica_mode_reaches_running_backends(su, app, dbname):
    key = new_hs256(su, dbname)
    present(app, key.token())  # the app backend has the key cached
    with su.transaction():
        su.execute("SET LOCAL session_replication_role = replica")
        su.execute("SELECT stepup.retire_key(%s)", [key.kid])
    err = expect_error(app, "SELECT stepup.present(%s)", [key.token()], "SU002")
    assert err.diag.message_detail == f'key "{key.kid}" is retired'


def test_bad_validity_window_does_not_print_the_key(su):
    secret = bytes.fromhex("ab" * 32)
    err = expect_error(su, "SELECT stepup.add_key('leak', %s, 'HS256', NULL, NULL, '2000-01-01')",
                       [secret], "22023")
    assert err.diag.message_primary == "not_after must be later than not_before"
    assert_no_secrets(err, "unused-token", secret)
    assert "abab" not in str(err)


def test_cold_cache_in_a_parallel_query(su, app_connect, hs):
    su.execute("CREATE TABLE IF NOT EXISTS public.big AS SELECT g FROM generate_series(1, 100000) g")
    su.execute("GRANT SELECT ON public.big TO app_user")
    su.execute("ANALYZE public.big")
    conn = app_connect(load=False)
    for setting in ("parallel_setup_cost = 0", "parallel_tuple_cost = 0",
                    "min_parallel_table_scan_size = 0", "max_parallel_workers_per_gather = 2"):
        conn.execute(f"SET {setting}")
    # Any catalog change empties every backend's cache; the query below then
    # loads it in parallel mode.
    su.execute("SELECT stepup.define_level('aal1', 1)")
    row = conn.execute("SELECT stepup.satisfied('aal1', '1 hour'), count(*) FROM public.big").fetchone()
    assert row == (False, 100000)
    with conn.transaction():
        present(conn, hs.token())
        row = conn.execute("SELECT stepup.satisfied('aal2', '5 minutes'), count(*) FROM public.big").fetchone()
        assert row == (True, 100000)
