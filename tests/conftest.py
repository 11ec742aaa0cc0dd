"""Fixtures and helpers for the pg_stepup integration tests.

The suite runs against an existing PostgreSQL 15 cluster with pg_stepup
installed; STEPUP_PGHOST and STEPUP_PGPORT select it (default: the dev
cluster). One database, stepup_it_<pid>, is created for the whole session
and dropped at the end, together with the application role if this session
created it.
"""
import base64
import hashlib
import hmac
import json
import os
import secrets
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))
from mint import ed25519_private, ed25519_public_hex, mint  # noqa: E402

PGHOST = os.environ.get("STEPUP_PGHOST", "/tmp/su-dev/sock")
PGPORT = os.environ.get("STEPUP_PGPORT", "55432")
SUPERUSER = "postgres"
APP_ROLE = "app_user"


def conninfo(dbname, user=SUPERUSER, **extra):
    return psycopg.conninfo.make_conninfo(host=PGHOST, port=PGPORT, user=user, dbname=dbname, **extra)


# --- database, roles, connections -------------------------------------------

@pytest.fixture(scope="session")
def dbname():
    name = f"stepup_it_{os.getpid()}"
    ident = sql.Identifier(name)
    with psycopg.connect(conninfo("postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(ident))
    try:
        with psycopg.connect(conninfo(name), autocommit=True) as c:
            c.execute("CREATE EXTENSION pg_stepup")
        yield name
    finally:
        with psycopg.connect(conninfo("postgres"), autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))


@pytest.fixture(scope="session")
def app_role(dbname):
    """A plain application role: LOGIN, no superuser, CONNECT on the test database."""
    role = sql.Identifier(APP_ROLE)
    with psycopg.connect(conninfo(dbname), autocommit=True) as c:
        created = c.execute("SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = %s)",
                            [APP_ROLE]).fetchone()[0]
        if created:
            c.execute(sql.SQL("CREATE ROLE {}").format(role))
        c.execute(sql.SQL("ALTER ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
                          "NOREPLICATION NOBYPASSRLS").format(role))
        c.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(dbname), role))
    yield APP_ROLE
    if created:
        # Runs before dbname's teardown (reverse order): the database goes
        # first, with everything the role owns there. (DROP OWNED would need
        # step-up for the tables whose policy binds subjects or changes.)
        with psycopg.connect(conninfo("postgres"), autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(role))


class Connections:
    """Opens connections for one test and closes them all when it ends."""

    def __init__(self, dbname):
        self.dbname = dbname
        self.opened = []

    def open(self, user, autocommit=True, load=True, notices=None, **extra):
        """`notices`: a list to collect (sqlstate, message) of notices in."""
        conn = psycopg.connect(conninfo(self.dbname, user=user, **extra), autocommit=autocommit)
        self.opened.append(conn)
        if notices is not None:
            # A Diagnostic is only readable inside the handler.
            conn.add_notice_handler(lambda d: notices.append((d.sqlstate, d.message_primary)))
        if load:
            # Loads the library in this backend, so its settings exist.
            conn.execute("SELECT stepup.current()")
            if not autocommit:
                conn.rollback()
        return conn

    def close(self):
        for conn in self.opened:
            conn.close()


@pytest.fixture
def connections(dbname):
    pool = Connections(dbname)
    yield pool
    pool.close()


@pytest.fixture
def su_connect(connections):
    """Factory for superuser connections (autocommit unless told otherwise)."""
    return lambda **kw: connections.open(SUPERUSER, **kw)


@pytest.fixture
def app_connect(connections, app_role):
    """Factory for connections as the non-superuser application role."""
    return lambda **kw: connections.open(app_role, **kw)


@pytest.fixture
def su(su_connect):
    return su_connect()


@pytest.fixture
def app(app_connect):
    return app_connect()


# --- keys and tokens --------------------------------------------------------

@dataclass
class Signer:
    """A registered key and what an identity provider signs with."""
    kid: str
    alg: str
    signing_key: object  # HS256: the secret bytes; EdDSA: an Ed25519PrivateKey
    material: bytes      # what stepup.add_key was given
    aud: str

    def token(self, **claims):
        claims.setdefault("aud", self.aud)
        return mint(self.kid, self.signing_key, alg=self.alg, **claims)

    def payload(self, **claims):
        """Claims as mint() would sign them, for hand-built tokens."""
        return jws_payload(self.token(**claims))


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def register_key(conn, alg, material, kid=None, issuer=None, not_before=None, not_after=None):
    kid = kid or unique(alg.lower())
    conn.execute(
        "SELECT stepup.add_key(%s, %s, %s, %s, coalesce(%s::timestamptz, now()), %s::timestamptz)",
        [kid, material, alg, issuer, not_before, not_after])
    return kid


