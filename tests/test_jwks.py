"""stepup.add_jwks: an issuer's JWKS imported key by key (added, kept,
skipped, refused), rotation by calling it again (retired), and what it
refuses as a whole (22023); stepup.add_key with DER SubjectPublicKeyInfo."""
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from conftest import assert_rejected, expect_error, present, scalar, unique

# Key generation is slow for RSA: a few keys shared by the module.
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_KEY_2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
EC384_KEY = ec.generate_private_key(ec.SECP384R1())


def spki(private_key):
    return private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def jwk(private_key, kid, **members):
    if isinstance(private_key, rsa.RSAPrivateKey):
        d = json.loads(RSAAlgorithm.to_jwk(private_key.public_key()))
    else:
        d = json.loads(ECAlgorithm.to_jwk(private_key.public_key()))
    d.update(kid=kid, **members)
    return d


def add_jwks(su, issuer, keys, raw=None):
    """Rows of add_jwks, as (kid, alg, action)."""
    doc = raw if raw is not None else json.dumps({"keys": keys})
    return su.execute("SELECT kid, alg, action FROM stepup.add_jwks(%s, %s::jsonb)",
                      [issuer, doc]).fetchall()


def token(private_key, alg, kid, aud, iss, **claims):
    now = int(time.time())
    body = {"sub": "alice", "aud": aud, "iat": now, "exp": now + 300,
            "auth_time": now - 5, "acr": "aal2", "amr": ["otp"]}
    if iss is not None:
        body["iss"] = iss
    body.update(claims)
    return jwt.encode(body, private_key, algorithm=alg, headers={"kid": kid})


@pytest.fixture
def issuer():
    return f"https://{unique('idp')}.example"


def test_import_rotate_and_retire(su, dbname, issuer):
    rs, es = unique("rs"), unique("es")
    rows = add_jwks(su, issuer, [jwk(RSA_KEY, rs, use="sig", alg="RS256"), jwk(EC_KEY, es)])
    assert rows == [(rs, "RS256", "added"), (es, "ES256", "added")]
    info = su.execute("SELECT kid, alg, issuer, source, status FROM stepup.key_info "
                      "WHERE kid IN (%s, %s) ORDER BY alg DESC", [rs, es]).fetchall()
    assert info == [(rs, "RS256", issuer, "jwks", "active"), (es, "ES256", issuer, "jwks", "active")]
    # The stored key is the DER SubjectPublicKeyInfo, as openssl writes it.
    fingerprint = scalar(su, "SELECT fingerprint FROM stepup.key_info WHERE kid = %s", [rs])
    import hashlib
    assert fingerprint == hashlib.sha256(spki(RSA_KEY)).hexdigest()

    rs_token = token(RSA_KEY, "RS256", rs, dbname, issuer)
    es_token = token(EC_KEY, "ES256", es, dbname, issuer)
    assert present(su, rs_token)["sub"] == "alice"
    assert present(su, es_token)["sub"] == "alice"

    # The same document again: nothing changes.
    assert add_jwks(su, issuer, [jwk(RSA_KEY, rs, use="sig", alg="RS256"), jwk(EC_KEY, es)]) == [
        (rs, "RS256", "kept"), (es, "ES256", "kept")]
    # Rotation: a new key appears, the EC key is gone from the document.
    rs2 = unique("rs2")
    rows = add_jwks(su, issuer, [jwk(RSA_KEY, rs), jwk(RSA_KEY_2, rs2)])
    assert rows == [(rs, "RS256", "kept"), (rs2, "RS256", "added"), (es, "ES256", "retired")]
    assert scalar(su, "SELECT status FROM stepup.key_info WHERE kid = %s", [es]) == "retired"
    assert_rejected(su, es_token, f'key "{es}" is retired')
    assert present(su, rs_token)["sub"] == "alice"
    # A retired kid that the issuer lists again stays retired.
    rows = add_jwks(su, issuer, [jwk(RSA_KEY, rs), jwk(RSA_KEY_2, rs2), jwk(EC_KEY, es)])
    assert rows[2][0] == es and rows[2][2].startswith("skipped: this kid was retired")
    assert_rejected(su, es_token, f'key "{es}" is retired')


