"""pg_stepup benchmark: runs every scenario side by side against one cluster
and prints medians and ratios. Started by bench/run.sh, which builds the
extension (--release) and starts a throwaway PostgreSQL 15 cluster.

Scenarios (pgbench scripts in bench/pgbench/, reference in reference.sql):
  1  baseline   UPDATE by primary key, unprotected table
  1b floor      the same UPDATE + one plain row appended to a log table
  1c wide floor 1b with a log row as large as scenario 2's audit entry
  2  protected  present() + UPDATE gated at aal2 and audited
  3  audited    UPDATE audited, not gated
  4  reference  the PL/pgSQL + pgcrypto implementation of 2
  5  verify     stepup.verify_audit() over N entries vs a pgcrypto SQL recomputation
  6  present    stepup.present() per second in one backend vs ref.present()
Each repeat also runs 1b and 2 mixed in one pgbench run per client count
(each transaction one of the two at random): the ratio of their latencies,
measured under the same conditions, next to the ratio of separate cells.
"""
import argparse
import os
import re
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

DB = "bench"
APP = "bench_app"
# In this order (and reversed every other repeat): 2 runs next to 1b and 1c.
PGBENCH_SCENARIOS = [("1", "1_baseline"), ("1b", "1b_floor"), ("2", "2_protected"),
                     ("1c", "1c_floor_wide"), ("3", "3_audited"), ("4", "4_reference")]


def args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", required=True)
    p.add_argument("--port", required=True)
    p.add_argument("--pg-bin", default="/usr/lib/postgresql/15/bin")
    p.add_argument("--duration", type=int, default=5, help="seconds per pgbench cell")
    p.add_argument("--repeats", type=int, default=7, help="runs per cell; the median is reported")
    p.add_argument("--clients", default="1,4,8")
    p.add_argument("--verify-repeats", type=int, default=3,
                   help="runs of scenario 5 (one backend, CPU-bound: steady; each reads every entry)")
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--entries", type=int, default=1_000_000, help="audit entries for scenario 5")
    p.add_argument("--present-calls", type=int, default=20_000, help="distinct tokens for scenario 6")
    p.add_argument("--only", default="", help="comma-separated scenarios to run (default: all)")
    p.add_argument("--out", default=str(HERE / "results-latest.txt"))
    return p.parse_args()


