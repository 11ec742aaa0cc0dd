-- pg_stepup catalog: keys and levels. Runs before any function is created.

-- CREATE EXTENSION reuses an existing "stepup" schema. One created earlier by
-- another role would let that role plant objects beside ours: refuse it.
DO $$
BEGIN
    IF (SELECT nspowner FROM pg_catalog.pg_namespace WHERE nspname OPERATOR(pg_catalog.=) 'stepup')
       OPERATOR(pg_catalog.<>) (SELECT oid FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) current_user) THEN
        RAISE EXCEPTION 'schema "stepup" already exists and is owned by another role'
            USING ERRCODE = 'duplicate_schema',
                  HINT = 'Drop it (or have its owner drop it), then run CREATE EXTENSION pg_stepup again.';
    END IF;
END
$$;

-- Row digests, change digests and entry hashes are defined over UTF-8 text
-- (docs/audit-encoding.md): in another server encoding two different values
-- could share one digest. Refuse rather than hash lossily.
DO $$
BEGIN
    IF pg_catalog.getdatabaseencoding() OPERATOR(pg_catalog.<>) 'UTF8' THEN
        RAISE EXCEPTION 'pg_stepup needs a UTF8 database; this one is %', pg_catalog.getdatabaseencoding()
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Create the database with ENCODING ''UTF8'' (e.g. CREATE DATABASE ... ENCODING ''UTF8'' TEMPLATE template0) and install pg_stepup there.';
    END IF;
END
$$;

-- Verification keys. Readable by no role but the extension's owner: HS256
-- keys are shared secrets. Key ids are never reused (see add_key). `key` is
-- the HS256 secret, the 32-byte Ed25519 key, or for RSA and ECDSA the
-- DER SubjectPublicKeyInfo in its canonical form. `source` says whether an
-- operator registered the key (add_key) or an issuer's JWKS did (add_jwks,
-- which retires only the latter).
CREATE TABLE stepup.keys (
    kid        text PRIMARY KEY CHECK (kid <> ''),
    alg        text NOT NULL CHECK (alg IN ('HS256', 'EdDSA', 'RS256', 'PS256', 'ES256', 'ES384')),
    key        bytea NOT NULL,
    issuer     text,
    not_before timestamptz NOT NULL DEFAULT now(),
    not_after  timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (not_after IS NULL OR not_after > not_before),
    source     text NOT NULL DEFAULT 'add_key' CHECK (source IN ('add_key', 'jwks'))
);
REVOKE ALL ON stepup.keys FROM PUBLIC;
-- Row-level security with no policy: roles that bypass table privileges
-- (pg_read_all_data, pg_write_all_data) still see and write no rows. The
-- extension reads the table directly and is not affected.
ALTER TABLE stepup.keys ENABLE ROW LEVEL SECURITY;

-- Issuer profiles (stepup.define_issuer): how an identity provider's tokens
-- carry the level, what its level values mean, its audience and token
-- types. Not secret (applications map a challenge's level back to the
-- issuer's value through stepup.issuers); written only by the owner.
-- `levels` is an object of strings, which the key cache reads as such.
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

-- Assurance levels, ranked: an assertion satisfies every level ranked at or
-- below its acr.
CREATE TABLE stepup.levels (
    name text PRIMARY KEY CHECK (name <> ''),
    rank integer NOT NULL
);
INSERT INTO stepup.levels (name, rank) VALUES ('aal1', 1), ('aal2', 2), ('aal3', 3);
REVOKE ALL ON stepup.levels FROM PUBLIC;
GRANT SELECT ON stepup.levels TO PUBLIC;
ALTER TABLE stepup.levels ENABLE ROW LEVEL SECURITY;
CREATE POLICY levels_readable ON stepup.levels FOR SELECT USING (true);

-- Protected tables and their policies (written by stepup.protect). Readable
-- by everyone through stepup.policies; written only by the extension's owner.
-- `state` is what protect() installed (triggers, row security, policies) as
-- stepup.protection_state() renders it; DDL that changes it needs step-up.
CREATE TABLE stepup.protected (
    target         regclass PRIMARY KEY,
    level          text NOT NULL,
    max_age        interval NOT NULL,
    operations     text[] NOT NULL,
    columns        text[],
    row_filter     text,
    subject_column text,
    one_time       boolean NOT NULL DEFAULT false,
    bind_change    boolean NOT NULL DEFAULT false,
    methods        text[],
    rls_before     text NOT NULL DEFAULT 'untouched'
                   CHECK (rls_before IN ('untouched', 'off', 'on', 'forced')),
    state          jsonb NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL DEFAULT now(),
    -- The policy follows the data, not its names: the attribute numbers of
    -- `columns` and `subject_column`, and every column the policy names or
    -- reads (the DDL guard refuses a rename or type change of those without
    -- step-up). The row filter as Postgres parsed it once (columns by
    -- number, constants already read) is the table's policy stepup_filter
    -- (protect.sql). Read by name (catalog/policy.rs): an updated
    -- installation may hold dropped columns between these.
    column_attnums int2[],
    subject_attnum int2,
    watched        int2[] NOT NULL DEFAULT '{}'
);
REVOKE ALL ON stepup.protected FROM PUBLIC;
ALTER TABLE stepup.protected ENABLE ROW LEVEL SECURITY;
CREATE POLICY protected_readable ON stepup.protected FOR SELECT USING (true);

-- One-time assertions already spent. A jti is spent by the first transaction
-- that writes a one_time table with it, once that transaction commits.
CREATE TABLE stepup.used_jti (
    jti        text PRIMARY KEY,
    kid        text NOT NULL,
    sub        text NOT NULL,
    txid       bigint NOT NULL,
    used_at    timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
-- Spent ids of assertions that expired can never be presented again: purged.
CREATE INDEX used_jti_expires_at ON stepup.used_jti (expires_at);
REVOKE ALL ON stepup.used_jti FROM PUBLIC;
ALTER TABLE stepup.used_jti ENABLE ROW LEVEL SECURITY;
