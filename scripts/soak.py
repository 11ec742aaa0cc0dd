#!/usr/bin/env python3
"""Soak: mixed load on a protected table for a while, with periodic seal and
verify, then an exact check of the audit against what the clients did.

    scripts/soak.py [--duration 600] [--host SOCKDIR_OR_HOST --port PORT]
                    [--writers 4] [--rejecters 3] [--readers 2]
                    [--seal-every 5] [--verify-every 30] [--seed 1]

Without --host it starts its own throwaway cluster (scripts/cluster.sh, as
the postgres OS user) on a free port and removes it at the end. With --host
it creates a database soak_<pid> there (as superuser postgres) and drops it.

Load: valid writers present a fresh aal2 assertion in every transaction and
update shared rows (locked in id order), insert rows and delete their own
(about one in seven transactions rolls back on purpose); rejecters try the
same updates and deletes with no assertion, a too-low level, a too-old
authentication, an expired, wrong-audience or wrongly signed assertion, or
one held by an earlier transaction, and must get SU001 every time; readers
read the table and check that no assertion leaks between transactions; a
sealer calls stepup.seal() every --seal-every seconds; a verifier calls
stepup.verify_audit() (and verify_audit(digest) against the previous head)
every --verify-every seconds.

At the end: every committed transaction has exactly one audit entry per row
it changed (same txid, op, key, old and new values, jti), no entry belongs to
anything else, every row of the table is the end of the chain of committed
changes to it (and of its audit entries), no value of a rejected or
rolled-back attempt is anywhere, and seal + verify_audit() pass. Prints the
counts and exits 1 if any invariant failed.

The tests (tests/test_reliability.py) use the same workload and checks.
"""
import argparse
import base64
import collections
import getpass
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from mint import mint  # noqa: E402

PG_BIN = os.environ.get("STEPUP_PG_BIN", "/usr/lib/postgresql/15/bin")
SUPERUSER = "postgres"
TABLE = "public.payouts"
COLUMNS = ("owner", "iban", "amount")


# --- a throwaway cluster -----------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_postgres(cmd):
    return cmd if getpass.getuser() == "postgres" else ["sudo", "-u", "postgres", *cmd]


class Cluster:
    """A cluster of its own (scripts/cluster.sh) in a temporary directory on a
    free port, which can be crashed and restarted."""

    def __init__(self, *conf):
        self.dir = tempfile.mkdtemp(prefix="stepup-rel-")
        self.port = free_port()
        self.host = f"{self.dir}/sock"
        self.conf = conf

    def start(self):
        subprocess.run([str(ROOT / "scripts/cluster.sh"), "start", self.dir, str(self.port), *self.conf],
                       check=True)

    def conninfo(self, dbname, user=SUPERUSER, **extra):
        return psycopg.conninfo.make_conninfo(host=self.host, port=self.port, user=user, dbname=dbname, **extra)

    def pg_ctl(self, *args):
        subprocess.run(as_postgres([f"{PG_BIN}/pg_ctl", "-D", f"{self.dir}/data", *args]), check=True,
                       stdout=subprocess.DEVNULL)

    def restart(self):
        """Start again after a crash: crash recovery runs first."""
        self.pg_ctl("-l", f"{self.dir}/server.log", "-w", "-t", "120", "start")

    def stop_immediate(self):
        """pg_ctl stop -m immediate: every process quits at once, no shutdown checkpoint."""
        self.pg_ctl("-m", "immediate", "-w", "stop")

    def postmaster_pid(self):
        out = subprocess.run(as_postgres(["head", "-1", f"{self.dir}/data/postmaster.pid"]), check=True,
                             capture_output=True, text=True).stdout
        return int(out.strip())

    def attach(self):
        """Restart the postmaster as a child of this process, so that its
        death is reaped here (kill9). Under a PID 1 that does not reap
        orphans (this machine's), a killed postmaster started by pg_ctl stays
        a zombie, its pid in postmaster.pid looks alive, and no restart is
        possible."""
        self.pg_ctl("-m", "fast", "-w", "stop")
        cmd = [f"{PG_BIN}/postgres", "-D", f"{self.dir}/data"]
        with open(f"{self.dir}/server.log", "ab") as log:
            if os.geteuid() == 0:
                self.child = subprocess.Popen(cmd, user="postgres", group="postgres", extra_groups=[],
                                              cwd="/", stdin=subprocess.DEVNULL, stdout=log, stderr=log)
            else:  # sudo is the parent then, and reaps it
                self.child = subprocess.Popen(as_postgres(cmd), cwd="/", stdin=subprocess.DEVNULL,
                                              stdout=log, stderr=log)
        deadline = time.time() + 60
        while subprocess.run([f"{PG_BIN}/pg_isready", "-q", "-h", self.host, "-p", str(self.port)]).returncode:
            if self.child.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"postgres did not start; see {self.dir}/server.log")
            time.sleep(0.05)

    def kill9(self):
        """SIGKILL the postmaster (started by attach()), then every process it
        had started: the server dies mid-statement without any chance to
        clean up (as under the OOM killer). Nothing forks meanwhile: the
        clients are connected, autovacuum is off, the tables are too small
        for parallel query. Waits until all are gone."""
        pm = self.postmaster_pid()
        children = children_of(pm)
        signal_pids([pm], signal.SIGKILL)
        signal_pids(children, signal.SIGKILL)
        self.child.wait(30)
        wait_gone([pm, *children], 30)
        return children

    def remove(self):
        try:
            subprocess.run([str(ROOT / "scripts/cluster.sh"), "stop", self.dir], check=False)
        finally:
            if os.geteuid() == 0:
                shutil.rmtree(self.dir, ignore_errors=True)
            else:
                subprocess.run(["sudo", "rm", "-rf", self.dir], check=False)


