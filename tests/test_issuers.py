"""Issuer profiles (stepup.define_issuer, stepup.issuers): audience, level
mapping, level claim (acr, acrs, aal), amr objects and freshness, header
types; one-time tables and tokens without jti."""
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from conftest import (
    assert_rejected, b64url, b64url_decode, expect_error, present, protect, satisfied, scalar,
    unique,
)

KEY = ec.generate_private_key(ec.SECP256R1())
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


@pytest.fixture
def issuer(su):
    """A fresh issuer with one ES256 key."""
    iss = f"https://{unique('idp')}.example"
    kid = unique("es")
    der = KEY.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    su.execute("SELECT stepup.add_key(%s, %s, 'ES256', %s)", [kid, der, iss])
    return iss, kid


def mint(issuer, aud, drop=(), typ=None, **claims):
    iss, kid = issuer
    now = int(time.time())
    body = {"sub": "alice", "aud": aud, "iss": iss, "iat": now, "exp": now + 300,
            "auth_time": now - 5, "acr": "aal2", "amr": ["otp"]}
    body.update(claims)
    for name in drop:
        body.pop(name)
    # PyJWT writes typ "JWT" unless told otherwise; None leaves it out.
    headers = {"kid": kid, "typ": typ}
    return jwt.encode(body, KEY, algorithm="ES256", headers=headers)


def hold(conn, token):
    """Presents with session scope, so that the next statements see it."""
    return present(conn, token, "session")


def define(su, issuer, **options):
    names = ", ".join(f"{k} => %s" for k in options)
    su.execute(f"SELECT stepup.define_issuer(%s{', ' if options else ''}{names})",
               [issuer[0], *[json.dumps(v) if isinstance(v, dict) else v for v in options.values()]])


@pytest.mark.parametrize("options,message", [
    ({"level_claim": "amr"}, "level_claim must be 'acr', 'acrs' or 'aal', not 'amr'"),
    ({"level_claim": None}, "level_claim must be 'acr', 'acrs' or 'aal', not NULL"),
    ({"levels": "[1]"}, "levels must be a non-empty JSON object mapping the issuer's values to level names"),
    ({"levels": "{}"}, "levels must be a non-empty JSON object mapping the issuer's values to level names"),
    ({"levels": '{"2": "gold"}'}, 'levels maps "2" to "gold", which is not a level in stepup.levels'),
    ({"levels": '{"2": 2}'}, 'levels maps "2" to 2, which is not a level in stepup.levels'),
    ({"accepted_types": []}, "accepted_types must list at least one type, none empty"),
    ({"accepted_types": [""]}, "accepted_types must list at least one type, none empty"),
    ({"audience": ""}, "audience must not be empty"),
])
def test_define_issuer_refuses_bad_profiles(su, issuer, options, message):
    casts = {"levels": "::jsonb", "accepted_types": "::text[]"}
    names = ", ".join(f"{k} => %s{casts.get(k, '')}" for k in options)
    err = expect_error(su, f"SELECT stepup.define_issuer(%s, {names})",
                       [issuer[0], *options.values()], "22023")
    assert err.diag.message_primary == message
    assert err.diag.message_hint
    assert scalar(su, "SELECT count(*) FROM stepup.issuers WHERE issuer = %s", [issuer[0]]) == 0


def test_define_issuer_needs_an_issuer(su):
    for bad in (None, ""):
        err = expect_error(su, "SELECT stepup.define_issuer(%s)", [bad], "22023")
        assert err.diag.message_primary == "issuer must be given"


