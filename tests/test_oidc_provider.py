"""pg_stepup against a real OpenID provider (node-oidc-provider over HTTPS):
`stepup sync-jwks` imports its JWKS, an application answers SU001 by
signing the user in again (authorization-code flow with PKCE, acr_values
and max_age taken from the challenge), and the ID token or the RFC 9068
access token it gets authorises the protected UPDATE. Rotation is a restart
of the provider with a new key set and another sync.

The first tests check the harness itself (no database): the provider
starts, the flow returns tokens, PyJWT verifies them against the served
JWKS with the claims the database relies on."""
import datetime
import hashlib
import time

import jwt
import psycopg
import pytest

from conftest import assert_rejected, conninfo, expect_error, present, protect, scalar, unique
from oidc_provider import (  # noqa: F401  (oidc, test_ca: fixtures)
    ACR_VALUES, CLIENT_ID, LEVELS, RESOURCE, RESOURCE_SCOPE, TOKEN_TTL, USER, OidcClient,
    SignInError, answer_challenge, jose_claims, jose_header, oidc, parse_challenge,
    provider_keys, provider_values, start_provider, sync_jwks, test_ca,
)


def verify_with_pyjwt(provider, token, audience):
    """Verifies `token` the way a relying party would: the provider's served
    JWKS, the key its kid names, the alg that key declares."""
    jwks = jwt.PyJWKSet.from_dict(provider.jwks())
    kid = jose_header(token)["kid"]
    key = next(k for k in jwks.keys if k.key_id == kid)
    return jwt.decode(token, key.key, algorithms=[key.algorithm_name], audience=audience,
                      issuer=provider.issuer)


# --- the harness: provider and flow, no database ------------------------------------

def test_discovery_and_jwks(oidc):
    discovery = oidc.discovery()
    assert discovery["issuer"] == oidc.issuer == f"https://localhost:{oidc.port}"
    assert discovery["jwks_uri"] == f"{oidc.issuer}/jwks"
    assert discovery["acr_values_supported"] == ACR_VALUES
    assert discovery["code_challenge_methods_supported"] == ["S256"]
    served = oidc.jwks()["keys"]
    rs, es = oidc.keys
    assert [(k["kid"], k["kty"], k.get("alg"), k.get("use")) for k in served] == [
        (rs.kid, "RSA", "RS256", "sig"), (es.kid, "EC", "ES256", "sig")]
    # The public halves only, exactly as generated.
    assert served == [rs.public_jwk, es.public_jwk]


def test_step_up_login_yields_otp_tokens(oidc):
    before = int(time.time())
    tokens = OidcClient(oidc).authorize(acr_values=["2"], max_age=300)
    rs, es = oidc.keys

    id_token = verify_with_pyjwt(oidc, tokens["id_token"], CLIENT_ID)
    assert jose_header(tokens["id_token"]) == {"alg": "RS256", "kid": rs.kid}  # no typ
    assert (id_token["sub"], id_token["acr"], id_token["amr"]) == (USER, "2", ["pwd", "otp"])
    assert id_token["nonce"] == tokens["nonce"]
    assert before - 1 <= id_token["auth_time"] <= id_token["iat"] <= int(time.time()) + 1
    assert id_token["exp"] - id_token["iat"] == TOKEN_TTL
    assert "jti" not in id_token  # ID tokens carry none: one-time policies use the SHA-256

    access = verify_with_pyjwt(oidc, tokens["access_token"], RESOURCE)
    assert jose_header(tokens["access_token"]) == {"alg": "ES256", "typ": "at+jwt", "kid": es.kid}
    assert (access["sub"], access["acr"], access["amr"], access["auth_time"]) == (
        USER, "2", ["pwd", "otp"], id_token["auth_time"])
    assert (access["client_id"], access["scope"], access["iss"]) == (CLIENT_ID, RESOURCE_SCOPE, oidc.issuer)
    assert access["exp"] - access["iat"] == TOKEN_TTL
    assert len(access["jti"]) >= 20
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] <= TOKEN_TTL


