"""How entries reach stepup.audit_log (src/audit/append.rs).

The table as the extension made it gets each entry straight into its heap
and indexes; these tests check the indexes hold every entry (amcheck) and
that an index a DBA adds (expression, partial, unique) is kept and enforced
on that path. Anything else a DBA adds to the table (triggers, rules, CHECK
and NOT NULL constraints, columns with defaults)
must apply exactly as it does to any INSERT."""
import psycopg
import pytest

from conftest import expect_error, present, scalar
from test_audit import fresh, verify  # noqa: F401  (fixture)

CHANGES = ["UPDATE public.payouts SET amount = amount + 1 WHERE id = 1",
           "INSERT INTO public.payouts VALUES (3, 'carol', 'DE03', 300)",
           "DELETE FROM public.payouts WHERE id = 2"]


def change_all(db, conn=None):
    """The three changes, each in its own stepped-up transaction."""
    conn = conn or db.app()
    for statement in CHANGES:
        with conn.transaction():
            present(conn, db.signer.token())
            conn.execute(statement)
    return conn


def test_every_entry_is_in_every_index(fresh):
    su = fresh.connect()
    su.execute("CREATE EXTENSION amcheck")
    su.execute("CREATE INDEX by_key ON stepup.audit_log ((key->>'id')) WHERE op <> 'INSERT'")
    su.execute("CREATE INDEX by_table ON stepup.audit_log (table_name, txid)")
    app = change_all(fresh)
    with app.transaction():  # many entries from one statement
        present(app, fresh.signer.token())
        app.execute("UPDATE public.payouts SET amount = amount * 2")
    # 60 kB: TOASTed in the entry too, and under the 64 KiB an entry copies.
    big = "".join(f"{i:06d}" for i in range(10_000))
    with app.transaction():
        present(app, fresh.signer.token())
        app.execute("UPDATE public.payouts SET owner = %s WHERE id = 3", [big])
    assert scalar(su, "SELECT new_values->>'owner' FROM stepup.audit_log ORDER BY id DESC LIMIT 1") == big
    assert scalar(su, "SELECT count(*) FROM stepup.audit_log") == 6
    for index in ("stepup.audit_log_pkey", "stepup.by_key", "stepup.by_table"):
        # heapallindexed: every heap tuple of the table is found in the index.
        su.execute("SELECT bt_index_check(%s::regclass, true)", [index])
    su.execute("SET enable_seqscan = off")
    su.execute("SET enable_bitmapscan = off")
    plan = "\n".join(r[0] for r in su.execute(
        "EXPLAIN SELECT op FROM stepup.audit_log WHERE key->>'id' = '1' AND op <> 'INSERT'"))
    assert "by_key" in plan
    assert [r[0] for r in su.execute(
        "SELECT op FROM stepup.audit_log WHERE key->>'id' = '1' AND op <> 'INSERT' ORDER BY id")] \
        == ["UPDATE", "UPDATE"]
    assert [r[0] for r in su.execute(
        "SELECT op FROM stepup.audit_log WHERE key->>'id' = '2' AND op <> 'INSERT'")] == ["DELETE"]
    assert verify(su)[:3] == (True, 6, None)


