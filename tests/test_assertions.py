"""stepup.present: what is accepted, what is refused (SU002) and why;
stepup.satisfied / stepup.require against the held assertion (SU001)."""
import random
import re
import secrets
import time
from datetime import datetime, timedelta, timezone

import pytest

from conftest import (
    Signer, assert_rejected, current, expect_error, hs256_jws, jws_payload, new_eddsa, new_hs256,
    present, satisfied, scalar, unique, unsigned_jws,
)

CHALLENGE = 'insufficient_user_authentication acr_values="{level}" max_age={max_age}'


@pytest.fixture
def reject(app, hs, ed):
    """reject(token, detail, *more_keys): present() as app_user must fail with
    SU002, `detail` in DETAIL, and neither the token nor any key echoed."""
    return lambda token, detail, *keys: assert_rejected(app, token, detail, hs.material, ed.material, *keys)


def expect_step_up(conn, call, detail_prefix, reason):
    """`call` (a stepup.require(...) expression) raises SU001 whose DETAIL is
    the challenge, then '; ', then `reason` (a regular expression)."""
    err = expect_error(conn, f"SELECT {call}", None, "SU001")
    assert err.diag.message_primary == "step-up authentication required"
    detail = err.diag.message_detail
    assert detail.startswith(detail_prefix + "; "), detail
    assert re.fullmatch(reason, detail[len(detail_prefix) + 2:]), detail
    return err


# --- accepted ---------------------------------------------------------------

@pytest.mark.parametrize("signer", ["hs", "ed"])
def test_pyjwt_token_is_accepted_and_its_claims_returned(request, app, signer):
    key = request.getfixturevalue(signer)
    token = key.token(sub="bob", acr="aal2", amr=["otp", "pwd"])
    with app.transaction():
        claims = present(app, token)
        assert claims["sub"] == "bob"
        assert claims["acr"] == "aal2"
        assert claims["jti"] == jws_payload(token)["jti"]
        assert claims == jws_payload(token)
        assert current(app) == claims


def test_aud_array_containing_the_database_is_accepted(app, hs, dbname):
    with app.transaction():
        claims = present(app, hs.token(aud=["other", dbname]))
        assert claims["aud"] == ["other", dbname]


def test_expired_within_leeway_is_accepted(app, hs):
    # exp was 10 s ago; stepup.leeway (30 s) forgives it.
    token = hs.token(age=310, lifetime=300)
    with app.transaction():
        assert present(app, token)["exp"] == jws_payload(token)["exp"]


def test_key_with_issuer_accepts_matching_iss(app, su, dbname):
    key = new_hs256(su, dbname, issuer="https://idp.example")
    with app.transaction():
        assert present(app, key.token(extra={"iss": "https://idp.example"}))["iss"] == "https://idp.example"


def test_new_level_is_usable_once_defined(app, su, hs):
    level = unique("lvl")
    token = hs.token(acr=level)
    assert_rejected(app, token, f'acr "{level}" is not a level in stepup.levels', hs.material)
    su.execute("SELECT stepup.define_level(%s, 10)", [level])
    with app.transaction():
        assert present(app, token)["acr"] == level
        assert satisfied(app, "aal3", "5 minutes") is True
        assert satisfied(app, level, "5 minutes") is True


# --- refused: signature, key, algorithm ---------------------------------------

def test_signature_by_another_secret(reject, hs):
    impostor = Signer(hs.kid, "HS256", secrets.token_bytes(32), b"", hs.aud)
    reject(impostor.token(), "signature does not verify")


def test_signature_by_another_ed25519_key(reject, su, ed, dbname):
    other = new_eddsa(su, dbname)
    forged = Signer(ed.kid, "EdDSA", other.signing_key, b"", ed.aud)
    reject(forged.token(), "signature does not verify", other.material)


@pytest.mark.parametrize("signer", ["hs", "ed"])
@pytest.mark.parametrize("part", ["payload", "signature"])
def test_tampered_token(request, reject, signer, part):
    token = request.getfixturevalue(signer).token(acr="aal2")
    header, payload, signature = token.split(".")
    if part == "payload":
        claims = jws_payload(token)
        claims["acr"] = "aal3"
        payload = unsigned_jws({}, claims).split(".")[1]
    else:
        signature = ("A" if signature[0] != "A" else "B") + signature[1:]
    reject(f"{header}.{payload}.{signature}", "signature does not verify")


