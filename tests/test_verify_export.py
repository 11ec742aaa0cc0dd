"""`stepup verify` on real exports: psql's `\\copy stepup.audit_log / audit_chain
TO ... CSV HEADER` of a real chain, verified offline, with the verdicts
`stepup.verify_audit()` gives for the same data (tampering is done in the
database as a superuser with the append-only triggers off, then both are
asked). Malformed exports exit 2 with a reason.

The CLI: $STEPUP_CLI, else built here (cargo build -p stepup-cli)."""
import json
import os
import re
import subprocess
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from conftest import SUPERUSER, conninfo, new_hs256, present, scalar, unique

ROOT = Path(__file__).resolve().parent.parent
PSQL = os.environ.get("STEPUP_PG_BIN", "/usr/lib/postgresql/15/bin") + "/psql"
GENESIS = "0" * 64


@pytest.fixture(scope="session")
def cli():
    if os.environ.get("STEPUP_CLI"):
        return os.environ["STEPUP_CLI"]
    subprocess.run(["cargo", "build", "-q", "-p", "stepup-cli"], cwd=ROOT, check=True)
    meta = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=ROOT,
                          check=True, capture_output=True, text=True).stdout
    return str(Path(json.loads(meta)["target_directory"]) / "debug" / "stepup")


class Db:
    """A database of its own (tampering must not reach other tests' chain):
    pg_stepup, a key, and public.payouts owned by the app role, protected."""

    def __init__(self, name, app_role):
        self.name, self.app_role, self.conns = name, app_role, []

    def connect(self, user=SUPERUSER, **kw):
        c = psycopg.connect(conninfo(self.name, user=user, **kw), autocommit=True)
        self.conns.append(c)
        return c

    def app(self, **kw):
        return self.connect(self.app_role, **kw)

    def change(self, conn, statement, params=None, **claims):
        with conn.transaction():
            present(conn, self.signer.token(**claims))
            conn.execute(statement, params)


