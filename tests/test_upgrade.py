"""ALTER EXTENSION pg_stepup UPDATE from 0.1.0 (its install script is kept
in sql/releases/) with data in place: keys, levels, a protected table with
audited changes and a sealed chain; after the update everything still works,
the chain verifies against the digest saved before, and the extension's
objects are the same as those of a fresh 0.2.0 install."""
import json
import secrets
import time
import uuid

import jwt
import psycopg
import pytest
from psycopg import sql

from conftest import APP_ROLE, conninfo, expect_error, scalar

# Everything the extension owns, one line per property, in a form that does
# not depend on OIDs or creation order.
DESCRIBE = """
WITH ext AS (SELECT oid FROM pg_extension WHERE extname = 'pg_stepup'),
members AS (
    SELECT d.classid, d.objid FROM pg_depend d, ext
     WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e')
SELECT 'function ' || p.oid::regprocedure || ' returns ' || pg_get_function_result(p.oid)
       || ' ' || p.provolatile::text || p.proparallel::text || p.proisstrict::text || p.prosecdef::text
       || ' lang=' || l.lanname || ' src=' || md5(p.prosrc) || ' bin=' || coalesce(p.probin, '-')
       || ' config=' || coalesce(p.proconfig::text, '-') || ' acl=' || coalesce(p.proacl::text, '-')
       || ' args=' || pg_get_function_arguments(p.oid)
       || ' comment=' || coalesce(md5(obj_description(p.oid, 'pg_proc')), '-')
  FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
  JOIN pg_language l ON l.oid = p.prolang
UNION ALL
SELECT 'relation ' || c.oid::regclass || ' kind=' || c.relkind::text || ' rls=' || c.relrowsecurity::text
       || c.relforcerowsecurity::text || ' acl=' || coalesce(c.relacl::text, '-')
       || ' comment=' || coalesce(md5(obj_description(c.oid, 'pg_class')), '-')
       || ' view=' || coalesce(md5(pg_get_viewdef(c.oid)), '-')
  FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
UNION ALL
SELECT 'column ' || c.oid::regclass || '.' || a.attname
       -- The position among the live columns: an update drops columns
       -- where a fresh install never had them.
       || ' #' || (SELECT count(*) FROM pg_attribute l WHERE l.attrelid = a.attrelid AND l.attnum > 0
                     AND NOT l.attisdropped AND l.attnum <= a.attnum) || ' '
       || format_type(a.atttypid, a.atttypmod) || ' notnull=' || a.attnotnull::text
       || ' default=' || coalesce(pg_get_expr(ad.adbin, ad.adrelid), '-')
  FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
UNION ALL
SELECT 'constraint ' || co.conrelid::regclass || ' ' || co.conname || ' ' || pg_get_constraintdef(co.oid)
  FROM members m JOIN pg_constraint co ON m.classid = 'pg_class'::regclass AND co.conrelid = m.objid
UNION ALL
SELECT 'index ' || pg_get_indexdef(i.indexrelid)
  FROM members m JOIN pg_index i ON m.classid = 'pg_class'::regclass AND i.indrelid = m.objid
UNION ALL
SELECT 'trigger ' || pg_get_triggerdef(t.oid) || ' enabled=' || t.tgenabled::text
  FROM members m JOIN pg_trigger t ON m.classid = 'pg_class'::regclass AND t.tgrelid = m.objid
 WHERE NOT t.tgisinternal
UNION ALL
SELECT 'policy ' || po.polrelid::regclass || ' ' || po.polname || ' ' || po.polcmd::text
       || ' ' || coalesce(pg_get_expr(po.polqual, po.polrelid), '-')
  FROM members m JOIN pg_policy po ON m.classid = 'pg_class'::regclass AND po.polrelid = m.objid
UNION ALL
SELECT 'event trigger ' || e.evtname || ' ' || e.evtevent || ' ' || e.evtfoid::regproc || ' ' || e.evtenabled::text
  FROM members m JOIN pg_event_trigger e ON m.classid = 'pg_event_trigger'::regclass AND e.oid = m.objid
UNION ALL
SELECT 'member of another kind ' || m.classid::regclass
  FROM members m
 WHERE m.classid NOT IN ('pg_proc'::regclass, 'pg_class'::regclass, 'pg_event_trigger'::regclass,
                         'pg_type'::regclass)
UNION ALL
SELECT 'config dump ' || c::regclass || ' ' || coalesce(w, '-')
  FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS x(c, w)
 WHERE e.extname = 'pg_stepup'
UNION ALL
SELECT 'schema acl ' || coalesce(n.nspacl::text, '-') FROM pg_namespace n WHERE n.nspname = 'stepup'
ORDER BY 1
"""


