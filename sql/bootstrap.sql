-- pg_stepup catalog: keys and levels. Runs before any function is created.

-- Verification keys. Readable by no role but the extension's owner: HS256
-- keys are shared secrets. Key ids are never reused (see add_key).
CREATE TABLE stepup.keys (
    kid        text PRIMARY KEY CHECK (kid <> ''),
    alg        text NOT NULL CHECK (alg IN ('HS256', 'EdDSA')),
    key        bytea NOT NULL,
    issuer     text,
    not_before timestamptz NOT NULL DEFAULT now(),
    not_after  timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (not_after IS NULL OR not_after > not_before)
);
REVOKE ALL ON stepup.keys FROM PUBLIC;

-- Assurance levels, ranked: an assertion satisfies every level ranked at or
-- below its acr.
CREATE TABLE stepup.levels (
    name text PRIMARY KEY CHECK (name <> ''),
    rank integer NOT NULL
);
INSERT INTO stepup.levels (name, rank) VALUES ('aal1', 1), ('aal2', 2), ('aal3', 3);
REVOKE ALL ON stepup.levels FROM PUBLIC;
GRANT SELECT ON stepup.levels TO PUBLIC;