def test_password_only_login_yields_acr_1(oidc):
    tokens = OidcClient(oidc).authorize(acr_values=["1"], otp=False)
    claims = verify_with_pyjwt(oidc, tokens["id_token"], CLIENT_ID)
    assert (claims["acr"], claims["amr"]) == ("1", ["pwd"])
    assert jose_claims(tokens["access_token"])["acr"] == "1"


def test_wrong_second_factor_and_password_are_refused(oidc):
    client = OidcClient(oidc)
    valid = {oidc.account.totp(time.time() + d) for d in (-30, 0, 30)}
    wrong = next(c for c in ("000000", "111111", "222222") if c not in valid)
    with pytest.raises(SignInError, match="otp refused"):
        client.authorize(acr_values=["2"], otp=wrong)
    with pytest.raises(SignInError, match="login refused"):
        client.authorize(acr_values=["2"], password="not-the-password")


def test_challenge_parsing_and_level_mapping():
    detail = ('insufficient_user_authentication acr_values="aal2" max_age=300\n'
              'no step-up assertion is held')
    assert parse_challenge(detail) == (["aal2"], 300)
    assert provider_values(["aal2"]) == ["2"]
    assert parse_challenge('insufficient_user_authentication acr_values="aal1 aal2"') == (["aal1", "aal2"], None)
    with pytest.raises(ValueError):
        parse_challenge("step-up required")


# --- with the database ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def synced(oidc, test_ca, dbname):
    """The provider's JWKS imported once by `stepup sync-jwks`; the process."""
    return sync_jwks(oidc.issuer, conninfo(dbname), test_ca)


def keys_of(su, issuer):
    return su.execute("SELECT kid, alg, status FROM stepup.key_info WHERE issuer = %s ORDER BY kid",
                      [issuer]).fetchall()


ACTIONS = ("added", "kept", "retired", "skipped", "refused")


def outcomes(proc):
    """`stepup sync-jwks` prints one line per add_jwks row, `ACTION ALG KID
    [reason]`, then a summary line: the rows as sorted (action, alg, kid)."""
    rows = [line.split()[:3] for line in proc.stdout.splitlines() if line.split()[:1] and line.split()[0] in ACTIONS]
    return sorted(tuple(r) for r in rows)


def define_issuer(su, issuer, **profile):
    args = ", ".join(f"{k} => %s" for k in profile)
    su.execute(f"SELECT stepup.define_issuer(%s{', ' if args else ''}{args})",
               [issuer, *profile.values()])


def id_token_profile(su, issuer, **extra):
    define_issuer(su, issuer, audience=CLIENT_ID, levels=psycopg.types.json.Jsonb(LEVELS), **extra)


def access_token_profile(su, issuer):
    define_issuer(su, issuer, audience=RESOURCE, levels=psycopg.types.json.Jsonb(LEVELS),
                  accepted_types=["at+jwt"])


def payout_table(su, app_role, **policy):
    """A payout-account table the app role owns, protected at aal2 for 5 minutes."""
    name = f"public.{unique('payout').replace('-', '_')}"
    su.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, iban text NOT NULL)")
    su.execute(f"INSERT INTO {name} VALUES (1, 'DE01')")
    su.execute(f"ALTER TABLE {name} OWNER TO {app_role}")
    protect(su, name, level="aal2", max_age="5 minutes", **policy)
    return name


@pytest.fixture
def payouts(su, app_role):
    return payout_table(su, app_role)


@pytest.fixture
def one_time_payouts(su, app_role):
    return payout_table(su, app_role, one_time=True)


def last_entry(su, table):
    return su.execute("SELECT op, kid, jti, sub, acr, amr, auth_time FROM stepup.audit_log "
                      "WHERE table_name = %s ORDER BY id DESC LIMIT 1", [table]).fetchone()


def epoch(seconds):
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)