def children_of(pid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def signal_pids(pids, sig):
    if not pids:
        return
    if os.geteuid() == 0:
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
    else:
        subprocess.run(["sudo", "-u", "postgres", "kill", f"-{int(sig)}", *map(str, pids)], check=False)


def wait_gone(pids, timeout):
    deadline = time.time() + timeout
    while any(alive(p) for p in pids):
        if time.time() > deadline:
            raise RuntimeError(f"processes still alive: {[p for p in pids if alive(p)]}")
        time.sleep(0.05)


# --- the database under load ---------------------------------------------------------

class Key:
    """An HS256 key as an identity provider holds it (same shape as the
    tests' conftest.Signer: .kid, .token(**claims))."""

    def __init__(self, conn, aud, kid=None):
        self.kid = kid or f"soak-{secrets.token_hex(6)}"
        self.secret = secrets.token_bytes(32)
        self.aud = aud
        conn.execute("SELECT stepup.add_key(%s, %s)", [self.kid, self.secret])

    def token(self, **claims):
        claims.setdefault("aud", self.aud)
        return mint(self.kid, self.secret, **claims)


def ensure_role(conn, role, dbname):
    """A LOGIN role without privileges beyond CONNECT; True if created here."""
    created = conn.execute("SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = %s)", [role]).fetchone()[0]
    if created:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(dbname), sql.Identifier(role)))
    return created


def create_payouts(conn, app_role, rows):
    """public.payouts as in the tests' `fresh` fixture, with `rows` rows
    (id, 'u<id>', 'DE<id>', id), owned by `app_role`, protected with the
    defaults (UPDATE and DELETE need aal2 within 5 minutes)."""
    conn.execute("CREATE TABLE public.payouts (id int PRIMARY KEY, owner text, iban text, amount numeric)")
    conn.execute("INSERT INTO public.payouts SELECT g, 'u' || g, 'DE' || g, g FROM generate_series(1, %s) g",
                 [rows])
    conn.execute(sql.SQL("ALTER TABLE public.payouts OWNER TO {}").format(sql.Identifier(app_role)))
    conn.execute("SELECT stepup.protect('public.payouts')")


def read_table(conn):
    rows = conn.execute("SELECT id, owner, iban, amount::bigint FROM public.payouts").fetchall()
    return {r[0]: dict(zip(COLUMNS, r[1:])) for r in rows}


def audit_baseline(conn):
    return conn.execute("SELECT coalesce(max(id), 0) FROM stepup.audit_log").fetchone()[0]


# --- what the clients did ----------------------------------------------------------------

