-- pg_stepup: SQL-level API, triggers, grants and comments. Runs last.

GRANT USAGE ON SCHEMA stepup TO PUBLIC;

-- Every backend caches keys and levels; these triggers tell them to reload.
CREATE TRIGGER keys_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON stepup.keys
    FOR EACH STATEMENT EXECUTE FUNCTION stepup.catalog_changed();
CREATE TRIGGER levels_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON stepup.levels
    FOR EACH STATEMENT EXECUTE FUNCTION stepup.catalog_changed();
-- Also under session_replication_role = replica (logical replication apply,
-- pg_restore --disable-triggers): a missed invalidation would keep a retired key.
CREATE TRIGGER issuer_profiles_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON stepup.issuer_profiles
    FOR EACH STATEMENT EXECUTE FUNCTION stepup.catalog_changed();
ALTER TABLE stepup.keys ENABLE ALWAYS TRIGGER keys_changed;
ALTER TABLE stepup.levels ENABLE ALWAYS TRIGGER levels_changed;
ALTER TABLE stepup.issuer_profiles ENABLE ALWAYS TRIGGER issuer_profiles_changed;

CREATE FUNCTION stepup.retire_key(kid text, at timestamptz DEFAULT now())
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF at IS NULL THEN
        RAISE EXCEPTION 'retirement time must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- Retiring never extends a key's life: the earlier end wins.
    UPDATE stepup.keys AS k
       SET not_after = least(k.not_after, greatest(at, k.not_before + interval '1 microsecond'))
     WHERE k.kid = retire_key.kid;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'key "%" does not exist', kid
            USING ERRCODE = 'undefined_object', HINT = 'Registered keys are listed in stepup.key_info.';
    END IF;
END
$$;

CREATE FUNCTION stepup.define_level(name text, rank integer)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF name IS NULL OR name = '' OR rank IS NULL THEN
        RAISE EXCEPTION 'level name and rank must be given' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO stepup.levels AS l (name, rank) VALUES (define_level.name, define_level.rank)
    ON CONFLICT ON CONSTRAINT levels_pkey DO UPDATE SET rank = EXCLUDED.rank;
END
$$;

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

CREATE VIEW stepup.key_info AS
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
REVOKE ALL ON stepup.key_info FROM PUBLIC;

-- Who may call what, in one place: nothing by default, then exactly the
-- functions an application or a policy needs. Everything else (keys,
-- levels, protect and unprotect, sealing and verification, the hash
-- helpers (whoever can compute entry hashes can write entries that
-- verify), the DDL guard's internals) is for the extension's owner, who
-- grants auditors verify_audit and audit_digest as needed. Trigger and
-- event-trigger functions need no EXECUTE to fire.
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA stepup FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    stepup.present(text),
    stepup.present(text, text),
    stepup.current(),
    stepup.clear(),
    stepup.satisfied(text, interval),
    stepup.satisfied(text, interval, text[]),
    stepup.require(text, interval),
    stepup.require(text, interval, text[]),
    stepup.change_digest(regclass, text, jsonb, jsonb),
    stepup.row_digest(regclass, jsonb),
    stepup.row_digest_text(regclass, text),
    -- Called by the row-level security policies protect() installs, as
    -- the role that writes.
    stepup.in_row_filter(regclass, record)
TO PUBLIC;

COMMENT ON SCHEMA stepup IS 'pg_stepup: step-up authentication for sensitive rows';
COMMENT ON TABLE stepup.keys IS 'Verification keys for step-up assertions. Never readable by application roles; see stepup.key_info.';
COMMENT ON TABLE stepup.levels IS 'Assurance levels (acr values) and their ranks.';
COMMENT ON VIEW stepup.key_info IS 'Registered keys without their material: kid, alg, issuer, validity, status, SHA-256 fingerprint and source (add_key or jwks).';
COMMENT ON TABLE stepup.issuer_profiles IS 'Issuer profiles written by stepup.define_issuer; see stepup.issuers.';
COMMENT ON VIEW stepup.issuers IS 'Issuer profiles: audience, level mapping, level claim and accepted token types per issuer.';
COMMENT ON FUNCTION stepup.add_key(text, bytea, text, text, timestamptz, timestamptz) IS
    'Register a verification key: HS256 (shared secret, at least 32 bytes), EdDSA (32-byte Ed25519 public key or its DER SubjectPublicKeyInfo), RS256/PS256 (RSA, 2048-8192 bits) or ES256/ES384 (P-256/P-384) as DER SubjectPublicKeyInfo. Key ids are never reused.';
COMMENT ON FUNCTION stepup.add_jwks(text, jsonb, timestamptz) IS
    'Import an issuer''s JWKS document: one row per key (added, kept, skipped: why, refused: why) and per retired key of this issuer that the document no longer lists. Call it again with the current document to rotate.';
COMMENT ON FUNCTION stepup.define_issuer(text, text, jsonb, text, text[]) IS
    'Describe an issuer''s tokens: audience (replaces stepup.audience), levels (its values to level names), level_claim (acr, acrs or aal), accepted_types (header typ). Calling it again replaces the profile.';
COMMENT ON FUNCTION stepup.retire_key(text, timestamptz) IS
    'Stop accepting assertions signed with this key from the given time (default now). Never extends a key''s life.';
COMMENT ON FUNCTION stepup.define_level(text, integer) IS 'Add a level or change its rank.';
COMMENT ON FUNCTION stepup.present(text) IS
    'Verify a step-up assertion (compact JWS) and hold it for the current transaction. Returns its claims; raises SU002 when invalid.';
COMMENT ON FUNCTION stepup.present(text, text) IS
    'Verify and hold a step-up assertion with scope ''transaction'' or ''session'' (kept until stepup.clear(), DISCARD ALL or disconnect).';
COMMENT ON FUNCTION stepup.current() IS 'Claims of the held assertion, or NULL.';
COMMENT ON FUNCTION stepup.clear() IS 'Drop the held assertion.';
COMMENT ON FUNCTION stepup.satisfied(text, interval) IS
    'True when the held assertion is unexpired, its acr ranks at least level, and the user authenticated within max_age.';
COMMENT ON FUNCTION stepup.satisfied(text, interval, text[]) IS
    'As satisfied(level, max_age), and amr must contain one of methods.';
COMMENT ON FUNCTION stepup.require(text, interval) IS
    'True, or raises SU001 with an RFC 9470 challenge. For use in row-level security policies.';
COMMENT ON FUNCTION stepup.require(text, interval, text[]) IS
    'As require(level, max_age), and amr must contain one of methods.';
COMMENT ON FUNCTION stepup.verify_audit() IS
    'Seal, then recompute every audit entry hash and chain link; names the first entry edited, deleted or reordered.';
COMMENT ON FUNCTION stepup.verify_audit(jsonb) IS
    'As verify_audit(), and the chain must still hold the head recorded by stepup.audit_digest(): catches removal of the newest entries.';
COMMENT ON FUNCTION stepup.audit_digest() IS
    'Seal, then return the head of the audit chain (seq, entry_id, hash, at, system_identifier) to store outside the database.';
COMMENT ON FUNCTION stepup.entry_hash(text[]) IS 'SHA-256 over an audit entry''s fields (docs/audit-encoding.md).';
COMMENT ON FUNCTION stepup.link_hash(bigint, bigint, text, text) IS 'SHA-256 of one audit chain link (docs/audit-encoding.md).';
COMMENT ON FUNCTION stepup.change_digest(regclass, text, jsonb, jsonb) IS
    'Change digest for the chg claim: lowercase hex SHA-256 of the RFC 8785 canonical JSON {"table","op","key","changes"}. See README.';
