"""Tokens from three independent JOSE libraries (PyJWT, node jose, jwcrypto)
for every asymmetric algorithm, keys registered as DER SubjectPublicKeyInfo
(add_key) and as a JWKS (add_jwks); tokens and JWKS shaped like Keycloak's,
Okta's, Entra ID's and Supabase's (tests/fixtures/idp/, signed with keys
generated here); algorithm-confusion attacks; hostile JWK members.

The first tests (no database) check the minters and the fixtures against
PyJWT and cryptography, so the harness is known good on its own."""
import base64
import datetime
import hashlib
import json
import re
import secrets
import subprocess
import time
import uuid
from pathlib import Path

import jwt
import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from psycopg.types.json import Jsonb

from conftest import (
    assert_rejected, b64url, conninfo, expect_error, hs256_jws, present, protect, scalar, unique,
    unsigned_jws,
)
from oidc_provider import OIDC_DIR, b64u_decode, b64u_int, jose_claims, jose_header, new_key, node_binary

FIXTURES = Path(__file__).parent / "fixtures" / "idp"
ALGS = ["RS256", "PS256", "ES256", "ES384", "EdDSA"]
LIBRARIES = ["pyjwt", "jose", "jwcrypto"]
ISS_DER = "https://libs.example/der"
ISS_JWKS = "https://libs.example/jwks"


# --- minting ------------------------------------------------------------------------

def mint_pyjwt(key, header, claims):
    headers = {k: v for k, v in header.items() if k != "alg"}
    headers.setdefault("typ", None)  # PyJWT adds typ JWT unless told not to
    return jwt.encode(claims, key.private, algorithm=header["alg"], headers=headers)


def mint_jose(key, header, claims):
    proc = subprocess.run([node_binary(), str(OIDC_DIR / "mint.mjs")], cwd=OIDC_DIR,
                          input=json.dumps({"jwk": key.jwk, "header": header, "claims": claims}),
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def mint_jwcrypto(key, header, claims):
    from jwcrypto import jwk as jwcrypto_jwk, jwt as jwcrypto_jwt
    signing_key = jwcrypto_jwk.JWK(**key.jwk)
    token = jwcrypto_jwt.JWT(header=header, claims=claims)
    token.make_signed_token(signing_key)
    return token.serialize()


MINTERS = {"pyjwt": mint_pyjwt, "jose": mint_jose, "jwcrypto": mint_jwcrypto}


def step_up_claims(aud, iss, lifetime=300, **extra):
    now = int(time.time())
    return {"sub": "alice", "aud": aud, "iss": iss, "iat": now, "exp": now + lifetime,
            "auth_time": now - 10, "acr": "aal2", "amr": ["otp"], "jti": str(uuid.uuid4()), **extra}


def pyjwt_verify(key, token, aud):
    return jwt.decode(token, key.private.public_key(), algorithms=[key.alg], audience=aud,
                      options={"verify_iss": False})


# --- IdP fixtures --------------------------------------------------------------------

def self_signed_x5c(key, name):
    """A self-signed certificate of `key`, as IdPs publish in x5c."""
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.private.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .sign(key.private, hashes.SHA256()))
    der = cert.public_bytes(serialization.Encoding.DER)
    return base64.b64encode(der).decode(), b64url(hashlib.sha1(der).digest()), b64url(hashlib.sha256(der).digest())


def key_vars(prefix, key, issuer_name):
    out = {f"{prefix}_kid": key.kid}
    for member in ("n", "e", "x", "y"):
        if member in key.public_jwk:
            out[f"{prefix}_{member}"] = key.public_jwk[member]
    if key.alg.startswith(("RS", "PS")):
        x5c, x5t, x5t256 = self_signed_x5c(key, issuer_name)
        out.update({f"{prefix}_x5c": x5c, f"{prefix}_x5t": x5t, f"{prefix}_x5t256": x5t256})
    return out


TIME = re.compile(r"^\{now([+-]\d+)?\}$")
WHOLE = re.compile(r"^\{([\w#]+)\}$")
PART = re.compile(r"\{(\w+)\}")