def test_unknown_kid(reject, hs):
    token = Signer("no-such-kid", "HS256", hs.signing_key, hs.material, hs.aud).token()
    reject(token, 'unknown kid "no-such-kid"')


def test_hostile_kid_is_clipped_in_detail(reject, hs):
    kid = "evil\nkid\r" + "x" * 5000
    detail = reject(Signer(kid, "HS256", hs.signing_key, b"", hs.aud).token(), 'unknown kid "evil?kid?x').diag.message_detail
    assert "\n" not in detail and "\r" not in detail
    assert len(detail) < 120, detail


def test_missing_kid(reject, hs):
    reject(hs256_jws(hs.signing_key, {"alg": "HS256", "typ": "JWT"}, hs.payload()), 'header has no "kid"')


def test_crit_header(reject, hs):
    header = {"alg": "HS256", "kid": hs.kid, "crit": ["exp"], "exp": 1}
    reject(hs256_jws(hs.signing_key, header, hs.payload()), '"crit"')


def test_retired_key(app, su, dbname):
    key = new_hs256(su, dbname)
    with app.transaction():
        present(app, key.token())
    su.execute("SELECT stepup.retire_key(%s)", [key.kid])
    assert scalar(su, "SELECT status FROM stepup.key_info WHERE kid = %s", [key.kid]) == "retired"
    assert_rejected(app, key.token(), f'key "{key.kid}" is retired', key.material)


def test_key_not_valid_yet(app, su, dbname):
    key = new_hs256(su, dbname, not_before=datetime.now(timezone.utc) + timedelta(hours=1))
    assert scalar(su, "SELECT status FROM stepup.key_info WHERE kid = %s", [key.kid]) == "pending"
    assert_rejected(app, key.token(), f'key "{key.kid}" is not valid yet', key.material)


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE", "HS512", ""])
def test_unsupported_alg(reject, hs, alg):
    token = unsigned_jws({"alg": alg, "kid": hs.kid}, hs.payload())
    reject(token, f'unsupported alg "{alg}"')


def test_hs256_token_for_eddsa_key_signed_with_its_public_key(reject, ed):
    # The classic confusion: the Ed25519 public key used as an HMAC secret.
    token = hs256_jws(ed.material, {"alg": "HS256", "kid": ed.kid}, ed.payload())
    reject(token, f'alg "HS256" does not match key "{ed.kid}", registered for EdDSA')


def test_eddsa_token_for_hs256_key(reject, hs, ed):
    token = Signer(hs.kid, "EdDSA", ed.signing_key, b"", hs.aud).token()
    reject(token, f'alg "EdDSA" does not match key "{hs.kid}", registered for HS256')


# --- refused: malformed input -------------------------------------------------

def junk(seed, n):
    """Deterministic binary junk (no NUL, which text cannot hold)."""
    rng = random.Random(seed)
    return bytes(rng.randrange(1, 256) for _ in range(n)).decode("latin-1")


def deep_array(levels):
    return "[" * levels + "]" * levels


MALFORMED = {
    "empty": ("", "expected 3 dot-separated segments, found 1"),
    "one_part": ("abc", "expected 3 dot-separated segments, found 1"),
    "two_parts": ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0", "expected 3 dot-separated segments, found 2"),
    "four_parts": ("a.b.c.d", "expected 3 dot-separated segments, found 4"),
    "not_base64": ("!!!.@@@.###", "header is not base64url without padding"),
    "padded_base64": ("eyJhbGciOiJIUzI1NiJ9=.e30.e30", "header is not base64url without padding"),
    "header_not_json": (unsigned_jws("not json", {}, "c2ln"), "header is not valid JSON"),
    "header_not_object": (unsigned_jws([1], {}, "c2ln"), "header is not a JSON object"),
    "header_deeply_nested": (unsigned_jws(deep_array(3000), {}, "c2ln"), "header is not valid JSON"),
    "empty_payload": ("eyJhbGciOiJIUzI1NiJ9..c2ln", "empty header or payload segment"),
    "binary_junk": (junk(1, 300), "malformed assertion: "),
    "binary_junk_with_dots": (".".join(junk(s, 40) for s in (2, 3, 4)), "malformed assertion: "),
    "control_characters": ("\x01\x02\n\r\t.\x7f.\x1b", "malformed assertion: "),
    "100_kb": ("a" * 100 * 1024, "assertion is 102400 bytes, more than the 8192 allowed"),
    "100_kb_three_parts": ("a" * 50000 + "." + "b" * 50000 + ".c", "assertion is 100003 bytes, more than the 8192 allowed"),
}


