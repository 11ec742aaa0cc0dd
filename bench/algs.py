"""present() with a new RS256, ES256, ES384 (and PS256, EdDSA) assertion per
call, next to the raw verify rate of the same library on the same key and
the same tokens, measured in the same run (the limit); and present() of one
assertion again and again. Started by bench/algs.sh.

Per algorithm: N distinct tokens (distinct jti and iat) signed by one key.
The limit is `verify_rate` (crates/core/examples), which calls aws-lc-rs
(ed25519-dalek for EdDSA) directly with the key parsed once. present() is
timed inside one statement, `SELECT count(*) FILTER (WHERE
stepup.present(t) IS NOT NULL) FROM tokens WHERE alg = $1`, so every call
is a full verification (new bytes: no same-token shortcut), with the
envelope, JSON, claim rules and holding the claims on top. Per repeat and
algorithm, the raw rate and present() are measured back to back (which
goes first alternates), so that both see the same load on a shared
machine; the medians of the per-repeat ratios are reported.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import jwt
import psycopg
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

HERE = Path(__file__).resolve().parent
DB = "bench_algs"
ALGS = ["RS256", "PS256", "ES256", "ES384", "EdDSA", "HS256"]
# HS256 verifies in well under a microsecond: its present() rate is what
# everything but the signature costs. Reported, not held to the target.
UNTARGETED = {"HS256"}
TARGET = 0.7
SAME_TOKEN_TARGET = 1_000_000


def args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", required=True)
    p.add_argument("--port", required=True)
    p.add_argument("--verify-rate", required=True, help="path of the built verify_rate example")
    p.add_argument("--tokens", type=int, default=4000, help="distinct tokens per algorithm")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--passes", type=int, default=5,
                   help="statements over the tokens per present() measurement")
    p.add_argument("--same-calls", type=int, default=1_000_000)
    p.add_argument("--out", default=str(HERE / "results-algs.txt"))
    return p.parse_args()


def keys():
    return {
        "RS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "PS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ES256": ec.generate_private_key(ec.SECP256R1()),
        "ES384": ec.generate_private_key(ec.SECP384R1()),
        "EdDSA": ed25519.Ed25519PrivateKey.generate(),
        "HS256": os.urandom(32),
    }


def spki(private_key):
    if isinstance(private_key, bytes):
        return private_key
    return private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def mint(private_key, alg, kid, n):
    now = int(time.time())
    out = []
    for i in range(n):
        claims = {"sub": "alice", "aud": DB, "iat": now - (i % 60), "exp": now + 600,
                  "auth_time": now - 70, "acr": "aal2", "amr": ["otp"], "jti": str(uuid.uuid4())}
        out.append(jwt.encode(claims, private_key, algorithm=alg, headers={"kid": kid}))
    return out


def raw_rates(verify_rate, tokens_file):
    out = subprocess.run([verify_rate, str(tokens_file)], check=True, capture_output=True, text=True).stdout
    rates = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].startswith("raw_per_s="):
            rates[parts[0]] = float(parts[1].split("=")[1])
    return rates


def present_rate(conn, alg, n, passes):
    # Separate statements, not a join with generate_series: a plan that
    # repeated each token in a row would measure the same-token path.
    elapsed = 0.0
    for _ in range(passes):
        start = time.perf_counter()
        got = conn.execute("SELECT count(*) FILTER (WHERE stepup.present(t) IS NOT NULL) FROM tokens "
                           "WHERE alg = %s", [alg]).fetchone()[0]
        elapsed += time.perf_counter() - start
        assert got == n, (alg, got)
    return n * passes / elapsed


def main():
    a = args()
    base = dict(host=a.host, port=a.port, user="postgres")
    with psycopg.connect(dbname="postgres", autocommit=True, **base) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DB}")
        admin.execute(f"CREATE DATABASE {DB}")
    conn = psycopg.connect(dbname=DB, autocommit=True, **base)
    conn.execute("CREATE EXTENSION pg_stepup")
    conn.execute("CREATE TABLE tokens (alg text, t text)")
    private = keys()
    files = {}
    for alg in ALGS:
        kid = f"bench-{alg.lower()}"
        material = spki(private[alg])
        conn.execute("SELECT stepup.add_key(%s, %s, %s)", [kid, material, alg])
        tokens = mint(private[alg], alg, kid, a.tokens)
        with conn.cursor().copy("COPY tokens (alg, t) FROM STDIN") as copy:
            for t in tokens:
                copy.write_row((alg, t))
        key64 = jwt.utils.base64url_encode(material).decode()
        files[alg] = Path(tempfile.mkdtemp()) / f"{alg}.tsv"
        files[alg].write_text("".join(f"{alg}\t{key64}\t{t}\n" for t in tokens[:200]))
    conn.execute("VACUUM ANALYZE tokens")

    raw = {alg: [] for alg in ALGS}
    pres = {alg: [] for alg in ALGS}
    for rep in range(a.repeats):
        for alg in ALGS if rep % 2 == 0 else ALGS[::-1]:
            if rep % 2 == 0:
                raw[alg].append(raw_rates(a.verify_rate, files[alg])[alg])
                pres[alg].append(present_rate(conn, alg, a.tokens, a.passes))
            else:
                pres[alg].append(present_rate(conn, alg, a.tokens, a.passes))
                raw[alg].append(raw_rates(a.verify_rate, files[alg])[alg])
    same = conn.execute("SELECT t FROM tokens WHERE alg = 'RS256' LIMIT 1").fetchone()[0]
    same_rates = []
    for _ in range(a.repeats):
        start = time.perf_counter()
        conn.execute("SELECT count(*) FILTER (WHERE stepup.present(%s) IS NOT NULL) FROM generate_series(1, %s)",
                     [same, a.same_calls])
        same_rates.append(a.same_calls / (time.perf_counter() - start))
    version = conn.execute("SELECT version()").fetchone()[0]
    conn.close()

    out = [f"# pg_stepup algorithms benchmark {time.strftime('%Y-%m-%d %H:%M:%S')}; {version}",
           f"== present() of a new assertion per call vs the library's raw verify, same key and tokens; "
           f"median of {a.repeats}, {a.tokens} tokens per alg",
           f"{'alg':6} {'raw/s':>10} {'present/s':>10} {'ratio':>6}  per-run ratios   (target >= {TARGET})"]
    ok = True
    for alg in ALGS:
        r, p = statistics.median(raw[alg]), statistics.median(pres[alg])
        ratios = [pp / rr for pp, rr in zip(pres[alg], raw[alg])]
        runs = " ".join(f"{x:.2f}" for x in ratios)
        ratio = statistics.median(ratios)
        if alg in UNTARGETED:
            out.append(f"{alg:6} {r:10.0f} {p:10.0f} {ratio:6.3f}  (not a target: {1e6 / p:.1f} us per present() "
                       f"is everything but the signature)")
            continue
        ok &= ratio >= TARGET
        out.append(f"{alg:6} {r:10.0f} {p:10.0f} {ratio:6.3f}  {runs}")
    s = statistics.median(same_rates)
    ok &= s >= SAME_TOKEN_TARGET
    out.append(f"== present() of the same RS256 assertion, {a.same_calls} calls in one statement: "
               f"median {s:,.0f}/s (runs {', '.join(f'{x:,.0f}' for x in same_rates)}; target >= {SAME_TOKEN_TARGET:,})")
    out.append("targets met" if ok else "TARGET MISSED")
    text = "\n".join(out) + "\n"
    print(text, end="")
    Path(a.out).write_text(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
