"""A real OpenID provider for the tests, and a client that signs in the way
an application answering pg_stepup's SU001 challenge would.

The provider is node-oidc-provider (tests/oidc/provider.mjs) over HTTPS on
127.0.0.1 with a certificate from tests/tls.py; its issuer is
https://localhost:PORT. Its signing keys are JWKS files with private keys
that this module generates (RS256 for ID tokens, ES256 for RFC 9068 access
tokens), so a test can rotate them by restarting it with another file.

    provider = start_provider(tmp_path, ca)          # or the `oidc` fixture
    tokens = OidcClient(provider).authorize(acr_values=["2"], max_age=300)
    tokens["id_token"], tokens["access_token"]
    provider.restart(keys=provider_keys("v2"))       # rotation, same port
    provider.stop()

Setup: scripts/setup_oidc.sh (npm ci in tests/oidc, jwcrypto in the venv).
"""
import base64
import hashlib
import hmac
import html.parser
import http.cookiejar
import json
import os
import re
import secrets
import selectors
import shutil
import struct
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tls import make_ca, serve_https

TESTS = Path(__file__).parent
OIDC_DIR = TESTS / "oidc"
ROOT = TESTS.parent

CLIENT_ID = "bank-app"
RESOURCE = "urn:pg_stepup:bank"
RESOURCE_SCOPE = "transfer"
ACR_VALUES = ["1", "2"]  # Keycloak-like: "1" password, "2" password + OTP
LEVELS = {"1": "aal1", "2": "aal2"}  # the issuer profile's levels
TOKEN_TTL = 300  # below stepup.max_lifetime's 15 minutes
USER = "alice"


# --- keys -------------------------------------------------------------------

def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_int(n, length=None):
    length = length or (n.bit_length() + 7) // 8
    return b64u(n.to_bytes(length, "big"))


def b64u_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Key:
    """A private key, its private JWK (what a provider signs with) and its
    public JWK and DER SubjectPublicKeyInfo (what the database is given)."""
    kid: str
    alg: str
    private: object
    jwk: dict          # private JWK: kid, alg, use and the private members
    public_jwk: dict
    spki: bytes


PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")


def _key(kid, alg, private, members):
    jwk = {"kid": kid, "alg": alg, "use": "sig", **members}
    public = {k: v for k, v in jwk.items() if k not in PRIVATE_MEMBERS}
    spki = private.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    return Key(kid, alg, private, jwk, public, spki)


def rsa_key(kid, alg="RS256", bits=2048):
    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    n = private.private_numbers()
    pub = n.public_numbers
    size = (bits + 7) // 8
    return _key(kid, alg, private, {
        "kty": "RSA", "n": b64u_int(pub.n, size), "e": b64u_int(pub.e),
        "d": b64u_int(n.d, size), "p": b64u_int(n.p), "q": b64u_int(n.q),
        "dp": b64u_int(n.dmp1), "dq": b64u_int(n.dmq1), "qi": b64u_int(n.iqmp)})


CURVES = {"ES256": (ec.SECP256R1, "P-256", 32), "ES384": (ec.SECP384R1, "P-384", 48)}


def ec_key(kid, alg="ES256"):
    curve, crv, size = CURVES[alg]
    private = ec.generate_private_key(curve())
    n = private.private_numbers()
    return _key(kid, alg, private, {
        "kty": "EC", "crv": crv, "x": b64u_int(n.public_numbers.x, size),
        "y": b64u_int(n.public_numbers.y, size), "d": b64u_int(n.private_value, size)})


def ed25519_key(kid):
    private = ed25519.Ed25519PrivateKey.generate()
    raw = serialization.Encoding.Raw
    return _key(kid, "EdDSA", private, {
        "kty": "OKP", "crv": "Ed25519",
        "x": b64u(private.public_key().public_bytes(raw, serialization.PublicFormat.Raw)),
        "d": b64u(private.private_bytes(raw, serialization.PrivateFormat.Raw,
                                        serialization.NoEncryption()))})