def test_kids_are_never_reused(su, dbname, issuer):
    kid = unique("rs")
    assert add_jwks(su, issuer, [jwk(RSA_KEY, kid)]) == [(kid, "RS256", "added")]
    # The same kid, other material: refused; and the old key, no longer
    # published under that kid, stops verifying.
    rows = add_jwks(su, issuer, [jwk(RSA_KEY_2, kid), jwk(EC_KEY, unique("es"))])
    assert rows[0] == (kid, "RS256", "refused: the kid already names a different key or issuer, "
                                     "and kids are never reused (stepup.key_info)")
    assert rows[1][2] == "added"
    assert rows[2] == (kid, "RS256", "retired")
    forged = token(RSA_KEY_2, "RS256", kid, dbname, issuer)
    assert_rejected(su, forged, f'key "{kid}" is retired')
    # Another issuer's document cannot take over a kid either.
    other = unique("es")
    add_jwks(su, issuer, [jwk(EC_KEY, other)])
    rows = add_jwks(su, f"{issuer}/evil", [jwk(EC_KEY, other)])
    assert rows == [(other, "ES256", "refused: the kid already names a different key or issuer, "
                                     "and kids are never reused (stepup.key_info)")]
    assert scalar(su, "SELECT issuer FROM stepup.key_info WHERE kid = %s", [other]) == issuer


def test_add_jwks_leaves_add_key_keys_alone(su, issuer):
    manual = unique("manual")
    su.execute("SELECT stepup.add_key(%s, %s, 'ES384', %s)", [manual, spki(EC384_KEY), issuer])
    kid = unique("rs")
    assert add_jwks(su, issuer, [jwk(RSA_KEY, kid)]) == [(kid, "RS256", "added")]
    assert su.execute("SELECT source, status FROM stepup.key_info WHERE kid = %s",
                      [manual]).fetchone() == ("add_key", "active")


def test_not_before_is_applied(su, issuer):
    kid = unique("rs")
    su.execute("SELECT * FROM stepup.add_jwks(%s, %s::jsonb, now() + interval '1 hour')",
               [issuer, json.dumps({"keys": [jwk(RSA_KEY, kid)]})])
    assert scalar(su, "SELECT status FROM stepup.key_info WHERE kid = %s", [kid]) == "pending"


def test_one_odd_key_never_refuses_the_document(su, issuer):
    good = unique("es")
    enc = unique("enc")
    rows = add_jwks(su, issuer, [
        jwk(RSA_KEY, enc, use="enc", alg="RSA-OAEP"),
        {"kty": "RSA", "n": "!!!", "e": "AQAB", "kid": unique("bad")},
        "not a key",
        jwk(EC_KEY, good),
    ])
    assert [r[2].split(":")[0] for r in rows] == ["skipped", "skipped", "skipped", "added"]
    assert rows[0][0] == enc
    assert rows[2][0] is None
    assert rows[3] == (good, "ES256", "added")
    assert scalar(su, "SELECT count(*) FROM stepup.key_info WHERE kid = %s", [enc]) == 0


@pytest.mark.parametrize("doc,message", [
    ('[]', "not a JWKS document"),
    ('{"keys": {}}', "not a JWKS document"),
    ('{"kty": "RSA"}', "not a JWKS document"),
    ('{"keys": []}', "JWKS document holds no usable signing key (it is empty); nothing was changed"),
    ('{"keys": [{"kty": "oct", "k": "AAAA", "kid": "x"}]}', "JWKS document holds no usable signing key (x: "),
])
def test_documents_refused_as_a_whole(su, issuer, doc, message):
    err = expect_error(su, "SELECT * FROM stepup.add_jwks(%s, %s::jsonb)", [issuer, doc], "22023")
    assert err.diag.message_primary.startswith(message), err.diag.message_primary


def test_an_empty_document_retires_nothing(su, dbname, issuer):
    kid = unique("rs")
    add_jwks(su, issuer, [jwk(RSA_KEY, kid)])
    expect_error(su, "SELECT * FROM stepup.add_jwks(%s, '{\"keys\": []}')", [issuer], "22023")
    assert scalar(su, "SELECT status FROM stepup.key_info WHERE kid = %s", [kid]) == "active"


def test_huge_documents_are_refused_quickly(su, issuer):
    many = json.dumps({"keys": [{"kty": "EC", "kid": f"k{i}"} for i in range(100_000)]})
    started = time.monotonic()
    err = expect_error(su, "SELECT * FROM stepup.add_jwks(%s, %s::jsonb)", [issuer, many], "22023")
    assert "more than the 1048576 accepted" in err.diag.message_primary
    assert time.monotonic() - started < 10
    err = expect_error(su, "SELECT * FROM stepup.add_jwks(%s, %s::jsonb)",
                       [issuer, json.dumps({"keys": [jwk(EC_KEY, f"k{i}") for i in range(101)]})], "22023")
    assert err.diag.message_primary.startswith("not a JWKS document")


