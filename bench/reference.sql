-- The reference a team would write without pg_stepup: PL/pgSQL + pgcrypto.
-- Same semantics as scenario 2: verify an HS256 compact JWS (alg, kid,
-- signature, exp, iat, aud, acr, auth_time, sub, jti), hold its claims for
-- the transaction, and in a trigger check acr >= aal2 and auth_time within
-- 5 minutes, then append a hash-chained audit row under an advisory lock.
-- (It is weaker than pg_stepup: the session can forge ref.claims with
-- set_config. It is here for its cost, not as a recommendation.)
CREATE SCHEMA ref;
CREATE TABLE ref.keys (kid text PRIMARY KEY, secret bytea NOT NULL);
CREATE TABLE ref.levels (name text PRIMARY KEY, rank int NOT NULL);
INSERT INTO ref.levels VALUES ('aal1', 1), ('aal2', 2), ('aal3', 3);
INSERT INTO ref.keys VALUES ('hs', decode(:'secret', 'hex'));
CREATE TABLE ref.audit (
    id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp(),
    txid bigint NOT NULL DEFAULT txid_current(), table_name text NOT NULL, op text NOT NULL,
    old_row jsonb, new_row jsonb, role_name text NOT NULL, sub text, jti text, acr text,
    auth_time timestamptz, prev_hash text NOT NULL, hash text NOT NULL);

CREATE FUNCTION ref.b64url(t text) RETURNS bytea LANGUAGE sql IMMUTABLE STRICT
RETURN decode(rpad(translate(t, '-_', '+/'), (length(t) + 3) / 4 * 4, '='), 'base64');

CREATE FUNCTION ref.present(tok text) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    parts text[] := string_to_array(tok, '.');
    header jsonb;
    claims jsonb;
    secret bytea;
    now_s numeric := extract(epoch FROM clock_timestamp());
BEGIN
    IF coalesce(array_length(parts, 1), 0) <> 3 THEN
        RAISE EXCEPTION 'malformed assertion' USING ERRCODE = 'SU002';
    END IF;
    header := convert_from(ref.b64url(parts[1]), 'UTF8')::jsonb;
    IF header ->> 'alg' IS DISTINCT FROM 'HS256' THEN
        RAISE EXCEPTION 'unsupported alg' USING ERRCODE = 'SU002';
    END IF;
    SELECT k.secret INTO secret FROM ref.keys k WHERE k.kid = header ->> 'kid';
    IF secret IS NULL OR hmac(convert_to(parts[1] || '.' || parts[2], 'UTF8'), secret, 'sha256')
                         IS DISTINCT FROM ref.b64url(parts[3]) THEN
        RAISE EXCEPTION 'bad signature' USING ERRCODE = 'SU002';
    END IF;
    claims := convert_from(ref.b64url(parts[2]), 'UTF8')::jsonb;
    IF NOT (claims ?& ARRAY['exp', 'iat', 'aud', 'acr', 'auth_time', 'sub', 'jti'])
       OR (claims ->> 'exp')::numeric <= now_s - 60
       OR (claims ->> 'iat')::numeric > now_s + 60
       OR (claims ->> 'auth_time')::numeric > now_s + 60
       OR claims ->> 'aud' IS DISTINCT FROM current_database()
       OR NOT EXISTS (SELECT FROM ref.levels l WHERE l.name = claims ->> 'acr') THEN
        RAISE EXCEPTION 'invalid claims' USING ERRCODE = 'SU002';
    END IF;
    PERFORM set_config('ref.claims', claims::text, true);
    RETURN claims;
END $$;