def test_issuers_view_is_readable_and_define_replaces(su, app, issuer):
    define(su, issuer, audience="client-1", levels={"2": "aal2"}, accepted_types=["at+jwt"])
    row = app.execute("SELECT audience, levels, level_claim, accepted_types FROM stepup.issuers "
                      "WHERE issuer = %s", [issuer[0]]).fetchone()
    assert row == ("client-1", {"2": "aal2"}, "acr", ["at+jwt"])
    define(su, issuer, level_claim="acrs")
    row = app.execute("SELECT audience, levels, level_claim, accepted_types FROM stepup.issuers "
                      "WHERE issuer = %s", [issuer[0]]).fetchone()
    assert row == (None, None, "acrs", None)
    expect_error(app, "SELECT * FROM stepup.issuer_profiles", None, "42501")
    expect_error(app, "INSERT INTO stepup.issuer_profiles (issuer) VALUES ('x')", None, "42501")


def test_profile_audience_replaces_the_setting(su, dbname, issuer):
    define(su, issuer, audience="client-1")
    assert present(su, mint(issuer, "client-1"))["aud"] == "client-1"
    assert_rejected(su, mint(issuer, dbname),
                    f'aud does not match the audience stepup.define_issuer set for "{issuer[0]}"')


def test_profile_change_reaches_open_sessions(su, su_connect, dbname, issuer):
    other = su_connect()
    t = mint(issuer, dbname)
    assert present(other, t)["sub"] == "alice"
    define(su, issuer, audience="client-1")
    # The same bytes again, in a session that verified them before.
    assert_rejected(other, t, "aud does not match the audience")


def test_levels_map_the_issuers_values(su, dbname, issuer):
    define(su, issuer, levels={"1": "aal1", "2": "aal2"})
    hold(su, mint(issuer, dbname, acr="2"))
    assert satisfied(su, "aal2", "5 minutes") is True
    assert satisfied(su, "aal3", "5 minutes") is False
    hold(su, mint(issuer, dbname, acr="1"))
    assert satisfied(su, "aal2", "5 minutes") is False
    # Only mapped values count once a map is given.
    assert_rejected(su, mint(issuer, dbname, acr="aal2"), 'acr "aal2" is not a level in stepup.levels')


def test_acrs_best_ranked_member_counts(su, dbname, issuer):
    define(su, issuer, level_claim="acrs", levels={"c1": "aal2", "c3": "aal3"})
    hold(su, mint(issuer, dbname, drop=("acr",), acrs=["c0", "c1"]))
    assert satisfied(su, "aal2", "5 minutes") is True
    assert satisfied(su, "aal3", "5 minutes") is False
    hold(su, mint(issuer, dbname, drop=("acr",), acrs=["c1", "c3"]))
    assert satisfied(su, "aal3", "5 minutes") is True
    assert_rejected(su, mint(issuer, dbname, drop=("acr",), acrs=["c0"]), 'acr "c0" is not a level')
    assert_rejected(su, mint(issuer, dbname), 'required claim "acrs" is missing')


def test_aal_and_amr_timestamps_give_freshness(su, app_connect, app_schema, dbname, issuer):
    define(su, issuer, level_claim="aal")
    now = int(time.time())
    fresh = mint(issuer, dbname, drop=("acr", "auth_time"), aal="aal2",
                 amr=[{"method": "password", "timestamp": now - 3600},
                      {"method": "totp", "timestamp": now - 30}])
    claims = hold(su, fresh)
    assert claims["aal"] == "aal2"
    assert satisfied(su, "aal2", "1 minute") is True
    assert satisfied(su, "aal2", "20 seconds") is False
    assert satisfied(su, "aal2", "1 minute", ["totp"]) is True
    assert satisfied(su, "aal2", "1 minute", ["otp"]) is False
    # No auth_time, no timestamped amr: valid, yet fresh for no max_age.
    stale = mint(issuer, dbname, drop=("acr", "auth_time"), aal="aal2", amr=["totp"])
    hold(su, stale)
    assert satisfied(su, "aal1", "1 day") is False
    err = expect_error(su, "SELECT stepup.require('aal1', '1 day')", None, "SU001")
    assert err.diag.message_detail == (
        'insufficient_user_authentication acr_values="aal1" max_age=86400; the assertion does '
        "not say when the user authenticated (no auth_time, no timestamped amr), so it satisfies no max_age")
    # And a protected table refuses it the same way.
    app = app_connect(autocommit=False)
    table = f"{app_schema}.accounts"
    app.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, payout text)")
    app.execute(f"INSERT INTO {table} VALUES (1, 'DE00')")
    app.commit()
    protect(su, table, level="aal2", max_age="5 minutes")
    present(app, stale)
    err = expect_error(app, f"UPDATE {table} SET payout = 'XX' WHERE id = 1", None, "SU001")
    assert "so it satisfies no max_age" in err.diag.message_detail
    app.rollback()
    present(app, fresh)
    app.execute(f"UPDATE {table} SET payout = 'XX' WHERE id = 1")
    app.commit()
    row = su.execute("SELECT sub, acr, jti, auth_time IS NOT NULL FROM stepup.audit_log "
                     "WHERE table_name = %s AND op = 'UPDATE' ORDER BY id DESC LIMIT 1",
                     [table]).fetchone()
    assert row == ("alice", "aal2", None, True)


