-- pg_stepup 0.1.0 -> 0.2.0: keys from OpenID identity providers.
-- RS256, PS256, ES256 and ES384 keys; stepup.add_jwks; issuer profiles
-- (stepup.define_issuer, stepup.issuers); key_info.source; row filters
-- kept in the protected table's own policy stepup_filter. Leaves every
-- existing key, policy and audit entry as it is: the chain verifies after
-- the update (tests/test_upgrade.py). The objects match a fresh 0.2.0
-- install, which the same test compares catalog by catalog.

\echo Use "ALTER EXTENSION pg_stepup UPDATE TO '0.2.0'" to load this file. \quit

-- First: stepup.protected loses filter_expr. The DDL guard reads that table
-- around every command through stepup.protection_state, a SQL function
-- whose plan PostgreSQL keeps for the rest of the transaction (this one
-- began by planning it, for ALTER EXTENSION itself); a plan made before
-- the column is dropped fails after it. So, with the guard's event
-- triggers off: the function is replaced (which drops the kept plan: the
-- new body also lists the new policy, see below), then the column dropped.
ALTER EVENT TRIGGER stepup_guard_ddl_start DISABLE;
ALTER EVENT TRIGGER stepup_guard_ddl DISABLE;
CREATE OR REPLACE FUNCTION stepup.protection_state(target regclass)
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
ALTER TABLE stepup.protected DROP COLUMN filter_expr;
ALTER EVENT TRIGGER stepup_guard_ddl ENABLE ALWAYS;
ALTER EVENT TRIGGER stepup_guard_ddl_start ENABLE ALWAYS;

ALTER TABLE stepup.keys DROP CONSTRAINT keys_alg_check;
ALTER TABLE stepup.keys ADD CONSTRAINT keys_alg_check
    CHECK (alg IN ('HS256', 'EdDSA', 'RS256', 'PS256', 'ES256', 'ES384'));
ALTER TABLE stepup.keys
    ADD COLUMN source text NOT NULL DEFAULT 'add_key' CHECK (source IN ('add_key', 'jwks'));