def test_the_log_as_made_holds_every_entry_in_its_key(fresh):
    """The log as the extension made it (its primary key its only index)
    gets entries without the executor: the key index must hold each of
    them, a TOASTed one too, and a duplicate id must be refused."""
    su = fresh.connect()
    su.execute("CREATE EXTENSION amcheck")
    app = change_all(fresh)
    with app.transaction():
        present(app, fresh.signer.token())
        app.execute("UPDATE public.payouts SET amount = amount * 2")
    big = "".join(f"{i:06d}" for i in range(10_000))  # under the 64 KiB an entry copies
    with app.transaction():
        present(app, fresh.signer.token())
        app.execute("UPDATE public.payouts SET owner = %s WHERE id = 3", [big])
    assert [r[0] for r in su.execute("SELECT indexrelid::regclass::text FROM pg_index "
                                     "WHERE indrelid = 'stepup.audit_log'::regclass")] == ["stepup.audit_log_pkey"]
    su.execute("SELECT bt_index_check('stepup.audit_log_pkey', true)")
    ids = [r[0] for r in su.execute("SELECT id FROM stepup.audit_log ORDER BY id")]
    assert len(ids) == 6
    su.execute("SET enable_seqscan = off")
    su.execute("SET enable_bitmapscan = off")
    for i in ids:
        assert su.execute("SELECT op FROM stepup.audit_log WHERE id = %s", [i]).fetchall() != []
    assert scalar(su, "SELECT new_values->>'owner' FROM stepup.audit_log WHERE id = %s", [ids[-1]]) == big
    # The id sequence set back: the next entry's id is taken, the change refused.
    su.execute("SELECT setval('stepup.audit_log_id_seq', %s)", [ids[2] - 1])
    with app.transaction():
        present(app, fresh.signer.token())
        err = expect_error(app, CHANGES[0], sqlstate="23505")
    assert "audit_log_pkey" in str(err)
    assert scalar(su, "SELECT count(*) FROM stepup.audit_log") == 6
    assert scalar(su, "SELECT amount FROM public.payouts WHERE id = 1") == 202
    su.execute("SELECT setval('stepup.audit_log_id_seq', %s)", [ids[-1]])
    with app.transaction():
        present(app, fresh.signer.token())
        app.execute(CHANGES[0])
    su.execute("SELECT bt_index_check('stepup.audit_log_pkey', true)")
    assert verify(su)[:3] == (True, 7, None)


@pytest.mark.parametrize("replacement", [
    "CREATE INDEX ON stepup.audit_log (id)",                        # not unique
    "CREATE UNIQUE INDEX ON stepup.audit_log (id) WHERE id > 0",    # partial
    "CREATE UNIQUE INDEX ON stepup.audit_log ((id + 0))",           # expression
    "CREATE UNIQUE INDEX ON stepup.audit_log (id, txid)",           # two columns
    "CREATE UNIQUE INDEX ON stepup.audit_log (txid)",               # another column
    "CREATE INDEX ON stepup.audit_log USING hash (id)",             # not btree
])
def test_a_log_whose_only_index_is_not_its_key_gets_every_entry_indexed(fresh, replacement):
    """The executor-free path takes only a unique btree on id as the log's
    one index; any other single index still receives every entry."""
    su = fresh.connect()
    su.execute("ALTER TABLE stepup.audit_log DROP CONSTRAINT audit_log_pkey")
    su.execute(replacement)
    index = scalar(su, "SELECT indexrelid::regclass::text FROM pg_index "
                       "WHERE indrelid = 'stepup.audit_log'::regclass")
    change_all(fresh)
    rows = su.execute("SELECT id, txid FROM stepup.audit_log").fetchall()
    assert len(rows) == 3
    su.execute("SET enable_seqscan = off")
    # Each entry looked up through the index alone: it must be found there.
    column = "txid" if "(txid)" in replacement else "id + 0" if "+ 0" in replacement else "id"
    extra = " AND id > 0" if "WHERE" in replacement else ""
    query = f"SELECT count(*) FROM stepup.audit_log WHERE {column} = %s{extra}"
    for id_, txid in rows:
        value = txid if column == "txid" else id_
        plan = "\n".join(r[0] for r in su.execute("EXPLAIN " + query.replace("%s", str(value))))
        assert index.split(".")[1] in plan, plan
        assert scalar(su, query, [value]) == 1
    assert verify(su)[:3] == (True, 3, None)


def test_a_unique_index_on_the_log_is_enforced(fresh):
    su, app = fresh.connect(), fresh.app()
    su.execute("CREATE UNIQUE INDEX one_change_per_txn ON stepup.audit_log (txid)")
    with pytest.raises(psycopg.errors.UniqueViolation):
        with app.transaction():
            present(app, fresh.signer.token())
            app.execute("UPDATE public.payouts SET amount = 0")  # two rows, one txid
    assert scalar(su, "SELECT count(*) FROM stepup.audit_log") == 0
    assert scalar(su, "SELECT sum(amount) FROM public.payouts") == 300
    change_all(fresh)
    assert scalar(su, "SELECT count(*) FROM stepup.audit_log") == 3