def change_iban(app, table, token, iban):
    with app.transaction():
        claims = present(app, token)
        count = app.execute(f"UPDATE {table} SET iban = %s WHERE id = 1", [iban]).rowcount
    return claims, count


def test_sync_jwks_adds_both_kids_then_keeps_them(synced, oidc, test_ca, dbname, su):
    rs, es = oidc.keys
    assert synced.returncode == 0, synced.stderr
    assert outcomes(synced) == [("added", "ES256", es.kid), ("added", "RS256", rs.kid)], synced.stdout
    assert f"{oidc.issuer}: 2 added, 0 kept, 0 retired, 0 skipped, 0 refused" in synced.stdout
    assert keys_of(su, oidc.issuer) == [(es.kid, "ES256", "active"), (rs.kid, "RS256", "active")]

    again = sync_jwks(oidc.issuer, conninfo(dbname), test_ca)
    assert again.returncode == 0, again.stderr
    assert outcomes(again) == [("kept", "ES256", es.kid), ("kept", "RS256", rs.kid)], again.stdout
    assert keys_of(su, oidc.issuer) == [(es.kid, "ES256", "active"), (rs.kid, "RS256", "active")]


def test_id_token_answers_the_challenge(synced, oidc, su, app, payouts):
    assert synced.returncode == 0, synced.stderr
    id_token_profile(su, oidc.issuer)
    # The app tries, is told what to get, signs the user in at that level.
    err = expect_error(app, f"UPDATE {payouts} SET iban = 'XX01' WHERE id = 1", None, "SU001")
    assert err.diag.message_detail.startswith(
        'insufficient_user_authentication acr_values="aal2" max_age=300')
    tokens = answer_challenge(OidcClient(oidc), err.diag.message_detail)
    id_claims = jose_claims(tokens["id_token"])
    assert id_claims["acr"] == "2"

    claims, count = change_iban(app, payouts, tokens["id_token"], "XX01")
    assert (claims["sub"], claims["acr"], claims["aud"], claims["iss"]) == (USER, "2", CLIENT_ID, oidc.issuer)
    assert count == 1
    assert scalar(app, f"SELECT iban FROM {payouts} WHERE id = 1") == "XX01"
    rs, _ = oidc.keys
    assert last_entry(su, payouts) == ("UPDATE", rs.kid, None, USER, "aal2", ["pwd", "otp"],
                                       epoch(id_claims["auth_time"]))
    # Held for that transaction only.
    expect_error(app, f"UPDATE {payouts} SET iban = 'XX02' WHERE id = 1", None, "SU001")


def test_access_token_under_its_own_profile(synced, oidc, su, app, payouts):
    assert synced.returncode == 0, synced.stderr
    tokens = OidcClient(oidc).authorize(acr_values=["2"], max_age=300)
    _, es = oidc.keys

    # Audience = the client id: the ID token's profile. The access token
    # names the resource, not this client.
    id_token_profile(su, oidc.issuer)
    assert_rejected(app, tokens["access_token"], "aud")

    # Audience = the resource, typ pinned to at+jwt (RFC 9068).
    access_token_profile(su, oidc.issuer)
    assert su.execute("SELECT audience, levels, level_claim, accepted_types FROM stepup.issuers "
                      "WHERE issuer = %s", [oidc.issuer]).fetchall() == [(RESOURCE, LEVELS, "acr", ["at+jwt"])]
    claims, count = change_iban(app, payouts, tokens["access_token"], "AT01")
    assert (claims["aud"], claims["client_id"], claims["scope"]) == (RESOURCE, CLIENT_ID, RESOURCE_SCOPE)
    assert count == 1
    assert last_entry(su, payouts)[:5] == ("UPDATE", es.kid, jose_claims(tokens["access_token"])["jti"],
                                           USER, "aal2")
    expect_error(app, "SELECT stepup.present(%s)", [tokens["id_token"]], "SU002")

    # The ID token is refused for its missing typ even where its aud fits.
    id_token_profile(su, oidc.issuer, accepted_types=["at+jwt"])
    assert_rejected(app, tokens["id_token"], "typ")
    assert scalar(app, f"SELECT iban FROM {payouts} WHERE id = 1") == "AT01"


