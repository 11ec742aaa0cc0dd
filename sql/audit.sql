-- pg_stepup audit: one entry per row change of a protected table, written by
-- the guard trigger (src/audit/trigger.rs) in the same transaction;
-- a chain that a single sealer links (stepup.seal); verification in Rust.
-- Encodings: docs/audit-encoding.md.

CREATE SEQUENCE stepup.audit_log_id_seq;
CREATE TABLE stepup.audit_log (
    id               bigint PRIMARY KEY DEFAULT nextval('stepup.audit_log_id_seq'),
    at               timestamptz NOT NULL,
    txid             bigint NOT NULL,
    table_name       text NOT NULL,
    op               text NOT NULL,
    key              jsonb,
    old_digest       text,
    new_digest       text,
    changed          text[],
    old_values       jsonb,
    new_values       jsonb,
    role_name        text NOT NULL,
    session_role     text NOT NULL,
    application_name text,
    client_addr      inet,
    kid              text,
    jti              text,
    sub              text,
    acr              text,
    amr              text[],
    auth_time        timestamptz,
    entry_hash       text NOT NULL
);
ALTER SEQUENCE stepup.audit_log_id_seq OWNED BY stepup.audit_log.id;

CREATE TABLE stepup.audit_chain (
    seq        bigint PRIMARY KEY,
    entry_id   bigint NOT NULL UNIQUE,
    entry_hash text NOT NULL,
    prev_hash  text NOT NULL,
    link_hash  text NOT NULL,
    sealed_at  timestamptz NOT NULL DEFAULT now()
);

-- Readable by whom the owner grants SELECT (roles with pg_read_all_data
-- too); written only by the extension (as the owner).
REVOKE ALL ON stepup.audit_log, stepup.audit_chain, stepup.audit_log_id_seq FROM PUBLIC;
ALTER TABLE stepup.audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE stepup.audit_chain ENABLE ROW LEVEL SECURITY;
CREATE POLICY audit_log_readable ON stepup.audit_log FOR SELECT USING (true);
CREATE POLICY audit_chain_readable ON stepup.audit_chain FOR SELECT USING (true);

-- Append-only, for every role, also in replica mode.
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON stepup.audit_log
    FOR EACH ROW EXECUTE FUNCTION stepup.append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON stepup.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION stepup.append_only();
CREATE TRIGGER audit_chain_append_only BEFORE UPDATE OR DELETE ON stepup.audit_chain
    FOR EACH ROW EXECUTE FUNCTION stepup.append_only();
CREATE TRIGGER audit_chain_no_truncate BEFORE TRUNCATE ON stepup.audit_chain
    FOR EACH STATEMENT EXECUTE FUNCTION stepup.append_only();
ALTER TABLE stepup.audit_log ENABLE ALWAYS TRIGGER audit_log_append_only,
                             ENABLE ALWAYS TRIGGER audit_log_no_truncate;
ALTER TABLE stepup.audit_chain ENABLE ALWAYS TRIGGER audit_chain_append_only,
                               ENABLE ALWAYS TRIGGER audit_chain_no_truncate;

-- Microseconds since the Unix epoch: exact, and the same in every TimeZone.
CREATE FUNCTION stepup.epoch_us(t timestamptz) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (EXTRACT(EPOCH FROM t) * 1000000)::bigint;

-- The text of each hashed field of an entry, in hashing order. The writer
-- and verify_audit both use this one definition.
CREATE FUNCTION stepup.entry_fields(
    id bigint, at timestamptz, txid bigint, table_name text, op text, key jsonb,
    old_digest text, new_digest text, changed text[], old_values jsonb, new_values jsonb,
    role_name text, session_role text, application_name text, client_addr inet,
    kid text, jti text, sub text, acr text, amr text[], auth_time timestamptz)
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN ARRAY[id::text, stepup.epoch_us(at)::text, txid::text, table_name, op, key::text,
             old_digest, new_digest, changed::text, old_values::text, new_values::text,
             role_name, session_role, application_name, client_addr::text,
             kid, jti, sub, acr, amr::text, stepup.epoch_us(auth_time)::text];