def test_insert_triggers_and_rules_on_the_log_fire(fresh):
    su = fresh.connect()
    su.execute("CREATE TABLE public.shipped (entry_id bigint, how text)")
    su.execute("""CREATE FUNCTION public.ship() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF TG_LEVEL = 'ROW' THEN INSERT INTO public.shipped VALUES (NEW.id, 'row');
          ELSE INSERT INTO public.shipped VALUES (NULL, 'statement'); END IF;
          RETURN NULL;
        END $$""")
    su.execute("CREATE TRIGGER ship_row AFTER INSERT ON stepup.audit_log "
               "FOR EACH ROW EXECUTE FUNCTION public.ship()")
    su.execute("CREATE TRIGGER ship_statement AFTER INSERT ON stepup.audit_log "
               "FOR EACH STATEMENT EXECUTE FUNCTION public.ship()")
    su.execute("CREATE RULE also_ship AS ON INSERT TO stepup.audit_log "
               "DO ALSO INSERT INTO public.shipped VALUES (NEW.id, 'rule')")
    change_all(fresh)
    ids = [r[0] for r in su.execute("SELECT id FROM stepup.audit_log ORDER BY id")]
    assert len(ids) == 3
    shipped = su.execute("SELECT how, count(*), array_agg(entry_id ORDER BY entry_id) FILTER "
                         "(WHERE entry_id IS NOT NULL) FROM public.shipped GROUP BY how ORDER BY how").fetchall()
    assert shipped == [("row", 3, ids), ("rule", 3, ids), ("statement", 3, None)]
    assert verify(su)[:3] == (True, 3, None)


def test_a_before_trigger_on_the_log_cannot_drop_or_alter_entries_unseen(fresh):
    """A BEFORE INSERT trigger that rewrites an entry gets what it asks for,
    and verify_audit then names that entry: the hash was taken before."""
    su = fresh.connect()
    su.execute("""CREATE FUNCTION public.scrub() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN NEW.sub := 'nobody'; RETURN NEW; END $$""")
    su.execute("CREATE TRIGGER scrub BEFORE INSERT ON stepup.audit_log "
               "FOR EACH ROW EXECUTE FUNCTION public.scrub()")
    change_all(fresh)
    assert [r[0] for r in su.execute("SELECT sub FROM stepup.audit_log")] == ["nobody"] * 3
    first = scalar(su, "SELECT min(id) FROM stepup.audit_log")
    assert verify(su) == (False, 0, first, f"entry {first} was edited: its fields do not hash to its entry_hash")


def test_a_check_constraint_on_the_log_applies(fresh):
    su, app = fresh.connect(), fresh.app()
    su.execute("ALTER TABLE stepup.audit_log ADD CONSTRAINT no_deletes CHECK (op <> 'DELETE')")
    with app.transaction():
        present(app, fresh.signer.token())
        app.execute(CHANGES[0])
    with app.transaction():
        present(app, fresh.signer.token())
        expect_error(app, CHANGES[2], sqlstate="23514")
    assert scalar(su, "SELECT count(*) FROM public.payouts WHERE id = 2") == 1
    assert [r[0] for r in su.execute("SELECT op FROM stepup.audit_log")] == ["UPDATE"]


def test_a_not_null_on_the_log_applies(fresh):
    """Entries of changes made without an assertion (an INSERT on a table
    that gates only UPDATE and DELETE) have no kid."""
    su = fresh.connect()
    su.execute("CREATE TABLE public.notes (id int PRIMARY KEY, body text)")
    su.execute("SELECT stepup.protect('public.notes', operations => '{UPDATE,DELETE}')")
    su.execute("ALTER TABLE stepup.audit_log ALTER COLUMN kid SET NOT NULL")
    expect_error(su, "INSERT INTO public.notes VALUES (2, 'refused')", sqlstate="23502")
    with su.transaction():
        present(su, fresh.signer.token())
        su.execute("INSERT INTO public.notes VALUES (3, 'stepped up')")
    assert [r[0] for r in su.execute("SELECT id FROM public.notes ORDER BY id")] == [3]
    assert scalar(su, "SELECT count(*) FROM stepup.audit_log WHERE table_name = 'public.notes'") == 1


