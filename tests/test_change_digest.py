"""stepup.change_digest against an independent implementation: the digest
an IdP computes in Python with the `rfc8785` package, without the database,
must equal the database's for every kind of value."""
import hashlib
import json
import math
from decimal import Decimal

import psycopg
import pytest
import rfc8785

from conftest import expect_error, scalar
from mint import exact  # the README's reference (scripts/mint.py)


def python_digest(table, op, key, changes):
    canonical = rfc8785.dumps(exact({"table": table, "op": op, "key": key, "changes": changes}))
    return hashlib.sha256(canonical).hexdigest()


@pytest.fixture
def payouts(su):
    su.execute("CREATE TABLE IF NOT EXISTS public.payouts (id int PRIMARY KEY, iban text)")
    return "public.payouts"


CASES = {
    "text": {"iban": "DE89 3704 0044 0532 0130 00"},
    "numeric": {"amount": 10000.5, "fee": 0.000001, "big": 1e21, "int": 123456789},
    "timestamptz": {"at": "2026-01-02T03:04:05.123456+00:00"},
    "jsonb": {"meta": {"z": [1, "two", None, {"b": True, "a": False}], "a": {}}},
    "null": {"iban": None},
    "unicode": {"name": "Zoë ✓ 😀 \u2028 \u0001 \"quoted\" \\"},
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_database_matches_python(su, payouts, kind):
    changes = CASES[kind]
    key = {"id": 42}
    got = scalar(su, "SELECT stepup.change_digest(%s, 'UPDATE', %s::jsonb, %s::jsonb)",
                 [payouts, json.dumps(key), json.dumps(changes)])
    assert got == python_digest(payouts, "UPDATE", key, changes)


def test_values_rendered_by_to_jsonb_in_utc(su, payouts):
    """What the database renders with to_jsonb under TimeZone UTC is what
    the IdP signs: numeric, timestamptz, jsonb, NULL and unicode text."""
    su.execute("SET TimeZone = 'UTC'")
    got = scalar(su, """
        SELECT stepup.change_digest('public.payouts', 'update', jsonb_build_object('id', 7),
            jsonb_build_object(
                'amount', 10000.50::numeric,
                'at', '2026-01-02 04:04:05.5+01'::timestamptz,
                'meta', '{"b": [1, 2], "a": null}'::jsonb,
                'note', NULL::text,
                'name', 'Zoë ✓'::text))""")
    expected = python_digest("public.payouts", "UPDATE", {"id": 7}, {
        "amount": 10000.5, "at": "2026-01-02T03:04:05.5+00:00",
        "meta": {"a": None, "b": [1, 2]}, "note": None, "name": "Zoë ✓"})
    assert got == expected


def test_member_order_and_op_case_do_not_matter(su, payouts):
    a = scalar(su, "SELECT stepup.change_digest(%s, 'delete', '{\"a\":1,\"b\":2}', '{}')", [payouts])
    b = scalar(su, "SELECT stepup.change_digest(%s, 'DELETE', '{\"b\":2,\"a\":1}', '{}')", [payouts])
    assert a == b == python_digest(payouts, "DELETE", {"a": 1, "b": 2}, {})


@pytest.mark.parametrize("args,sqlstate", [
    ("'public.payouts', 'MERGE', '{}', '{}'", "22023"),
    ("'public.payouts', 'UPDATE', '[1]', '{}'", "22023"),
    ("'public.payouts', 'UPDATE', '{}', '\"x\"'", "22023"),
    # Deeper than serde_json nests: refused with a reason, not an internal
    # error (pgrx's JsonB panics on it).
    ("'public.payouts', 'UPDATE', '{}', ('{\"a\": ' || repeat('[', 200) || repeat(']', 200) || '}')::jsonb",
     "22023"),
    ("'public.no_such_table', 'UPDATE', '{}', '{}'", "42P01"),
    ("0, 'UPDATE', '{}', '{}'", "42P01"),
])
def test_bad_arguments(su, payouts, args, sqlstate):
    err = expect_error(su, f"SELECT stepup.change_digest({args})", None, sqlstate)
    if "repeat" in args:
        assert "cannot be canonicalized" in err.diag.message_primary
        assert "128 levels" in err.diag.message_hint


def test_null_argument_gives_null(su, payouts):
    assert scalar(su, "SELECT stepup.change_digest('public.payouts', 'UPDATE', NULL, '{}')") is None


# Numbers a double cannot hold exactly: (JSON sent to the database, the value
# an IdP holds in Python, whether it goes into the digest as a string).
EXACT = {
    "2^53+1": ("9007199254740993", 2**53 + 1, True),
    "-(2^53+1)": ("-9007199254740993", -(2**53 + 1), True),
    "2^53": ("9007199254740992", 2**53, False),
    "2^60": ("1152921504606846976", 2**60, True),
    "1e20 integer": ("100000000000000000000", 10**20, False),
    "0.1": ("0.1", Decimal("0.1"), False),
    "1.10": ("1.10", Decimal("1.10"), False),
    "big fraction": ("12345678901234567890.5", Decimal("12345678901234567890.5"), True),
    "1e400": ("1e400", 10**400, True),
    "tiny": ("1e-400", Decimal("1e-400"), True),
}


@pytest.mark.parametrize("kind", sorted(EXACT))
def test_numbers_beyond_a_double_match_python(su, payouts, kind):
    text, value, as_string = EXACT[kind]
    got = scalar(su, "SELECT stepup.change_digest(%s, 'UPDATE', %s::jsonb, %s::jsonb)",
                 [payouts, f'{{"id": {text}}}', f'{{"amount": {text}, "list": [{text}]}}'])
    assert got == python_digest(payouts, "UPDATE", {"id": value}, {"amount": value, "list": [value]})
    assert isinstance(exact(value), str) == as_string
    if as_string:
        # The database's text of the number, as a JSON string.
        pg_text = scalar(su, "SELECT (%s::jsonb)::text", [text])
        assert got == python_digest(payouts, "UPDATE", {"id": pg_text}, {"amount": pg_text, "list": [pg_text]})


def test_neighbouring_big_integers_never_share_a_digest(su, payouts):
    def digest(key):
        return scalar(su, "SELECT stepup.change_digest(%s, 'DELETE', %s::jsonb, '{}')", [payouts, key])
    seen = {digest(f'{{"id": {n}}}') for n in range(2**53 - 2, 2**53 + 4)}
    seen |= {digest(f'{{"id": -{n}}}') for n in range(2**53 - 2, 2**53 + 4)}
    seen |= {digest(f'{{"id": {t}}}') for t in ("12345678901234567890.5", "12345678901234567890",
                                                 "12345678901234567891", "12345678901234567890.25")}
    assert len(seen) == 16
    # The same value written two ways is the same number: one digest.
    assert digest('{"id": 1.10}') == digest('{"id": 1.1}') == python_digest(payouts, "DELETE", {"id": 1.1}, {})


def test_numeric_columns_rendered_by_to_jsonb(su, payouts):
    """Values the database renders itself: a bigint and numerics beyond a
    double go in as their text; 1e20 and 0.1 stay numbers."""
    got = scalar(su, """
        SELECT stepup.change_digest('public.payouts', 'UPDATE',
            jsonb_build_object('id', 9007199254740993::bigint),
            jsonb_build_object('a', 1e20::numeric, 'b', 0.1::numeric, 'c', 12345678901234567890.5::numeric,
                               'd', 1.10::numeric))""")
    assert got == python_digest("public.payouts", "UPDATE", {"id": 9007199254740993}, {
        "a": 10**20, "b": Decimal("0.1"), "c": Decimal("12345678901234567890.5"), "d": Decimal("1.10")})