def fill(template, values):
    """Replaces "{now}", "{now+N}" (numbers) and "{name}" placeholders; names
    it does not know stay as they are (Entra's JWKS really says {tenantid})."""
    if isinstance(template, dict):
        return {k: fill(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [fill(v, values) for v in template]
    if not isinstance(template, str):
        return template
    if m := TIME.match(template):
        return values["now"] + int(m.group(1) or 0)
    if (m := WHOLE.match(template)) and m.group(1) in values:
        return values[m.group(1)]
    return PART.sub(lambda m: str(values.get(m.group(1), m.group(0))), template)


class Idp:
    """One fixture file made real: its keys generated, its JWKS and tokens
    filled in; tokens signed with PyJWT exactly with the header given."""

    def __init__(self, name):
        self.spec = json.loads((FIXTURES / f"{name}.json").read_text())
        self.issuer = self.spec["issuer"]
        jwks = self.spec["jwks"]["keys"]
        sig = next(k for k in jwks if k.get("use", "sig") == "sig")
        alg = sig.get("alg") or {"RSA": "RS256", "EC": "ES256"}[sig["kty"]]
        self.sig = new_key(alg, kid=unique(f"{name}-sig"))
        self.values = key_vars("sig", self.sig, name)
        if any(k.get("use") == "enc" for k in jwks):
            self.enc = new_key("RS256", kid=unique(f"{name}-enc"))
            self.values.update(key_vars("enc", self.enc, name))
        self.jwks = fill(self.spec["jwks"], self.values)

    def profile(self):
        return {k: Jsonb(v) if k == "levels" and v is not None else v
                for k, v in self.spec["profile"].items()}

    def token(self, name, **override):
        values = {**self.values, "now": int(time.time()), "uuid": str(uuid.uuid4()),
                  "random": secrets.token_urlsafe(16)}
        spec = self.spec["tokens"][name]
        header, claims = fill(spec["header"], values), fill(spec["claims"], values)
        claims.update(override)
        return mint_pyjwt(self.sig, header, claims)


# --- the harness, no database --------------------------------------------------------

@pytest.mark.parametrize("alg", ALGS)
@pytest.mark.parametrize("library", LIBRARIES)
def test_minters_agree_with_pyjwt(library, alg):
    key = new_key(alg)
    claims = step_up_claims("db", ISS_DER)
    token = MINTERS[library](key, {"alg": alg, "kid": key.kid, "typ": "JWT"}, claims)
    assert jose_header(token) == {"alg": alg, "kid": key.kid, "typ": "JWT"}
    assert pyjwt_verify(key, token, "db") == claims


@pytest.mark.parametrize("name", ["keycloak", "okta", "entra", "supabase"])
def test_fixtures_fill_and_verify(name):
    idp = Idp(name)
    for token_name in idp.spec["tokens"]:
        token = idp.token(token_name)
        claims = jose_claims(token)
        assert jose_header(token) == fill(idp.spec["tokens"][token_name]["header"], idp.values)
        assert not re.search(r"\{(now|sig_|enc_|uuid|random)", json.dumps(claims)), claims
        assert claims["iss"] == idp.issuer
        assert pyjwt_verify(idp.sig, token, claims["aud"])["sub"] == claims["sub"]
    served = idp.jwks["keys"]
    assert all(k["kid"] for k in served)
    assert not any(m in k for k in served for m in ("d", "p", "q"))


# --- database: helpers -----------------------------------------------------------------

def add_jwks(conn, issuer, doc):
    """add_jwks' rows as {kid: (alg, action)}."""
    rows = conn.execute("SELECT kid, alg, action FROM stepup.add_jwks(%s, %s)",
                        [issuer, Jsonb(doc)]).fetchall()
    return {kid: (alg, action) for kid, alg, action in rows}


def define_issuer(conn, issuer, **profile):
    args = "".join(f", {k} => %s" for k in profile)
    conn.execute(f"SELECT stepup.define_issuer(%s{args})", [issuer, *profile.values()])


def registered(conn, kid):
    return scalar(conn, "SELECT count(*) FROM stepup.key_info WHERE kid = %s", [kid])


def alive(conn):
    assert scalar(conn, "SELECT 1") == 1


@pytest.fixture(scope="module")
def lib_keys(dbname):
    """Per algorithm: a key registered as DER SPKI (add_key, issuer ISS_DER)
    and another imported from a JWKS (add_jwks, issuer ISS_JWKS)."""
    der = {alg: new_key(alg, kid=unique(f"der-{alg.lower()}")) for alg in ALGS}
    jwks = {alg: new_key(alg, kid=unique(f"jwk-{alg.lower()}")) for alg in ALGS}
    with psycopg.connect(conninfo(dbname), autocommit=True) as c:
        for alg, key in der.items():
            c.execute("SELECT stepup.add_key(%s, %s, %s, %s)", [key.kid, key.spki, alg, ISS_DER])
        rows = add_jwks(c, ISS_JWKS, {"keys": [k.public_jwk for k in jwks.values()]})
    return {"der": der, "jwks": jwks, "jwks_rows": rows}


# --- three libraries, five algorithms, two ways to register ------------------------------

def test_jwks_import_rows(su, lib_keys):
    assert lib_keys["jwks_rows"] == {k.kid: (alg, "added") for alg, k in lib_keys["jwks"].items()}
    info = su.execute("SELECT kid, alg, issuer, status, fingerprint FROM stepup.key_info "
                      "WHERE issuer IN (%s, %s) ORDER BY kid", [ISS_DER, ISS_JWKS]).fetchall()
    assert [(kid, alg, iss, status) for kid, alg, iss, status, _ in info] == sorted(
        [(k.kid, a, ISS_DER, "active") for a, k in lib_keys["der"].items()]
        + [(k.kid, a, ISS_JWKS, "active") for a, k in lib_keys["jwks"].items()])


@pytest.mark.parametrize("via", ["der", "jwks"])
@pytest.mark.parametrize("alg", ALGS)
@pytest.mark.parametrize("library", LIBRARIES)
def test_library_token_is_accepted(app, dbname, lib_keys, library, alg, via):
    key = lib_keys[via][alg]
    claims = step_up_claims(dbname, ISS_DER if via == "der" else ISS_JWKS)
    token = MINTERS[library](key, {"alg": alg, "kid": key.kid, "typ": "JWT"}, claims)
    with app.transaction():
        assert present(app, token) == claims
        assert scalar(app, "SELECT stepup.satisfied('aal2', '5 minutes')") is True
        assert scalar(app, "SELECT stepup.satisfied('aal3', '5 minutes')") is False
    # The signature covers every byte: one changed claim and it is refused.
    header, payload, signature = token.split(".")
    forged = b64url(json.dumps({**claims, "sub": "mallory"}).encode())
    assert_rejected(app, f"{header}.{forged}.{signature}", "signature does not verify")


# --- algorithm confusion ------------------------------------------------------------------

def test_hs256_with_the_rsa_public_key_as_secret(app, dbname, lib_keys):
    key = lib_keys["der"]["RS256"]
    pem = key.private.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
    for secret in (key.spki, pem):
        token = hs256_jws(secret, {"alg": "HS256", "kid": key.kid, "typ": "JWT"},
                          step_up_claims(dbname, ISS_DER))
        assert_rejected(app, token, f'alg "HS256" does not match key "{key.kid}"')


def test_es256_token_under_an_rs256_kid(app, dbname, lib_keys):
    rs, es = lib_keys["der"]["RS256"], lib_keys["der"]["ES256"]
    token = mint_pyjwt(es, {"alg": "ES256", "kid": rs.kid}, step_up_claims(dbname, ISS_DER))
    assert_rejected(app, token, f'alg "ES256" does not match key "{rs.kid}"')


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none(app, dbname, lib_keys, alg):
    kid = lib_keys["der"]["RS256"].kid
    for signature in ("", b64url(b"x" * 32)):
        token = unsigned_jws({"alg": alg, "kid": kid}, step_up_claims(dbname, ISS_DER), signature)
        assert_rejected(app, token, f'unsupported alg "{alg}"')


@pytest.mark.parametrize("alg", ["ES256", "ES384"])
def test_der_encoded_ecdsa_signature(app, dbname, lib_keys, alg):
    """JWS carries ECDSA as r || s (RFC 7518 3.4); the DER form a TLS stack
    would produce is not a valid JWS signature, even though r and s are right."""
    key = lib_keys["der"][alg]
    header = b64url(json.dumps({"alg": alg, "kid": key.kid}).encode())
    payload = b64url(json.dumps(step_up_claims(dbname, ISS_DER)).encode())
    digest = hashes.SHA256() if alg == "ES256" else hashes.SHA384()
    der_sig = key.private.sign(f"{header}.{payload}".encode(), ec.ECDSA(digest))
    err = expect_error(app, "SELECT stepup.present(%s)", [f"{header}.{payload}.{b64url(der_sig)}"], "SU002")
    assert err.diag.message_detail in ("signature does not verify",) or \
        err.diag.message_detail.startswith("malformed assertion: "), err.diag.message_detail
    alive(app)


def test_rsa_pss_token_under_an_rs256_kid(app, dbname, lib_keys):
    rs = lib_keys["der"]["RS256"]
    token = mint_pyjwt(rs, {"alg": "PS256", "kid": rs.kid}, step_up_claims(dbname, ISS_DER))
    assert_rejected(app, token, f'alg "PS256" does not match key "{rs.kid}"')


# --- hostile JWKS members --------------------------------------------------------------

def rsa_jwk(**change):
    key = new_key("RS256", kid=unique("bad-rsa"))
    return {**key.public_jwk, **change}


def ec_jwk(curve_alg="ES256", **change):
    key = new_key(curve_alg, kid=unique("bad-ec"))
    return {**key.public_jwk, **change}


def off_curve(jwk):
    size = len(b64u_decode(jwk["y"]))
    y = int.from_bytes(b64u_decode(jwk["y"]), "big")
    return {**jwk, "y": b64u_int(y ^ 1, size)}


def weak_rsa():
    from cryptography.hazmat.primitives.asymmetric import rsa
    n = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key().public_numbers().n
    return rsa_jwk(n=b64u_int(n))


def private_members():
    key = new_key("ES256", kid=unique("bad-private"))
    return key.jwk  # with "d"


BAD_JWKS = {
    "n_not_base64url": (lambda: rsa_jwk(n="!!not*base64url!!"), "base64url"),
    "n_padded": (lambda: (lambda j: {**j, "n": j["n"] + "=="})(rsa_jwk()), "base64url"),
    "e_is_1": (lambda: rsa_jwk(e="AQ"), 'exponent "e"'),
    "rsa_1024": (weak_rsa, "1024 bits: at least 2048"),
    "crv_mismatch": (lambda: ec_jwk("ES256", alg="ES384"), "ES384"),
    "off_curve_p256": (lambda: off_curve(ec_jwk("ES256")), "not on the curve P-256"),
    "off_curve_p384": (lambda: off_curve(ec_jwk("ES384")), "not on the curve P-384"),
    "private_members": (private_members, "private key material"),
    "symmetric": (lambda: {"kty": "oct", "kid": unique("bad-oct"), "k": b64url(b"s" * 32), "alg": "HS256"},
                  "symmetric"),
    "rsa_16384": (lambda: rsa_jwk(n=b64url(b"\xff" * 2048)), '"n" is too long'),
    "enc_use": (lambda: rsa_jwk(use="enc", alg="RSA-OAEP"), "enc"),
    "unknown_kty": (lambda: {"kty": "XYZ", "kid": unique("bad-kty"), "alg": "RS256"}, "XYZ"),
    "key_ops_without_verify": (lambda: {k: v for k, v in rsa_jwk(key_ops=["encrypt"]).items() if k != "use"},
                               "key_ops"),
    "alg_not_a_string": (lambda: rsa_jwk(alg=256), '"alg"'),
    "ed25519_short_x": (lambda: {"kty": "OKP", "crv": "Ed25519", "kid": unique("bad-okp"), "x": b64url(b"x" * 31)},
                        "32"),
}


@pytest.mark.parametrize("make,reason", BAD_JWKS.values(), ids=BAD_JWKS.keys())
def test_bad_jwk_is_skipped(su, make, reason):
    issuer = f"https://bad.example/{unique('iss')}"
    bad = make()
    good = new_key("ES256", kid=unique("good")).public_jwk
    rows = add_jwks(su, issuer, {"keys": [bad, good]})
    assert rows[good["kid"]] == ("ES256", "added")
    alg, action = rows[bad["kid"]]
    assert action.startswith("skipped: "), action
    assert reason in action, action
    assert registered(su, bad["kid"]) == 0
    alive(su)


def test_jwk_without_kid_is_skipped(su):
    issuer = f"https://bad.example/{unique('iss')}"
    nokid = {k: v for k, v in new_key("RS256").public_jwk.items() if k != "kid"}
    good = new_key("ES256", kid=unique("good"))
    rows = su.execute("SELECT kid, alg, action FROM stepup.add_jwks(%s, %s)",
                      [issuer, Jsonb({"keys": [nokid, good.public_jwk]})]).fetchall()
    assert rows == [(None, "RS256", 'skipped: no "kid": tokens could not select this key'),
                    (good.kid, "ES256", "added")]
    assert keys_of_issuer(su, issuer) == [good.kid]


def keys_of_issuer(su, issuer):
    return [kid for (kid,) in su.execute("SELECT kid FROM stepup.key_info WHERE issuer = %s ORDER BY kid",
                                         [issuer]).fetchall()]


def test_document_without_a_usable_key_changes_nothing(su):
    """A JWKS with nothing usable in it is an error, not a rotation that
    would retire every key of the issuer."""
    issuer = f"https://bad.example/{unique('iss')}"
    kept = new_key("ES256", kid=unique("kept"))
    assert add_jwks(su, issuer, {"keys": [kept.public_jwk]}) == {kept.kid: ("ES256", "added")}
    nokid = {k: v for k, v in new_key("RS256").public_jwk.items() if k != "kid"}
    err = expect_error(su, "SELECT * FROM stepup.add_jwks(%s, %s)",
                       [issuer, Jsonb({"keys": [nokid, rsa_jwk(use="enc", alg="RSA-OAEP")]})], "22023")
    assert "no usable signing key" in err.diag.message_primary, err.diag.message_primary
    assert scalar(su, "SELECT status FROM stepup.key_info WHERE kid = %s", [kept.kid]) == "active"


def test_duplicate_kids_in_one_document(su):
    issuer = f"https://bad.example/{unique('iss')}"
    a, b = new_key("ES256", kid=unique("dup")), new_key("ES256")
    good = new_key("ES256", kid=unique("good"))
    rows = su.execute("SELECT kid, action FROM stepup.add_jwks(%s, %s)",
                      [issuer, Jsonb({"keys": [a.public_jwk, {**b.public_jwk, "kid": a.kid},
                                               good.public_jwk]})]).fetchall()
    assert rows == [(a.kid, "skipped: kid appears more than once in the document")] * 2 + [(good.kid, "added")]
    assert registered(su, a.kid) == 0


def test_kid_naming_other_material_is_refused(su):
    issuer = f"https://bad.example/{unique('iss')}"
    a = new_key("ES256", kid=unique("reuse"))
    assert add_jwks(su, issuer, {"keys": [a.public_jwk]}) == {a.kid: ("ES256", "added")}
    fingerprint = scalar(su, "SELECT fingerprint FROM stepup.key_info WHERE kid = %s", [a.kid])
    other = {**new_key("ES256").public_jwk, "kid": a.kid}
    rows = su.execute("SELECT kid, action FROM stepup.add_jwks(%s, %s)",
                      [issuer, Jsonb({"keys": [other, a.public_jwk | {"kid": unique("same")}]})]).fetchall()
    assert [action for kid, action in rows if kid == a.kid][0].startswith("refused: "), rows
    # The kid still names the first material, whatever else the sync did.
    assert scalar(su, "SELECT fingerprint FROM stepup.key_info WHERE kid = %s", [a.kid]) == fingerprint


@pytest.mark.parametrize("doc,message", [
    ([], "not a JSON object"),
    ("keys", "not a JSON object"),
    ({"kid": "x"}, 'no "keys" array'),
    ({"keys": {"kid": "x"}}, 'no "keys" array'),
    ({"keys": [{"kty": "EC"}] * 101}, "at most 100"),
    ({"keys": [{"kty": "RSA", "kid": "big", "n": "A" * (1 << 20), "e": "AQAB"}]}, "more than the 1048576 accepted"),
], ids=["array", "string", "no_keys", "keys_object", "101_keys", "over_1_MiB"])
def test_whole_document_problems_are_22023(su, doc, message):
    issuer = f"https://bad.example/{unique('iss')}"
    err = expect_error(su, "SELECT * FROM stepup.add_jwks(%s, %s)", [issuer, Jsonb(doc)], "22023")
    assert message in err.diag.message_primary, err.diag.message_primary
    alive(su)


def test_huge_members_do_not_crash(su):
    issuer = f"https://bad.example/{unique('iss')}"
    huge_n = rsa_jwk(n=b64url(b"\xff" * 100_000))  # an 800-kbit modulus
    nested = {"kty": "EC", "crv": "P-256", "kid": unique("nested"), "x": [[[[[[[[[[[]]]]]]]]]]], "y": {"a": [1] * 1000}}
    good = new_key("ES256", kid=unique("good")).public_jwk
    rows = add_jwks(su, issuer, {"keys": [huge_n, nested, good]})
    assert rows[huge_n["kid"]][1].startswith("skipped: "), rows
    assert rows[nested["kid"]][1].startswith("skipped: "), rows
    assert rows[good["kid"]] == ("ES256", "added")
    assert registered(su, huge_n["kid"]) == 0 and registered(su, nested["kid"]) == 0
    alive(su)


# --- IdP-shaped tokens ---------------------------------------------------------------------

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
    return su.execute("SELECT op, kid, jti, sub, acr, amr FROM stepup.audit_log WHERE table_name = %s "
                      "ORDER BY id DESC LIMIT 1", [table]).fetchone()


def imported(su, idp):
    return add_jwks(su, idp.issuer, idp.jwks)


@pytest.fixture
def fresh_issuer():
    """Gives each test's Idp an issuer of its own: profiles and retirement are per issuer."""
    def make(name):
        idp = Idp(name)
        suffix = unique("t")
        old = idp.issuer
        idp.issuer = f"{old}/{suffix}" if not old.endswith("/v2.0") else old.replace("/v2.0", f"/{suffix}/v2.0")
        idp.spec = json.loads(json.dumps(idp.spec).replace(json.dumps(old)[1:-1], idp.issuer))
        return idp
    return make


def test_keycloak(su, app, payouts, fresh_issuer):
    kc = fresh_issuer("keycloak")
    rows = imported(su, kc)
    assert rows[kc.sig.kid] == ("RS256", "added")
    assert rows[kc.enc.kid][1].startswith("skipped: ") and "enc" in rows[kc.enc.kid][1], rows
    assert registered(su, kc.enc.kid) == 0
    define_issuer(su, kc.issuer, **kc.profile())

    token = kc.token("id_token_otp")
    with app.transaction():
        assert present(app, token)["acr"] == "2"
        assert app.execute(f"UPDATE {payouts} SET iban = 'KC01' WHERE id = 1").rowcount == 1
    claims = jose_claims(token)
    assert last_entry(su, payouts) == ("UPDATE", kc.sig.kid, claims["jti"], claims["sub"], "aal2", ["pwd", "otp"])

    with app.transaction():
        present(app, kc.token("id_token_password"))
        err = expect_error(app, f"UPDATE {payouts} SET iban = 'KC02' WHERE id = 1", None, "SU001")
        assert 'held acr "aal1"' in err.diag.message_detail
    # acr "0": signed in by the SSO cookie, no authentication happened; maps to no level.
    assert_rejected(app, kc.token("id_token_sso_cookie"), 'acr "0" is not a level in stepup.levels')
    # Under the default audience (the database name) the client's ID token is not for us.
    define_issuer(su, kc.issuer, levels=kc.profile()["levels"])
    assert_rejected(app, kc.token("id_token_otp"), "aud does not match")
    assert scalar(app, f"SELECT iban FROM {payouts} WHERE id = 1") == "KC01"


def test_okta_one_hour_token_needs_max_lifetime(su, fresh_issuer):
    okta = fresh_issuer("okta")
    assert imported(su, okta) == {okta.sig.kid: ("RS256", "added")}
    define_issuer(su, okta.issuer, **okta.profile())
    token = okta.token("access_token_2fa")
    assert_rejected(su, token, "lifetime exp - iat = 3600 s exceeds stepup.max_lifetime = 900 s")
    with su.transaction():
        su.execute("SET LOCAL stepup.max_lifetime = '1h'")
        claims = present(su, token)
        assert (claims["acr"], claims["jti"][:3]) == ("urn:okta:loa:2fa:any", "AT.")
        assert scalar(su, "SELECT stepup.satisfied('aal2', '5 minutes')") is True
        assert scalar(su, "SELECT stepup.satisfied('aal3', '5 minutes')") is False
    with su.transaction():
        su.execute("SET LOCAL stepup.max_lifetime = '1h'")
        present(su, okta.token("access_token_2fa", acr="phrh"))
        assert scalar(su, "SELECT stepup.satisfied('aal3', '5 minutes')") is True


def test_entra_acrs_and_no_jti(su, one_time_payouts, fresh_issuer):
    payouts = one_time_payouts
    entra = fresh_issuer("entra")
    assert "alg" not in entra.jwks["keys"][0] and entra.jwks["keys"][0]["x5c"]
    assert imported(su, entra) == {entra.sig.kid: ("RS256", "added")}
    define_issuer(su, entra.issuer, **entra.profile())
    assert scalar(su, "SELECT level_claim FROM stepup.issuers WHERE issuer = %s", [entra.issuer]) == "acrs"
    with su.transaction():
        su.execute("SET LOCAL stepup.max_lifetime = '2h'")
        claims = present(su, entra.token("access_token_c1"))
        assert claims["acrs"] == ["c1"] and "jti" not in claims
        assert scalar(su, "SELECT stepup.satisfied('aal2', '5 minutes')") is True
        assert scalar(su, "SELECT stepup.satisfied('aal3', '5 minutes')") is False
    with su.transaction():
        su.execute("SET LOCAL stepup.max_lifetime = '2h'")
        present(su, entra.token("access_token_c1_c3"))  # the best-ranked context counts
        assert scalar(su, "SELECT stepup.satisfied('aal3', '5 minutes')") is True

    # One-time: without a jti the token's SHA-256 is spent.
    token = entra.token("access_token_c1")

    def change(iban):
        with su.transaction():
            su.execute("SET LOCAL stepup.max_lifetime = '2h'")
            present(su, token)
            return su.execute(f"UPDATE {payouts} SET iban = %s WHERE id = 1", [iban]).rowcount

    assert change("EN01") == 1
    with pytest.raises(psycopg.Error) as caught:
        change("EN02")
    assert caught.value.sqlstate == "SU003", caught.value
    assert any(hashlib.sha256(t.encode()).hexdigest() in caught.value.diag.message_detail
               for t in (token.rsplit(".", 1)[0], token)), caught.value.diag.message_detail
    assert scalar(su, f"SELECT iban FROM {payouts} WHERE id = 1") == "EN01"
    assert last_entry(su, payouts)[1:5] == (entra.sig.kid, None, jose_claims(token)["sub"], "aal2")


def test_supabase_freshness_from_amr(su, fresh_issuer):
    supa = fresh_issuer("supabase")
    assert imported(su, supa) == {supa.sig.kid: ("ES256", "added")}
    define_issuer(su, supa.issuer, **supa.profile())
    with su.transaction():
        su.execute("SET LOCAL stepup.max_lifetime = '1h'")
        claims = present(su, supa.token("access_token_totp"))
        assert (claims["aal"], "auth_time" in claims) == ("aal2", False)
        # The newest amr timestamp (totp, 15 s ago) is the authentication time.
        assert scalar(su, "SELECT stepup.satisfied('aal2', '45 seconds')") is True
        assert scalar(su, "SELECT stepup.satisfied('aal2', '5 seconds')") is False
    with su.transaction():
        su.execute("SET LOCAL stepup.max_lifetime = '1h'")
        present(su, supa.token("access_token_untimed_amr"))
        assert scalar(su, "SELECT stepup.satisfied('aal2', '1 day')") is False
        err = expect_error(su, "SELECT stepup.require('aal2', '5 minutes')", None, "SU001")
    assert err.diag.message_detail.startswith('insufficient_user_authentication acr_values="aal2" max_age=300')
    assert "satisfies no max_age" in err.diag.message_detail