CREATE FUNCTION ref.guard_audit() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    claims jsonb := nullif(current_setting('ref.claims', true), '')::jsonb;
    o jsonb;
    n jsonb;
    prev text;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND (
           claims IS NULL
           OR coalesce((SELECT l.rank FROM ref.levels l WHERE l.name = claims ->> 'acr'), 0) < 2
           OR to_timestamp((claims ->> 'exp')::float8) <= clock_timestamp()
           OR clock_timestamp() - to_timestamp((claims ->> 'auth_time')::float8) > interval '5 minutes') THEN
        RAISE EXCEPTION 'step-up required' USING ERRCODE = 'SU001';
    END IF;
    IF TG_OP <> 'INSERT' THEN o := to_jsonb(OLD); END IF;
    IF TG_OP <> 'DELETE' THEN n := to_jsonb(NEW); END IF;
    PERFORM pg_advisory_xact_lock(4242);  -- one chain: writers take turns
    SELECT a.hash INTO prev FROM ref.audit a ORDER BY a.id DESC LIMIT 1;
    prev := coalesce(prev, repeat('0', 64));
    INSERT INTO ref.audit (table_name, op, old_row, new_row, role_name, sub, jti, acr, auth_time,
                           prev_hash, hash)
    VALUES (TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, TG_OP, o, n, current_user, claims ->> 'sub',
            claims ->> 'jti', claims ->> 'acr', to_timestamp((claims ->> 'auth_time')::float8), prev,
            encode(digest(concat_ws('|', prev, TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, TG_OP,
                                    o::text, n::text, current_user, claims::text), 'sha256'), 'hex'));
    RETURN NULL;
END $$;
CREATE TRIGGER ref_guard_audit AFTER INSERT OR UPDATE OR DELETE ON bench.reference
    FOR EACH ROW EXECUTE FUNCTION ref.guard_audit();

GRANT USAGE ON SCHEMA ref TO bench_app;
REVOKE ALL ON ref.keys FROM PUBLIC;

-- Scenario 5's comparison: the chain recomputed set-based with pgcrypto
-- (digest() per entry and link, lag() for the links), from
-- docs/audit-encoding.md. Returns the entries that fail.
CREATE FUNCTION ref.field(v text) RETURNS bytea LANGUAGE sql STABLE
RETURN CASE WHEN v IS NULL THEN '\x00'::bytea
            ELSE '\x01'::bytea || int4send(octet_length(v)) || convert_to(v, 'UTF8') END;
CREATE FUNCTION ref.us(t timestamptz) RETURNS text LANGUAGE sql STABLE
RETURN ((extract(epoch FROM t) * 1000000)::bigint)::text;
CREATE FUNCTION ref.verify_chain() RETURNS TABLE (entries bigint, bad bigint)
LANGUAGE sql STABLE AS $$
SELECT count(*), count(*) FILTER (WHERE ok IS NOT TRUE) FROM (
    SELECT l.entry_hash = encode(digest(convert_to(E'pg_stepup entry v1\n', 'UTF8')
               || ref.field(l.id::text) || ref.field(ref.us(l.at)) || ref.field(l.txid::text)
               || ref.field(l.table_name) || ref.field(l.op) || ref.field(l.key::text)
               || ref.field(l.old_digest) || ref.field(l.new_digest) || ref.field(l.changed::text)
               || ref.field(l.old_values::text) || ref.field(l.new_values::text)
               || ref.field(l.role_name) || ref.field(l.session_role)
               || ref.field(l.application_name) || ref.field(l.client_addr::text)
               || ref.field(l.kid) || ref.field(l.jti) || ref.field(l.sub) || ref.field(l.acr)
               || ref.field(l.amr::text) || ref.field(ref.us(l.auth_time)), 'sha256'), 'hex')
           AND c.entry_hash = l.entry_hash
           AND c.seq = coalesce(lag(c.seq) OVER w, 0) + 1
           AND c.prev_hash = coalesce(lag(c.link_hash) OVER w, repeat('0', 64))
           AND c.link_hash = encode(digest(convert_to(E'pg_stepup link v1\n', 'UTF8')
               || ref.field(c.seq::text) || ref.field(c.entry_id::text)
               || ref.field(c.entry_hash) || ref.field(c.prev_hash), 'sha256'), 'hex') AS ok
      FROM stepup.audit_chain c LEFT JOIN stepup.audit_log l ON l.id = c.entry_id
    WINDOW w AS (ORDER BY c.seq)) AS s
$$;
