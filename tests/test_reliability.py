"""Reliability: protected writes under concurrency and across a crash.

The workload and the checks are scripts/soak.py's (the long run is that
script): valid writers present a fresh assertion in every transaction and
record each change (with the row's old state, read under FOR UPDATE, and
their txid) as committed only once COMMIT returned; rejecters try the same
writes without a valid step-up, with values no valid writer uses. soak.check
then demands that the committed changes and the audit entries match one to
one (txid, op, key, old and new values, jti), that every row is the end of
the chain of its committed changes and of its audit entries, and that no
value of a rejected or rolled-back attempt is anywhere."""
import time

import psycopg
import pytest

from conftest import conninfo, expect_error, new_hs256, scalar
from soak import Cluster, Ledger, Load, audit_baseline, check, create_payouts, ensure_role, read_table, \
    seal_and_verify
from test_audit import fresh, stepped_up, verify  # noqa: F401 - fresh is a fixture


def rejected_writes(ledger):
    return {k: v for k, v in ledger.rejections.items() if k[1] != "present"}


# --- (A) valid and rejected writers at once, with sealers -------------------------------------

def test_concurrent_valid_and_rejected_writers(fresh):
    su = fresh.connect()
    su.execute("INSERT INTO payouts SELECT g, 'u' || g, 'DE' || g, g FROM generate_series(3, 6) g")
    initial, baseline = read_table(su), audit_baseline(su)
    ledger = Ledger(fresh.signer.kid)
    load = Load(ledger, fresh.signer, lambda user, **kw: conninfo(fresh.name, user=user, **kw),
                fresh.app_role, initial)
    writers, rejecters, ops = 4, 4, 90
    for w in range(writers):
        load.spawn(load.writer, w, ops, 6, False)  # 6 shared rows; every 6th transaction rolls back
    for r in range(rejecters):
        load.spawn(load.rejecter, r, ops)
    load.spawn(load.sealer, 0.01)
    load.spawn(load.verifier, 0.2)
    for t in load.threads[:writers + rejecters]:
        t.join(60)
    load.stop.set()
    load.join()

    assert ledger.unexpected == []
    assert ledger.violations == []
    failures, stats = check(su, ledger, initial, baseline)
    assert failures == []
    assert stats["committed"] == stats["committed_by_client"] == writers * (ops - ops // 6)
    assert stats["rolled_back"] == writers * (ops // 6) and stats["failed"] == 0
    assert stats["audit_entries"] == stats["changes"]["UPDATE"] >= stats["committed"]
    # Every rejected write got SU001, each of the nine ways to try.
    rejected = rejected_writes(ledger)
    assert {k[2] for k in rejected} == {"SU001"}
    assert sum(rejected.values()) == rejecters * ops and len(rejected) == len(Load.VARIANTS)
    assert ledger.seals > 0 and ledger.verifies and all(v[0] for v in ledger.verifies)
    failures, result = seal_and_verify(su)
    assert failures == []
    assert result[1] == stats["audit_entries"] + 4  # and the four INSERTs of the setup


# --- (B) a crash in the middle of the load -------------------------------------------------------

@pytest.mark.parametrize("crash", ["immediate", "kill9"])
def test_crash_mid_load_loses_no_audit_entry(crash):
    """`immediate`: pg_ctl stop -m immediate. `kill9`: SIGKILL to the
    postmaster and every process it started. Then restart (crash recovery).
    A transaction whose COMMIT got no answer may have committed or not:
    pg_xact_status decides, before anything new gets an xid (autovacuum is
    off, the check is read-only), and the audit must agree with it exactly."""
    cluster, load = Cluster("autovacuum = off"), None
    try:
        cluster.start()
        dbname, app_role = "crash", "app_user"
        with psycopg.connect(cluster.conninfo("postgres"), autocommit=True) as admin:
            admin.execute("CREATE DATABASE crash")
            ensure_role(admin, app_role, dbname)
        with psycopg.connect(cluster.conninfo(dbname), autocommit=True) as su:
            su.execute("CREATE EXTENSION pg_stepup")
            signer = new_hs256(su, dbname)
            create_payouts(su, app_role, 8)
            initial, baseline = read_table(su), audit_baseline(su)
        if crash == "kill9":
            cluster.attach()

        ledger = Ledger(signer.kid)
        load = Load(ledger, signer, lambda user, **kw: cluster.conninfo(dbname, user=user, **kw), app_role,
                    initial, seed=7)
        for w in range(6):
            # Writers 0 and 1 also seal, after every 5th commit.
            load.spawn(load.writer, w, None, 7, True, 5 if w < 2 else 0)
        for r in range(2):
            load.spawn(load.rejecter, r)
        load.spawn(load.sealer, 0.05)

        def committed():
            with ledger.lock:
                return sum(t.state == "committed" for t in ledger.txns)

        with psycopg.connect(cluster.conninfo(dbname), autocommit=True) as su:
            wait_for(lambda: committed() >= 100)
            digest = scalar(su, "SELECT stepup.audit_digest()")
            wait_for(lambda: committed() >= 250)
            assert all(t.is_alive() for t in load.threads), ledger.unexpected
            load.crashing.set()
            if crash == "immediate":
                cluster.stop_immediate()
            else:
                cluster.kill9()
        load.stop.set()
        load.join(60)
        assert ledger.unexpected == [] and ledger.violations == []

        cluster.restart()
        with psycopg.connect(cluster.conninfo(dbname), autocommit=True) as su:
            # First, read-only: resolves in-flight transactions by their xids.
            failures, stats = check(su, ledger, initial, baseline)
            assert failures == [], stats
            assert stats["committed"] >= 250
            assert sum(rejected_writes(ledger).values()) > 0
            # The head saved before the crash is still in the chain; all verifies.
            assert verify(su, psycopg.types.json.Jsonb(digest))[0] is True
            failures, result = seal_and_verify(su)
            assert failures == []
            assert result[1] == stats["audit_entries"]
            # Protection and audit work after the restart.
            app = psycopg.connect(cluster.conninfo(dbname, user=app_role), autocommit=True)
            with app:
                expect_error(app, "UPDATE payouts SET iban = 'after' WHERE id = 1", None, "SU001")
                assert stepped_up(app, signer.token(), "UPDATE payouts SET iban = 'after' WHERE id = 1") == 1
            assert verify(su)[:2] == (True, stats["audit_entries"] + 1)
    finally:
        if load is not None:
            load.crashing.set()
            load.stop.set()
        cluster.remove()


def wait_for(condition, timeout=60):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "the load did not get there in time"
        time.sleep(0.05)