class Txn:
    """One transaction of a valid writer. `changes`: (op, id, old, new), old
    and new the full row (dict) or None. `state`: open, commit-sent (COMMIT
    sent, no answer), committed (COMMIT returned), rolled-back, failed."""
    __slots__ = ("writer", "txid", "jti", "changes", "state")

    def __init__(self, writer):
        self.writer, self.txid, self.jti, self.changes, self.state = writer, None, None, [], "open"


class Ledger:
    """Everything the clients did and saw, shared by their threads."""

    def __init__(self, kid):
        self.kid = kid            # the key valid writers sign with
        self.lock = threading.Lock()
        self.txns = []
        self.rejections = collections.Counter()  # (variant, phase, sqlstate or 'ok')
        self.rejected_jtis = set()
        self.violations = []      # invariant failures seen during the load
        self.unexpected = []      # errors nobody expected (outside a crash)
        self.sealed = 0
        self.seals = 0
        self.verifies = []        # (ok, entries, first_bad_id, reason)
        self.reads = 0

    def add(self, attr, value):
        with self.lock:
            getattr(self, attr).append(value)

    def count(self, key):
        with self.lock:
            self.rejections[key] += 1


class Load:
    """Starts the load threads; `stop` ends them after their current
    transaction, `crashing` turns connection errors into expected ones."""

    def __init__(self, ledger, signer, conninfo, app_role, shared_ids, seed=1):
        self.ledger, self.signer, self.conninfo, self.app_role = ledger, signer, conninfo, app_role
        self.shared_ids = list(shared_ids)
        self.seed = seed
        self.stop = threading.Event()
        self.crashing = threading.Event()
        self.threads = []

    def spawn(self, target, *args):
        t = threading.Thread(target=self._guard, args=(target, *args), daemon=True)
        self.threads.append(t)
        t.start()

    def _guard(self, target, *args):
        try:
            target(*args)
        except psycopg.Error as e:
            if not self.crashing.is_set():
                self.ledger.add("unexpected", f"{target.__name__}{args}: {e.sqlstate} {e}")
        except Exception as e:  # noqa: BLE001 - a thread must report, not vanish
            self.ledger.add("unexpected", f"{target.__name__}{args}: {type(e).__name__}: {e}")

    def join(self, timeout=120):
        deadline = time.time() + timeout
        for t in self.threads:
            t.join(max(0.1, deadline - time.time()))
        stuck = [t.name for t in self.threads if t.is_alive()]
        if stuck:
            self.ledger.add("unexpected", f"threads did not finish: {stuck}")

    def connect(self, user=None, **kw):
        return psycopg.connect(self.conninfo(user=user or self.app_role, **kw), autocommit=True)

    def running(self, i, ops):
        return not self.stop.is_set() and (ops is None or i < ops)

    # -- valid writers

    def writer(self, w, ops=None, rollback_every=7, insert_delete=True, seal_every=0):
        """Valid assertion in every transaction. Values are unique per change
        (amount i*10^4 + w*10 + k, iban OK-w-i-k; w < 1000), so each row's
        history is one chain from its first state to its last."""
        rng = random.Random(self.seed * 1000 + w)
        conn = self.connect(application_name=f"writer-{w}")
        sealer = self.connect(SUPERUSER) if seal_every else None
        own = []  # ids this writer inserted and committed
        i = 0
        while self.running(i, ops):
            i += 1
            txn = Txn(w)
            rollback = rollback_every and i % rollback_every == 0
            tag = "RB" if rollback else "OK"
            roll = rng.random()
            if not insert_delete or roll < 0.6 or (roll >= 0.75 and not own):
                action, ids = "update", sorted(rng.sample(self.shared_ids, rng.choice((1, 1, 2))))
            elif roll < 0.75:
                action, ids = "insert", [10**6 + i * 1000 + w]
            elif roll < 0.87:
                action, ids = "update", [rng.choice(own)]
            else:
                action, ids = "delete", [rng.choice(own)]
            try:
                conn.execute("BEGIN")
                txn.txid = conn.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()[0]
                self.ledger.add("txns", txn)
                claims = conn.execute("SELECT stepup.present(%s)", [self.signer.token(sub=f"w{w}")]).fetchone()[0]
                txn.jti = claims["jti"]
                if action == "insert":
                    new = {"owner": f"w{w}", "iban": f"{tag}-{w}-{i}-0", "amount": i * 10**4 + w * 10}
                    conn.execute("INSERT INTO public.payouts VALUES (%s, %s, %s, %s)",
                                 [ids[0], new["owner"], new["iban"], new["amount"]])
                    txn.changes.append(("INSERT", ids[0], None, new))
                else:
                    locked = conn.execute("SELECT id, owner, iban, amount::bigint FROM public.payouts "
                                          "WHERE id = ANY(%s) ORDER BY id FOR UPDATE", [ids]).fetchall()
                    for k, (rid, *old) in enumerate(locked):
                        old = dict(zip(COLUMNS, old))
                        if action == "delete":
                            n = conn.execute("DELETE FROM public.payouts WHERE id = %s", [rid]).rowcount
                            txn.changes.append(("DELETE", rid, old, None))
                        else:
                            new = dict(old, iban=f"{tag}-{w}-{i}-{k}", amount=i * 10**4 + w * 10 + k)
                            n = conn.execute("UPDATE public.payouts SET iban = %s, amount = %s WHERE id = %s",
                                             [new["iban"], new["amount"], rid]).rowcount
                            txn.changes.append(("UPDATE", rid, old, new))
                        if n != 1:
                            self.ledger.add("violations", f"writer {w}: {action} of locked row {rid} hit {n} rows")
                if rollback:
                    conn.execute("ROLLBACK")
                    txn.state = "rolled-back"
                    continue
                txn.state = "commit-sent"
                conn.execute("COMMIT")
                txn.state = "committed"
                if action == "insert":
                    own.append(ids[0])
                elif action == "delete":
                    own.remove(ids[0])
                if sealer is not None and i % seal_every == 0:
                    self._seal(sealer)
            except psycopg.Error as e:
                if txn.state == "open":
                    txn.state = "failed"
                if self.crashing.is_set() or conn.broken:
                    if not self.crashing.is_set():
                        self.ledger.add("unexpected", f"writer {w}: connection lost: {e}")
                    return
                self.ledger.add("unexpected", f"writer {w} ({action} {ids}): {e.sqlstate} {e}")
                if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    conn.execute("ROLLBACK")

    # -- rejected writers

    VARIANTS = (
        # name, claims of the presented token (None: nothing presented), present's SQLSTATE, statement
        ("none", None, None, "update"),
        ("aal1", {"acr": "aal1"}, None, "update"),
        ("stale-auth", {"auth_age": 600}, None, "update"),
        ("expired", {"age": 1000}, "SU002", "update"),
        ("wrong-aud", {"aud": "not-this-db"}, "SU002", "update"),
        ("bad-signature", "forged", "SU002", "update"),
        ("held-by-earlier-txn", "earlier", None, "update"),
        ("none-delete", None, None, "delete"),
        ("aal1-delete", {"acr": "aal1"}, None, "delete"),
    )

    def rejecter(self, r, ops=None):
        """The same updates without a valid step-up: the write must fail with
        SU001 every time. Values: amount -(i*10^4 + r), iban REJ-r-i."""
        rng = random.Random(self.seed * 1000 + 500 + r)
        conn = self.connect(application_name=f"rejecter-{r}")
        i = 0
        while self.running(i, ops):
            i += 1
            name, claims, present_state, stmt = self.VARIANTS[(r + i) % len(self.VARIANTS)]
            rid = rng.choice(self.shared_ids)
            try:
                if claims == "earlier":
                    # Held by a committed transaction: gone by the next one.
                    with conn.transaction():
                        conn.execute("SELECT stepup.present(%s)", [self._remember(self.signer.token())])
                with conn.transaction():
                    if claims is not None and claims != "earlier":
                        if claims == "forged":
                            token = mint(self.signer.kid, secrets.token_bytes(32), aud=self.signer.aud)
                        else:
                            token = self.signer.token(**claims)
                        self._remember(token)
                        try:
                            with conn.transaction():  # a savepoint: the attacker carries on
                                conn.execute("SELECT stepup.present(%s)", [token])
                            got = None
                        except psycopg.Error as e:
                            if conn.broken or self.crashing.is_set():
                                raise
                            got = e.sqlstate
                        self.ledger.count((name, "present", got or "ok"))
                        if got != present_state:
                            self.ledger.add("violations", f"rejecter {r} {name}: present gave {got}, "
                                                          f"expected {present_state or 'success'}")
                    try:
                        with conn.transaction():
                            if stmt == "delete":
                                conn.execute("DELETE FROM public.payouts WHERE id = %s", [rid])
                            else:
                                conn.execute("UPDATE public.payouts SET iban = %s, amount = %s WHERE id = %s",
                                             [f"REJ-{r}-{i}", -(i * 10**4 + r), rid])
                        got = None
                    except psycopg.Error as e:
                        if conn.broken or self.crashing.is_set():
                            raise
                        got = e.sqlstate
                    self.ledger.count((name, stmt, got or "ok"))
                    if got != "SU001":
                        self.ledger.add("violations", f"rejecter {r} {name}: {stmt} of row {rid} gave "
                                                      f"{got or 'success'}, expected SU001")
                    if got is not None:
                        raise psycopg.Rollback()
                    # A write that got through commits, as an attacker's would.
            except psycopg.Error as e:
                if self.crashing.is_set() or conn.broken:
                    if not self.crashing.is_set():
                        self.ledger.add("unexpected", f"rejecter {r}: connection lost: {e}")
                    return
                self.ledger.add("unexpected", f"rejecter {r} {name}: {e.sqlstate} {e}")

    def _remember(self, token):
        payload = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
        with self.ledger.lock:
            self.ledger.rejected_jtis.add(payload["jti"])
        return token

    # -- readers, sealer, verifier

    def reader(self, r, ops=None, pause=0.01):
        """Reads, and nothing held leaks out of a transaction."""
        conn = self.connect(application_name=f"reader-{r}")
        i = 0
        while self.running(i, ops):
            i += 1
            conn.execute("SELECT count(*), sum(amount) FROM public.payouts").fetchone()
            with conn.transaction():
                conn.execute("SELECT stepup.present(%s)", [self.signer.token(sub=f"r{r}")])
                if not conn.execute("SELECT stepup.satisfied('aal2', '5 minutes')").fetchone()[0]:
                    self.ledger.add("violations", f"reader {r}: a fresh aal2 assertion does not satisfy aal2")
                raise psycopg.Rollback()
            if conn.execute("SELECT stepup.current()").fetchone()[0] is not None:
                self.ledger.add("violations", f"reader {r}: an assertion outlived its transaction")
            with self.ledger.lock:
                self.ledger.reads += 1
            time.sleep(pause)

    def _seal(self, conn):
        n = conn.execute("SELECT stepup.seal()").fetchone()[0]
        with self.ledger.lock:
            self.ledger.sealed += n
            self.ledger.seals += 1

    def sealer(self, every):
        conn = self.connect(SUPERUSER, application_name="sealer")
        while not self.stop.wait(every):
            self._seal(conn)

    def verifier(self, every):
        conn = self.connect(SUPERUSER, application_name="verifier")
        digest = None
        while not self.stop.wait(every):
            result = conn.execute("SELECT ok, entries, first_bad_id, reason FROM stepup.verify_audit()").fetchone()
            self.ledger.add("verifies", result)
            if not result[0]:
                self.ledger.add("violations", f"verify_audit() during the load: {result}")
            if digest is not None:
                against = conn.execute("SELECT ok, entries, first_bad_id, reason FROM stepup.verify_audit(%s)",
                                       [psycopg.types.json.Jsonb(digest)]).fetchone()
                if not against[0]:
                    self.ledger.add("violations", f"verify_audit(previous digest) during the load: {against}")
            digest = conn.execute("SELECT stepup.audit_digest()").fetchone()[0]