def test_without_a_profile_auth_time_stays_required(su, dbname, issuer):
    now = int(time.time())
    t = mint(issuer, dbname, drop=("auth_time",), amr=[{"method": "otp", "timestamp": now}])
    assert_rejected(su, t, 'required claim "auth_time" is missing')


def test_accepted_types_pin_the_header(su, dbname, issuer):
    define(su, issuer, accepted_types=["at+jwt"])
    assert present(su, mint(issuer, dbname, typ="at+jwt"))["sub"] == "alice"
    assert present(su, mint(issuer, dbname, typ="application/AT+JWT"))["sub"] == "alice"
    assert_rejected(su, mint(issuer, dbname, typ="JWT"),
                    "header typ \"JWT\" is not one the issuer's profile accepts")
    assert_rejected(su, mint(issuer, dbname), 'header has no "typ"')


def ecdsa_twin(token):
    """The same signed bytes with the other valid ECDSA signature (r, n - s):
    anyone can make it from a token they have seen."""
    head, body, sig = token.split(".")
    raw = b64url_decode(sig)
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    twin = r.to_bytes(32, "big") + (P256_ORDER - s).to_bytes(32, "big")
    # It verifies: the twin is a valid token, not a forgery the verifier
    # would refuse anyway.
    KEY.public_key().verify(encode_dss_signature(r, P256_ORDER - s),
                            f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256()))
    return f"{head}.{body}.{b64url(twin)}"


def test_one_time_without_jti_spends_the_signed_bytes(su, app_connect, app_schema, dbname, issuer):
    app = app_connect(autocommit=False)
    table = f"{app_schema}.payouts"
    app.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, iban text)")
    app.execute(f"INSERT INTO {table} VALUES (1, 'DE00')")
    app.commit()
    protect(su, table, level="aal2", max_age="5 minutes", one_time=True)
    t = mint(issuer, dbname)
    assert "jti" not in present(app, t)
    app.execute(f"UPDATE {table} SET iban = 'DE01' WHERE id = 1")
    app.commit()
    import hashlib
    replay_id = hashlib.sha256(t.rsplit(".", 1)[0].encode()).hexdigest()
    for again in (t, " " + t, ecdsa_twin(t)):
        present(app, again)
        err = expect_error(app, f"UPDATE {table} SET iban = 'DE02' WHERE id = 1", None, "SU003")
        assert err.diag.message_detail == (
            f"the assertion (no jti; replay id {replay_id}, the SHA-256 of its signed bytes) "
            "was spent by an earlier transaction")
        app.rollback()
    assert scalar(su, f"SELECT iban FROM {table} WHERE id = 1") == "DE01"
    assert scalar(su, "SELECT count(*) FROM stepup.used_jti WHERE jti = %s", [replay_id]) == 1
