"""Hostile input to stepup.present: enormous, binary, not-UTF-8 and deeply
nested assertions, signed and unsigned. Every one is an invalid assertion
(SU002), answered well within statement_timeout, and the backend (and the
postmaster) survive it: the same connection goes on working. Input that
PostgreSQL itself refuses before present() runs (NUL, invalid UTF-8 in a
UTF8 database, text over 1 GB) gets PostgreSQL's clean error instead.

test_assertions.py has the reason-by-reason cases (300 bytes of junk, 100 KB,
nesting at 2500-10000 levels); this file pushes sizes and encodings to the
limits and checks survival and memory."""
import json
import os
import time

import psycopg
import pytest
from psycopg import sql

from conftest import (b64url, conninfo, current, expect_error, hs256_jws, new_hs256, present,
                      scalar, unsigned_jws)
from test_assertions import junk

TIMEOUT_S = 20
MAX_TOKEN = 8192
# The longest text PostgreSQL builds: a varlena of MaxAllocSize (1 GB - 1)
# bytes, 4 of them header. One byte more and repeat() refuses (54000).
MAX_TEXT = (1 << 30) - 1 - 4


@pytest.fixture
def hostile(app):
    """hostile(query, params, detail=..., sqlstate="SU002"): `query` fails with
    `sqlstate` (never 57014: statement_timeout is 20 s) and a short error;
    afterwards the same backend answers, holds nothing, and the postmaster
    has not restarted."""
    app.execute(f"SET statement_timeout = '{TIMEOUT_S}s'")
    pid = scalar(app, "SELECT pg_backend_pid()")
    started = scalar(app, "SELECT pg_postmaster_start_time()")

    def check(query, params=None, detail="", sqlstate="SU002"):
        t0 = time.monotonic()
        err = expect_error(app, query, params, sqlstate)
        assert time.monotonic() - t0 < TIMEOUT_S
        if sqlstate == "SU002":
            assert err.diag.message_primary == "invalid step-up assertion"
            assert detail in (err.diag.message_detail or ""), err.diag.message_detail
        # One short error, however large the input.
        assert len(str(err)) < 1000, str(err)[:200]
        assert scalar(app, "SELECT 1") == 1
        assert scalar(app, "SELECT pg_backend_pid()") == pid
        assert scalar(app, "SELECT pg_postmaster_start_time()") == started
        assert current(app) is None
        return err

    return check


def presents(check, token, detail=""):
    return check("SELECT stepup.present(%s)", [token], detail)


def signed(hs, header=None, payload=None):
    """A token HMAC-signed with the registered key `hs` over raw header and
    payload (dicts, str or bytes): broken contents get past the signature."""
    header = {"alg": "HS256", "kid": hs.kid} if header is None else header
    payload = hs.payload() if payload is None else payload
    return hs256_jws(hs.signing_key, header, payload)


def with_claims(hs, **raw):
    """The valid claims of `hs` as JSON text, with members replaced by raw
    JSON text (which need not be valid JSON)."""
    members = {k: json.dumps(v) for k, v in hs.payload().items()}
    members.update(raw)
    return "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in members.items()) + "}"


# --- enormous ---------------------------------------------------------------

ENORMOUS = {
    "1_mb": "a" * (1 << 20),
    "16_mb": "a" * (16 << 20),
    "16_mb_three_segments": "eyJ" * (3 << 20) + "." + "e30" * (2 << 20) + "." + "c2ln" * (1 << 20),
    "16_mb_of_two_byte_characters": "\u00e9" * (8 << 20),
    "16_mb_of_four_byte_characters": "\U0001f600" * (4 << 20),
}


@pytest.mark.parametrize("token", ENORMOUS.values(), ids=ENORMOUS.keys())
def test_enormous_assertion_sent_by_the_client(hostile, token):
    size = len(token.encode())
    presents(hostile, token, f"assertion is {size} bytes, more than the {MAX_TOKEN} allowed")