class Bench:
    def __init__(self, a):
        self.a = a
        self.secret = secrets.token_hex(32)
        self.out = []

    def conn(self, user="postgres", db=DB):
        return psycopg.connect(host=self.a.host, port=self.a.port, user=user, dbname=db, autocommit=True)

    def psql(self, file, **variables):
        cmd = [f"{self.a.pg_bin}/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
               f"host={self.a.host} port={self.a.port} user=postgres dbname={DB}", "-f", str(file)]
        for k, v in variables.items():
            cmd[1:1] = ["-v", f"{k}={v}"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)

    def say(self, line=""):
        print(line, flush=True)
        self.out.append(line)

    def token(self, **claims):
        return mint("hs", bytes.fromhex(self.secret), aud=DB, lifetime=600, auth_age=1, **claims)

    # --- setup -------------------------------------------------------------

    def setup(self):
        with self.conn(db="postgres") as c:
            c.execute(f"DROP DATABASE IF EXISTS {DB}")
            c.execute(f"DROP ROLE IF EXISTS {APP}")
            c.execute(f"CREATE ROLE {APP} LOGIN")
            c.execute(f"CREATE DATABASE {DB}")
        self.psql(HERE / "schema.sql", rows=self.a.rows, secret=self.secret)
        self.psql(HERE / "reference.sql", secret=self.secret)
        with self.conn() as c:
            c.execute("VACUUM ANALYZE")

    # --- 1-4: pgbench --------------------------------------------------------

    def pgbench(self, script, clients):
        """One pgbench cell: (tps, latency ms) of `script`."""
        out = self.run_pgbench([script], clients)
        failed = re.search(r"number of failed transactions: (\d+)", out)
        tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
        lat = re.search(r"latency average = ([\d.]+) ms", out)
        if not tps or not lat or (failed and int(failed.group(1)) > 0):
            sys.exit(f"pgbench {script} -c {clients}: no result or failed transactions:\n{out}")
        done = re.search(r"number of transactions actually processed: (\d+)", out)
        self.writes_per_txn = self.backend_writes / max(1, int(done.group(1))) if done else float("nan")
        return float(tps.group(1)), float(lat.group(1))

    def mixed(self, scripts, clients):
        """One pgbench run drawing each transaction from `scripts` at random,
        equal weights: the average latency of each script's transactions,
        measured under exactly the same conditions."""
        out = self.run_pgbench(scripts, clients, weighted=True)
        parts = re.split(r"^SQL script \d+: ", out, flags=re.M)[1:]
        lats = [re.search(r"latency average = ([\d.]+) ms", p) for p in parts]
        failed = [re.search(r"number of failed transactions: (\d+)", p) for p in parts]
        if len(parts) != len(scripts) or not all(lats) or any(f and int(f.group(1)) for f in failed):
            sys.exit(f"pgbench {scripts} -c {clients}: no per-script result or failed transactions:\n{out}")
        return [float(m.group(1)) for m in lats]

    def run_pgbench(self, scripts, clients, weighted=False):
        tok = self.token()
        # Every cell starts with no dirty buffers: without a checkpoint in
        # the run, a cell that needs buffers otherwise writes out the pages
        # the cells before it dirtied (the audit log of scenarios 2 and 3
        # outgrows shared_buffers within the run), paying for them.
        with self.conn() as c:
            c.execute("CHECKPOINT")
            before = c.execute("SELECT buffers_backend FROM pg_stat_bgwriter").fetchone()[0]
        cmd = [f"{self.a.pg_bin}/pgbench", "-n", "-M", "prepared", "-h", self.a.host, "-p", str(self.a.port),
               "-U", APP, "-c", str(clients), "-j", str(min(clients, os.cpu_count() or 1)),
               "-T", str(self.a.duration), "-D", f"rows={self.a.rows}", "-D", f"tok={tok}"]
        for script in scripts:
            cmd += ["-f", str(HERE / "pgbench" / f"{script}.sql") + ("@1" if weighted else "")]
        r = subprocess.run(cmd + [DB], capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"pgbench {scripts} -c {clients} failed:\n{r.stdout}\n{r.stderr}")
        # Buffers the cell's backends had to write out themselves (shown per
        # run: evictions are a cost of the bytes a scenario writes).
        with self.conn() as c:
            self.backend_writes = c.execute("SELECT buffers_backend FROM pg_stat_bgwriter").fetchone()[0] - before
        return r.stdout

    def pgbench_matrix(self, wanted):
        clients = [int(c) for c in self.a.clients.split(",")]
        runs, mixed = {}, {}
        scenarios = [(key, script) for key, script in PGBENCH_SCENARIOS if key in wanted]
        for rep in range(self.a.repeats):
            with self.conn() as c:
                c.execute("VACUUM bench.plain, bench.floor, bench.floor_wide, bench.protected, bench.audited, "
                          "bench.reference")
            # Every other repeat runs the scenarios in reverse, so that no
            # scenario always follows the same one (1b and 2 stay neighbours:
            # their ratio compares cells seconds apart).
            for n in clients:
                for key, script in scenarios if rep % 2 == 0 else scenarios[::-1]:
                    runs.setdefault((key, n), []).append(self.pgbench(script, n))
                    tps, lat = runs[(key, n)][-1]
                    print(f"  run {rep + 1}/{self.a.repeats}  {key:>2} x{n}: {tps:10.1f} tps  {lat:7.3f} ms"
                          f"  {self.writes_per_txn:.3f} buffers written by backends per txn", flush=True)
                if {"1b", "2"} <= wanted:
                    floor, protected = self.mixed(["1b_floor", "2_protected"], n)
                    mixed.setdefault(n, []).append(floor / protected)
                    print(f"  run {rep + 1}/{self.a.repeats}  1b+2 mixed x{n}: {floor:7.3f} ms / {protected:7.3f} ms",
                          flush=True)
        med = {k: (statistics.median(t for t, _ in v), statistics.median(l for _, l in v))
               for k, v in runs.items()}
        self.say(f"== pgbench: median of {self.a.repeats} runs x {self.a.duration} s, -M prepared, "
                 f"{self.a.rows} rows, random id")
        self.say(f"{'scenario':<34}" + "".join(f"{f'{n} client(s)':>26}" for n in clients))
        names = dict(PGBENCH_SCENARIOS)
        for key, _ in PGBENCH_SCENARIOS:
            if key in wanted:
                cells = "".join(f"{med[(key, n)][0]:>12.0f} tps {med[(key, n)][1]:>7.3f} ms"
                                for n in clients)
                self.say(f"{key + ' ' + names[key]:<34}{cells}")
        # Cells of one repeat ran seconds apart: the median of the per-repeat
        # ratios is steadier than the ratio of medians on a shared machine.
        for a, b in [("2", "1"), ("2", "1b"), ("3", "1"), ("2", "4"), ("1c", "1b"), ("2", "1c")]:
            if a in wanted and b in wanted:
                ratios = {n: statistics.median(x[0] / y[0] for x, y in zip(runs[(a, n)], runs[(b, n)]))
                          for n in clients}
                cells = "".join(f"{ratios[n]:>26.3f}" for n in clients)
                self.say(f"{'ratio ' + a + '/' + b + ' (tps, median)':<34}{cells}")
                if (a, b) == ("2", "1b"):  # the noisiest target: show the spread
                    spread = {n: [x[0] / y[0] for x, y in zip(runs[(a, n)], runs[(b, n)])] for n in clients}
                    cells = "".join(f"{f'{min(spread[n]):.2f}-{max(spread[n]):.2f}':>26}" for n in clients)
                    self.say(f"{'  per-run 2/1b (min-max)':<34}{cells}")
        if mixed:
            # Separate cells of 1b and 2 run seconds apart, and this machine's
            # speed changes within seconds. Mixed in one run, both meet the
            # same conditions, so this ratio is steady; but a transaction's
            # latency is its own cost plus waits it shares with the other
            # kind, so it shows about half the difference the separate cells
            # show (session 7: 0.90 mixed for 0.81 separate). The target is
            # read from the separate cells.
            self.say(f"== 1b and 2 mixed in one pgbench run per client count (each transaction one of the "
                     f"two, at random), {self.a.repeats} runs x {self.a.duration} s")
            cells = "".join(f"{statistics.median(mixed[n]):>26.3f}" for n in clients)
            self.say(f"{'ratio 2/1b (latency 1b / 2, median)':<34}{cells}")
            cells = "".join(f"{f'{min(mixed[n]):.2f}-{max(mixed[n]):.2f}':>26}" for n in clients)
            self.say(f"{'  per-run (min-max)':<34}{cells}")
        for key in ("1b", "2"):
            if key in wanted and len(clients) > 1:
                lo, hi = clients[0], clients[-1]
                self.say(f"scaling {key} {lo}->{hi} clients: {med[(key, hi)][0] / med[(key, lo)][0]:.2f}x")

    # --- 5: verify_audit ----------------------------------------------------

    def verify(self):
        with self.conn() as c:
            have = c.execute("SELECT count(*) FROM stepup.audit_log").fetchone()[0]
            t0 = time.perf_counter()
            while have < self.a.entries:
                step = min(self.a.rows, self.a.entries - have)
                c.execute("UPDATE bench.audited SET balance = balance + 1 WHERE id <= %s", [step])
                have += step
            made = time.perf_counter() - t0
            t0 = time.perf_counter()
            sealed = c.execute("SELECT stepup.seal()").fetchone()[0]
            seal_s = time.perf_counter() - t0
            c.execute("VACUUM ANALYZE stepup.audit_log, stepup.audit_chain")
            ours, theirs = [], []
            for _ in range(self.a.verify_repeats):
                t0 = time.perf_counter()
                ok, n, bad, reason = c.execute("SELECT * FROM stepup.verify_audit()").fetchone()
                ours.append(n / (time.perf_counter() - t0))
                if not ok:
                    sys.exit(f"verify_audit failed: {bad} {reason}")
                t0 = time.perf_counter()
                m, wrong = c.execute("SELECT * FROM ref.verify_chain()").fetchone()
                theirs.append(m / (time.perf_counter() - t0))
                if wrong or m != n:
                    sys.exit(f"SQL recomputation disagrees: {m} entries, {wrong} bad, verify_audit saw {n}")
        o, t = statistics.median(ours), statistics.median(theirs)
        self.say(f"== verify: {n} entries (at least --entries {self.a.entries}; the pgbench scenarios wrote "
                 f"most; topped up in {made:.1f} s, sealed {sealed} in {seal_s:.1f} s), median of {self.a.verify_repeats}")
        self.say(f"{'stepup.verify_audit()':<34}{o:>14.0f} entries/s")
        self.say(f"{'pgcrypto SQL (digest + lag)':<34}{t:>14.0f} entries/s")
        self.say(f"{'ratio verify_audit / SQL':<34}{o / t:>14.3f}")

    # --- 6: present ---------------------------------------------------------

    def present(self):
        n = self.a.present_calls
        rows = [(i, self.token(jti=f"bench-{i}")) for i in range(n)]
        with self.conn() as c:
            c.execute("CREATE TABLE IF NOT EXISTS bench.tokens (i int PRIMARY KEY, tok text NOT NULL)")
            c.execute("TRUNCATE bench.tokens")
            with c.cursor().copy("COPY bench.tokens FROM STDIN") as cp:
                for row in rows:
                    cp.write_row(row)
            c.execute(f"GRANT SELECT ON bench.tokens TO {APP}")
        queries = {
            "stepup.present(), distinct tokens": "SELECT count(stepup.present(tok)) FROM bench.tokens",
            "stepup.present(), same token": "SELECT count(stepup.present(t.tok)) FROM bench.tokens, "
                                            "(SELECT tok FROM bench.tokens WHERE i = 0) AS t(tok)",
            "ref.present(), distinct tokens": "SELECT count(ref.present(tok)) FROM bench.tokens",
            "SELECT 1 over the same rows": "SELECT count(1) FROM bench.tokens",
        }
        rates = {k: [] for k in queries}
        with self.conn(APP) as c:
            for q in queries.values():  # warm caches
                c.execute(q)
            for _ in range(self.a.repeats):
                for k, q in queries.items():
                    c.execute("BEGIN")
                    t0 = time.perf_counter()
                    got = c.execute(q).fetchone()[0]
                    rates[k].append(n / (time.perf_counter() - t0))
                    c.execute("ROLLBACK")
                    assert got == n, (k, got)
        med = {k: statistics.median(v) for k, v in rates.items()}
        self.say(f"== present: {n} calls per run in one backend, median of {self.a.repeats}")
        for k, v in med.items():
            self.say(f"{k:<34}{v:>14.0f} /s")
        ref = med["ref.present(), distinct tokens"]
        self.say(f"{'ratio present(distinct) / ref':<34}{med['stepup.present(), distinct tokens'] / ref:>14.3f}")
        self.say(f"{'ratio present(same) / ref':<34}{med['stepup.present(), same token'] / ref:>14.3f}")


def main():
    a = args()
    wanted = set(a.only.split(",")) if a.only else {"1", "1b", "1c", "2", "3", "4", "5", "6"}
    b = Bench(a)
    started = time.time()
    b.setup()
    with b.conn() as c:
        version = c.execute("SELECT version()").fetchone()[0]
        conf = c.execute("SELECT string_agg(name || '=' || setting, ' ' ORDER BY name) FROM pg_settings "
                         "WHERE name IN ('fsync', 'synchronous_commit', 'shared_buffers')").fetchone()[0]
    b.say(f"# pg_stepup benchmark {time.strftime('%Y-%m-%d %H:%M:%S')}; {version.split(',')[0]}; "
          f"{os.cpu_count()} CPUs; {conf}")
    if wanted & {"1", "1b", "1c", "2", "3", "4"}:
        b.pgbench_matrix(wanted)
    if "6" in wanted:
        b.present()
    if "5" in wanted:
        b.verify()
    b.say(f"# total {time.time() - started:.0f} s")
    Path(a.out).write_text("\n".join(b.out) + "\n")
    print(f"results written to {a.out}")


if __name__ == "__main__":
    main()
