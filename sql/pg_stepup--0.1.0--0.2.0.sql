-- pg_stepup 0.1.0 -> 0.2.0: keys from OpenID identity providers.
-- RS256, PS256, ES256 and ES384 keys; stepup.add_jwks; issuer profiles
-- (stepup.define_issuer, stepup.issuers); key_info.source. Leaves every
-- existing key, policy and audit entry as it is: the chain verifies after
-- the update (tests/test_upgrade.py). The objects match a fresh 0.2.0
-- install, which the same test compares catalog by catalog.

\echo Use "ALTER EXTENSION pg_stepup UPDATE TO '0.2.0'" to load this file. \quit

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
