#!/usr/bin/env python3
"""Mint step-up assertions with PyJWT, the way an identity provider would.

Used by the demo and the tests; never by the database.

    mint.py --kid K --secret HEX [--acr aal2] [--aud DB] [--sub alice]
            [--amr otp] [--auth-age 10] [--lifetime 300] [--age 0] [--jti ID]
            [--bind TABLE OP KEY_JSON CHANGES_JSON]...   (adds a chg digest)
    mint.py --kid K --ed25519-seed HEX ...   (EdDSA)
"""
import argparse
import sys
import time
import uuid
from decimal import Decimal

import jwt


def mint(kid, key, alg="HS256", sub="alice", aud="postgres", acr="aal2",
         amr=("otp",), lifetime=300, age=0, auth_age=5, jti=None, extra=None,
         drop=()):
    """Return a compact JWS. `age` shifts iat back (seconds); `auth_age` is
    how long before iat the user authenticated."""
    now = int(time.time()) - age
    claims = {
        "sub": sub, "aud": aud, "iat": now, "exp": now + lifetime,
        "auth_time": now - auth_age, "acr": acr, "amr": list(amr),
        "jti": jti or str(uuid.uuid4()),
    }
    claims.update(extra or {})
    for name in drop:
        claims.pop(name, None)
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


def exact(v):
    """A number that no double prints back as the same value becomes the
    JSON string of its exact decimal text (README, "Change digests");
    every other value stays as it is."""
    import math
    from decimal import Decimal
    import rfc8785
    if isinstance(v, dict):
        return {k: exact(x) for k, x in v.items()}
    if isinstance(v, list):
        return [exact(x) for x in v]
    if isinstance(v, bool) or not isinstance(v, (int, Decimal)):
        return v
    text = str(v) if isinstance(v, int) else format(v, "f")
    try:
        double = float(v)
    except OverflowError:
        return text
    if math.isfinite(double) and Decimal(rfc8785.dumps(double).decode()) == Decimal(text):
        return double
    return text


def change_digest(table, op, key, changes):
    """The chg digest of one row change, as an IdP computes it: lowercase
    hex SHA-256 of the RFC 8785 canonical JSON (see README), numbers a
    double cannot hold as their text. Read JSON with parse_float=Decimal."""
    import hashlib
    import rfc8785
    doc = {"table": table, "op": op.upper(), "key": key, "changes": changes}
    return hashlib.sha256(rfc8785.dumps(exact(doc))).hexdigest()


def ed25519_private(seed_hex):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed_hex))


def ed25519_public_hex(seed_hex):
    from cryptography.hazmat.primitives import serialization
    pub = ed25519_private(seed_hex).public_key()
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kid", required=True)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--secret", help="HS256 secret, hex")
    g.add_argument("--ed25519-seed", help="Ed25519 private seed, hex")
    p.add_argument("--sub", default="alice")
    p.add_argument("--aud", default="postgres")
    p.add_argument("--acr", default="aal2")
    p.add_argument("--amr", default="otp", help="comma-separated")
    p.add_argument("--lifetime", type=int, default=300)
    p.add_argument("--age", type=int, default=0, help="seconds since issue")
    p.add_argument("--auth-age", type=int, default=5)
    p.add_argument("--jti")
    p.add_argument("--bind", nargs=4, action="append", default=[],
                   metavar=("TABLE", "OP", "KEY_JSON", "CHANGES_JSON"),
                   help="sign the change digest of this row change into chg")
    p.add_argument("--public-key", action="store_true", help="print the Ed25519 public key (hex) and exit")
    a = p.parse_args()
    if a.public_key:
        print(ed25519_public_hex(a.ed25519_seed))
        return
    if a.secret:
        key, alg = bytes.fromhex(a.secret), "HS256"
    else:
        key, alg = ed25519_private(a.ed25519_seed), "EdDSA"
    import json
    # Decimal: numbers keep their digits (12345678901234567890.5).
    chg = [change_digest(t, op, json.loads(k, parse_float=Decimal), json.loads(c, parse_float=Decimal))
           for t, op, k, c in a.bind]
    print(mint(a.kid, key, alg, a.sub, a.aud, a.acr, [m for m in a.amr.split(",") if m],
               a.lifetime, a.age, a.auth_age, a.jti, extra={"chg": chg} if chg else None))


if __name__ == "__main__":
    sys.exit(main())