def new_key(alg, kid=None):
    kid = kid or f"{alg.lower()}-{secrets.token_hex(6)}"
    if alg in ("RS256", "PS256"):
        return rsa_key(kid, alg)
    if alg in CURVES:
        return ec_key(kid, alg)
    if alg == "EdDSA":
        return ed25519_key(kid)
    raise ValueError(alg)


def provider_keys(tag=None):
    """The provider's signing keys: RS256 (ID tokens) and ES256 (access
    tokens), kids unique per call so that a rotation really changes them."""
    tag = tag or secrets.token_hex(4)
    return [rsa_key(f"rs256-{tag}", "RS256"), ec_key(f"es256-{tag}", "ES256")]


# --- the provider -------------------------------------------------------------

def node_binary():
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: run scripts/setup_oidc.sh")
    if not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
        pytest.fail("tests/oidc/node_modules is missing: run scripts/setup_oidc.sh")
    return node


@dataclass
class Account:
    username: str
    password: str
    totp_secret: bytes

    def totp(self, at=None):
        """RFC 6238 (SHA-1, 6 digits, 30 s), as an authenticator app shows it."""
        step = int((time.time() if at is None else at) // 30)
        mac = hmac.new(self.totp_secret, struct.pack(">Q", step), hashlib.sha1).digest()
        offset = mac[-1] & 0x0F
        return f"{(struct.unpack('>I', mac[offset:offset + 4])[0] & 0x7FFFFFFF) % 1_000_000:06d}"


@dataclass
class Provider:
    directory: Path
    ca: object
    redirect_uri: str
    keys: list
    account: Account
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    port: int = 0
    issuer: str = None
    process: subprocess.Popen = None

    @property
    def config_path(self):
        return self.directory / "provider.json"

    @property
    def log_path(self):
        return self.directory / "provider.log"

    def start(self, timeout=30):
        """Starts the provider and waits for its READY line; on a restart it
        keeps the port, so the issuer stays the same."""
        node = node_binary()
        self.directory.mkdir(parents=True, exist_ok=True)
        jwks_path = self.directory / "jwks-private.json"
        jwks_path.write_text(json.dumps({"keys": [k.jwk for k in self.keys]}))
        self.config_path.write_text(json.dumps({
            "host": "127.0.0.1", "port": self.port, "cert": self.ca.cert_pem, "key": self.ca.key_pem,
            "jwks": str(jwks_path),
            "client": {"client_id": CLIENT_ID, "client_secret": self.client_secret,
                       "redirect_uri": self.redirect_uri},
            "resource": RESOURCE, "resource_scope": RESOURCE_SCOPE,
            "acr_values": ACR_VALUES, "ttl": TOKEN_TTL,
            "accounts": {self.account.username: {"password": self.account.password,
                                                 "totp_secret": self.account.totp_secret.hex()}},
        }))
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([node, str(OIDC_DIR / "provider.mjs"), str(self.config_path)],
                                        cwd=OIDC_DIR, stdout=subprocess.PIPE, stderr=log,
                                        stdin=subprocess.DEVNULL)
        log.close()
        line = self._ready_line(timeout)
        ready = json.loads(line.split(" ", 1)[1])
        self.port, self.issuer = ready["port"], ready["issuer"]
        return self

    def _ready_line(self, timeout):
        deadline = time.monotonic() + timeout
        sel = selectors.DefaultSelector()
        sel.register(self.process.stdout, selectors.EVENT_READ)
        buffered = b""
        try:
            while time.monotonic() < deadline:
                if sel.select(timeout=0.2):
                    chunk = os.read(self.process.stdout.fileno(), 4096)
                    if not chunk:
                        break
                    buffered += chunk
                    for line in buffered.decode(errors="replace").splitlines():
                        if line.startswith("READY "):
                            return line
                elif self.process.poll() is not None:
                    break
        finally:
            sel.close()
        self.stop()
        raise RuntimeError(f"the OpenID provider did not start: {buffered!r}\n"
                           f"{self.log_path.read_text(errors='replace')[-4000:]}")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process and self.process.stdout:
            self.process.stdout.close()
        self.process = None

    def restart(self, keys=None):
        """Rotation as an operator does it: the same issuer, a new key set."""
        self.stop()
        if keys is not None:
            self.keys = keys
        return self.start()

    def get_json(self, url):
        with urllib.request.urlopen(url, context=self.ca.client_context(), timeout=10) as resp:
            return json.loads(resp.read())

    def discovery(self):
        return self.get_json(f"{self.issuer}/.well-known/openid-configuration")

    def jwks(self):
        """The public JWKS as served at jwks_uri."""
        return self.get_json(self.discovery()["jwks_uri"])


def start_provider(directory, ca, keys=None, account=None):
    """Starts a provider with its own callback server (the app's redirect
    URI); returns it. Call .stop() (and .callback_stop()) when done."""
    routes = {"/cb": (200, b"signed in\n", "text/plain")}
    base, stop_callback = serve_https(routes, ca)
    account = account or Account(USER, secrets.token_urlsafe(12), secrets.token_bytes(20))
    provider = Provider(Path(directory), ca, f"{base}/cb", keys or provider_keys(), account)
    provider.callback_stop = stop_callback
    try:
        return provider.start()
    except Exception:
        stop_callback()
        raise


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory):
    return make_ca(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def oidc(tmp_path_factory, test_ca):
    """A running provider for the module; stopped at its end."""
    provider = start_provider(tmp_path_factory.mktemp("oidc"), test_ca)
    yield provider
    provider.stop()
    provider.callback_stop()


# --- the client ------------------------------------------------------------------

class _Forms(html.parser.HTMLParser):
    """Collects the forms of a page: action, method and input names."""

    def __init__(self):
        super().__init__()
        self.forms = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.forms.append({"action": attrs.get("action", ""),
                               "method": (attrs.get("method") or "get").lower(),
                               "id": attrs.get("id"), "inputs": {}})
        elif tag == "input" and self.forms and attrs.get("name"):
            self.forms[-1]["inputs"][attrs["name"]] = attrs.get("value") or ""


def parse_forms(page):
    parser = _Forms()
    parser.feed(page)
    return parser.forms


class SignInError(Exception):
    pass


class OidcClient:
    """An application signing its user in with the authorization-code flow
    (PKCE, acr_values, max_age, resource indicator) over HTTPS: a browser's
    cookie jar for the provider's session, the forms filled as the user would."""

    def __init__(self, provider):
        self.provider = provider

    def _opener(self):
        jar = http.cookiejar.CookieJar()  # a fresh browser: no provider session yet
        return urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=self.provider.ca.client_context()),
            urllib.request.HTTPCookieProcessor(jar))

    @staticmethod
    def _open(opener, url, form=None):
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        try:
            with opener.open(url, data=data, timeout=10) as resp:
                return resp.status, resp.geturl(), resp.read().decode(errors="replace")
        except urllib.error.HTTPError as err:
            return err.code, err.geturl(), err.read().decode(errors="replace")

    def authorize(self, acr_values=("2",), max_age=None, resource=RESOURCE, otp=True,
                  password=None, scope=f"openid {RESOURCE_SCOPE}"):
        """Signs in and returns the token response (id_token, access_token, ...).
        `otp`: True answers the second-factor form with the right TOTP code,
        a string answers it with that code."""
        p = self.provider
        verifier = b64u(secrets.token_bytes(32))
        challenge = b64u(hashlib.sha256(verifier.encode()).digest())
        state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        params = {"client_id": CLIENT_ID, "response_type": "code", "scope": scope,
                  "redirect_uri": p.redirect_uri, "state": state, "nonce": nonce,
                  "code_challenge": challenge, "code_challenge_method": "S256"}
        if acr_values:
            params["acr_values"] = " ".join(acr_values)
        if max_age is not None:
            params["max_age"] = str(max_age)
        if resource:
            params["resource"] = resource
        discovery = p.discovery()
        opener = self._opener()
        status, url, page = self._open(opener, f"{discovery['authorization_endpoint']}?"
                                       f"{urllib.parse.urlencode(params)}")
        answers = {"login": {"username": p.account.username,
                             "password": p.account.password if password is None else password},
                   "otp": {"otp": p.account.totp() if otp is True else (otp or "")}}
        for _ in range(4):  # login form, then maybe the second-factor form
            if url.startswith(p.redirect_uri):
                break
            forms = parse_forms(page) if status in (200, 401) else []
            if len(forms) != 1 or forms[0]["id"] not in answers:
                raise SignInError(f"unexpected page {status} at {url}: {page[:500]}")
            form = forms[0]
            if form["id"] == "otp" and otp is False:
                raise SignInError("the provider asks for a second factor")
            fields = {**form["inputs"], **answers[form["id"]]}
            status, url, page = self._open(opener, urllib.parse.urljoin(url, form["action"]), fields)
            if status == 401:
                raise SignInError(f"{form['id']} refused: {page[:300]}")
        if not url.startswith(p.redirect_uri) or status != 200:
            raise SignInError(f"did not reach the redirect URI: {status} {url} {page[:300]}")
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
        if "error" in query:
            raise SignInError(f"authorization error: {query}")
        assert query["state"] == state
        assert query["iss"] == p.issuer  # RFC 9207
        token_form = {"grant_type": "authorization_code", "code": query["code"],
                      "redirect_uri": p.redirect_uri, "code_verifier": verifier}
        if resource:
            token_form["resource"] = resource
        basic = base64.b64encode(f"{CLIENT_ID}:{p.client_secret}".encode()).decode()
        req = urllib.request.Request(discovery["token_endpoint"],
                                     data=urllib.parse.urlencode(token_form).encode(),
                                     headers={"Authorization": f"Basic {basic}"})
        try:
            with urllib.request.urlopen(req, context=p.ca.client_context(), timeout=10) as resp:
                tokens = json.loads(resp.read())
        except urllib.error.HTTPError as err:
            raise SignInError(f"token endpoint: {err.code} {err.read()[:300]!r}") from None
        tokens["nonce"] = nonce
        return tokens


