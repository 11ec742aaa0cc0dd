-- pg_stepup: protecting tables. stepup.protect installs, on the target table,
-- a row guard trigger and a TRUNCATE guard (src/protect/guard.rs) and the audit
-- trigger (src/audit/trigger.rs), all ENABLE ALWAYS,
-- and for a row_filter, RESTRICTIVE row-level security policies that call
-- stepup.require. Event triggers refuse DDL that would weaken any of it
-- without the table's step-up (SU006).

GRANT SELECT ON stepup.protected TO PUBLIC;
CREATE TRIGGER protected_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON stepup.protected
    FOR EACH STATEMENT EXECUTE FUNCTION stepup.catalog_changed();
ALTER TABLE stepup.protected ENABLE ALWAYS TRIGGER protected_changed;

-- What protect() installed on a table, as comparable JSON: the guard
-- triggers, row security flags and the policies it created.
CREATE FUNCTION stepup.protection_state(target regclass)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT jsonb_build_object(
    'triggers', coalesce((
        SELECT jsonb_object_agg(t.tgname, jsonb_build_array(
                   t.tgtype, t.tgfoid::regprocedure::text, t.tgenabled, t.tgattr::text, t.tgqual IS NULL))
          FROM pg_trigger t
         WHERE t.tgrelid = target
           AND t.tgname IN ('stepup_guard', 'stepup_guard_truncate')), '{}'),
    'row_security', (
        SELECT jsonb_build_array(c.relrowsecurity, c.relforcerowsecurity)
          FROM pg_class c WHERE c.oid = target),
    'policies', coalesce((
        SELECT jsonb_object_agg(p.polname, jsonb_build_array(
                   p.polcmd, p.polpermissive, p.polroles::text,
                   -- The expressions as text without the table's own name
                   -- (the gate names it twice): renaming the table is
                   -- harmless, and a restore compares equal.
                   replace(replace(pg_get_expr(p.polqual, p.polrelid), quote_literal(target::text), '$table'),
                           quote_ident(c.relname) || '.*', '$row'),
                   replace(replace(pg_get_expr(p.polwithcheck, p.polrelid), quote_literal(target::text), '$table'),
                           quote_ident(c.relname) || '.*', '$row')))
          FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
         WHERE p.polrelid = target
           AND p.polname IN ('stepup_filter', 'stepup_insert', 'stepup_update', 'stepup_open',
                             'stepup_owner')), '{}'),
    -- Every column the policy names or reads, by number: a rename, a type
    -- change or a drop of one of them shows here.
    'columns', coalesce((
        SELECT jsonb_object_agg(a.attnum, jsonb_build_array(a.attname, a.atttypid::regtype::text, a.attisdropped))
          FROM stepup.protected s
          JOIN pg_attribute a ON a.attrelid = s.target AND a.attnum = ANY (s.watched) AND a.attnum > 0
         WHERE s.target = protection_state.target), '{}'))
$$;