def create_db(name):
    with psycopg.connect(conninfo("postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        admin.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
            sql.Identifier(name), sql.Identifier(APP_ROLE)))


def drop_db(name):
    with psycopg.connect(conninfo("postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def databases(app_role):
    names = [f"stepup_upg_{uuid.uuid4().hex[:8]}", f"stepup_fresh_{uuid.uuid4().hex[:8]}"]
    for n in names:
        create_db(n)
    yield names
    for n in names:
        drop_db(n)


def hs256_token(secret, kid, aud, jti=None, **claims):
    now = int(time.time())
    body = {"sub": "alice", "aud": aud, "iat": now, "exp": now + 300, "auth_time": now - 5,
            "acr": "aal2", "amr": ["otp"], "jti": jti or str(uuid.uuid4())}
    body.update(claims)
    return jwt.encode(body, secret, algorithm="HS256", headers={"kid": kid})


def test_update_from_0_1_0_with_data_in_place(databases):
    old, fresh = databases
    secret = secrets.token_bytes(32)
    su = psycopg.connect(conninfo(old), autocommit=True)
    su.execute("CREATE EXTENSION pg_stepup VERSION '0.1.0'")
    assert scalar(su, "SELECT extversion FROM pg_extension WHERE extname = 'pg_stepup'") == "0.1.0"
    su.execute("SELECT stepup.add_key('old-hs', %s)", [secret])
    su.execute("SELECT stepup.define_level('aal2plus', 25)")
    su.execute(f"CREATE SCHEMA bank AUTHORIZATION {APP_ROLE}")
    app = psycopg.connect(conninfo(old, user=APP_ROLE), autocommit=False)
    app.execute("CREATE TABLE bank.payouts (id int PRIMARY KEY, iban text, amount numeric)")
    app.execute("INSERT INTO bank.payouts VALUES (1, 'DE00', 10), (2, 'DE01', 20000)")
    app.commit()
    su.execute("SELECT stepup.protect('bank.payouts', columns => '{iban}', one_time => true)")
    # A row filter: 0.1.0 kept its parse tree in stepup.protected; 0.2.0
    # keeps it in the table's policy stepup_filter.
    app.execute("CREATE TABLE bank.limits (id int PRIMARY KEY, amount numeric)")
    app.execute("INSERT INTO bank.limits VALUES (1, 10), (2, 50000)")
    app.commit()
    su.execute("SELECT stepup.protect('bank.limits', row_filter => 'amount >= 10000')")
    for i, iban in enumerate(["DE10", "DE11"]):
        app.execute("SELECT stepup.present(%s)", [hs256_token(secret, "old-hs", old, jti=f"before-{i}")])
        app.execute("UPDATE bank.payouts SET iban = %s WHERE id = 1", [iban])
        app.commit()
    digest = scalar(su, "SELECT stepup.audit_digest()")
    entries_before = scalar(su, "SELECT count(*) FROM stepup.audit_log")
    assert entries_before == 2

    # The new library under 0.1.0's catalog: its filter is not read (no
    # stepup_filter policy yet), and every row counts as inside it.
    expect_error(app, "UPDATE bank.limits SET amount = 11 WHERE id = 1", None, "SU001")
    app.rollback()

    su.execute("ALTER EXTENSION pg_stepup UPDATE")
    assert scalar(su, "SELECT extversion FROM pg_extension WHERE extname = 'pg_stepup'") == "0.2.0"

    # The chain written by 0.1.0 verifies, also against the digest saved then.
    assert su.execute("SELECT ok, entries, first_bad_id FROM stepup.verify_audit()").fetchone() == (
        True, entries_before, None)
    assert su.execute("SELECT ok FROM stepup.verify_audit(%s::jsonb)", [json.dumps(digest)]).fetchone() == (True,)
    # Keys, levels and the policy are still in force.
    assert su.execute("SELECT kid, alg, source, status FROM stepup.key_info").fetchall() == [
        ("old-hs", "HS256", "add_key", "active")]
    assert scalar(su, "SELECT rank FROM stepup.levels WHERE name = 'aal2plus'") == 25
    app.close()
    app = psycopg.connect(conninfo(old, user=APP_ROLE), autocommit=False)
    err = expect_error(app, "UPDATE bank.payouts SET iban = 'XX' WHERE id = 1", None, "SU001")
    assert err.diag.message_detail.startswith('insufficient_user_authentication acr_values="aal2"')
    app.rollback()
    # A jti spent before the update stays spent.
    app.execute("SELECT stepup.present(%s)", [hs256_token(secret, "old-hs", old, jti="before-0")])
    expect_error(app, "UPDATE bank.payouts SET iban = 'XX' WHERE id = 1", None, "SU003")
    app.rollback()
    app.execute("SELECT stepup.present(%s)", [hs256_token(secret, "old-hs", old)])
    app.execute("UPDATE bank.payouts SET iban = 'DE12' WHERE id = 1")
    app.commit()
    # The row filter protects the same rows after the update.
    assert scalar(su, "SELECT count(*) FROM pg_policy WHERE polrelid = 'bank.limits'::regclass "
                      "AND polname = 'stepup_filter'") == 1
    expect_error(app, "UPDATE bank.limits SET amount = 1 WHERE id = 2", None, "SU001")
    app.rollback()
    expect_error(app, "UPDATE bank.limits SET amount = 20000 WHERE id = 1", None, "SU001")
    app.rollback()
    app.execute("UPDATE bank.limits SET amount = 11 WHERE id = 1")
    app.commit()
    entries_before += 1
    # 0.2.0's additions work on the updated database.
    su.execute("SELECT stepup.define_issuer('https://idp.example', level_claim => 'acrs')")
    assert scalar(su, "SELECT level_claim FROM stepup.issuers") == "acrs"
    rows = su.execute("SELECT kid, alg, action FROM stepup.add_jwks('https://idp.example', %s::jsonb)",
                      ['{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "ed-1", '
                       '"x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}']).fetchall()
    assert rows == [("ed-1", "EdDSA", "added")]
    assert su.execute("SELECT ok, entries FROM stepup.verify_audit()").fetchone() == (True, entries_before + 1)
    assert scalar(su, "SELECT iban FROM bank.payouts WHERE id = 1") == "DE12"
    app.close()

    # The updated extension is the fresh 0.2.0 one, object by object.
    with psycopg.connect(conninfo(fresh), autocommit=True) as f:
        f.execute("CREATE EXTENSION pg_stepup")
        want = [r[0] for r in f.execute(DESCRIBE).fetchall()]
    got = [r[0] for r in su.execute(DESCRIBE).fetchall()]
    su.close()
    assert len(want) > 100
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    assert (missing, extra) == ([], []), f"fresh install has {missing}; updated one has {extra}"


def test_update_paths(databases):
    """0.1.0 -> 0.2.0 is offered; a version that does not exist is refused."""
    old, _ = databases
    with psycopg.connect(conninfo(old), autocommit=True) as su:
        su.execute("CREATE EXTENSION pg_stepup VERSION '0.1.0'")
        paths = su.execute("SELECT source, target FROM pg_extension_update_paths('pg_stepup') "
                           "WHERE path IS NOT NULL ORDER BY 1, 2").fetchall()
        assert ("0.1.0", "0.2.0") in paths
        expect_error(su, "ALTER EXTENSION pg_stepup UPDATE TO '9.9.9'", None, "22023")