# --- answering pg_stepup's challenge ------------------------------------------

CHALLENGE = re.compile(r'insufficient_user_authentication acr_values="([^"]*)"(?: max_age=(\d+))?')


def parse_challenge(detail):
    """(level names, max_age seconds or None) from an SU001 DETAIL (RFC 9470)."""
    m = CHALLENGE.search(detail or "")
    if not m:
        raise ValueError(f"no RFC 9470 challenge in {detail!r}")
    return m.group(1).split(), int(m.group(2)) if m.group(2) else None


def provider_values(level_names, levels=LEVELS):
    """The issuer's own acr values for the database's level names: the
    inverse of the issuer profile's `levels` map."""
    inverse = {}
    for value, name in levels.items():
        inverse.setdefault(name, value)
    return [inverse[name] for name in level_names]


def answer_challenge(client, detail, levels=LEVELS, **kw):
    """Signs in again at the level and freshness the challenge asks for."""
    names, max_age = parse_challenge(detail)
    return client.authorize(acr_values=provider_values(names, levels), max_age=max_age, **kw)


# --- stepup sync-jwks ---------------------------------------------------------------

def stepup_cli():
    cli = os.environ.get("STEPUP_CLI") or str(ROOT / "target" / "release" / "stepup")
    if not os.access(cli, os.X_OK):
        pytest.fail(f"{cli} not found: cargo build --release -p stepup-cli (or set STEPUP_CLI)")
    return cli


def sync_jwks(issuer, db_conninfo, ca, timeout=60):
    """Runs `stepup sync-jwks --once` against the provider (trusting the test
    CA only); returns the completed process."""
    env = {**os.environ, "SSL_CERT_FILE": ca.ca_pem}
    env.pop("SSL_CERT_DIR", None)
    return subprocess.run([stepup_cli(), "sync-jwks", "--issuer", issuer, "--db", db_conninfo, "--once"],
                          env=env, capture_output=True, text=True, timeout=timeout)


# --- decoding, for assertions --------------------------------------------------------

def jose_header(token):
    return json.loads(b64u_decode(token.split(".")[0]))


def jose_claims(token):
    return json.loads(b64u_decode(token.split(".")[1]))