-- Everything protect() installed that is now changed or missing (no rows
-- when all of it is intact, or the table is gone: see guard_drop): what,
-- and what is there now (NULL: nothing). The DDL guard (src/protect/ddl.rs)
-- compares these before and after a command to see what the command did.
CREATE FUNCTION stepup.protection_gaps(target regclass, expected jsonb)
RETURNS TABLE (object text, now text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    actual jsonb := stepup.protection_state(target);
    k text;
BEGIN
    IF actual->'row_security' = 'null' THEN
        RETURN;
    END IF;
    FOR k IN SELECT jsonb_object_keys(expected->'triggers') ORDER BY 1 LOOP
        -- A guard disabled with step-up and enabled again is no weakening.
        IF actual->'triggers'->k IS DISTINCT FROM expected->'triggers'->k
           AND actual->'triggers'->k IS DISTINCT FROM jsonb_set(expected->'triggers'->k, '{2}', '"A"') THEN
            RETURN QUERY SELECT format('trigger %s on %s', k, target), (actual->'triggers'->k)::text;
        END IF;
    END LOOP;
    FOR k IN SELECT jsonb_object_keys(expected->'policies') ORDER BY 1 LOOP
        IF actual->'policies'->k IS DISTINCT FROM expected->'policies'->k THEN
            RETURN QUERY SELECT format('policy %s on %s', k, target), (actual->'policies'->k)::text;
        END IF;
    END LOOP;
    IF expected->'policies' <> '{}' AND actual->'row_security' IS DISTINCT FROM expected->'row_security' THEN
        RETURN QUERY SELECT format('row level security on %s', target), (actual->'row_security')::text;
    END IF;
    FOR k IN SELECT jsonb_object_keys(coalesce(expected->'columns', '{}')) ORDER BY 1 LOOP
        IF actual->'columns'->k IS DISTINCT FROM expected->'columns'->k THEN
            RETURN QUERY SELECT format('column %s (%s) of %s', k, expected->'columns'->k->>0, target),
                                (actual->'columns'->k)::text;
        END IF;
    END LOOP;
END
$$;

-- For the DDL guard, before and after a command: every gap of a protected
-- table the role may alter (superusers: every table).
CREATE FUNCTION stepup.ddl_gaps(role oid, every_table boolean)
RETURNS TABLE (target oid, object text, now text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT p.target::oid, g.object, g.now
  FROM stepup.protected p
  JOIN pg_class c ON c.oid = p.target
 CROSS JOIN LATERAL stepup.protection_gaps(p.target, p.state) AS g
 WHERE every_table OR pg_has_role(role, c.relowner, 'USAGE')
 ORDER BY p.target, g.object
$$;

-- After DDL that was allowed: what the table has now is the new baseline,
-- and the policy's column names follow its columns through renames.
CREATE FUNCTION stepup.accept_ddl(target regclass)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    UPDATE stepup.protected AS p SET
        columns = (SELECT array_agg(a.attname::text ORDER BY u.o)
                     FROM unnest(p.column_attnums) WITH ORDINALITY AS u(n, o)
                     JOIN pg_attribute a ON a.attrelid = p.target AND a.attnum = u.n),
        subject_column = (SELECT a.attname FROM pg_attribute a
                           WHERE a.attrelid = p.target AND a.attnum = p.subject_attnum),
        state = stepup.protection_state(p.target)
     WHERE p.target = accept_ddl.target;
END;

-- Guard triggers left enabled but not ALWAYS (ENABLE TRIGGER ALL, which
-- pg_restore --disable-triggers ends with, or ENABLE REPLICA TRIGGER) fire
-- only for some sessions: the DDL guard sets them back to ALWAYS.
CREATE FUNCTION stepup.keep_guards_always()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT g.tgrelid::regclass AS target, g.tgname
               FROM pg_trigger g JOIN stepup.protected p ON p.target = g.tgrelid
              WHERE g.tgname IN ('stepup_guard', 'stepup_guard_truncate') AND g.tgenabled IN ('O', 'R') LOOP
        EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', t.target, t.tgname);
    END LOOP;
    -- A guard enabled again restores the baseline: disabling it once more
    -- needs step-up again.
    UPDATE stepup.protected AS p SET state = jsonb_set(p.state, '{triggers}', s.actual->'triggers')
      FROM (SELECT q.target, stepup.protection_state(q.target) AS actual FROM stepup.protected q
             WHERE q.state->'triggers' @> '{}' AND q.state::text LIKE '%"D"%') AS s
     WHERE p.target = s.target
       AND s.actual->'triggers' IS DISTINCT FROM p.state->'triggers'
       AND NOT EXISTS (SELECT 1 FROM jsonb_each(p.state->'triggers') AS e(name, want)
                        WHERE s.actual->'triggers'->e.name IS DISTINCT FROM jsonb_set(e.want, '{2}', '"A"'));
END
$$;

-- Drops what protect() installed and forgets the policy. Callers check the
-- table's step-up first. The catalog row goes first, so the DDL below is not
-- a weakening of a protected table.
CREATE FUNCTION stepup.remove_protection(target regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET client_min_messages = warning
AS $$
DECLARE
    before text;
    pol text;
BEGIN
    DELETE FROM stepup.protected AS p WHERE p.target = remove_protection.target
        RETURNING p.rls_before INTO before;
    EXECUTE format('DROP TRIGGER IF EXISTS stepup_guard ON %s', target);
    EXECUTE format('DROP TRIGGER IF EXISTS stepup_guard_truncate ON %s', target);
    FOREACH pol IN ARRAY ARRAY['stepup_filter', 'stepup_insert', 'stepup_update', 'stepup_open', 'stepup_owner'] LOOP
        EXECUTE format('DROP POLICY IF EXISTS %I ON %s', pol, target);
    END LOOP;
    IF before = 'off' THEN
        EXECUTE format('ALTER TABLE %s NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY', target);
    ELSIF before = 'on' THEN
        EXECUTE format('ALTER TABLE %s NO FORCE ROW LEVEL SECURITY', target);
    END IF;
END
$$;

CREATE FUNCTION stepup.protect(
    target regclass,
    level text DEFAULT 'aal2',
    max_age interval DEFAULT '5 minutes',
    operations text[] DEFAULT '{UPDATE,DELETE}',
    columns text[] DEFAULT NULL,
    row_filter text DEFAULT NULL,
    subject_column name DEFAULT NULL,
    one_time boolean DEFAULT false,
    bind_change boolean DEFAULT false,
    methods text[] DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
-- The row filter is parsed here, once: its literals mean the same whatever
-- the caller's settings.
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, MDY'
SET IntervalStyle = 'postgres'
SET extra_float_digits = 1
AS $$
DECLARE
    rel record;
    ops text[];
    bad text;
    gate text;
    rls_before text := 'untouched';
    col_nums int2[];
    subject_num int2;
    parsed text;
    read_nums int2[];
    key_nums int2[];
BEGIN
    IF target IS NULL OR level IS NULL OR max_age IS NULL OR operations IS NULL
       OR one_time IS NULL OR bind_change IS NULL THEN
        RAISE EXCEPTION 'target, level, max_age, operations, one_time and bind_change must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT c.relkind, c.relpersistence, c.relnamespace, c.relowner
      INTO rel FROM pg_class c WHERE c.oid = target;
    IF rel.relkind IS DISTINCT FROM 'r' THEN
        RAISE EXCEPTION '% is not an ordinary table', target
            USING ERRCODE = 'wrong_object_type',
                  HINT = 'Views, partitioned and foreign tables cannot be protected; protect each partition.';
    END IF;
    IF rel.relpersistence = 't' THEN
        RAISE EXCEPTION '% is a temporary table', target
            USING ERRCODE = 'wrong_object_type', HINT = 'Protect a permanent table.';
    END IF;
    IF rel.relnamespace IN ('stepup'::regnamespace, 'pg_catalog'::regnamespace, 'information_schema'::regnamespace) THEN
        RAISE EXCEPTION '% belongs to the system or to pg_stepup', target
            USING ERRCODE = 'wrong_object_type', HINT = 'Protect an application table.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM stepup.levels l WHERE l.name = protect.level) THEN
        RAISE EXCEPTION 'unknown step-up level "%"', level
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Levels are listed in stepup.levels; add one with stepup.define_level(name, rank).';
    END IF;
    IF max_age <= interval '0' THEN
        RAISE EXCEPTION 'max_age must be positive'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass an interval such as ''5 minutes''.';
    END IF;
    SELECT array_agg(DISTINCT upper(o) ORDER BY upper(o)) INTO ops FROM unnest(operations) AS o;
    IF ops IS NULL OR array_position(ops, NULL) IS NOT NULL
       OR NOT ops <@ ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE'] THEN
        RAISE EXCEPTION 'operations must list one or more of INSERT, UPDATE, DELETE, TRUNCATE'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'For example ''{UPDATE,DELETE}''.';
    END IF;
    IF columns IS NOT NULL THEN
        IF cardinality(columns) = 0 OR NOT 'UPDATE' = ANY (ops) THEN
            RAISE EXCEPTION 'columns must name at least one column, and operations must include UPDATE'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Pass NULL to gate every UPDATE, or a list such as ''{iban}''.';
        END IF;
        SELECT c INTO bad FROM unnest(columns) AS c
         WHERE c IS NULL OR NOT EXISTS (
               SELECT 1 FROM pg_attribute a
                WHERE a.attrelid = target AND a.attname = c AND a.attnum > 0 AND NOT a.attisdropped)
         LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'column "%" of % does not exist', bad, target USING ERRCODE = 'undefined_column';
        END IF;
    END IF;
    IF subject_column IS NOT NULL AND NOT EXISTS (
           SELECT 1 FROM pg_attribute a
            WHERE a.attrelid = target AND a.attname = subject_column AND a.attnum > 0 AND NOT a.attisdropped) THEN
        RAISE EXCEPTION 'column "%" of % does not exist', subject_column, target USING ERRCODE = 'undefined_column';
    END IF;
    IF methods IS NOT NULL AND (cardinality(methods) = 0 OR EXISTS (
           SELECT 1 FROM unnest(methods) AS m WHERE m IS NULL OR m = '')) THEN
        RAISE EXCEPTION 'methods must name at least one authentication method'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass amr values such as ''{hwk,fpt}'', or NULL to accept any method.';
    END IF;
    IF row_filter IS NOT NULL AND btrim(row_filter) = '' THEN
        RAISE EXCEPTION 'row_filter must not be empty'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass NULL to protect every row.';
    END IF;
    -- Rows of an inheritance child are read and written through the
    -- parent by statements that never fire the parent's triggers.
    IF EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhparent = target) THEN
        RAISE EXCEPTION '% has inheritance children', target
            USING ERRCODE = 'wrong_object_type',
                  HINT = 'A protected table cannot have children: detach them (ALTER TABLE child NO INHERIT parent) and protect each table on its own.';
    END IF;
    IF bind_change AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = target AND i.indisprimary) THEN
        RAISE EXCEPTION '% has no primary key', target
            USING ERRCODE = 'invalid_table_definition',
                  HINT = 'bind_change names each row by its primary key; add one first.';
    END IF;

    -- Replacing a policy may weaken it: that takes the current policy's step-up.
    PERFORM stepup.require(p.level, p.max_age, p.methods)
       FROM stepup.protected p WHERE p.target = protect.target;
    -- Also clears guard objects left without a policy.
    PERFORM stepup.remove_protection(target);

    -- The policy by attribute number, so that it follows the data.
    SELECT array_agg(a.attnum ORDER BY c.o) INTO col_nums
      FROM unnest(columns) WITH ORDINALITY AS c(name, o)
      JOIN pg_attribute a ON a.attrelid = target AND a.attname = c.name AND a.attnum > 0 AND NOT a.attisdropped;
    SELECT a.attnum INTO subject_num FROM pg_attribute a
     WHERE a.attrelid = target AND a.attname = subject_column AND a.attnum > 0 AND NOT a.attisdropped;
    IF row_filter IS NOT NULL THEN
        -- Postgres parses the filter once, as the expression of a policy
        -- that stays on the table and never limits a read (`true OR
        -- (filter)`, folded to true when a query is planned). Postgres keeps
        -- that tree as it keeps the table's own policies: it follows
        -- renames, and pg_dump, pg_restore and pg_upgrade carry it, where a
        -- tree kept by the extension would hold the OIDs and the node format
        -- of the database and the version it was made in.
        EXECUTE format('CREATE POLICY stepup_filter ON %s AS RESTRICTIVE FOR SELECT USING (true OR (%s))',
                       target, row_filter);
        SELECT pol.polqual::text INTO parsed FROM pg_policy pol
         WHERE pol.polrelid = target AND pol.polname = 'stepup_filter';
        read_nums := stepup.filter_columns(parsed);
    END IF;
    -- A change bound by its digest names its row by primary key: changing
    -- the key changes which row a confirmed change applies to.
    IF bind_change THEN
        SELECT array_agg(k) INTO key_nums
          FROM pg_index i, unnest(i.indkey::int2[]) AS k WHERE i.indrelid = target AND i.indisprimary;
    END IF;

    -- The row trigger also audits every row change it allows, whether or
    -- not it needs step-up.
    EXECUTE format('CREATE TRIGGER stepup_guard AFTER INSERT OR UPDATE OR DELETE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION stepup.guard()', target);
    EXECUTE format('CREATE TRIGGER stepup_guard_truncate BEFORE TRUNCATE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION stepup.guard()', target);
    EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER stepup_guard, ENABLE ALWAYS TRIGGER stepup_guard_truncate',
                   target);

    IF row_filter IS NOT NULL THEN
        SELECT CASE WHEN c.relforcerowsecurity THEN 'forced' WHEN c.relrowsecurity THEN 'on' ELSE 'off' END
          INTO rls_before FROM pg_class c WHERE c.oid = target;
        -- A written row inside the filter raises SU001 unless the held
        -- assertion meets the policy (never a silent "UPDATE 0"). Only WITH
        -- CHECK: it sees exactly the rows written, while a USING clause would
        -- run before the statement's own WHERE and raise for rows it does not
        -- touch. The rows an UPDATE or DELETE changes are checked, old and
        -- new, by the guard trigger, for every role.
        gate := format('(NOT stepup.in_row_filter(%L::regclass, %I.*) OR stepup.require(%L, %L::interval, %L::text[]))',
                       target::oid, (SELECT c.relname FROM pg_class c WHERE c.oid = target), level, max_age, methods);
        IF 'INSERT' = ANY (ops) THEN
            EXECUTE format('CREATE POLICY stepup_insert ON %s AS RESTRICTIVE FOR INSERT WITH CHECK %s', target, gate);
        END IF;
        -- With `columns`, whether an UPDATE needs step-up depends on what it
        -- changes, which only the guard trigger sees.
        IF 'UPDATE' = ANY (ops) AND columns IS NULL THEN
            EXECUTE format('CREATE POLICY stepup_update ON %s AS RESTRICTIVE FOR UPDATE WITH CHECK %s', target, gate);
        END IF;
        -- Keep what the table allowed before: everything if it had no row
        -- security, and its owner's bypass if security was not forced.
        IF rls_before = 'off' THEN
            EXECUTE format('CREATE POLICY stepup_open ON %s AS PERMISSIVE FOR ALL USING (true) WITH CHECK (true)', target);
        ELSIF rls_before = 'on' THEN
            EXECUTE format('CREATE POLICY stepup_owner ON %s AS PERMISSIVE FOR ALL TO %I USING (true) WITH CHECK (true)',
                           target, rel.relowner::regrole);
        END IF;
        EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY', target);
    END IF;

    INSERT INTO stepup.protected AS p (target, level, max_age, operations, columns, row_filter,
                                       subject_column, one_time, bind_change, methods, rls_before,
                                       column_attnums, subject_attnum, watched)
    VALUES (target, level, max_age, ops, columns, row_filter,
            subject_column, one_time, bind_change, methods, rls_before,
            col_nums, subject_num,
            ARRAY(SELECT DISTINCT n FROM unnest(coalesce(col_nums, '{}') || coalesce(read_nums, '{}')
                                                || coalesce(key_nums, '{}') || ARRAY[subject_num]) AS n
                   WHERE n IS NOT NULL ORDER BY n));
    UPDATE stepup.protected AS p SET state = stepup.protection_state(p.target) WHERE p.target = protect.target;
END
$$;

CREATE FUNCTION stepup.unprotect(target regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM stepup.require(p.level, p.max_age, p.methods)
       FROM stepup.protected p WHERE p.target = unprotect.target;
    IF NOT FOUND THEN
        RAISE EXCEPTION '% is not protected', target
            USING ERRCODE = 'undefined_object', HINT = 'Protected tables are listed in stepup.policies.';
    END IF;
    PERFORM stepup.remove_protection(target);
END
$$;

CREATE VIEW stepup.policies AS
SELECT target, level, max_age, operations, columns, row_filter, subject_column,
       one_time, bind_change, methods, created_at
  FROM stepup.protected;
GRANT SELECT ON stepup.policies TO PUBLIC;

-- DDL guards (src/protect/ddl.rs). Event triggers fire in every session, for every
-- role (superusers are checked, and allowed), also in replica mode.
CREATE EVENT TRIGGER stepup_guard_ddl_start ON ddl_command_start EXECUTE FUNCTION stepup.guard_ddl_start();
CREATE EVENT TRIGGER stepup_guard_ddl ON ddl_command_end EXECUTE FUNCTION stepup.guard_ddl();
CREATE EVENT TRIGGER stepup_guard_drop ON sql_drop EXECUTE FUNCTION stepup.guard_drop();
CREATE EVENT TRIGGER stepup_guard_rewrite ON table_rewrite EXECUTE FUNCTION stepup.guard_rewrite();
ALTER EVENT TRIGGER stepup_guard_ddl_start ENABLE ALWAYS;
ALTER EVENT TRIGGER stepup_guard_ddl ENABLE ALWAYS;
ALTER EVENT TRIGGER stepup_guard_drop ENABLE ALWAYS;
ALTER EVENT TRIGGER stepup_guard_rewrite ENABLE ALWAYS;


COMMENT ON TABLE stepup.protected IS 'Protected tables and their policies; see stepup.policies.';
COMMENT ON TABLE stepup.used_jti IS 'Assertions spent by one_time policies (jti, when, by whom).';
COMMENT ON VIEW stepup.policies IS 'Protected tables and their step-up policies.';
COMMENT ON FUNCTION stepup.protect(regclass, text, interval, text[], text[], text, name, boolean, boolean, text[]) IS
    'Require step-up for changes to a table: level, max_age, operations, columns, row_filter, subject_column, one_time, bind_change, methods. Replacing a policy takes the current policy''s step-up.';
COMMENT ON FUNCTION stepup.unprotect(regclass) IS 'Remove a table''s protection. Needs that table''s step-up.';
COMMENT ON FUNCTION stepup.protection_state(regclass) IS 'The guard triggers, row security and policies protect() installed on a table, as JSON.';
COMMENT ON FUNCTION stepup.protection_gaps(regclass, jsonb) IS 'Every protection object that differs from the expected state: what, and what is there now.';
COMMENT ON FUNCTION stepup.accept_ddl(regclass) IS 'Used by pg_stepup''s DDL guard: records what an allowed DDL left as the table''s new baseline, following renamed columns.';
COMMENT ON FUNCTION stepup.keep_guards_always() IS 'Used by pg_stepup''s DDL guard: sets guard triggers left firing only for some sessions back to ALWAYS.';
COMMENT ON FUNCTION stepup.ddl_gaps(oid, boolean) IS 'Used by pg_stepup''s DDL guard: the protection gaps of the tables a role may alter.';