# --- the check -------------------------------------------------------------------------------

def project(row, cols):
    return None if row is None else {c: row[c] for c in cols}


def changed_columns(old, new):
    if old is None or new is None:
        return sorted(["id", *COLUMNS])
    return sorted(c for c in COLUMNS if old[c] != new[c])


def frozen(row):
    return None if row is None else tuple(sorted(row.items()))


def full(rid, row):
    return None if row is None else dict(row, id=rid)


def check(conn, ledger, initial, baseline):
    """Compares the database with the ledger; read-only (run it first after a
    restart: it resolves transactions whose COMMIT got no answer with
    pg_xact_status, so no new transaction may reuse their xids before).
    Returns (failures, stats)."""
    fail = []
    txns = [t for t in ledger.txns if t.txid is not None]
    next_xid = conn.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint").fetchone()[0]
    status = dict(conn.execute(
        "SELECT x, pg_xact_status(x::text::xid8) FROM unnest(%s::bigint[]) x WHERE x < %s",
        [[t.txid for t in txns], next_xid]).fetchall())
    committed, resolved = [], collections.Counter()
    for t in txns:
        s = status.get(t.txid, "lost")  # at or past nextXid: none of its WAL survived
        if t.state == "committed":
            if s != "committed":
                fail.append(f"txn {t.txid}: COMMIT returned, but its status is {s}")
        elif t.state == "commit-sent":
            resolved[s] += 1
            if s not in ("committed", "aborted", "lost"):
                fail.append(f"txn {t.txid}: in flight at the crash, status now {s}")
        elif s == "committed":
            fail.append(f"txn {t.txid} ({t.state}) never committed, but its status is committed")
        if s == "committed":
            committed.append(t)
    by_txid = {t.txid: t for t in committed}

    entries = conn.execute(
        "SELECT id, txid, op, key, changed, old_values, new_values, jti, kid FROM stepup.audit_log "
        "WHERE id > %s AND table_name = %s ORDER BY id", [baseline, TABLE]).fetchall()
    others = conn.execute("SELECT count(*) FROM stepup.audit_log WHERE id > %s AND table_name <> %s",
                          [baseline, TABLE]).fetchone()[0]
    if others:
        fail.append(f"{others} audit entries for other tables")

    # Each committed transaction: one entry per row it changed, nothing else.
    seen = collections.defaultdict(list)
    for e in entries:
        eid, txid, op, key, changed, old_v, new_v, jti, kid = e
        t = by_txid.get(txid)
        if t is None:
            fail.append(f"audit entry {eid} ({op} {key}) of txid {txid}, which is not a committed transaction "
                        f"of the load")
            continue
        seen[txid].append(e)
    for t in committed:
        got = sorted((e[2], e[3].get("id")) for e in seen.get(t.txid, []))
        want = sorted((op, rid) for op, rid, _, _ in t.changes)
        if got != want:
            fail.append(f"txn {t.txid} ({t.state}): audit entries {got}, changes {want}")
            continue
        entry_of = {(e[2], e[3]["id"]): e for e in seen[t.txid]}
        for op, rid, old, new in t.changes:
            e = entry_of[(op, rid)]
            cols = changed_columns(old, new)
            want = (cols, project(full(rid, old), cols), project(full(rid, new), cols), t.jti, ledger.kid)
            if (e[4], e[5], e[6], e[7], e[8]) != want:
                fail.append(f"entry {e[0]} of txn {t.txid}: {e[4:]} != {want}")

    # Each row: committed changes form one chain from its first to its last
    # state, the audit entries (in id order) walk the same chain, and the
    # table holds its end.
    chains = collections.defaultdict(list)
    for t in committed:
        for op, rid, old, new in t.changes:
            chains[rid].append((old, new))
    expected = {rid: dict(row) for rid, row in initial.items()}
    for rid, steps in chains.items():
        follows = collections.defaultdict(list)  # a state -> the changes made from it
        for old, new in steps:
            follows[frozen(old)].append(new)
        state, left = initial.get(rid), len(steps)
        while left:
            nxt = follows.get(frozen(state), [])
            if len(nxt) != 1:
                fail.append(f"row {rid}: committed changes do not form one chain from {state} "
                            f"({len(nxt)} follow it, {left} left)")
                break
            state = nxt.pop()
            left -= 1
        if state is None:
            expected.pop(rid, None)
        else:
            expected[rid] = state
    walk = {rid: full(rid, row) for rid, row in initial.items()}
    for eid, txid, op, key, changed, old_v, new_v, *_ in entries:
        rid = key.get("id")
        cur = walk.get(rid)
        if project(cur, changed) != old_v:
            fail.append(f"audit entry {eid} for row {rid}: old values {old_v}, but the row was {cur}")
        walk[rid] = None if new_v is None else dict(cur or {}, **new_v)
    walk = {rid: {c: row[c] for c in COLUMNS} for rid, row in walk.items() if row is not None}
    actual = read_table(conn)
    if actual != expected:
        diff = sorted(r for r in set(actual) | set(expected) if actual.get(r) != expected.get(r))
        fail.append(f"table differs from the committed changes at rows {diff[:10]}: "
                    f"{[(r, actual.get(r), expected.get(r)) for r in diff[:3]]}")
    if walk != actual:
        diff = sorted(r for r in set(actual) | set(walk) if actual.get(r) != walk.get(r))
        fail.append(f"table differs from its audit trail at rows {diff[:10]}")

    # Nothing of a rejected or rolled-back attempt, anywhere.
    landed = conn.execute("SELECT count(*) FROM public.payouts WHERE amount < 0 OR iban LIKE 'REJ-%%' "
                          "OR iban LIKE 'RB-%%'").fetchone()[0]
    if landed:
        fail.append(f"{landed} rows hold a value of a rejected or rolled-back attempt")
    logged = conn.execute(
        "SELECT count(*) FROM stepup.audit_log WHERE id > %s AND ("
        "concat(old_values::text, new_values::text) ~ '(REJ|RB)-' "
        "OR (old_values->>'amount')::numeric < 0 OR (new_values->>'amount')::numeric < 0 "
        "OR jti = ANY(%s))", [baseline, list(ledger.rejected_jtis)]).fetchone()[0]
    if logged:
        fail.append(f"{logged} audit entries carry a value or jti of a rejected or rolled-back attempt")

    ops = collections.Counter(op for t in committed for op, *_ in t.changes)
    stats = {
        "transactions": len(txns),
        "committed": len(committed),
        "committed_by_client": sum(t.state == "committed" for t in txns),
        "in_flight_at_crash": dict(resolved),
        "rolled_back": sum(t.state == "rolled-back" for t in txns),
        "failed": sum(t.state == "failed" for t in txns),
        "changes": dict(ops),
        "audit_entries": len(entries),
        "rows": len(actual),
    }
    if len(entries) != sum(ops.values()):
        fail.append(f"{len(entries)} audit entries for {sum(ops.values())} committed row changes")
    return fail, stats