def test_a_deferred_constraint_on_the_log_refuses_the_change(fresh):
    """Entries are written as the catalog owner in a security-restricted
    operation, where Postgres cannot queue a deferred check: a change that
    needs one is refused, never written unchecked."""
    su, app = fresh.connect(), fresh.app()
    su.execute("ALTER TABLE stepup.audit_log ADD CONSTRAINT one_change_per_txn UNIQUE (txid) "
               "DEFERRABLE INITIALLY DEFERRED")
    with app.transaction():
        present(app, fresh.signer.token())
        app.execute(CHANGES[0])  # one entry: nothing to check later
    with app.transaction():
        present(app, fresh.signer.token())
        # Two entries with one txid: the second needs a check at commit.
        expect_error(app, "UPDATE public.payouts SET amount = 0", sqlstate="42501")
    assert scalar(su, "SELECT count(*) FROM stepup.audit_log") == 1
    assert scalar(su, "SELECT sum(amount) FROM public.payouts") == 301


def test_a_column_added_to_the_log_gets_its_default(fresh):
    su = fresh.connect()
    su.execute("ALTER TABLE stepup.audit_log ADD COLUMN region text NOT NULL DEFAULT 'eu-1'")
    change_all(fresh)
    assert [r[0] for r in su.execute("SELECT region FROM stepup.audit_log")] == ["eu-1"] * 3
    su.execute("ALTER TABLE stepup.audit_log DROP COLUMN region")
    app = fresh.app()
    with app.transaction():
        present(app, fresh.signer.token())
        app.execute(CHANGES[0])
    assert scalar(su, "SELECT count(*) FROM stepup.audit_log") == 4
    assert verify(su)[:3] == (True, 4, None)


def test_a_renamed_log_refuses_changes_even_in_sessions_that_wrote_to_it(fresh):
    """A backend finds the log once and keeps its OID (src/catalog/mod.rs); a
    session that already wrote entries must refuse its next change once the
    log is renamed, write nothing into a look-alike put in its place (not
    the extension's), and find the log again once it is renamed back.
    (Dropping it on its own is impossible: the extension depends on it.)"""
    su = fresh.connect()
    app = change_all(fresh)
    update = "UPDATE public.payouts SET amount = amount + 1 WHERE id = 1"

    def stepped_up_change():
        with app.transaction():
            present(app, fresh.signer.token())
            app.execute(update)

    su.execute("ALTER TABLE stepup.audit_log RENAME TO audit_log_elsewhere")
    with pytest.raises(psycopg.Error) as caught:
        stepped_up_change()
    assert "stepup.audit_log is missing; the change is refused" in str(caught.value)
    # A look-alike in its place is not the extension's, and gets nothing.
    su.execute("CREATE TABLE stepup.audit_log (LIKE stepup.audit_log_elsewhere INCLUDING ALL)")
    su.execute("GRANT ALL ON stepup.audit_log TO PUBLIC")
    with pytest.raises(psycopg.Error) as caught:
        stepped_up_change()
    assert "stepup.audit_log is missing; the change is refused" in str(caught.value)
    assert scalar(su, "SELECT count(*) FROM stepup.audit_log") == 0
    assert scalar(su, "SELECT count(*) FROM stepup.audit_log_elsewhere") == 3
    su.execute("DROP TABLE stepup.audit_log")
    su.execute("ALTER TABLE stepup.audit_log_elsewhere RENAME TO audit_log")
    stepped_up_change()
    assert scalar(su, "SELECT count(*) FROM stepup.audit_log") == 4
    assert scalar(su, "SELECT amount FROM public.payouts WHERE id = 1") == 102
    assert verify(su)[:3] == (True, 4, None)


