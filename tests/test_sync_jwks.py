"""`stepup sync-jwks` end to end: a real HTTPS issuer (tests/tls.py), the
real binary, the test cluster.

Tests that fail before the database is reached (TLS, HTTP, documents,
usage) need no extension and connect nowhere useful; the others call
stepup.add_jwks through the `dbname` fixture's database.

The binary: STEPUP_CLI when set, else `cargo build --release -p stepup-cli`
(once per session) in CARGO_TARGET_DIR or target/.
"""
import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

sys.path.insert(0, str(Path(__file__).parent))
from conftest import PGPORT, SUPERUSER, conninfo  # noqa: E402
from tls import Routes, make_ca, serve_https  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ACTIONS = ("added", "kept", "retired", "skipped", "refused")


# --- the binary -------------------------------------------------------------

@pytest.fixture(scope="session")
def stepup_bin():
    given = os.environ.get("STEPUP_CLI")
    if given:
        return given
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "stepup-cli"], cwd=ROOT, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    if not target.is_absolute():
        target = ROOT / target
    path = target / "release" / "stepup"
    assert path.exists(), path
    return str(path)


def clean_env(ca_file=None):
    """The environment without any CA override, plus SSL_CERT_FILE=ca_file."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR", "PGPASSWORD")}
    if ca_file:
        env["SSL_CERT_FILE"] = ca_file
    return env


@pytest.fixture
def run(stepup_bin, ca):
    """run(*args, ca_file=<the test CA>) -> CompletedProcess (text)."""
    def go(*args, ca_file=ca.ca_pem, timeout=90):
        return subprocess.run([stepup_bin, *args], env=clean_env(ca_file), capture_output=True,
                              text=True, timeout=timeout)
    return go


def rows(stdout):
    """{kid: (action word, alg, reason)} from the outcome lines."""
    out = {}
    for line in stdout.splitlines():
        line = re.sub(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ", "", line)
        parts = line.split(None, 3)
        if parts and parts[0] in ACTIONS:
            out[parts[2]] = (parts[0], parts[1], parts[3] if len(parts) > 3 else "")
    return out


# --- the issuer -------------------------------------------------------------

@pytest.fixture(scope="session")
def ca(tmp_path_factory):
    return make_ca(tmp_path_factory.mktemp("tls"))


def b64u_int(n, length=None):
    length = length or (n.bit_length() + 7) // 8
    return base64.urlsafe_b64encode(n.to_bytes(length, "big")).rstrip(b"=").decode()


def rsa_jwk(kid, key=None):
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pub = key.public_key().public_numbers()
    return {"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig", "n": b64u_int(pub.n), "e": b64u_int(pub.e)}


def ec_jwk(kid):
    pub = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    return {"kty": "EC", "kid": kid, "alg": "ES256", "crv": "P-256",
            "x": b64u_int(pub.x, 32), "y": b64u_int(pub.y, 32)}


class Issuer:
    """An issuer under a path of its own on a shared HTTPS server, so every
    test has a fresh issuer identifier (the database keeps keys per issuer)."""

    def __init__(self, routes, base_url, trailing_slash=False):
        self.routes = routes
        self.prefix = f"/realms/{uuid.uuid4().hex[:12]}"
        self.base = base_url + self.prefix
        self.url = self.base + ("/" if trailing_slash else "")
        self.discovery_path = self.prefix + "/.well-known/openid-configuration"
        self.jwks_path = self.prefix + "/jwks"
        self.set_discovery({"issuer": self.url, "jwks_uri": self.base + "/jwks",
                            "id_token_signing_alg_values_supported": ["RS256", "ES256"]})
        self.set_jwks([])

    def set_discovery(self, doc):
        self.routes[self.discovery_path] = (200, json.dumps(doc).encode(), "application/json")

    def set_jwks(self, keys):
        self.routes[self.jwks_path] = (200, json.dumps({"keys": keys}).encode(), "application/json")

    def set_raw(self, path, status, body, content_type="application/json"):
        self.routes[path] = (status, body, content_type)


@pytest.fixture(scope="session")
def server(ca):
    routes = Routes()
    base_url, stop = serve_https(routes, ca)
    yield routes, base_url
    stop()


@pytest.fixture
def issuer(server):
    routes, base_url = server
    return Issuer(routes, base_url)


# A conninfo for tests that fail before the database is used: the cluster's
# postgres database (no extension needed).
def nowhere_db():
    return conninfo("postgres")


# --- fetching and checking: no database needed -----------------------------

def test_help_explains_every_flag(run):
    top = run("--help")
    assert top.returncode == 0 and "sync-jwks" in top.stdout
    out = run("sync-jwks", "--help")
    assert out.returncode == 0
    for flag in ("--issuer", "--db", "--once", "--every", "--allow-http-loopback", "SSL_CERT_FILE",
                 "Exit status", "refused", "local development"):
        assert flag in out.stdout, flag
    assert "--test-short-interval" not in out.stdout


@pytest.mark.parametrize("args", [
    [],
    ["sync-jwks"],
    ["sync-jwks", "--issuer", "https://idp.example"],
    ["sync-jwks", "--issuer", "https://idp.example", "--db", "host=/tmp user=u", "--once", "--every", "1m"],
    ["sync-jwks", "--issuer", "https://idp.example", "--db", "host=/tmp user=u", "--every", "10s"],
    ["sync-jwks", "--issuer", "https://idp.example", "--db", "host=/tmp user=u", "--every", "30"],
    ["sync-jwks", "--issuer", "https://idp.example/?q=1", "--db", "host=/tmp user=u"],
    ["sync-jwks", "--issuer", "idp.example", "--db", "host=/tmp user=u"],
    ["sync-jwks", "--issuer", "https://idp.example", "--db", "host=/tmp user=u sslmode=verify-full"],
    ["sync-jwks", "--issuer", "https://idp.example", "--db", "host=/tmp user=u bogus=1"],
    ["frobnicate"],
], ids=["nothing", "no-args", "no-db", "once-and-every", "every-too-short", "every-no-unit",
        "issuer-query", "issuer-no-scheme", "sslmode-unimplemented", "unknown-conninfo-key", "unknown-command"])
def test_bad_usage_exits_2(run, args):
    out = run(*args)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert out.stderr.strip()


def test_sslmode_message_names_what_is_accepted(run):
    out = run("sync-jwks", "--issuer", "https://idp.example", "--db", "host=/tmp user=u sslmode=verify-ca")
    assert out.returncode == 2
    assert "sslmode=disable, prefer or require" in out.stderr


def test_plain_http_issuer_needs_the_flag(run):
    out = run("sync-jwks", "--issuer", "http://127.0.0.1:9/r", "--db", nowhere_db())
    assert out.returncode == 2
    assert "plain http" in out.stderr and "--allow-http-loopback" in out.stderr


def test_plain_http_only_to_loopback(run):
    out = run("sync-jwks", "--issuer", "http://idp.example/r", "--db", nowhere_db(), "--allow-http-loopback")
    assert out.returncode == 2
    assert "127.0.0.1, ::1 and localhost" in out.stderr


def test_unknown_ca_is_a_tls_error(run, issuer):
    out = run("sync-jwks", "--issuer", issuer.url, "--db", nowhere_db(), ca_file=None)
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert "TLS error" in out.stderr and "UnknownIssuer" in out.stderr, out.stderr


def test_another_ca_is_a_tls_error(run, issuer, tmp_path):
    other = make_ca(tmp_path, common_name="someone else's CA")
    out = run("sync-jwks", "--issuer", issuer.url, "--db", nowhere_db(), ca_file=other.ca_pem)
    assert out.returncode == 1
    assert "TLS error" in out.stderr, out.stderr


def test_https_jwks_uri_on_loopback_name(run, issuer):
    """The certificate names localhost too: an issuer spelled that way works
    up to the database (here the postgres database, without the extension)."""
    url = issuer.url.replace("127.0.0.1", "localhost")
    issuer.set_discovery({"issuer": url, "jwks_uri": issuer.base + "/jwks"})
    out = run("sync-jwks", "--issuer", url, "--db", nowhere_db())
    assert out.returncode == 1
    assert "database error" in out.stderr, out.stderr


def test_issuer_mismatch(run, issuer):
    issuer.set_discovery({"issuer": "https://evil.example", "jwks_uri": issuer.base + "/jwks"})
    out = run("sync-jwks", "--issuer", issuer.url, "--db", nowhere_db())
    assert out.returncode == 1
    assert "issuer mismatch" in out.stderr and "https://evil.example" in out.stderr


def test_issuer_must_match_exactly_trailing_slash(run, issuer):
    """Discovery strips one trailing slash to build the URL, but the issuer
    compared is the one given: `.../r/` is not `.../r`."""
    out = run("sync-jwks", "--issuer", issuer.url + "/", "--db", nowhere_db())
    assert out.returncode == 1
    assert "issuer mismatch" in out.stderr, out.stderr


def test_jwks_uri_must_be_https(run, issuer):
    issuer.set_discovery({"issuer": issuer.url, "jwks_uri": "http://127.0.0.1:9/jwks"})
    out = run("sync-jwks", "--issuer", issuer.url, "--db", nowhere_db())
    assert out.returncode == 1
    assert "jwks_uri" in out.stderr and "plain http" in out.stderr


@pytest.mark.parametrize("where", ["discovery", "jwks"])
@pytest.mark.parametrize("status,body,reason", [
    (500, b"oops", "HTTP status 500"),
    (404, b"{}", "HTTP status 404"),
    (200, b"<html>not json</html>", "not JSON"),
    (200, b"\xff\xfe", "not JSON"),
    (200, b'{"keys": [' + b'{"kty": "oct"},' * (2 * 1024 * 1024 // 15) + b'{}]}', "larger than 1048576 bytes"),
], ids=["500", "404", "html", "not-utf8", "2MiB"])
def test_bad_responses(run, issuer, where, status, body, reason):
    path = issuer.discovery_path if where == "discovery" else issuer.jwks_path
    issuer.set_raw(path, status, body)
    out = run("sync-jwks", "--issuer", issuer.url, "--db", nowhere_db())
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert reason in out.stderr, out.stderr
    assert not rows(out.stdout)


def test_bad_documents(run, issuer):
    issuer.set_discovery({"issuer": issuer.url})
    out = run("sync-jwks", "--issuer", issuer.url, "--db", nowhere_db())
    assert out.returncode == 1 and 'no "jwks_uri"' in out.stderr
    issuer.set_discovery({"issuer": issuer.url, "jwks_uri": issuer.base + "/jwks"})
    issuer.set_raw(issuer.jwks_path, 200, b'{"keys": {}}')
    out = run("sync-jwks", "--issuer", issuer.url, "--db", nowhere_db())
    assert out.returncode == 1 and "not a JWKS" in out.stderr


def test_redirect_to_plain_http_is_refused(run, issuer):
    issuer.routes[issuer.discovery_path] = (302, b"", "text/plain",
                                            {"Location": "http://127.0.0.1:9/.well-known/openid-configuration"})
    out = run("sync-jwks", "--issuer", issuer.url, "--db", nowhere_db())
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert "plain http is refused" in out.stderr, out.stderr


def test_https_redirect_is_followed(run, issuer):
    """Up to the database: the postgres database has no stepup schema."""
    moved = issuer.prefix + "/moved"
    issuer.routes[moved] = issuer.routes[issuer.discovery_path]
    issuer.routes[issuer.discovery_path] = (301, b"", "text/plain", {"Location": issuer.base + "/moved"})
    out = run("sync-jwks", "--issuer", issuer.url, "--db", nowhere_db())
    assert out.returncode == 1
    assert "database error" in out.stderr, out.stderr


def test_connection_refused_is_a_database_error(run, issuer):
    issuer.set_jwks([ec_jwk("k1")])
    out = run("sync-jwks", "--issuer", issuer.url,
              "--db", "host=127.0.0.1 port=9 user=postgres dbname=x connect_timeout=5")
    assert out.returncode == 1
    assert out.stderr.startswith("stepup sync-jwks: database:"), out.stderr


def test_database_error_prints_its_sqlstate(run, issuer):
    """The postgres database has no stepup schema: 3F000, printed with its
    message; nothing printed as a result."""
    issuer.set_jwks([ec_jwk("k1")])
    out = run("sync-jwks", "--issuer", issuer.url, "--db", nowhere_db())
    assert out.returncode == 1
    assert re.search(r"database error [0-9A-Z]{5}: ", out.stderr), out.stderr
    assert not rows(out.stdout)


def test_every_keeps_going_after_failed_rounds(stepup_bin, ca, issuer):
    issuer.set_raw(issuer.discovery_path, 503, b"busy", "text/plain")
    proc = subprocess.Popen([stepup_bin, "sync-jwks", "--issuer", issuer.url, "--db", nowhere_db(),
                             "--every", "1s", "--test-short-interval"],
                            env=clean_env(ca.ca_pem), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 30
        failed = []
        while len(failed) < 2 and time.time() < deadline:
            line = proc.stderr.readline()
            if "failed" in line:
                failed.append(line)
        assert len(failed) == 2, failed
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ stepup sync-jwks: round 1 failed: .*HTTP status 503",
                        failed[0]), failed[0]
        assert "round 2 failed" in failed[1]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert "stopping after" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --- with the database: stepup.add_jwks ----------------------------------------

def key_info(dbname, issuer_url):
    with psycopg.connect(conninfo(dbname), autocommit=True) as c:
        return dict(c.execute("SELECT kid, alg FROM stepup.key_info WHERE issuer = %s",
                              [issuer_url]).fetchall())


def test_sync_adds_keeps_and_retires(run, issuer, dbname):
    rsa_key, ec_key = rsa_jwk(f"rsa-{uuid.uuid4().hex[:8]}"), ec_jwk(f"ec-{uuid.uuid4().hex[:8]}")
    issuer.set_jwks([rsa_key, ec_key])
    db = conninfo(dbname)

    out = run("sync-jwks", "--issuer", issuer.url, "--db", db)
    assert out.returncode == 0, (out.stdout, out.stderr)
    assert rows(out.stdout) == {rsa_key["kid"]: ("added", "RS256", ""), ec_key["kid"]: ("added", "ES256", "")}
    assert f"{issuer.url}: 2 added, 0 kept, 0 retired, 0 skipped, 0 refused (from {issuer.base}/jwks)" in out.stdout
    assert re.search(rf"^added    RS256  {rsa_key['kid']}$", out.stdout, re.M), out.stdout
    assert key_info(dbname, issuer.url) == {rsa_key["kid"]: "RS256", ec_key["kid"]: "ES256"}

    out = run("sync-jwks", "--issuer", issuer.url, "--db", db, "--once")
    assert out.returncode == 0, out.stderr
    assert {k: v[0] for k, v in rows(out.stdout).items()} == {rsa_key["kid"]: "kept", ec_key["kid"]: "kept"}

    issuer.set_jwks([ec_key])
    out = run("sync-jwks", "--issuer", issuer.url, "--db", db)
    assert out.returncode == 0, out.stderr
    assert {k: v[0] for k, v in rows(out.stdout).items()} == {rsa_key["kid"]: "retired", ec_key["kid"]: "kept"}
    assert "0 added, 1 kept, 1 retired" in out.stdout


def test_trailing_slash_issuer(run, server, dbname):
    routes, base_url = server
    iss = Issuer(routes, base_url, trailing_slash=True)
    key = ec_jwk(f"ec-{uuid.uuid4().hex[:8]}")
    iss.set_jwks([key])
    out = run("sync-jwks", "--issuer", iss.url, "--db", conninfo(dbname))
    assert out.returncode == 0, out.stderr
    assert rows(out.stdout)[key["kid"]][0] == "added"
    assert key_info(dbname, iss.url) == {key["kid"]: "ES256"}


def test_skipped_keys_are_not_a_failure(run, issuer, dbname):
    sig, enc = ec_jwk(f"ec-{uuid.uuid4().hex[:8]}"), ec_jwk(f"enc-{uuid.uuid4().hex[:8]}")
    enc["use"] = "enc"
    issuer.set_jwks([sig, enc])
    out = run("sync-jwks", "--issuer", issuer.url, "--db", conninfo(dbname))
    assert out.returncode == 0, out.stderr
    got = rows(out.stdout)
    assert got[sig["kid"]][0] == "added"
    assert got[enc["kid"]][0] == "skipped" and got[enc["kid"]][2], got
    assert "1 added, 0 kept, 0 retired, 1 skipped, 0 refused" in out.stdout


def test_reused_kid_is_refused_exit_1(run, issuer, dbname):
    kid = f"rsa-{uuid.uuid4().hex[:8]}"
    issuer.set_jwks([rsa_jwk(kid)])
    assert run("sync-jwks", "--issuer", issuer.url, "--db", conninfo(dbname)).returncode == 0
    issuer.set_jwks([rsa_jwk(kid)])  # same kid, other key
    out = run("sync-jwks", "--issuer", issuer.url, "--db", conninfo(dbname))
    assert out.returncode == 1, (out.stdout, out.stderr)
    # The document's key is refused, and the key held under that kid, which
    # the issuer no longer publishes, is retired: neither verifies now.
    actions = [line.split(None, 3)[:3] for line in out.stdout.splitlines()
               if line.split(None, 1)[:1] in (["refused"], ["retired"])]
    assert actions == [["refused", "RS256", kid], ["retired", "RS256", kid]]
    assert "1 refused" in out.stdout          # everything printed first
    assert "refused" in out.stderr and "key substitution" in out.stderr


def test_app_role_gets_42501(run, issuer, dbname, app_role):
    issuer.set_jwks([ec_jwk(f"ec-{uuid.uuid4().hex[:8]}")])
    out = run("sync-jwks", "--issuer", issuer.url, "--db", conninfo(dbname, user=app_role))
    assert out.returncode == 1
    assert "database error 42501" in out.stderr, out.stderr


def test_url_conninfo_over_tcp(run, issuer, dbname):
    """A postgresql:// URL to 127.0.0.1 (the cluster has no TLS: prefer goes
    on in plain text, require fails rather than downgrading)."""
    key = ec_jwk(f"ec-{uuid.uuid4().hex[:8]}")
    issuer.set_jwks([key])
    url = f"postgresql://{SUPERUSER}@127.0.0.1:{PGPORT}/{dbname}"
    out = run("sync-jwks", "--issuer", issuer.url, "--db", url + "?sslmode=require")
    assert out.returncode == 1 and "database" in out.stderr, out.stderr
    assert not key_info(dbname, issuer.url)
    out = run("sync-jwks", "--issuer", issuer.url, "--db", url)
    assert out.returncode == 0, out.stderr
    assert rows(out.stdout)[key["kid"]][0] == "added"


def test_every_runs_rounds(stepup_bin, ca, issuer, dbname):
    key = ec_jwk(f"ec-{uuid.uuid4().hex[:8]}")
    issuer.set_jwks([key])
    proc = subprocess.Popen([stepup_bin, "sync-jwks", "--issuer", issuer.url, "--db", conninfo(dbname),
                             "--every", "1s", "--test-short-interval"],
                            env=clean_env(ca.ca_pem), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        summaries, lines = [], []
        deadline = time.time() + 30
        while len(summaries) < 2 and time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if " refused (from " in line:
                summaries.append(line)
        assert len(summaries) == 2, (lines, proc.stderr.read() if proc.poll() is not None else "")
        assert all(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ", s) for s in lines)
        assert "1 added" in summaries[0] and "1 kept" in summaries[1]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_every_30s_first_round(stepup_bin, ca, issuer, dbname):
    """The real minimum, no test flag: the first round runs at once; then
    the process waits until SIGTERM."""
    key = ec_jwk(f"ec-{uuid.uuid4().hex[:8]}")
    issuer.set_jwks([key])
    proc = subprocess.Popen([stepup_bin, "sync-jwks", "--issuer", issuer.url, "--db", conninfo(dbname),
                             "--every", "30s"],
                            env=clean_env(ca.ca_pem), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, summary = time.time() + 30, None
        while summary is None and time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if " refused (from " in line:
                summary = line
        assert summary and "1 added" in summary, (summary, proc.stderr.read() if proc.poll() is not None else "")
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