def seal_and_verify(conn):
    """Final seal, verify; every entry linked exactly once. Returns (failures, verify row)."""
    fail = []
    conn.execute("SELECT stepup.seal()")
    result = conn.execute("SELECT ok, entries, first_bad_id, reason FROM stepup.verify_audit()").fetchone()
    logged, linked, distinct = conn.execute(
        "SELECT (SELECT count(*) FROM stepup.audit_log), (SELECT count(*) FROM stepup.audit_chain), "
        "(SELECT count(DISTINCT entry_id) FROM stepup.audit_chain)").fetchone()
    if result != (True, logged, None, None):
        fail.append(f"verify_audit() = {result}, {logged} entries in audit_log")
    if not (logged == linked == distinct):
        fail.append(f"audit_log {logged}, audit_chain {linked} links ({distinct} distinct entries)")
    return fail, result


# --- the command -----------------------------------------------------------------------------

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=600, help="seconds of load (default 600)")
    p.add_argument("--host", help="socket directory or host of an existing cluster (default: start one)")
    p.add_argument("--port", type=int, default=5432)
    p.add_argument("--writers", type=int, default=4)
    p.add_argument("--rejecters", type=int, default=3)
    p.add_argument("--readers", type=int, default=2)
    p.add_argument("--rows", type=int, default=16, help="shared rows the writers and rejecters fight over")
    p.add_argument("--seal-every", type=float, default=5)
    p.add_argument("--verify-every", type=float, default=30)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    if not 0 < a.writers < 1000 or a.rejecters >= 10**4:
        p.error("1 to 999 writers, fewer than 10000 rejecters")

    cluster = None
    dbname = f"soak_{os.getpid()}"
    app_role = "stepup_soak_app"
    if a.host:
        host, port = a.host, a.port
    else:
        cluster = Cluster()
        cluster.start()
        host, port = cluster.host, cluster.port
        print(f"cluster: {cluster.dir} port {port}")

    def conninfo(dbname=dbname, user=SUPERUSER, **extra):
        return psycopg.conninfo.make_conninfo(host=host, port=port, user=user, dbname=dbname, **extra)

    role_created = False
    failures = []
    started = time.time()
    try:
        with psycopg.connect(conninfo("postgres"), autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
            role_created = ensure_role(admin, app_role, dbname)
        with psycopg.connect(conninfo(), autocommit=True) as su:
            su.execute("CREATE EXTENSION pg_stepup")
            key = Key(su, dbname)
            create_payouts(su, app_role, a.rows)
            initial, baseline = read_table(su), audit_baseline(su)

            ledger = Ledger(key.kid)
            load = Load(ledger, key, lambda user=SUPERUSER, **kw: conninfo(user=user, **kw), app_role,
                        range(1, a.rows + 1), seed=a.seed)
            for w in range(a.writers):
                load.spawn(load.writer, w)
            for r in range(a.rejecters):
                load.spawn(load.rejecter, r)
            for r in range(a.readers):
                load.spawn(load.reader, r)
            load.spawn(load.sealer, a.seal_every)
            load.spawn(load.verifier, a.verify_every)
            last = time.time()
            while time.time() - started < a.duration:
                time.sleep(1)
                if time.time() - last >= 60:
                    last = time.time()
                    with ledger.lock:
                        done = sum(t.state == "committed" for t in ledger.txns)
                        rej = sum(v for k, v in ledger.rejections.items() if k[1] != "present")
                        v = ledger.verifies[-1] if ledger.verifies else None
                    print(f"  {time.time() - started:5.0f} s: {done} committed, {rej} rejected writes, "
                          f"{ledger.sealed} sealed, last verify {v}", flush=True)
            load.stop.set()
            load.join()
            elapsed = time.time() - started

            fail, stats = check(su, ledger, initial, baseline)
            failures += fail
            fail, final = seal_and_verify(su)
            failures += fail
            failures += [f"during the load: {v}" for v in ledger.violations]
            failures += [f"unexpected error: {u}" for u in ledger.unexpected]

            print(f"load: {elapsed:.0f} s, {a.writers} writers, {a.rejecters} rejecters, {a.readers} readers, "
                  f"{a.rows} shared rows")
            print(f"committed transactions: {stats['committed']} ({stats['committed'] / elapsed:.0f}/s), "
                  f"rolled back on purpose: {stats['rolled_back']}, failed: {stats['failed']}")
            print(f"committed row changes: {stats['changes']}")
            by_state = collections.Counter()
            for (name, phase, state), n in ledger.rejections.items():
                if phase != "present":
                    by_state[state] += n
            print(f"rejected writes by SQLSTATE: {dict(by_state)}")
            pres = collections.Counter()
            for (name, phase, state), n in ledger.rejections.items():
                if phase == "present":
                    pres[state] += n
            print(f"rejecters' present() by SQLSTATE: {dict(pres)} (ok: valid but too weak, aal1 or stale "
                  f"auth_time; SU002: expired, wrong aud, bad signature)")
            per_variant = collections.Counter()
            for (name, phase, state), n in ledger.rejections.items():
                if phase != "present":
                    per_variant[f"{name}:{state}"] += n
            print(f"rejected writes by variant: {dict(sorted(per_variant.items()))}")
            print(f"reads: {ledger.reads}")
            print(f"audit entries: {stats['audit_entries']} (committed row changes: {sum(stats['changes'].values())})")
            print(f"seal(): {ledger.seals} calls during the load linked {ledger.sealed} entries")
            oks = sum(1 for v in ledger.verifies if v[0])
            print(f"verify_audit() during the load: {oks}/{len(ledger.verifies)} ok"
                  + (f", last {ledger.verifies[-1]}" if ledger.verifies else ""))
            print(f"final verify_audit(): {final}")
    finally:
        try:
            with psycopg.connect(conninfo("postgres"), autocommit=True) as admin:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
                if role_created:
                    admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(app_role)))
        except psycopg.Error as e:
            print(f"cleanup: {e}", file=sys.stderr)
        if cluster is not None:
            cluster.remove()
    if failures:
        print(f"FAILED: {len(failures)} invariant(s)")
        for f in failures[:50]:
            print(f"  - {f}")
        return 1
    print("OK: every invariant holds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