def test_an_exhausted_id_sequence_refuses_the_change_and_the_session_recovers(fresh):
    """nextval raises inside the trigger (pgrx does not bind it; it is
    guarded by hand): the change is refused with Postgres' own error, and
    the same session writes entries again once the sequence allows it."""
    su = fresh.connect()
    app = change_all(fresh)
    last = scalar(su, "SELECT max(id) FROM stepup.audit_log")
    su.execute(f"ALTER SEQUENCE stepup.audit_log_id_seq MAXVALUE {last}")
    with app.transaction():
        present(app, fresh.signer.token())
        err = expect_error(app, "UPDATE public.payouts SET amount = amount + 1 WHERE id = 1",
                           sqlstate="2200H")
    assert "reached maximum value" in str(err)
    su.execute("ALTER SEQUENCE stepup.audit_log_id_seq NO MAXVALUE")
    for _ in range(3):
        with app.transaction():
            present(app, fresh.signer.token())
            app.execute("UPDATE public.payouts SET amount = amount + 1 WHERE id = 1")
    assert scalar(su, "SELECT count(*) FROM stepup.audit_log") == 6
    assert verify(su)[:3] == (True, 6, None)


# Each: what a DBA does to the log, and what the next entry of a session
# that already wrote one must show (the layout a backend keeps of the log,
# src/audit/append.rs, is dropped when the log changes). The next entry is
# an INSERT's: no old_digest.
LATER_CHANGES = {
    "before trigger": (
        ["CREATE FUNCTION public.scrub() RETURNS trigger LANGUAGE plpgsql AS $$ "
         "BEGIN NEW.sub := 'nobody'; RETURN NEW; END $$",
         "CREATE TRIGGER scrub BEFORE INSERT ON stepup.audit_log FOR EACH ROW EXECUTE FUNCTION public.scrub()"],
        "SELECT sub FROM stepup.audit_log ORDER BY id DESC LIMIT 1", "nobody"),
    "rule": (
        ["CREATE TABLE public.copied (entry_id bigint)",
         "CREATE RULE copy AS ON INSERT TO stepup.audit_log DO ALSO INSERT INTO public.copied VALUES (NEW.id)"],
        "SELECT count(*) FROM public.copied", 1),
    "column with a default": (
        ["ALTER TABLE stepup.audit_log ADD COLUMN region text NOT NULL DEFAULT 'eu-1'"],
        "SELECT count(*) FROM stepup.audit_log WHERE region = 'eu-1'", 2),
    "column dropped and added back": (
        ["ALTER TABLE stepup.audit_log DROP COLUMN application_name",
         "ALTER TABLE stepup.audit_log ADD COLUMN application_name text"],
        "SELECT application_name FROM stepup.audit_log ORDER BY id DESC LIMIT 1", "payouts-app"),
    "check constraint": (
        ["ALTER TABLE stepup.audit_log ADD CONSTRAINT no_inserts CHECK (op <> 'INSERT')"],
        None, "23514"),
    "not null": (
        ["ALTER TABLE stepup.audit_log ALTER COLUMN old_digest SET NOT NULL"],
        None, "23502"),
}


@pytest.mark.parametrize("change", LATER_CHANGES)
def test_changes_to_the_log_apply_in_sessions_that_already_wrote_to_it(fresh, change):
    statements, check, expected = LATER_CHANGES[change]
    su = fresh.connect()
    app = fresh.app(application_name="payouts-app")
    with app.transaction():
        present(app, fresh.signer.token())
        app.execute("UPDATE public.payouts SET amount = amount + 1 WHERE id = 1")
    for statement in statements:
        su.execute(statement)
    insert = "INSERT INTO public.payouts VALUES (3, 'carol', 'DE03', 300)"
    with app.transaction():
        present(app, fresh.signer.token())
        if check is None:
            expect_error(app, insert, sqlstate=expected)
        else:
            app.execute(insert)
    ops = [r[0] for r in su.execute("SELECT op FROM stepup.audit_log ORDER BY id")]
    rows = scalar(su, "SELECT count(*) FROM public.payouts WHERE id = 3")
    if check is None:
        assert (ops, rows) == (["UPDATE"], 0)
    else:
        assert (ops, rows) == (["UPDATE", "INSERT"], 1)
        assert scalar(su, check) == expected