def test_password_only_login_gets_su001(synced, oidc, su, app, payouts):
    assert synced.returncode == 0, synced.stderr
    id_token_profile(su, oidc.issuer)
    tokens = OidcClient(oidc).authorize(acr_values=["1"], otp=False)
    with app.transaction():
        claims = present(app, tokens["id_token"])
        assert claims["acr"] == "1"
        err = expect_error(app, f"UPDATE {payouts} SET iban = 'PW01' WHERE id = 1", None, "SU001")
    assert err.diag.message_detail.startswith(
        'insufficient_user_authentication acr_values="aal2" max_age=300')
    assert 'held acr "aal1"' in err.diag.message_detail
    assert scalar(app, f"SELECT iban FROM {payouts} WHERE id = 1") == "DE01"


def test_one_time_table_spends_an_id_token_without_jti(synced, oidc, su, app, one_time_payouts):
    payouts = one_time_payouts
    assert synced.returncode == 0, synced.stderr
    id_token_profile(su, oidc.issuer)
    token = OidcClient(oidc).authorize(acr_values=["2"], max_age=300)["id_token"]
    assert change_iban(app, payouts, token, "OT01")[1] == 1
    with pytest.raises(psycopg.Error) as caught:
        change_iban(app, payouts, token, "OT02")
    assert caught.value.sqlstate == "SU003", caught.value
    signed = token.rsplit(".", 1)[0]
    # The replay id: SHA-256 of the signed part (or of the whole assertion).
    assert any(hashlib.sha256(t.encode()).hexdigest() in caught.value.diag.message_detail
               for t in (signed, token)), caught.value.diag.message_detail
    assert scalar(app, f"SELECT iban FROM {payouts} WHERE id = 1") == "OT01"


def test_rotation_retires_the_old_kids(tmp_path, test_ca, dbname, su, app, payouts):
    provider = start_provider(tmp_path / "rotating", test_ca)
    try:
        db = conninfo(dbname)
        first = sync_jwks(provider.issuer, db, test_ca)
        assert first.returncode == 0, first.stderr
        old_rs, old_es = provider.keys
        id_token_profile(su, provider.issuer)
        old_token = OidcClient(provider).authorize(acr_values=["2"], max_age=300)["id_token"]
        assert change_iban(app, payouts, old_token, "R1")[1] == 1

        issuer, port = provider.issuer, provider.port
        provider.restart(keys=provider_keys())  # same issuer, old kids gone
        assert (provider.issuer, provider.port) == (issuer, port)
        new_rs, new_es = provider.keys
        assert [k["kid"] for k in provider.jwks()["keys"]] == [new_rs.kid, new_es.kid]

        second = sync_jwks(provider.issuer, db, test_ca)
        assert second.returncode == 0, second.stderr
        assert outcomes(second) == sorted([
            ("added", "ES256", new_es.kid), ("added", "RS256", new_rs.kid),
            ("retired", "ES256", old_es.kid), ("retired", "RS256", old_rs.kid)]), second.stdout
        assert keys_of(su, provider.issuer) == sorted([
            (old_es.kid, "ES256", "retired"), (old_rs.kid, "RS256", "retired"),
            (new_es.kid, "ES256", "active"), (new_rs.kid, "RS256", "active")])

        assert_rejected(app, old_token, f'key "{old_rs.kid}" is retired')
        new_token = OidcClient(provider).authorize(acr_values=["2"], max_age=300)["id_token"]
        assert jose_header(new_token)["kid"] == new_rs.kid
        assert change_iban(app, payouts, new_token, "R2")[1] == 1
        assert scalar(app, f"SELECT iban FROM {payouts} WHERE id = 1") == "R2"
    finally:
        provider.stop()
        provider.callback_stop()
