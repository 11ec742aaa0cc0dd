"""stepup.change_digest against an independent implementation: the digest
an IdP computes in Python with the `rfc8785` package, without the database,
must equal the database's for every kind of value."""
import hashlib
import json

import psycopg
import pytest
import rfc8785

from conftest import expect_error, scalar


def python_digest(table, op, key, changes):
    canonical = rfc8785.dumps({"table": table, "op": op, "key": key, "changes": changes})
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
    # Beyond an IEEE double, and deeper than serde_json nests: refused with a
    # reason, not an internal error (pgrx's JsonB panics on both).
    ("'public.payouts', 'UPDATE', '{\"id\": 1e400}', '{}'", "22023"),
    ("'public.payouts', 'UPDATE', '{}', '{\"amount\": -1e400}'", "22023"),
    ("'public.payouts', 'UPDATE', '{}', ('{\"a\": ' || repeat('[', 200) || repeat(']', 200) || '}')::jsonb",
     "22023"),
    ("'public.no_such_table', 'UPDATE', '{}', '{}'", "42P01"),
    ("0, 'UPDATE', '{}', '{}'", "42P01"),
])
def test_bad_arguments(su, payouts, args, sqlstate):
    err = expect_error(su, f"SELECT stepup.change_digest({args})", None, sqlstate)
    if "e400" in args or "repeat" in args:
        assert "cannot be canonicalized" in err.diag.message_primary
        assert "IEEE doubles" in err.diag.message_hint


def test_null_argument_gives_null(su, payouts):
    assert scalar(su, "SELECT stepup.change_digest('public.payouts', 'UPDATE', NULL, '{}')") is None
