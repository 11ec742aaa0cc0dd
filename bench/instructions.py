"""Instructions per transaction of scenarios 1b, 2 and 3, counted by
callgrind in a single-user backend: the same count on every run, whatever
else the machine is doing. Started by bench/instructions.sh, which builds
the extension (--release) and makes the cluster (bench/schema.sql).

Each scenario's statements are prepared once, with the assertion a constant
of the prepared statement (pgbench binds it: no parsing per transaction);
each transaction is BEGIN, two EXECUTEs, COMMIT (scenario 3: one EXECUTE),
as pgbench sends them. The count per transaction is the difference between
a long and a short run over the difference in transactions, so start-up
and the backend's first-use costs cancel. SHA-256 is counted apart:
valgrind has no SHA instructions, so it runs sha2's portable code, where
the CPU runs SHA-NI at a small fraction of that.
"""
import argparse
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from mint import mint  # noqa: E402

KID, SECRET = "instructions", "ab" * 32
SCRIPTS = {
    "1b": ["BEGIN;", "EXECUTE floor_update({id});", "EXECUTE floor_log({id});", "COMMIT;"],
    "2": ["BEGIN;", "EXECUTE present;", "EXECUTE protected_update({id});", "COMMIT;"],
    "3": ["EXECUTE audited_update({id});"],
}


def statements(scenario, n, token):
    r = random.Random(1)
    yield ("PREPARE floor_update(int) AS UPDATE bench.floor SET balance = balance + 1 WHERE id = $1;")
    yield ("PREPARE floor_log(int) AS INSERT INTO bench.floor_log (table_name, op, key) "
           "VALUES ('bench.floor', 'UPDATE', $1);")
    yield f"PREPARE present AS SELECT stepup.present('{token}') IS NOT NULL;"
    yield "PREPARE protected_update(int) AS UPDATE bench.protected SET balance = balance + 1 WHERE id = $1;"
    yield "PREPARE audited_update(int) AS UPDATE bench.audited SET balance = balance + 1 WHERE id = $1;"
    for _ in range(n):
        k = r.randint(1, 100_000)
        yield from (s.format(id=k) for s in SCRIPTS[scenario])


def count(a, scenario, n, token):
    """Total instructions and those in SHA-256 compression for n transactions,
    on a fresh copy of the cluster."""
    data = Path(a.dir) / "data"
    shutil.rmtree(data, ignore_errors=True)
    shutil.copytree(Path(a.dir) / "pristine", data, symlinks=True)
    subprocess.run(["chown", "-R", "postgres:postgres", str(data)], check=True)
    out = Path(a.dir) / f"callgrind.{scenario}.{n}"
    sql = "\n".join(statements(scenario, n, token)) + "\n"
    r = subprocess.run(["runuser", "-u", "postgres", "--", "valgrind", "--tool=callgrind",
                        f"--callgrind-out-file={out}", f"{a.pg_bin}/postgres", "--single", "-D", str(data),
                        "-c", "shared_buffers=256MB", "bench"],
                       input=sql, capture_output=True, text=True, cwd=a.dir)
    errors = [line for line in r.stdout.splitlines() + r.stderr.splitlines() if "ERROR" in line]
    if r.returncode != 0 or errors:
        sys.exit(f"scenario {scenario}: the backend failed:\n" + "\n".join(errors[:5] or [r.stderr[-2000:]]))
    total = int(re.search(r"^summary: (\d+)", out.read_text(), re.M).group(1))
    annotate = subprocess.run(["callgrind_annotate", "--inclusive=yes", str(out)],
                              capture_output=True, text=True).stdout
    sha = sum(int(m.group(1).replace(",", ""))
              for m in re.finditer(r"^\s*([\d,]+) .*compress256 ", annotate, re.M))
    if not a.keep:
        out.unlink()
    return total, sha


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", required=True, help="holds pristine/, the stopped cluster's data directory")
    p.add_argument("--pg-bin", default="/usr/lib/postgresql/15/bin")
    p.add_argument("--transactions", type=int, default=2000)
    p.add_argument("--scenarios", default=",".join(SCRIPTS), help="which of 1b,2,3 to count")
    p.add_argument("--keep", action="store_true", help="keep the callgrind files (in --dir) for callgrind_annotate")
    a = p.parse_args()
    token = mint(KID, bytes.fromhex(SECRET), aud="bench", lifetime=600, auth_age=1)
    short, long = 200, 200 + a.transactions
    per = {}
    for scenario in a.scenarios.split(","):
        (t1, s1), (t2, s2) = count(a, scenario, short, token), count(a, scenario, long, token)
        per[scenario] = ((t2 - t1) / a.transactions, (t2 - t1 - (s2 - s1)) / a.transactions)
        print(f"{scenario:>2}: {per[scenario][0]:10.0f} instructions per transaction, "
              f"{per[scenario][1]:10.0f} without SHA-256", flush=True)
    if {"1b", "2", "3"} <= per.keys():
        base = per["1b"][1]
        print(f"ratio 2/1b (instructions without SHA-256): {per['2'][1] / base:.3f}; "
              f"3/1b: {per['3'][1] / base:.3f}")


if __name__ == "__main__":
    main()
