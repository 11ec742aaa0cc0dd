"""stepup verify vs stepup.verify_audit() on the same chain. Started by
bench/verify_export.sh (release builds, a throwaway cluster).

Makes --entries audit entries (UPDATEs of --rows rows per statement, each
statement under a fresh step-up assertion, so entries carry kid, jti, sub,
acr, amr and auth_time), seals them, exports both audit tables with psql's
\\copy (TimeZone Asia/Kolkata: the CLI converts every timestamp), and times
`SELECT * FROM stepup.verify_audit()` and `stepup verify --log --chain`
alternately, --repeats times each (which goes first alternates too);
reports medians and their ratio. Both must say the chain is intact.
"""
import argparse
import os
import re
import resource
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "scripts"))
from mint import mint  # noqa: E402

DB = "bench_verify"


def args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", required=True)
    p.add_argument("--port", required=True)
    p.add_argument("--pg-bin", default="/usr/lib/postgresql/15/bin")
    p.add_argument("--cli", required=True, help="the stepup binary (release build)")
    p.add_argument("--work", required=True, help="directory for the exported CSV files")
    p.add_argument("--entries", type=int, default=1_000_000)
    p.add_argument("--rows", type=int, default=100_000, help="rows per UPDATE statement")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(HERE / "results-verify-export.txt"))
    return p.parse_args()


def main():
    a = args()
    out = []

    def say(line=""):
        print(line, flush=True)
        out.append(line)

    def conn(db=DB):
        return psycopg.connect(host=a.host, port=a.port, user="postgres", dbname=db, autocommit=True)

    secret = secrets.token_bytes(32)
    with conn("postgres") as c:
        c.execute(f"DROP DATABASE IF EXISTS {DB}")
        c.execute(f"CREATE DATABASE {DB}")
    with conn() as c:
        c.execute("CREATE EXTENSION pg_stepup")
        c.execute("SELECT stepup.add_key('hs', %s)", [secret])
        c.execute("CREATE TABLE public.accounts (id int PRIMARY KEY, owner text NOT NULL, "
                  "iban text NOT NULL, balance bigint NOT NULL)")
        c.execute("INSERT INTO accounts SELECT i, 'user' || i, 'DE' || lpad(i::text, 20, '0'), 1000 "
                  "FROM generate_series(1, %s) i", [a.rows])
        c.execute("SELECT stepup.protect('public.accounts', 'aal2', '5 minutes', '{UPDATE,DELETE}')")
        t0 = time.perf_counter()
        have = 0
        while have < a.entries:
            step = min(a.rows, a.entries - have)
            with c.transaction():
                c.execute("SELECT stepup.present(%s)",
                          [mint("hs", secret, aud=DB, sub=f"user-{have}", amr=["otp", "hwk"], lifetime=600)])
                c.execute("UPDATE accounts SET balance = balance + 1 WHERE id <= %s", [step])
            have += step
        made = time.perf_counter() - t0
        t0 = time.perf_counter()
        sealed = c.execute("SELECT stepup.seal()").fetchone()[0]
        seal_s = time.perf_counter() - t0
        c.execute("VACUUM ANALYZE stepup.audit_log, stepup.audit_chain")
        n = c.execute("SELECT count(*) FROM stepup.audit_log").fetchone()[0]
        digest = c.execute("SELECT stepup.audit_digest()::text").fetchone()[0]

    work = Path(a.work)
    log, chain, digest_file = work / "audit_log.csv", work / "audit_chain.csv", work / "digest.json"
    digest_file.write_text(digest + "\n")
    env = dict(os.environ, PGTZ="Asia/Kolkata", PGDATESTYLE="ISO")
    t0 = time.perf_counter()
    subprocess.run([f"{a.pg_bin}/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
                    f"host={a.host} port={a.port} user=postgres dbname={DB}",
                    "-c", "BEGIN ISOLATION LEVEL REPEATABLE READ",
                    "-c", f"\\copy stepup.audit_chain TO '{chain}' CSV HEADER",
                    "-c", f"\\copy stepup.audit_log TO '{log}' CSV HEADER",
                    "-c", "COMMIT"], check=True, env=env)
    export_s = time.perf_counter() - t0
    size_mb = (log.stat().st_size + chain.stat().st_size) / 1e6

    def in_db(c):
        t0 = time.perf_counter()
        ok, entries, bad, reason = c.execute("SELECT * FROM stepup.verify_audit()").fetchone()
        s = time.perf_counter() - t0
        if not ok or entries != n:
            sys.exit(f"verify_audit(): {ok} {entries} {bad} {reason}, expected {n} entries")
        return s

    def offline(*extra):
        t0 = time.perf_counter()
        p = subprocess.run([a.cli, "verify", "--log", str(log), "--chain", str(chain), *extra],
                           capture_output=True, text=True)
        s = time.perf_counter() - t0
        if p.returncode != 0 or not re.match(rf"ok {n} entries", p.stdout):
            sys.exit(f"stepup verify: exit {p.returncode}: {p.stdout}{p.stderr}")
        return s

    # Once with the digest (and to read the files into the page cache, as
    # shared_buffers holds the tables for verify_audit()).
    offline("--digest", str(digest_file))
    ours, cli = [], []
    with conn() as c:
        in_db(c)
        for r in range(a.repeats):
            if r % 2 == 0:
                ours.append(in_db(c))
                cli.append(offline())
            else:
                cli.append(offline())
                ours.append(in_db(c))
    rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    o, m = statistics.median(ours), statistics.median(cli)
    say(f"== verify an exported chain: {n} entries (made in {made:.1f} s, sealed {sealed} in {seal_s:.1f} s; "
        f"exported with \\copy in {export_s:.1f} s, {size_mb:.0f} MB of CSV, TimeZone Asia/Kolkata)")
    say(f"median of {a.repeats}, alternating; {os.cpu_count()} CPUs")
    say(f"{'stepup.verify_audit()':<40}{o:>8.2f} s {n / o:>12.0f} entries/s  "
        f"(runs: {', '.join(f'{x:.2f}' for x in ours)})")
    say(f"{'stepup verify --log --chain':<40}{m:>8.2f} s {n / m:>12.0f} entries/s  "
        f"(runs: {', '.join(f'{x:.2f}' for x in cli)}; max RSS {rss_mb:.0f} MB)")
    say(f"{'ratio CLI time / verify_audit() time':<40}{m / o:>8.3f}")
    Path(a.out).write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