CREATE TABLE stepup.issuer_profiles (
    issuer         text PRIMARY KEY CHECK (issuer <> ''),
    audience       text CHECK (audience <> ''),
    levels         jsonb CHECK (levels IS NULL OR (jsonb_typeof(levels) = 'object'
                       AND NOT jsonb_path_exists(levels, '$.* ? (@.type() != "string")'))),
    level_claim    text NOT NULL DEFAULT 'acr' CHECK (level_claim IN ('acr', 'acrs', 'aal')),
    accepted_types text[] CHECK (accepted_types IS NULL OR cardinality(accepted_types) > 0),
    created_at     timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON stepup.issuer_profiles FROM PUBLIC;
ALTER TABLE stepup.issuer_profiles ENABLE ROW LEVEL SECURITY;
SELECT pg_catalog.pg_extension_config_dump('stepup.issuer_profiles', '');
CREATE TRIGGER issuer_profiles_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON stepup.issuer_profiles
    FOR EACH STATEMENT EXECUTE FUNCTION stepup.catalog_changed();
ALTER TABLE stepup.issuer_profiles ENABLE ALWAYS TRIGGER issuer_profiles_changed;

CREATE FUNCTION stepup."add_jwks"(
	"issuer" TEXT,
	"jwks" jsonb,
	"not_before" timestamp with time zone DEFAULT now()
) RETURNS TABLE (
	"kid" TEXT,
	"alg" TEXT,
	"action" TEXT
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'add_jwks_wrapper';

CREATE FUNCTION stepup.define_issuer(issuer text, audience text DEFAULT NULL, levels jsonb DEFAULT NULL,
                                     level_claim text DEFAULT 'acr', accepted_types text[] DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    bad record;
BEGIN
    IF issuer IS NULL OR issuer = '' THEN
        RAISE EXCEPTION 'issuer must be given'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the issuer exactly as its tokens'' iss claim and its keys (stepup.key_info.issuer) name it.';
    END IF;
    IF audience = '' THEN
        RAISE EXCEPTION 'audience must not be empty'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the aud the issuer''s tokens carry (an OIDC client id or API identifier), or NULL for stepup.audience.';
    END IF;
    IF level_claim IS NULL OR level_claim NOT IN ('acr', 'acrs', 'aal') THEN
        RAISE EXCEPTION 'level_claim must be ''acr'', ''acrs'' or ''aal'', not %', coalesce(quote_literal(level_claim), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'acr: one string (OpenID Connect); acrs: an array of authentication contexts (Entra ID); aal: Supabase.';
    END IF;
    IF levels IS NOT NULL THEN
        IF jsonb_typeof(levels) <> 'object' OR levels = '{}' THEN
            RAISE EXCEPTION 'levels must be a non-empty JSON object mapping the issuer''s values to level names'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'For example {"1": "aal1", "2": "aal2"}; or NULL when the issuer''s values are level names.';
        END IF;
        FOR bad IN SELECT e.key, e.value FROM jsonb_each(levels) AS e
                    WHERE jsonb_typeof(e.value) <> 'string'
                       OR NOT EXISTS (SELECT FROM stepup.levels AS l WHERE l.name = e.value #>> '{}')
        LOOP
            RAISE EXCEPTION 'levels maps "%" to %, which is not a level in stepup.levels', bad.key, bad.value
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Map each value to a level name (SELECT name FROM stepup.levels), or add the level first with stepup.define_level.';
        END LOOP;
    END IF;
    IF accepted_types IS NOT NULL AND (cardinality(accepted_types) = 0
            OR EXISTS (SELECT FROM unnest(accepted_types) AS t WHERE t IS NULL OR t = '')) THEN
        RAISE EXCEPTION 'accepted_types must list at least one type, none empty'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'For example ''{at+jwt}'' for OAuth access tokens (RFC 9068), or NULL to accept any typ.';
    END IF;
    INSERT INTO stepup.issuer_profiles AS p (issuer, audience, levels, level_claim, accepted_types)
    VALUES (define_issuer.issuer, define_issuer.audience, define_issuer.levels,
            define_issuer.level_claim, define_issuer.accepted_types)
    ON CONFLICT ON CONSTRAINT issuer_profiles_pkey DO UPDATE
       SET audience = EXCLUDED.audience, levels = EXCLUDED.levels,
           level_claim = EXCLUDED.level_claim, accepted_types = EXCLUDED.accepted_types;
END
$$;

CREATE VIEW stepup.issuers AS
SELECT issuer, audience, levels, level_claim, accepted_types, created_at
  FROM stepup.issuer_profiles;
GRANT SELECT ON stepup.issuers TO PUBLIC;

CREATE OR REPLACE VIEW stepup.key_info AS
SELECT kid,
       alg,
       issuer,
       not_before,
       not_after,
       CASE
           WHEN not_after IS NOT NULL AND not_after <= now() THEN 'retired'
           WHEN not_before > now() THEN 'pending'
           ELSE 'active'
       END AS status,
       encode(sha256(key), 'hex') AS fingerprint,
       created_at,
       source
  FROM stepup.keys;

REVOKE EXECUTE ON FUNCTION stepup.add_jwks(text, jsonb, timestamptz) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION stepup.define_issuer(text, text, jsonb, text, text[]) FROM PUBLIC;

COMMENT ON VIEW stepup.key_info IS 'Registered keys without their material: kid, alg, issuer, validity, status, SHA-256 fingerprint and source (add_key or jwks).';
COMMENT ON TABLE stepup.issuer_profiles IS 'Issuer profiles written by stepup.define_issuer; see stepup.issuers.';
COMMENT ON VIEW stepup.issuers IS 'Issuer profiles: audience, level mapping, level claim and accepted token types per issuer.';
COMMENT ON FUNCTION stepup.add_key(text, bytea, text, text, timestamptz, timestamptz) IS
    'Register a verification key: HS256 (shared secret, at least 32 bytes), EdDSA (32-byte Ed25519 public key or its DER SubjectPublicKeyInfo), RS256/PS256 (RSA, 2048-8192 bits) or ES256/ES384 (P-256/P-384) as DER SubjectPublicKeyInfo. Key ids are never reused.';
COMMENT ON FUNCTION stepup.add_jwks(text, jsonb, timestamptz) IS
    'Import an issuer''s JWKS document: one row per key (added, kept, skipped: why, refused: why) and per retired key of this issuer that the document no longer lists. Call it again with the current document to rotate.';
COMMENT ON FUNCTION stepup.define_issuer(text, text, jsonb, text, text[]) IS
    'Describe an issuer''s tokens: audience (replaces stepup.audience), levels (its values to level names), level_claim (acr, acrs or aal), accepted_types (header typ). Calling it again replaces the profile.';

-- Row filters moved from the tree stepup.protected.filter_expr held (the
-- OIDs and node format of the database and version that made it: wrong
-- after pg_restore into another database or a newer PostgreSQL) to the
-- protected table's own policy stepup_filter, which Postgres keeps, dumps,
-- restores and upgrades with the table (sql/protect.sql). Each filter is
-- parsed again from the text protect() was given, with the settings
-- protect() parses under; a filter that no longer parses (a column it
-- names was renamed since) stops the update: protect() the table again
-- with its new names, then update.
DO $$
DECLARE
    r record;
    saved text[] := ARRAY[current_setting('TimeZone'), current_setting('DateStyle'),
                          current_setting('IntervalStyle'), current_setting('extra_float_digits')];
BEGIN
    PERFORM set_config('TimeZone', 'UTC', true), set_config('DateStyle', 'ISO, MDY', true),
            set_config('IntervalStyle', 'postgres', true), set_config('extra_float_digits', '1', true);
    FOR r IN SELECT p.target, p.row_filter FROM stepup.protected p WHERE p.row_filter IS NOT NULL LOOP
        EXECUTE format('CREATE POLICY stepup_filter ON %s AS RESTRICTIVE FOR SELECT USING (true OR (%s))',
                       r.target, r.row_filter);
    END LOOP;
    PERFORM set_config('TimeZone', saved[1], true), set_config('DateStyle', saved[2], true),
            set_config('IntervalStyle', saved[3], true), set_config('extra_float_digits', saved[4], true);
END
$$;

CREATE OR REPLACE FUNCTION stepup.remove_protection(target regclass)
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

CREATE OR REPLACE FUNCTION stepup.protect(
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

UPDATE stepup.protected AS p SET state = stepup.protection_state(p.target);