@pytest.mark.parametrize("token,detail", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed(reject, token, detail):
    err = reject(token, detail)
    assert err.diag.message_detail.startswith(("malformed assertion: ", "assertion is "))


SIGNED_GARBAGE = {
    "payload_not_json": (b"not json", "malformed assertion: payload is not valid JSON"),
    "payload_not_utf8": (b"\xff\xfe{}", "malformed assertion: payload is not valid JSON"),
    "payload_not_object": (b'["sub", "alice"]', "malformed assertion: payload is not a JSON object"),
    "payload_array_nested_2500": (deep_array(2500), "malformed assertion: payload is not valid JSON"),
    "payload_object_nested_2500": ('{"sub":' + deep_array(2500) + "}", "malformed assertion: payload is not valid JSON"),
    # 10000 levels do not fit in 8192 bytes: refused before any decoding.
    "payload_array_nested_10000": (deep_array(10000), "more than the 8192 allowed"),
}


@pytest.mark.parametrize("payload,detail", SIGNED_GARBAGE.values(), ids=SIGNED_GARBAGE.keys())
def test_correctly_signed_garbage_payload(reject, hs, payload, detail):
    reject(hs256_jws(hs.signing_key, {"alg": "HS256", "kid": hs.kid}, payload), detail)


@pytest.mark.parametrize("claim", ["sub", "note"])
def test_claim_with_nul_character(reject, hs, claim):
    # Valid JSON and correctly signed, but jsonb cannot hold \u0000: still an
    # invalid assertion (SU002), like any other payload the database cannot use.
    payload = {**hs.payload(), claim: "a\u0000b"}
    reject(hs256_jws(hs.signing_key, {"alg": "HS256", "kid": hs.kid}, payload), "")


def test_null_assertion(app):
    err = expect_error(app, "SELECT stepup.present(NULL::text)", None, "SU002")
    assert err.diag.message_detail == "assertion is NULL"


# --- refused: claims --------------------------------------------------------

@pytest.mark.parametrize("claim", ["sub", "aud", "iat", "exp", "auth_time", "acr"])
def test_required_claim_missing(reject, hs, claim):
    reject(hs.token(drop=(claim,)), f'required claim "{claim}" is missing')


@pytest.mark.parametrize("claim", ["sub", "acr"])
def test_required_claim_null(reject, hs, claim):
    reject(hs.token(extra={claim: None}), f'required claim "{claim}" is missing')


@pytest.mark.parametrize("jti", ["drop", None])
def test_jti_is_optional(app, hs, jti):
    """OIDC ID tokens rarely carry one (DESIGN 2): missing or null, it is
    not required; one-time tables spend the signed bytes' SHA-256 instead
    (tests/test_issuers.py)."""
    token = hs.token(drop=("jti",)) if jti == "drop" else hs.token(extra={"jti": None})
    claims = present(app, token)
    assert claims["sub"] == "alice" and claims.get("jti") is None


INVALID_CLAIMS = {
    "sub_number": ({"sub": 42}, 'claim "sub" is not a string'),
    "sub_empty": ({"sub": ""}, 'claim "sub" is empty'),
    "acr_empty": ({"acr": ""}, 'claim "acr" is empty'),
    "jti_object": ({"jti": {"id": 1}}, 'claim "jti" is not a string'),
    "aud_number": ({"aud": 5}, 'claim "aud" is not a string or array of strings'),
    "iat_string": ({"iat": "yesterday"}, 'claim "iat" is not a NumericDate'),
    "exp_negative": ({"exp": -1}, 'claim "exp" is out of range'),
    "exp_year_10000": ({"exp": 253402300800}, 'claim "exp" is out of range'),
    "auth_time_bool": ({"auth_time": True}, 'claim "auth_time" is not a NumericDate'),
    "amr_string": ({"amr": "otp"}, 'claim "amr" is not an array'),
    "amr_numbers": ({"amr": [1]}, 'claim "amr" holds a value that is neither a method name nor a '
                                  '{"method", "timestamp"} object'),
    "iss_number": ({"iss": 1}, 'claim "iss" is not a string'),
    "chg_not_hex": ({"chg": "abc"}, 'claim "chg" holds a value that is not 64 lowercase hex digits'),
}


@pytest.mark.parametrize("extra,detail", INVALID_CLAIMS.values(), ids=INVALID_CLAIMS.keys())
def test_invalid_claim(reject, hs, extra, detail):
    # Signed by hand: PyJWT itself refuses to encode some of these.
    reject(hs256_jws(hs.signing_key, {"alg": "HS256", "kid": hs.kid}, {**hs.payload(), **extra}), detail)


def test_expired(reject, hs):
    reject(hs.token(age=400, lifetime=300), "assertion has expired (exp)")


def test_expired_by_60s_beyond_default_leeway(reject, hs):
    reject(hs.token(age=360, lifetime=300), "assertion has expired (exp)")


def test_exp_not_after_iat(reject, hs):
    now = int(time.time())
    reject(hs.token(extra={"iat": now, "exp": now}), 'claim "exp" is not later than iat')


def test_nbf_in_the_future(reject, hs):
    reject(hs.token(extra={"nbf": int(time.time()) + 120}), "assertion is not valid yet (nbf)")


def test_lifetime_too_long(reject, hs):
    reject(hs.token(lifetime=901), "lifetime exp - iat = 901 s exceeds stepup.max_lifetime = 900 s")


def test_iat_in_the_future(reject, hs):
    reject(hs.token(age=-120), "assertion is issued in the future (iat)")


def test_auth_time_in_the_future(reject, hs):
    reject(hs.token(auth_age=-120), "auth_time is in the future")


def test_auth_time_later_than_iat(reject, hs):
    # Issued 100 s ago, authenticated 40 s ago: after issue, beyond the leeway.
    reject(hs.token(age=100, auth_age=-60), "auth_time is later than iat")


@pytest.mark.parametrize("aud", ["postgres", "other_db", ["a", "b"], []])
def test_wrong_audience(reject, hs, dbname, aud):
    assert aud != dbname
    reject(hs.token(aud=aud), "aud does not match stepup.audience")


@pytest.mark.parametrize("iss", ["https://evil.example", "", None])
def test_wrong_or_missing_issuer(app, su, dbname, iss):
    key = new_hs256(su, dbname, issuer="https://idp.example")
    token = key.token(extra={"iss": iss} if iss is not None else None)
    assert ("iss" in jws_payload(token)) == (iss is not None)
    assert_rejected(app, token, "iss does not match the key's issuer", key.material)


def test_unknown_acr(reject, hs):
    reject(hs.token(acr="gold"), 'acr "gold" is not a level in stepup.levels')


RETRY_HINT = "Have the user step up again and present the new assertion."
KEY_HINT = "The signing key is not active here: check stepup.key_info, or register it with stepup.add_key."
HINTS = {
    "bad_signature": (lambda hs: Signer(hs.kid, "HS256", b"k" * 32, b"", hs.aud).token(), RETRY_HINT),
    "expired": (lambda hs: hs.token(age=400), RETRY_HINT),
    "unknown_kid": (lambda hs: Signer("gone", "HS256", hs.signing_key, b"", hs.aud).token(), KEY_HINT),
    "wrong_aud": (lambda hs: hs.token(aud="elsewhere"),
                  "Mint the assertion with aud equal to stepup.audience (by default the database name)."),
    "unknown_acr": (lambda hs: hs.token(acr="gold"),
                    "Define the level with stepup.define_level, map the issuer's value to one with "
                    "stepup.define_issuer(levels => ...), or mint a known acr."),
}


@pytest.mark.parametrize("make,hint", HINTS.values(), ids=HINTS.keys())
def test_rejection_hint(reject, hs, make, hint):
    assert reject(make(hs), "").diag.message_hint == hint


# --- settings (superuser) -----------------------------------------------------

def test_superuser_can_change_audience(su_connect, hs, dbname):
    su = su_connect()
    su.execute("SET stepup.audience = 'payments'")
    with su.transaction():
        assert present(su, hs.token(aud="payments"))["aud"] == "payments"
    assert_rejected(su, hs.token(aud=dbname), "aud does not match stepup.audience", hs.material)


def test_superuser_can_change_max_lifetime(su, hs):
    su.execute("SET stepup.max_lifetime = 60")
    assert_rejected(su, hs.token(lifetime=300), "lifetime exp - iat = 300 s exceeds stepup.max_lifetime = 60 s",
                    hs.material)
    with su.transaction():
        present(su, hs.token(lifetime=60))


def test_superuser_can_change_leeway(su, hs):
    token = hs.token(age=360, lifetime=300)  # expired 60 s ago
    assert_rejected(su, token, "assertion has expired (exp)", hs.material)
    su.execute("SET stepup.leeway = 120")
    with su.transaction():
        present(su, token)


def test_held_assertion_past_exp_no_longer_satisfies(su, hs):
    # Accepted within the leeway; once the leeway shrinks, the held one is expired.
    present(su, hs.token(age=310, lifetime=300), "session")
    assert satisfied(su, "aal2", "10 minutes") is True
    su.execute("SET stepup.leeway = 0")
    assert satisfied(su, "aal2", "10 minutes") is False
    expect_step_up(su, "stepup.require('aal2', '10 minutes')", CHALLENGE.format(level="aal2", max_age=600),
                   "the held assertion has expired")


def test_held_acr_removed_from_levels_fails_closed(app, su, hs):
    level = unique("lvl")
    su.execute("SELECT stepup.define_level(%s, 2)", [level])
    present(app, hs.token(acr=level), "session")
    assert satisfied(app, "aal1", "5 minutes") is True
    su.execute("DELETE FROM stepup.levels WHERE name = %s", [level])
    assert satisfied(app, "aal1", "5 minutes") is False
    expect_step_up(app, "stepup.require('aal1', '5 minutes')", CHALLENGE.format(level="aal1", max_age=300),
                   f'held acr "{level}" ranks below the level required')


# --- satisfied / require ------------------------------------------------------

@pytest.fixture
def holding(app, hs):
    """app_user's connection inside a transaction holding an aal2 assertion
    (amr ['otp'], authenticated 5 s ago); yields (conn, claims)."""
    def hold(**claims):
        app.execute("BEGIN")
        return present(app, hs.token(**claims))
    yield hold
    app.execute("ROLLBACK")


@pytest.mark.parametrize("level,expected", [("aal1", True), ("aal2", True), ("aal3", False)])
def test_satisfied_by_rank(app, holding, level, expected):
    holding(acr="aal2")
    assert satisfied(app, level, "5 minutes") is expected


def test_require_met_returns_true(app, holding):
    holding(acr="aal2")
    assert scalar(app, "SELECT stepup.require('aal2', '5 minutes')") is True
    assert scalar(app, "SELECT stepup.require('aal1', '5 minutes', '{otp}')") is True


def test_require_level_too_high(app, holding):
    holding(acr="aal2")
    expect_step_up(app, "stepup.require('aal3', '2 minutes')", CHALLENGE.format(level="aal3", max_age=120),
                   'held acr "aal2" ranks below the level required')


def test_require_without_assertion(app):
    assert satisfied(app, "aal1", "1 hour") is False
    expect_step_up(app, "stepup.require('aal2', '5 minutes')", CHALLENGE.format(level="aal2", max_age=300),
                   "no step-up assertion is held")


def test_too_old(app, holding):
    holding(auth_age=400)
    assert satisfied(app, "aal2", "5 minutes") is False
    assert satisfied(app, "aal2", "10 minutes") is True
    expect_step_up(app, "stepup.require('aal2', '5 minutes')", CHALLENGE.format(level="aal2", max_age=300),
                   r"the user authenticated 40[0-9] s ago, longer than max_age")


@pytest.mark.parametrize("methods,expected", [
    ("{hwk,fpt}", False), ("{otp}", True), ("{hwk,otp}", True),
])
def test_satisfied_methods(app, holding, methods, expected):
    holding(amr=["otp"])
    assert satisfied(app, "aal2", "5 minutes", methods) is expected


def test_require_methods_not_accepted(app, holding):
    holding(amr=["otp"])
    expect_step_up(app, "stepup.require('aal2', '5 minutes', '{hwk,fpt}')",
                   CHALLENGE.format(level="aal2", max_age=300) + ' amr_values="hwk fpt"',
                   re.escape("amr [otp] holds none of the methods accepted"))


def test_require_methods_without_amr(app, holding):
    holding(drop=("amr",))
    assert satisfied(app, "aal2", "5 minutes", "{otp}") is False
    expect_step_up(app, "stepup.require('aal2', '5 minutes', '{otp}')",
                   CHALLENGE.format(level="aal2", max_age=300) + ' amr_values="otp"',
                   re.escape("the assertion names no authentication method (amr)"))


@pytest.mark.parametrize("call", [
    "stepup.satisfied('gold', '5 minutes')",
    "stepup.require('gold', '5 minutes')",
    "stepup.satisfied('gold', '5 minutes', '{otp}')",
])
def test_unknown_level_argument(app, call):
    err = expect_error(app, f"SELECT {call}", None, "22023")
    assert err.diag.message_primary == 'unknown step-up level "gold"'


@pytest.mark.parametrize("call", [
    "stepup.satisfied(NULL, '5 minutes')",
    "stepup.satisfied('aal1', NULL)",
    "stepup.require(NULL, '5 minutes')",
    "stepup.require('aal1', NULL, '{otp}')",
])
def test_null_arguments(app, call):
    err = expect_error(app, f"SELECT {call}", None, "22004")
    assert err.diag.message_primary == "level and max_age must not be NULL"


@pytest.mark.parametrize("call", [
    "stepup.satisfied('aal1', '5 minutes', '{}')",
    "stepup.satisfied('aal1', '5 minutes', '{NULL}')",
    "stepup.require('aal1', '5 minutes', '{\"\"}')",
])
def test_empty_methods_list_is_refused_not_any(app, holding, call):
    """An explicit list must name a method; only NULL means 'any method'."""
    holding(amr=["otp"])
    err = expect_error(app, f"SELECT {call}", None, "22023")
    assert err.diag.message_primary == "methods must name at least one authentication method"
    assert satisfied(app, "aal1", "5 minutes", None) is True


# --- the same assertion presented again (src/assertion/present.rs, Last) ------------------------

def test_same_assertion_again_returns_the_same_claims(app, hs):
    token = hs.token()
    with app.transaction():
        first = present(app, token)
    for _ in range(3):
        with app.transaction():
            assert present(app, token) == first
            assert current(app) == first


def test_same_assertion_again_after_its_key_is_retired(app, su, dbname):
    key = new_hs256(su, dbname)
    token = key.token()
    with app.transaction():
        present(app, token)
    su.execute("SELECT stepup.retire_key(%s)", [key.kid])
    assert_rejected(app, token, f'key "{key.kid}" is retired', key.material)


def test_same_assertion_again_after_its_key_material_changed(app, su, dbname):
    """Only the superuser can edit stepup.keys; any edit is a new key
    snapshot, and the bytes are checked against the new material."""
    key = new_hs256(su, dbname)
    token = key.token()
    with app.transaction():
        present(app, token)
    su.execute("UPDATE stepup.keys SET key = %s WHERE kid = %s", [secrets.token_bytes(32), key.kid])
    assert_rejected(app, token, "signature does not verify", key.material)


def test_same_assertion_again_once_expired(su, hs):
    su.execute("SET stepup.leeway = 0")
    token = hs.token(lifetime=2, age=0)
    with su.transaction():
        present(su, token)
    time.sleep(2.5)
    assert_rejected(su, token, "assertion has expired (exp)", hs.material)


def test_same_assertion_again_under_other_settings(su_connect, hs, dbname):
    su = su_connect()
    token = hs.token(age=100, lifetime=300)
    with su.transaction():
        present(su, token)
    su.execute("SET stepup.audience = 'payments'")
    assert_rejected(su, token, "aud does not match stepup.audience", hs.material)
    su.execute("RESET stepup.audience")
    su.execute("SET stepup.max_lifetime = 60")
    assert_rejected(su, token, "exceeds stepup.max_lifetime = 60 s", hs.material)


def test_same_assertion_again_after_its_level_is_removed(app, su, hs):
    level = unique("lvl")
    su.execute("SELECT stepup.define_level(%s, 5)", [level])
    token = hs.token(acr=level)
    with app.transaction():
        present(app, token)
    su.execute("DELETE FROM stepup.levels WHERE name = %s", [level])
    assert_rejected(app, token, f'acr "{level}" is not a level in stepup.levels', hs.material)


def test_a_rejected_assertion_stays_rejected(app, hs):
    """Only accepted assertions are remembered; refusing one twice checks it twice."""
    bad = Signer(hs.kid, "HS256", secrets.token_bytes(32), b"", hs.aud).token()
    for _ in range(2):
        assert_rejected(app, bad, "signature does not verify", hs.material)
    with app.transaction():
        present(app, hs.token())
    assert_rejected(app, bad, "signature does not verify", hs.material)