def test_bad_arguments(su, issuer):
    expect_error(su, "SELECT * FROM stepup.add_jwks(NULL, '{\"keys\": []}')", None, "22004")
    expect_error(su, "SELECT * FROM stepup.add_jwks(%s, NULL)", [issuer], "22004")
    expect_error(su, "SELECT * FROM stepup.add_jwks('', '{\"keys\": []}')", None, "22023")
    # A number jsonb holds but JSON parsers do not: refused, not XX000.
    err = expect_error(su, "SELECT * FROM stepup.add_jwks(%s, '{\"keys\": [1e400]}')", [issuer], "22023")
    assert err.diag.message_primary.startswith("JWKS document cannot be read")


def test_application_roles_cannot_import(app, issuer):
    expect_error(app, "SELECT * FROM stepup.add_jwks(%s, %s::jsonb)",
                 [issuer, json.dumps({"keys": [jwk(EC_KEY, unique("es"))]})], "42501")
    expect_error(app, "SELECT stepup.define_issuer(%s)", [issuer], "42501")


# --- add_key with DER SubjectPublicKeyInfo -----------------------------------

@pytest.mark.parametrize("alg,private_key", [
    ("RS256", RSA_KEY), ("PS256", RSA_KEY), ("ES256", EC_KEY), ("ES384", EC384_KEY)])
def test_add_key_takes_spki(su, dbname, alg, private_key):
    kid = unique(alg.lower())
    su.execute("SELECT stepup.add_key(%s, %s, %s)", [kid, spki(private_key), alg])
    t = token(private_key, alg, kid, dbname, None)
    assert present(su, t)["sub"] == "alice"
    # The same key under another alg is another registration; the header's
    # alg must match the one registered.
    other = {"RS256": "PS256", "PS256": "RS256", "ES256": "RS256", "ES384": "ES256"}[alg]
    if alg.startswith("RS") or alg.startswith("PS"):
        forged = token(private_key, other, kid, dbname, None)
        assert_rejected(su, forged, f'alg "{other}" does not match key "{kid}", registered for {alg}')


@pytest.mark.parametrize("alg,material_of", [
    ("RS256", lambda: spki(EC_KEY)),
    ("ES256", lambda: spki(RSA_KEY)),
    ("ES256", lambda: spki(EC384_KEY)),
    ("ES384", lambda: spki(EC_KEY)),
    ("RS256", lambda: spki(rsa.generate_private_key(public_exponent=65537, key_size=1024))),
    ("RS256", lambda: spki(RSA_KEY)[:-1]),
    ("RS256", lambda: spki(RSA_KEY) + b"\0"),
    ("ES256", lambda: b"\x04" + bytes(64)),
])
def test_add_key_refuses_wrong_or_weak_keys(su, alg, material_of):
    kid = unique("bad")
    err = expect_error(su, "SELECT stepup.add_key(%s, %s, %s)", [kid, material_of(), alg], "22023")
    assert err.diag.message_primary.startswith(f'cannot register key "{kid}": ')
    assert scalar(su, "SELECT count(*) FROM stepup.key_info WHERE kid = %s", [kid]) == 0


def test_hs256_with_the_rsa_public_key_as_secret_is_refused(su, dbname):
    """The classic confusion: an attacker signs HS256 with the RSA public key
    (which is public) and names the RS256 kid."""
    import hashlib
    import hmac as hmac_
    from conftest import b64url
    kid = unique("rs")
    su.execute("SELECT stepup.add_key(%s, %s, 'RS256')", [kid, spki(RSA_KEY)])
    pem = RSA_KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    now = int(time.time())
    claims = {"sub": "mallory", "aud": dbname, "iat": now, "exp": now + 300,
              "auth_time": now, "acr": "aal3"}
    for secret in (spki(RSA_KEY), pem):
        signing_input = (b64url(json.dumps({"alg": "HS256", "kid": kid})) + "."
                         + b64url(json.dumps(claims)))
        sig = hmac_.new(secret, signing_input.encode(), hashlib.sha256).digest()
        assert_rejected(su, f"{signing_input}.{b64url(sig)}",
                        f'alg "HS256" does not match key "{kid}", registered for RS256')