def new_hs256(conn, aud, **key_args):
    secret = secrets.token_bytes(32)
    kid = register_key(conn, "HS256", secret, **key_args)
    return Signer(kid, "HS256", secret, secret, aud)


def new_eddsa(conn, aud, **key_args):
    seed = secrets.token_hex(32)
    public = bytes.fromhex(ed25519_public_hex(seed))
    kid = register_key(conn, "EdDSA", public, **key_args)
    return Signer(kid, "EdDSA", ed25519_private(seed), public, aud)


@pytest.fixture(scope="session")
def hs(dbname):
    """An active HS256 key (32 random bytes)."""
    with psycopg.connect(conninfo(dbname), autocommit=True) as c:
        return new_hs256(c, dbname)


@pytest.fixture(scope="session")
def ed(dbname):
    """An active EdDSA key: the database holds the public key only."""
    with psycopg.connect(conninfo(dbname), autocommit=True) as c:
        return new_eddsa(c, dbname)


def b64url(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(segment):
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def jws_payload(token):
    return json.loads(b64url_decode(token.split(".")[1]))


def encode_json(value):
    return value if isinstance(value, (bytes, str)) else json.dumps(value, separators=(",", ":"))


def hs256_jws(secret, header, payload):
    """A compact JWS over arbitrary header and payload (dicts, or raw bytes/str),
    correctly HMAC-signed, so that broken contents get past the signature."""
    signing_input = f"{b64url(encode_json(header))}.{b64url(encode_json(payload))}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def unsigned_jws(header, payload, signature=""):
    return f"{b64url(encode_json(header))}.{b64url(encode_json(payload))}.{signature}"


# --- statements -------------------------------------------------------------

def scalar(conn, query, params=None):
    return conn.execute(query, params).fetchone()[0]


def expect_error(conn, query, params=None, sqlstate=None):
    """Runs `query`, which must fail with `sqlstate`; returns the exception.

    The statement runs in its own transaction, or in a savepoint when the
    connection is inside one, so the connection stays usable afterwards."""
    assert sqlstate, "say which SQLSTATE is expected"
    with pytest.raises(psycopg.Error) as caught:
        with conn.transaction():
            conn.execute(query, params)
    err = caught.value
    assert err.sqlstate == sqlstate, f"expected {sqlstate}, got {err.sqlstate}: {err}"
    return err


def present(conn, token, scope=None):
    if scope is None:
        return scalar(conn, "SELECT stepup.present(%s)", [token])
    return scalar(conn, "SELECT stepup.present(%s, %s)", [token, scope])


def current(conn):
    return scalar(conn, "SELECT stepup.current()")


def current_jti(conn):
    return scalar(conn, "SELECT stepup.current()->>'jti'")


def satisfied(conn, level="aal1", max_age="1 hour", methods=None):
    if methods is None:
        return scalar(conn, "SELECT stepup.satisfied(%s, %s::interval)", [level, max_age])
    return scalar(conn, "SELECT stepup.satisfied(%s, %s::interval, %s::text[])", [level, max_age, methods])


def error_texts(err):
    d = err.diag
    return [t for t in (d.message_primary, d.message_detail, d.message_hint, str(err)) if t]


def assert_no_secrets(err, token, *key_material):
    """No part of the error the client sees carries the token, any of its
    segments, or key material (hex or base64url)."""
    secrets_ = [token] + [seg for seg in token.split(".") if len(seg) >= 16]
    for key in key_material:
        secrets_ += [key.hex(), b64url(key)]
    for text in error_texts(err):
        for s in secrets_:
            assert s not in text, f"error text leaks {s[:20]}...: {text[:200]}"


def assert_rejected(conn, token, detail, *key_material):
    """present(token) fails with SU002 and a DETAIL containing `detail`,
    without echoing the token or any key."""
    err = expect_error(conn, "SELECT stepup.present(%s)", [token], "SU002")
    assert err.diag.message_primary == "invalid step-up assertion"
    assert detail in (err.diag.message_detail or ""), err.diag.message_detail
    if token and len(token) >= 16:
        assert_no_secrets(err, token, *key_material)
    return err


@pytest.fixture
def app_schema(su, app_role):
    """A schema the app role owns, so it can create tables (public has no
    CREATE for it in PostgreSQL 15)."""
    name = unique("own").replace("-", "_")
    su.execute(f"CREATE SCHEMA {name} AUTHORIZATION {app_role}")
    yield name
    su.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def protect(conn, table, **options):
    """stepup.protect(table, option => value, ...)."""
    args = [sql.Literal(table)] + [
        sql.SQL("{} => {}").format(sql.Identifier(k), sql.Literal(v)) for k, v in options.items()]
    conn.execute(sql.SQL("SELECT stepup.protect({})").format(sql.SQL(", ").join(args)))