CREATE FUNCTION stepup.seal()
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    prev text;
    s bigint;
    e record;
    n bigint := 0;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'stepup.seal() needs READ COMMITTED'
            USING ERRCODE = 'invalid_transaction_state',
                  HINT = 'Call it in its own READ COMMITTED transaction: it must see what committed since.';
    END IF;
    -- One sealer at a time (writers never take this lock). A table lock
    -- only the extension's owner can take: SHARE ROW EXCLUSIVE conflicts
    -- with itself, and a role that may only read audit_chain can take no
    -- mode that blocks it (an advisory lock, which any role can take,
    -- could stop sealing). Statements after it see every link a previous
    -- sealer committed.
    LOCK TABLE stepup.audit_chain IN SHARE ROW EXCLUSIVE MODE;
    SELECT c.seq, c.link_hash INTO s, prev FROM stepup.audit_chain c ORDER BY c.seq DESC LIMIT 1;
    s := coalesce(s, 0);
    prev := coalesce(prev, repeat('0', 64));
    -- Only committed entries are visible; those of transactions still
    -- running are linked by a later seal.
    FOR e IN SELECT l.id, l.entry_hash FROM stepup.audit_log l
              WHERE NOT EXISTS (SELECT 1 FROM stepup.audit_chain c WHERE c.entry_id = l.id)
              ORDER BY l.id LOOP
        s := s + 1;
        INSERT INTO stepup.audit_chain (seq, entry_id, entry_hash, prev_hash, link_hash)
        VALUES (s, e.id, e.entry_hash, prev, stepup.link_hash(s, e.id, e.entry_hash, prev))
        RETURNING link_hash INTO prev;
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;

-- An entry that is not a row change (op 'TRUNCATE', 'DDL'): written by the
-- extension as its owner, hashed by the same encoding as every entry.
CREATE FUNCTION stepup.record_event(
    table_name text, op text, old_values jsonb, new_values jsonb,
    role_name text, session_role text,
    kid text, jti text, sub text, acr text, amr text[], auth_time timestamptz)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e stepup.audit_log;
BEGIN
    e.id := nextval('stepup.audit_log_id_seq');
    e.at := clock_timestamp();
    e.txid := txid_current();
    e.table_name := table_name;
    e.op := op;
    e.old_values := old_values;
    e.new_values := new_values;
    e.role_name := role_name;
    e.session_role := session_role;
    e.application_name := current_setting('application_name');
    e.client_addr := inet_client_addr();
    e.kid := kid;
    e.jti := jti;
    e.sub := sub;
    e.acr := acr;
    e.amr := amr;
    e.auth_time := auth_time;
    e.entry_hash := stepup.entry_hash(stepup.entry_fields(
        e.id, e.at, e.txid, e.table_name, e.op, e.key, e.old_digest, e.new_digest, e.changed,
        e.old_values, e.new_values, e.role_name, e.session_role, e.application_name,
        e.client_addr, e.kid, e.jti, e.sub, e.acr, e.amr, e.auth_time));
    INSERT INTO stepup.audit_log SELECT e.*;
END
$$;

CREATE VIEW stepup.audit_trail AS
SELECT l.id, l.at AS time, l.role_name AS who, l.table_name AS "table", l.op, l.key,
       l.changed AS changed_columns, l.sub, l.acr
  FROM stepup.audit_log l;
REVOKE ALL ON stepup.audit_trail FROM PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('stepup.audit_log', '');
SELECT pg_catalog.pg_extension_config_dump('stepup.audit_log_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('stepup.audit_chain', '');
SELECT pg_catalog.pg_extension_config_dump('stepup.protected', '');
SELECT pg_catalog.pg_extension_config_dump('stepup.keys', '');
SELECT pg_catalog.pg_extension_config_dump('stepup.issuer_profiles', '');
SELECT pg_catalog.pg_extension_config_dump('stepup.used_jti', '');
SELECT pg_catalog.pg_extension_config_dump('stepup.levels', $$WHERE name NOT IN ('aal1', 'aal2', 'aal3')$$);


COMMENT ON TABLE stepup.audit_log IS 'One entry per row change of a protected table, append-only; entry_hash covers every field (docs/audit-encoding.md).';
COMMENT ON TABLE stepup.audit_chain IS 'Hash chain over sealed audit entries, in the order stepup.seal() linked them.';
COMMENT ON VIEW stepup.audit_trail IS 'Audit entries for people: time, who, table, op, key, changed columns, sub, acr.';
COMMENT ON FUNCTION stepup.record_event(text, text, jsonb, jsonb, text, text, text, text, text, text, text[], timestamptz) IS
    'Used by pg_stepup: appends an audit entry that is not a row change (TRUNCATE, DDL allowed by step-up).';
COMMENT ON FUNCTION stepup.seal() IS 'Link every committed, unsealed audit entry into stepup.audit_chain; returns how many.';
COMMENT ON FUNCTION stepup.entry_fields(bigint, timestamptz, bigint, text, text, jsonb, text, text, text[], jsonb, jsonb, text, text, text, inet, text, text, text, text, text[], timestamptz) IS
    'The hashed fields of an audit entry as text, in hashing order.';
