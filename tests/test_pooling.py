"""Behind a real pgbouncer in transaction-pooling mode: an assertion held
for a transaction never reaches the next client of the same server
connection; session scope does (documented as unsafe there) unless the
pool resets connections with DISCARD ALL."""
import os
import shutil
import socket
import subprocess
import tempfile
import time

import psycopg
import pytest

from conftest import PGHOST, PGPORT, SUPERUSER, scalar

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_pgbouncer(dbname, reset_always):
    """One server connection per pool, so consecutive clients share it."""
    workdir = tempfile.mkdtemp(prefix="stepup-bouncer-")
    port = free_port()
    config = os.path.join(workdir, "pgbouncer.ini")
    with open(os.path.join(workdir, "users.txt"), "w") as f:
        f.write(f'"{SUPERUSER}" ""\n')
    with open(config, "w") as f:
        f.write(f"""[databases]
{dbname} = host={PGHOST} port={PGPORT} dbname={dbname} user={SUPERUSER}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {workdir}/users.txt
pool_mode = transaction
default_pool_size = 1
max_client_conn = 10
server_reset_query = DISCARD ALL
server_reset_query_always = {1 if reset_always else 0}
logfile = {workdir}/pgbouncer.log
pidfile = {workdir}/pgbouncer.pid
""")
    cmd = [PGBOUNCER, config]
    if os.geteuid() == 0:  # pgbouncer refuses to run as root
        shutil.chown(workdir, "postgres")
        for name in os.listdir(workdir):
            shutil.chown(os.path.join(workdir, name), "postgres")
        cmd = ["sudo", "-u", "postgres"] + cmd
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        proc.terminate()
        pytest.fail("pgbouncer did not start")
    return proc, port, workdir


@pytest.fixture(params=[False, True], ids=["no_reset", "discard_all"])
def bouncer(request, dbname):
    proc, port, workdir = start_pgbouncer(dbname, request.param)
    opened = []

    def connect():
        # prepare_threshold=None: no server-side prepared statements, as
        # transaction pooling requires.
        conn = psycopg.connect(host="127.0.0.1", port=port, dbname=dbname, user=SUPERUSER,
                               autocommit=True, prepare_threshold=None)
        opened.append(conn)
        return conn

    connect.resets = request.param
    yield connect
    for conn in opened:
        conn.close()
    proc.terminate()
    proc.wait(timeout=10)
    shutil.rmtree(workdir, ignore_errors=True)


def backend_pid(conn):
    return scalar(conn, "SELECT pg_backend_pid()")


def test_transaction_scope_never_reaches_the_next_client(bouncer, hs):
    a, b = bouncer(), bouncer()
    with a.transaction():
        assert a.execute("SELECT stepup.present(%s)->>'sub'", [hs.token()]).fetchone()[0] == "alice"
        pid_a = backend_pid(a)
        assert scalar(a, "SELECT stepup.satisfied('aal2', '5 minutes')") is True
    # Client B is served by the same server backend, and holds nothing.
    with b.transaction():
        assert backend_pid(b) == pid_a
        assert scalar(b, "SELECT stepup.current()") is None
        assert scalar(b, "SELECT stepup.satisfied('aal1', '1 hour')") is False
        with pytest.raises(psycopg.Error) as caught:
            b.execute("SELECT stepup.require('aal1', '1 hour')")
        assert caught.value.sqlstate == "SU001"


def test_session_scope_is_unsafe_behind_transaction_pooling(bouncer, hs):
    """Documented: session scope outlives the client's transaction, so the
    next client of the server connection inherits it, unless the pool runs
    DISCARD ALL between clients (server_reset_query_always = 1)."""
    a, b = bouncer(), bouncer()
    a.execute("SELECT stepup.present(%s, 'session')", [hs.token()])
    pid_a = backend_pid(a)
    with b.transaction():
        assert backend_pid(b) == pid_a
        inherited = scalar(b, "SELECT stepup.satisfied('aal2', '5 minutes')")
    assert inherited is (not bouncer.resets)


def test_protected_write_after_another_clients_step_up(bouncer, hs, su):
    """Client A steps up and writes a protected row; client B, served by the
    same server backend right after, tries a protected write: SU001."""
    table = f"public.pooled_{os.getpid()}_{int(time.time() * 1000) % 100000}"
    su.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, iban text)")
    su.execute(f"INSERT INTO {table} VALUES (1, 'DE1')")
    su.execute("SELECT stepup.protect(%s)", [table])
    a, b = bouncer(), bouncer()
    with a.transaction():
        a.execute("SELECT stepup.present(%s)", [hs.token()])
        assert a.execute(f"UPDATE {table} SET iban = 'A' WHERE id = 1").rowcount == 1
        pid_a = backend_pid(a)
    with pytest.raises(psycopg.Error) as caught:
        with b.transaction():
            assert backend_pid(b) == pid_a
            b.execute(f"UPDATE {table} SET iban = 'B' WHERE id = 1")
    assert caught.value.sqlstate == "SU001"
    assert scalar(su, f"SELECT iban FROM {table}") == "A"