def test_size_limit_counts_bytes_not_characters(hostile):
    two_byte = "\u00e9" * (MAX_TOKEN // 2)          # 8192 bytes: decoded, then refused
    presents(hostile, two_byte, "malformed assertion: ")
    presents(hostile, two_byte + "a", f"assertion is {MAX_TOKEN + 1} bytes")


def vm_kib(pid, field):
    """A /proc/<pid>/status field in KiB, or None when the server is not
    local (STEPUP_PGHOST pointing elsewhere)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None


@pytest.mark.skipif(not os.environ.get("STEPUP_HUGE_TESTS"),
                    reason="needs ~2 GB in one backend; set STEPUP_HUGE_TESTS=1")
def test_largest_text_postgres_can_build(app_connect, hostile):
    """1 GB - 5 bytes, built in the server (sending it through libpq takes
    minutes): refused by its length alone. present() copies nothing: the
    backend's peak memory is that of building the text, as for length()."""
    # One byte more is PostgreSQL's limit, not ours.
    hostile("SELECT stepup.present(repeat('a', %s::int))", [MAX_TEXT + 1], sqlstate="54000")
    peaks = {}
    for fn in ("length", "stepup.present"):
        conn = app_connect()
        # Building 1 GB takes PostgreSQL seconds; present() adds nothing.
        conn.execute("SET statement_timeout = '60s'")
        pid = scalar(conn, "SELECT pg_backend_pid()")
        started = scalar(conn, "SELECT pg_postmaster_start_time()")
        query = f"SELECT {fn}(repeat('a', %s::int))"
        if fn == "length":
            assert scalar(conn, query, [MAX_TEXT]) == MAX_TEXT
        else:
            err = expect_error(conn, query, [MAX_TEXT], "SU002")
            assert err.diag.message_detail == f"assertion is {MAX_TEXT} bytes, more than the {MAX_TOKEN} allowed"
            assert scalar(conn, "SELECT pg_backend_pid()") == pid
            assert scalar(conn, "SELECT pg_postmaster_start_time()") == started
        peaks[fn] = vm_kib(pid, "VmHWM")
        conn.close()
    if None in peaks.values():
        pytest.skip("the server's /proc is not readable here")
    assert peaks["stepup.present"] <= peaks["length"] + 64 * 1024, peaks


def test_enormous_input_leaves_a_session_assertion_alone(app, hs, hostile):
    present(app, hs.token(), "session")
    held = current(app)
    err = expect_error(app, "SELECT stepup.present(%s, 'session')", ["a" * (16 << 20)], "SU002")
    assert "more than the 8192 allowed" in err.diag.message_detail
    assert current(app) == held
    app.execute("SELECT stepup.clear()")


# --- NUL, binary junk, control and special characters ------------------------

def test_nul_is_refused_by_the_client_library(app):
    with pytest.raises(psycopg.DataError, match="NUL"):
        app.execute("SELECT stepup.present(%s)", ["eyJ\x00.e30.c2ln"])
    assert scalar(app, "SELECT 1") == 1


NUL_IN_SERVER = {
    # Text in binary format: the server checks the encoding, NUL included.
    "binary_parameter": ("SELECT stepup.present(%b)", ["eyJ\x00.e30.c2ln"], "22021"),
    "convert_from": ("SELECT stepup.present(convert_from('\\x6100622e652e63'::bytea, 'UTF8'))", None, "22021"),
    "chr_0": ("SELECT stepup.present('a.b.' || chr(0))", None, "54000"),
    "unicode_escape": ("SELECT stepup.present(U&'a.b.\\0000')", None, "42601"),
}


@pytest.mark.parametrize("query,params,sqlstate", NUL_IN_SERVER.values(), ids=NUL_IN_SERVER.keys())
def test_nul_is_refused_by_postgres_before_present(hostile, query, params, sqlstate):
    hostile(query, params, sqlstate=sqlstate)


CONTROLS = "".join(map(chr, [*range(1, 32), 127, *range(0x80, 0xA0)]))

JUNK = {
    # Junk cut to the limit (latin-1 above 0x7f is two bytes in UTF-8).
    "junk_at_the_limit": junk(7, 6000).encode()[:MAX_TOKEN].decode(errors="ignore"),
    "junk_over_the_limit_by_bytes": junk(8, 6000),
    "junk_in_three_segments": ".".join(junk(s, 1200) for s in (9, 10, 11)),
    "c0_and_c1_controls": ".".join([CONTROLS] * 3),
    "controls_inside_a_token": "eyJhbGciOiJIUzI1NiJ9\x1b[2J.e30\r\n.c2ln\x7f",
    "noncharacters": "\uffff\ufffe.\U0010ffff.\U0001fffe",
    "bidi_override_and_zero_width": "\u202eeyJhbGciOiJIUzI1NiJ9\u200b.e30\u2060.c2ln\u202c",
    "replacement_characters": "\ufffd" * 100 + ".e30.c2ln",
    "only_dots": "." * MAX_TOKEN,
}


@pytest.mark.parametrize("token", JUNK.values(), ids=JUNK.keys())
def test_binary_junk(hostile, token):
    size = len(token.encode())
    detail = "malformed assertion: " if size <= MAX_TOKEN else f"assertion is {size} bytes"
    presents(hostile, token, detail)


def test_valid_token_with_invisible_prefix(hostile, hs):
    token = hs.token()
    for prefix in ("\ufeff", "\u200b", "\u2060"):
        presents(hostile, prefix + token, "header is not base64url")


# --- not UTF-8 ---------------------------------------------------------------

INVALID_UTF8 = {
    "overlong_slash": b"\xc0\xaf",
    "overlong_nul": b"\xc0\x80",
    "utf16_surrogate_as_cesu": b"\xed\xa0\x80",
    "beyond_u10ffff": b"\xf4\x90\x80\x80",
    "five_byte_form": b"\xf8\x88\x80\x80\x80",
    "truncated_sequence": b"\xe2\x82",
    "lone_continuation": b"\x80",
    "ff_fe": b"\xff\xfe",
}


@pytest.mark.parametrize("raw", INVALID_UTF8.values(), ids=INVALID_UTF8.keys())
def test_invalid_utf8_text_is_refused_by_postgres(hostile, raw):
    """A UTF8 database cannot even hold it: 22021 before present() runs."""
    hostile("SELECT stepup.present(convert_from(%s::bytea, 'UTF8'))", [b"eyJ." + raw + b".c2ln"],
            sqlstate="22021")


@pytest.mark.parametrize("raw", INVALID_UTF8.values(), ids=INVALID_UTF8.keys())
def test_invalid_utf8_in_signed_header(hostile, hs, raw):
    header = b'{"alg":"HS256","kid":"' + hs.kid.encode() + b'","x":"' + raw + b'"}'
    presents(hostile, signed(hs, header=header), "header is not valid JSON")


@pytest.mark.parametrize("raw", INVALID_UTF8.values(), ids=INVALID_UTF8.keys())
def test_invalid_utf8_in_signed_payload(hostile, hs, raw):
    payload = with_claims(hs).encode()[:-1] + b',"sub":"' + raw + b'"}'
    presents(hostile, signed(hs, payload=payload), "payload is not valid JSON")


def test_utf16_json(hostile, hs):
    header = json.dumps({"alg": "HS256", "kid": hs.kid}).encode("utf-16")
    presents(hostile, signed(hs, header=header), "header is not valid JSON")
    presents(hostile, signed(hs, payload=with_claims(hs).encode("utf-16-le")), "payload is not valid JSON")


def test_base64url_of_random_bytes(hostile, hs):
    for seed in range(5):
        header = junk(seed, 64).encode("latin-1")
        presents(hostile, f"{b64url(header)}.e30.c2ln", "header is not valid JSON")
        presents(hostile, signed(hs, payload=header), "payload is not valid JSON")


LONE_SURROGATES = {
    "leading": '"\\ud800"',
    "trailing": '"\\udfff"',
    "reversed_pair": '"\\udc00\\ud800"',
    "leading_then_letter": '"\\ud800\\u0041"',
    "leading_at_end": '"abc\\ud83d"',
}


@pytest.mark.parametrize("escaped", LONE_SURROGATES.values(), ids=LONE_SURROGATES.keys())
@pytest.mark.parametrize("where", ["header_kid", "header_member", "payload_sub", "payload_key"])
def test_lone_surrogate_escapes(hostile, hs, where, escaped):
    """JSON escapes that name no character: refused as invalid JSON, never
    turned into U+FFFD and passed on to jsonb."""
    if where == "header_kid":
        token = signed(hs, header='{"alg":"HS256","kid":' + escaped + "}")
    elif where == "header_member":
        token = signed(hs, header=f'{{"alg":"HS256","kid":"{hs.kid}","x":{escaped}}}')
    elif where == "payload_sub":
        token = signed(hs, payload=with_claims(hs, sub=escaped))
    else:
        token = signed(hs, payload=with_claims(hs).replace('{"sub"', "{" + escaped + ':1,"sub"', 1))
    presents(hostile, token, "is not valid JSON")


def valid_token_with(hs, chars):
    """A valid token of `hs` that contains one of `chars` (a fresh jti
    changes the signature)."""
    for _ in range(200):
        token = hs.token()
        if any(c in token for c in chars):
            return token
    raise AssertionError(f"no token with any of {chars!r}")


def noncanonical_last(segment):
    """The same bytes with non-zero padding bits in the last character."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    i = alphabet.index(segment[-1])
    return segment[:-1] + alphabet[i | 1]


def invalid_base64url(token, case):
    h, p, s = token.split(".")
    assert len(s) == 43  # 32 bytes: the last character holds 2 bits and 4 of padding
    return {
        "standard_alphabet": (token.replace("-", "+").replace("_", "/"), "is not base64url"),
        "padded_signature": (f"{h}.{p}.{s}=", "signature is not base64url"),
        "noncanonical_signature": (f"{h}.{p}.{noncanonical_last(s)}", "signature is not base64url"),
        "impossible_length": (f"{h}.{p}.{s[:-2]}", "signature is not base64url"),
        "newline_inside": (f"{h}.{p[:10]}\n{p[10:]}.{s}", "payload is not base64url"),
        "space_inside": (f"{h[:5]} {h[5:]}.{p}.{s}", "header is not base64url"),
        "cyrillic_lookalike": (token.replace("e", "\u0435", 1), "header is not base64url"),
        "fullwidth_digit": (f"{h}.{p}.\uff10{s[1:]}", "signature is not base64url"),
        "percent_encoded": (f"{h}.{p}.{s[:-2]}%3D", "signature is not base64url"),
    }[case]


@pytest.mark.parametrize("case", [
    "standard_alphabet", "padded_signature", "noncanonical_signature", "impossible_length",
    "newline_inside", "space_inside", "cyrillic_lookalike", "fullwidth_digit", "percent_encoded",
])
def test_invalid_base64url_of_a_valid_token(hostile, hs, case):
    token, detail = invalid_base64url(valid_token_with(hs, "-_"), case)
    presents(hostile, token, detail)


# --- deep nesting --------------------------------------------------------------

def nest(depth, kind):
    """`depth` levels of [[...]] or {"":{"":...1}} (4 bytes a level, so
    1000 levels still fit in an assertion)."""
    if kind == "array":
        return "[" * depth + "]" * depth
    return '{"":' * depth + "1" + "}" * depth


def too_large(token):
    return len(token.encode()) > MAX_TOKEN


DEPTHS = [10, 1000, 100_000]


@pytest.mark.parametrize("kind", ["array", "object"])
@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("is_signed", [True, False], ids=["signed", "unsigned"])
def test_deeply_nested_header(hostile, hs, depth, kind, is_signed):
    header = nest(depth, kind)
    token = signed(hs, header=header) if is_signed else unsigned_jws(header, hs.payload(), "c2ln")
    if too_large(token):
        detail = "more than the 8192 allowed"
    elif depth > 127:
        detail = "header is not valid JSON"
    elif kind == "array":
        detail = "header is not a JSON object"
    else:
        detail = 'header has no "alg"'
    presents(hostile, token, detail)


@pytest.mark.parametrize("kind", ["array", "object"])
@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("is_signed", [True, False], ids=["signed", "unsigned"])
def test_deeply_nested_payload(hostile, hs, depth, kind, is_signed):
    payload = nest(depth, kind)
    header = {"alg": "HS256", "kid": hs.kid}
    token = signed(hs, payload=payload) if is_signed else unsigned_jws(header, payload, "c2ln")
    if too_large(token):
        detail = "more than the 8192 allowed"
    elif not is_signed:
        detail = "signature does not verify"  # the payload is never parsed
    elif depth > 127:
        detail = "payload is not valid JSON"
    elif kind == "array":
        detail = "payload is not a JSON object"
    else:
        detail = 'required claim "sub" is missing'
    presents(hostile, token, detail)


@pytest.mark.parametrize("kind", ["array", "object"])
@pytest.mark.parametrize("depth,claim", [
    *((10, c) for c in ("sub", "aud", "amr", "chg")),
    *((1000, c) for c in ("sub", "aud", "amr", "chg", "x-extra")),
])
def test_deeply_nested_claim(hostile, hs, depth, kind, claim):
    """Nesting inside an otherwise valid, signed payload."""
    token = signed(hs, payload=with_claims(hs, **{claim: nest(depth, kind)}))
    assert not too_large(token)
    detail = "payload is not valid JSON" if depth > 127 else f'claim "{claim}"'
    presents(hostile, token, detail)


# --- a database that is not UTF8 -------------------------------------------------

# A database that is not UTF8 cannot hold the extension at all:
# tests/test_audit_integrity.py (class 5).


# --- memory ------------------------------------------------------------------------

def test_no_memory_growth_over_many_rejections(app, hs, hostile):
    """Hundreds of rejections of every kind (each one longjmps out of Rust)
    leave the backend's resident memory where it was."""
    pid = scalar(app, "SELECT pg_backend_pid()")
    if vm_kib(pid, "VmRSS") is None:
        pytest.skip("the server's /proc is not readable here")
    corpus = [
        *JUNK.values(),
        "a" * (1 << 20),
        signed(hs, header=nest(1000, "object")),
        signed(hs, payload=nest(1000, "array")),
        signed(hs, payload=with_claims(hs, sub=nest(100, "array"))),
        signed(hs, payload=with_claims(hs, sub='"\\ud800"')),
        signed(hs, payload=with_claims(hs, exp="1e400")),
        signed(hs, payload=with_claims(hs, iat="123456789012345678901234567890")),
        signed(hs, payload=with_claims(hs, aud=json.dumps(["x"] * 500))),
        signed(hs, payload=with_claims(hs, acr=json.dumps("x" * 5000))),
        unsigned_jws({"alg": "HS256", "kid": "k" * 5000}, {}, "c2ln"),
    ]
    query = "SELECT stepup.present(%s)"

    def run_corpus():
        for token in corpus:
            with pytest.raises(psycopg.Error) as caught:
                with app.transaction():
                    app.execute(query, [token])
            assert caught.value.sqlstate == "SU002", caught.value

    run_corpus()
    before = vm_kib(pid, "VmRSS")
    for _ in range(30):
        run_corpus()
    after = vm_kib(pid, "VmRSS")
    assert after - before < 16 * 1024, (before, after)
    assert scalar(app, "SELECT 1") == 1