@pytest.fixture
def db(app_role):
    name = unique("stepup_export").replace("-", "_")
    with psycopg.connect(conninfo("postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        admin.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
            sql.Identifier(name), sql.Identifier(app_role)))
    d = Db(name, app_role)
    try:
        su = d.connect()
        su.execute("CREATE EXTENSION pg_stepup")
        d.signer = new_hs256(su, name)
        su.execute("CREATE TABLE public.payouts (id int PRIMARY KEY, owner text, iban text, amount numeric, "
                   "note text, tags text[], doc jsonb, addr inet)")
        su.execute("INSERT INTO public.payouts (id, owner, iban, amount) VALUES (1, 'Zoë', 'DE01', 100), "
                   "(2, 'bob', 'DE02', 200)")
        su.execute(sql.SQL("ALTER TABLE public.payouts OWNER TO {}").format(sql.Identifier(app_role)))
        su.execute("SELECT stepup.protect('public.payouts')")
        yield d
    finally:
        for c in d.conns:
            c.close()
        with psycopg.connect(conninfo("postgres"), autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def make_entries(d, n):
    app = d.app()
    for i in range(n):
        d.change(app, "UPDATE payouts SET amount = %s WHERE id = 1", [i])
    d.connect().execute("SELECT stepup.seal()")
    return [r[0] for r in d.connect().execute("SELECT id FROM stepup.audit_log ORDER BY id")]


def tamper(su, statement):
    """What a superuser can still do: switch the append-only triggers off."""
    su.execute("ALTER TABLE stepup.audit_log DISABLE TRIGGER USER")
    su.execute("ALTER TABLE stepup.audit_chain DISABLE TRIGGER USER")
    su.execute(statement)
    for table in ("audit_log", "audit_chain"):
        for trigger in ("append_only", "no_truncate"):
            su.execute(f"ALTER TABLE stepup.{table} ENABLE ALWAYS TRIGGER {table}_{trigger}")


def verify_audit(su, digest=None):
    if digest is None:
        return su.execute("SELECT ok, entries, first_bad_id, reason FROM stepup.verify_audit()").fetchone()
    return su.execute("SELECT ok, entries, first_bad_id, reason FROM stepup.verify_audit(%s)",
                      [psycopg.types.json.Jsonb(digest)]).fetchone()


def export(d, out, tz=None, datestyle=None, encoding=None, tables=("audit_chain", "audit_log")):
    """The real psql \\copy of the audit tables into `out` (a directory)."""
    env = dict(os.environ)
    for var, value in (("PGTZ", tz), ("PGDATESTYLE", datestyle), ("PGCLIENTENCODING", encoding)):
        env.pop(var, None)
        if value:
            env[var] = value
    out.mkdir(exist_ok=True)
    cmd = [PSQL, "-X", "-q", "-v", "ON_ERROR_STOP=1", conninfo(d.name)]
    for t in tables:
        cmd += ["-c", f"\\copy stepup.{t} TO '{out / t}.csv' CSV HEADER"]
    subprocess.run(cmd, check=True, env=env)
    return out / "audit_log.csv", out / "audit_chain.csv"


def run(cli, log, chain, digest=None):
    cmd = [cli, "verify", "--log", str(log), "--chain", str(chain)]
    if digest is not None:
        cmd += ["--digest", str(digest)]
    return subprocess.run(cmd, capture_output=True, text=True)


def save_digest(su, path):
    # What psql -Atc 'SELECT stepup.audit_digest()' writes.
    path.write_text(scalar(su, "SELECT stepup.audit_digest()::text") + "\n")
    return path


def assert_same(verdict, p):
    """The CLI says what verify_audit() said."""
    ok, entries, bad, reason = verdict
    if ok:
        assert (p.returncode, p.stderr) == (0, ""), (p.stdout, p.stderr)
        assert re.fullmatch(rf"ok {entries} entries(; .*)?\n", p.stdout), p.stdout
    else:
        assert p.returncode == 1, (p.stdout, p.stderr)
        assert p.stdout == f"bad entry {bad} after {entries} good entries: {reason}\n"


# --- real chains verify -----------------------------------------------------------------------

@pytest.mark.parametrize("tz", [None, "Asia/Kolkata", "America/St_Johns", "Pacific/Chatham"])
def test_a_real_chain_verifies(db, tmp_path, cli, tz):
    make_entries(db, 4)
    su = db.connect()
    n = scalar(su, "SELECT count(*) FROM stepup.audit_log")
    assert verify_audit(su) == (True, n, None, None)
    log, chain = export(db, tmp_path, tz=tz)
    if tz == "Asia/Kolkata":
        assert "+05:30," in log.read_text()
    p = run(cli, log, chain, save_digest(su, tmp_path / "digest.json"))
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"ok {n} entries; the saved digest's head (link {n}) is in the chain\n"
    assert run(cli, log, chain).stdout == f"ok {n} entries\n"


def test_tricky_values_verify(db, tmp_path, cli):
    """Quotes, commas, newlines, unicode, NULLs, empty strings and arrays,
    big jsonb, values over the copy limit (omitted markers), a client
    address, an assertion with every claim, a TRUNCATE entry; under a zone
    with a half-hour offset."""
    su = db.connect()
    tcp = psycopg.connect(psycopg.conninfo.make_conninfo(
        host="127.0.0.1", port=su.info.port, user=db.app_role, dbname=db.name,
        application_name='a,"pp"\'s ✓'), autocommit=True)
    db.conns.append(tcp)
    app = db.app(application_name="")
    big_doc = {"k" + str(i): ["v,\"" + str(i), None, {"n": i / 7}] for i in range(800)}
    assert 30_000 < len(json.dumps(big_doc)) < 60_000
    db.change(tcp, "UPDATE payouts SET note = %s, tags = %s, doc = %s WHERE id = 1",
              ['a,"b"\nc\r\nd \\N \\. ,', ["a b", 'x"y', None, "", "{}", "日本"],
               psycopg.types.json.Jsonb(big_doc)],
              sub='ali,"ce"\n', amr=["otp", "hwk"], acr="aal2")
    db.change(app, "UPDATE payouts SET note = '', tags = '{}', doc = '[]', addr = '::ffff:10.0.0.1/96' "
                   "WHERE id = 2", amr=[])
    db.change(app, "UPDATE payouts SET iban = iban WHERE id = 2")  # changed: {}
    db.change(app, "UPDATE payouts SET note = NULL, tags = NULL, doc = 'null' WHERE id = 2")
    db.change(app, "UPDATE payouts SET note = repeat('é,\"', 30000), doc = %s WHERE id = 1",
              [psycopg.types.json.Jsonb({"big": "x" * 70_000})])
    app.execute("INSERT INTO payouts (id, owner) VALUES (3, E'tab\\there')")
    su.execute("CREATE TABLE public.gone (id int PRIMARY KEY)")
    su.execute("INSERT INTO public.gone VALUES (1), (2)")
    su.execute("SELECT stepup.protect('public.gone', operations => '{UPDATE}')")
    su.execute("TRUNCATE public.gone")
    su.execute("SELECT stepup.seal()")
    markers = scalar(su, "SELECT count(*) FROM stepup.audit_log WHERE new_values::text LIKE "
                         "'%pg_stepup:omitted size=% sha256=%'")
    assert markers >= 1
    assert scalar(su, "SELECT count(*) FROM stepup.audit_log WHERE client_addr IS NOT NULL") == 1
    assert scalar(su, "SELECT count(*) FROM stepup.audit_log WHERE op = 'TRUNCATE'") == 1
    n = scalar(su, "SELECT count(*) FROM stepup.audit_log")
    assert verify_audit(su) == (True, n, None, None)
    log, chain = export(db, tmp_path, tz="Asia/Kolkata")
    text = log.read_text()
    assert '""' in text and "\n" in text and "日本" in text and ",{}," in text
    p = run(cli, log, chain)
    assert (p.returncode, p.stdout, p.stderr) == (0, f"ok {n} entries\n", "")


def test_unsealed_entries_are_counted(db, tmp_path, cli):
    make_entries(db, 2)
    _, chain = export(db, tmp_path, tables=("audit_chain",))
    db.change(db.app(), "UPDATE payouts SET iban = 'later' WHERE id = 2")
    log, _ = export(db, tmp_path, tables=("audit_log",))
    p = run(cli, log, chain)
    assert p.returncode == 0
    assert p.stdout == "ok 2 entries, 1 not yet sealed (their hashes verify; no link covers them yet)\n"


# --- tampering: the same verdict as verify_audit() ----------------------------------------------

def forge_entry(link, prev="prev"):
    """Appends an entry (a copy of the newest with other new_values) whose
    entry_hash is correctly recomputed, and a link to it: prev_hash `prev`,
    link_hash `link` (SQL over n = the next seq, prev = the previous link's
    hash, prevprev = the one before)."""
    fields = ("id, at, txid, table_name, op, key, old_digest, new_digest, changed, old_values, new_values, "
              "role_name, session_role, application_name, client_addr, kid, jti, sub, acr, amr, auth_time")
    copied = fields.replace("id, ", "", 1).replace("new_values", "'{\"amount\": 1000000}'::jsonb")
    return f"""
    INSERT INTO stepup.audit_log ({fields}, entry_hash)
    SELECT nextval('stepup.audit_log_id_seq'), {copied}, ''
      FROM (SELECT * FROM stepup.audit_log ORDER BY id DESC LIMIT 1) l;
    UPDATE stepup.audit_log SET entry_hash = stepup.entry_hash(stepup.entry_fields({fields}))
     WHERE id = (SELECT max(id) FROM stepup.audit_log);
    INSERT INTO stepup.audit_chain (seq, entry_id, entry_hash, prev_hash, link_hash)
    SELECT n, id, entry_hash, {prev}, {link}
      FROM (SELECT l.id, l.entry_hash FROM stepup.audit_log l ORDER BY id DESC LIMIT 1) e,
           (SELECT seq + 1 AS n, link_hash AS prev, prev_hash AS prevprev FROM stepup.audit_chain
             ORDER BY seq DESC LIMIT 1) c;
    """


TAMPERING = {
    "edit a value": ("UPDATE stepup.audit_log SET new_values = '{{\"amount\": 99}}' WHERE id = {ids[3]}",
                     "entry {ids[3]} was edited"),
    "edit the op": ("UPDATE stepup.audit_log SET op = 'DELETE' WHERE id = {ids[1]}",
                    "entry {ids[1]} was edited"),
    "edit a digest": ("UPDATE stepup.audit_log SET new_digest = repeat('a', 64) WHERE id = {ids[2]}",
                      "entry {ids[2]} was edited"),
    "edit the time by a microsecond": (
        "UPDATE stepup.audit_log SET at = at + interval '1 microsecond' WHERE id = {ids[4]}",
        "entry {ids[4]} was edited"),
    "edit the entry hash": ("UPDATE stepup.audit_log SET entry_hash = repeat('b', 64) WHERE id = {ids[0]}",
                            "entry {ids[0]} was edited"),
    "delete an entry": ("DELETE FROM stepup.audit_log WHERE id = {ids[1]}",
                        "entry {ids[1]} was deleted from audit_log"),
    "delete a link": ("DELETE FROM stepup.audit_chain WHERE entry_id = {ids[1]}",
                      "link 2 is missing: links were deleted before entry {ids[2]}"),
    "swap two entries": ("UPDATE stepup.audit_chain SET entry_id = -entry_id WHERE seq IN (2, 3); "
                         "UPDATE stepup.audit_chain c SET entry_id = -o.entry_id, entry_hash = o.entry_hash "
                         "FROM stepup.audit_chain o WHERE (c.seq, o.seq) IN ((2, 3), (3, 2))",
                         "link 2 of entry {ids[2]} was edited"),
    "edit a link hash": ("UPDATE stepup.audit_chain SET link_hash = repeat('0', 64) WHERE seq = 4",
                         "link 4 of entry {ids[3]} was edited"),
    "forged entry, no valid link": (forge_entry("repeat('c', 64)"), "link 6 of entry"),
    "forged entry, link over a wrong prev": (
        forge_entry("stepup.link_hash(n, id, entry_hash, prevprev)", prev="prevprev"),
        "does not follow link 5: links were reordered or removed"),
}


@pytest.mark.parametrize("what", TAMPERING)
def test_tampering_is_named_as_verify_audit_names_it(db, tmp_path, cli, what):
    ids = make_entries(db, 5)
    su = db.connect()
    statement, expected = TAMPERING[what]
    tamper(su, statement.format(ids=ids) if "{ids" in statement else statement)
    verdict = verify_audit(su)
    assert verdict[0] is False and expected.format(ids=ids) in verdict[3], verdict
    p = run(cli, *export(db, tmp_path, tz="Asia/Kolkata"))
    assert_same(verdict, p)


def test_a_truncated_tail_fails_only_against_a_saved_digest(db, tmp_path, cli):
    make_entries(db, 5)
    su = db.connect()
    digest = save_digest(su, tmp_path / "digest.json")
    saved = json.loads(digest.read_text())
    tamper(su, "DELETE FROM stepup.audit_chain WHERE seq >= 4")
    tamper(su, "DELETE FROM stepup.audit_log WHERE id NOT IN (SELECT entry_id FROM stepup.audit_chain)")
    log, chain = export(db, tmp_path)
    plain = verify_audit(su)
    assert plain == (True, 3, None, None)
    assert_same(plain, run(cli, log, chain))
    against = verify_audit(su, saved)
    assert against[0] is False and "no longer holds link 5" in against[3]
    assert against[2] == saved["entry_id"]
    assert_same(against, run(cli, log, chain, digest))


def test_a_rewritten_chain_is_named_where_the_rewrite_starts(db, tmp_path, cli):
    ids = make_entries(db, 5)
    su = db.connect()
    digest = save_digest(su, tmp_path / "digest.json")
    tamper(su, "DELETE FROM stepup.audit_chain WHERE seq >= 2")
    tamper(su, f"UPDATE stepup.audit_log SET sub = 'mallory' WHERE id = {ids[1]}")
    tamper(su, "UPDATE stepup.audit_log l SET entry_hash = stepup.entry_hash(stepup.entry_fields("
               "l.id, l.at, l.txid, l.table_name, l.op, l.key, l.old_digest, l.new_digest, l.changed, "
               "l.old_values, l.new_values, l.role_name, l.session_role, l.application_name, "
               f"l.client_addr, l.kid, l.jti, l.sub, l.acr, l.amr, l.auth_time)) WHERE id = {ids[1]}")
    assert scalar(su, "SELECT stepup.seal()") == 4
    log, chain = export(db, tmp_path, tz="Asia/Kolkata")
    assert_same(verify_audit(su), run(cli, log, chain))
    verdict = verify_audit(su, json.loads(digest.read_text()))
    assert verdict[2] == ids[1] and "sealed after the saved digest was taken" in verdict[3]
    assert_same(verdict, run(cli, log, chain, digest))


# --- unreadable exports: exit 2 ---------------------------------------------------------------

def rewrite(path, edit):
    data = path.read_bytes()
    path.write_bytes(edit(data))


@pytest.mark.parametrize("what,edit,message", [
    ("truncated line", lambda b: b[:-20], "the last record does not end with a newline"),
    ("truncated mid-record", lambda b: b[:b.rindex(b"\n", 0, len(b) - 1)] + b"\n3,2026\n",
     "2 field(s), the header has 22"),
    ("renamed column", lambda b: b.replace(b",sub,", b",subject,", 1),
     "missing column(s) sub; unexpected column(s) \"subject\""),
    ("missing column", lambda b: re.sub(rb",auth_time(?=,entry_hash\n)", b"", b, count=1),
     "missing column(s) auth_time"),
    ("extra column", lambda b: b.replace(b",entry_hash\n", b",entry_hash,extra\n", 1),
     "unexpected column(s) \"extra\""),
    ("not CSV", lambda b: b'{"not": "csv"}\n', "a quote inside an unquoted field"),
    ("quoted, then text", lambda b: b.replace(b',"{""id""', b',"{""id"""x', 1), "text after a closing quote"),
    ("not UTF-8", lambda b: b.replace(b"public.payouts", b"public.pay\xffouts", 1), "not UTF-8"),
    ("bad number", lambda b: re.sub(rb"\n(\d+),", rb"\n\1x,", b, count=1), "is not a bigint"),
    ("empty", lambda b: b"", "empty: no header line"),
])
def test_malformed_logs_exit_2(db, tmp_path, cli, what, edit, message):
    make_entries(db, 3)
    log, chain = export(db, tmp_path)
    rewrite(log, edit)
    p = run(cli, log, chain)
    assert p.returncode == 2, (what, p.stdout, p.stderr)
    assert p.stdout == ""
    assert p.stderr.startswith(f"stepup verify: {log}") and message in p.stderr, p.stderr


def test_other_exports_and_inputs_exit_2(db, tmp_path, cli):
    make_entries(db, 2)
    db.change(db.app(), "UPDATE payouts SET owner = 'Zoë 2' WHERE id = 1")
    su = db.connect()
    su.execute("SELECT stepup.seal()")
    # Another DateStyle: the zone abbreviation is no exact offset.
    log, chain = export(db, tmp_path / "sql", datestyle="SQL, DMY", tz="Asia/Kolkata")
    p = run(cli, log, chain)
    assert p.returncode == 2 and "is not a timestamptz as DateStyle ISO prints it" in p.stderr, p.stderr
    assert "export with DateStyle ISO" in p.stderr
    # A LATIN1 export of a UTF-8 log ('Zoë' in the first entries' values).
    log, chain = export(db, tmp_path / "latin1", encoding="LATIN1")
    p = run(cli, log, chain)
    assert p.returncode == 2 and "not UTF-8 (export with client_encoding UTF8" in p.stderr, p.stderr
    log, chain = export(db, tmp_path / "good")
    assert run(cli, log, chain).returncode == 0
    # The chain's header, files swapped, a missing file.
    p = run(cli, chain, log)
    assert p.returncode == 2 and "not an export of stepup.audit_log" in p.stderr
    p = run(cli, log, tmp_path / "nope.csv")
    assert p.returncode == 2 and "nope.csv: No such file" in p.stderr
    # Digests that are not audit_digest()'s.
    for text, message in [("not json", "digest cannot be read"), ("{}", 'non-negative "seq" and a "hash"'),
                          ('{"seq": 1e400, "hash": "x"}', "digest cannot be read: number out of range")]:
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        p = run(cli, log, chain, bad)
        assert p.returncode == 2 and message in p.stderr, p.stderr
    # Usage errors are 2 as well; --help says how to export.
    p = subprocess.run([cli, "verify", "--log", str(log)], capture_output=True, text=True)
    assert p.returncode == 2 and "--chain" in p.stderr
    p = subprocess.run([cli, "verify", "--help"], capture_output=True, text=True)
    assert p.returncode == 0 and "SET DateStyle = ISO" in p.stdout and "Exit status" in p.stdout
    assert verify_audit(su)[0] is True
