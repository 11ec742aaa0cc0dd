"""Key registry (superuser): add_key validation, retire_key, key_info, and
that every session sees key changes at once."""
import hashlib
import secrets

import psycopg
import pytest

from conftest import (
    assert_no_secrets, assert_rejected, expect_error, new_hs256, present, scalar, unique,
)

MATERIAL = bytes(range(0x40, 0x60))  # 32 bytes, recognisable in hex


def add_key_error(su, args, sqlstate):
    """add_key(*args) fails with `sqlstate`, and the error shows no key material."""
    placeholders = ", ".join(["%s"] * len(args))
    err = expect_error(su, f"SELECT stepup.add_key({placeholders})", list(args), sqlstate)
    for key in (a for a in args if isinstance(a, bytes) and a):
        assert_no_secrets(err, key.hex(), key)
    return err


INVALID_KEYS = {
    "hs256_31_bytes": ((MATERIAL[:31],), 'HS256 key is 31 bytes; it must be at least 32 random bytes'),
    "eddsa_33_bytes": ((MATERIAL + b"x", "EdDSA"), "EdDSA key is 33 bytes; it must be the 32-byte Ed25519 public key"),
    "eddsa_31_bytes": ((MATERIAL[:31], "EdDSA"), "EdDSA key is 31 bytes"),
    "alg_none": ((MATERIAL, "none"), "unsupported alg \"none\": use one of 'HS256', 'EdDSA', 'RS256', "
                                     "'PS256', 'ES256', 'ES384'"),
    "alg_rs384": ((MATERIAL, "RS384"), 'unsupported alg "RS384"'),
    "rs256_not_der": ((MATERIAL, "RS256"), "RS256 key is not a DER SubjectPublicKeyInfo"),
    "es256_not_der": ((MATERIAL, "ES256"), "ES256 key is not a DER SubjectPublicKeyInfo"),
    "alg_lowercase": ((MATERIAL, "hs256"), 'unsupported alg "hs256"'),
}


@pytest.mark.parametrize("args,message", INVALID_KEYS.values(), ids=INVALID_KEYS.keys())
def test_add_key_refuses_unusable_material(su, args, message):
    kid = unique("bad")
    err = add_key_error(su, (kid, *args), "22023")
    assert err.diag.message_primary.startswith(f'cannot register key "{kid}": ')
    assert message in err.diag.message_primary
    assert scalar(su, "SELECT count(*) FROM stepup.key_info WHERE kid = %s", [kid]) == 0


@pytest.mark.parametrize("kid", ["", "k" * 257])
def test_add_key_kid_length(su, kid):
    err = add_key_error(su, (kid, MATERIAL), "22023")
    assert err.diag.message_primary == "kid must be 1 to 256 bytes"


def test_add_key_validity_window(su):
    err = expect_error(su, "SELECT stepup.add_key(%s, %s, 'HS256', NULL, now(), now() - interval '1 second')",
                       [unique("win"), MATERIAL], "22023")
    assert err.diag.message_primary == "not_after must be later than not_before"


@pytest.mark.parametrize("position", [0, 1, 2])
def test_add_key_null_arguments(su, position):
    args = [unique("null"), MATERIAL, "HS256"]
    args[position] = None
    expect_error(su, "SELECT stepup.add_key(%s::text, %s::bytea, %s::text)", args, "22004")


def test_kid_is_never_reused(su, dbname):
    key = new_hs256(su, dbname)
    su.execute("SELECT stepup.retire_key(%s)", [key.kid])
    err = add_key_error(su, (key.kid, secrets.token_bytes(32)), "23505")
    assert err.diag.message_primary == f'key "{key.kid}" already exists'


def test_retire_unknown_key(su):
    err = expect_error(su, "SELECT stepup.retire_key('no-such-key')", None, "42704")
    assert err.diag.message_primary == 'key "no-such-key" does not exist'


def test_retire_at_null(su, dbname):
    key = new_hs256(su, dbname)
    expect_error(su, "SELECT stepup.retire_key(%s, NULL)", [key.kid], "22004")


def status(su, kid):
    return scalar(su, "SELECT status FROM stepup.key_info WHERE kid = %s", [kid])


def test_retire_in_the_future_then_now_and_never_extended(su, app, dbname):
    key = new_hs256(su, dbname)
    su.execute("SELECT stepup.retire_key(%s, now() + interval '1 hour')", [key.kid])
    assert status(su, key.kid) == "active"
    with app.transaction():
        present(app, key.token())
    su.execute("SELECT stepup.retire_key(%s)", [key.kid])
    su.execute("SELECT stepup.retire_key(%s, now() + interval '2 hours')", [key.kid])
    assert status(su, key.kid) == "retired"
    assert_rejected(app, key.token(), f'key "{key.kid}" is retired', key.material)


def test_key_info_shows_no_material(su, dbname):
    key = new_hs256(su, dbname, issuer="https://idp.example")
    row = su.execute("SELECT * FROM stepup.key_info WHERE kid = %s", [key.kid]).fetchone()
    columns = [d.name for d in su.execute("SELECT * FROM stepup.key_info LIMIT 0").description]
    assert columns == ["kid", "alg", "issuer", "not_before", "not_after", "status", "fingerprint", "created_at",
                       "source"]
    info = dict(zip(columns, row))
    assert (info["kid"], info["alg"], info["issuer"], info["status"]) == (
        key.kid, "HS256", "https://idp.example", "active")
    assert info["fingerprint"] == hashlib.sha256(key.material).hexdigest()
    assert not any(key.material.hex() in str(v) or v == key.material for v in row)


@pytest.mark.parametrize("same_session", [False, True], ids=["other_session", "same_session"])
def test_new_key_is_seen_by_a_running_session(su, app, hs, dbname, same_session):
    conn = su if same_session else app
    with conn.transaction():
        present(conn, hs.token())  # this backend has its key cache loaded now
    key = new_hs256(su, dbname)
    with conn.transaction():
        assert present(conn, key.token())["jti"]


@pytest.mark.parametrize("variant", ["first_load", "reload"])
def test_retirement_sticks_after_a_repeatable_read_transaction(su, app, dbname, variant):
    """A key cache (re)loaded inside a REPEATABLE READ transaction whose
    snapshot predates a retirement may see the key as active there, but must
    not keep it active once that transaction is over."""
    key = new_hs256(su, dbname)
    if variant == "reload":
        with app.transaction():
            present(app, key.token())  # cache loaded while the key is active
    app.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    app.execute("SELECT 1")  # the transaction snapshot is taken here
    su.execute("SELECT stepup.retire_key(%s)", [key.kid])
    if variant == "reload":
        app.execute("SELECT count(*) FROM stepup.levels")  # takes a lock: invalidations arrive
    try:  # under the old snapshot the key may still look active: either answer is fine here
        present(app, key.token())
    except psycopg.Error as err:
        assert err.sqlstate == "SU002", err
    app.execute("COMMIT")
    assert_rejected(app, key.token(), f'key "{key.kid}" is retired', key.material)
