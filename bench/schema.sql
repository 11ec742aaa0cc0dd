-- Tables for bench/run.sh: one per scenario, same shape, same rows.
CREATE EXTENSION pg_stepup;
CREATE EXTENSION pgcrypto;
CREATE SCHEMA bench;
GRANT USAGE ON SCHEMA bench TO bench_app;

CREATE TABLE bench.plain     (id int PRIMARY KEY, owner text NOT NULL, balance bigint NOT NULL);
CREATE TABLE bench.floor     (LIKE bench.plain INCLUDING ALL);
CREATE TABLE bench.protected (LIKE bench.plain INCLUDING ALL);
CREATE TABLE bench.audited   (LIKE bench.plain INCLUDING ALL);
CREATE TABLE bench.reference (LIKE bench.plain INCLUDING ALL);
CREATE TABLE bench.floor_wide (LIKE bench.plain INCLUDING ALL);
-- 1b: what any audited design must at least do, one plain row per change.
CREATE TABLE bench.floor_log (
    id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), table_name text NOT NULL,
    op text NOT NULL, key int NOT NULL, role_name text NOT NULL DEFAULT current_user);
-- 1c: the floor with a log row as large as scenario 2's audit entry (513
-- bytes, pg_column_size, as pgbench writes them): what the entry's bytes
-- cost, apart from what it takes to make them. The pad is folded into the
-- prepared INSERT at plan time.
CREATE TABLE bench.floor_wide_log (
    id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), table_name text NOT NULL,
    op text NOT NULL, key int NOT NULL, role_name text NOT NULL DEFAULT current_user,
    pad text NOT NULL DEFAULT repeat('x', 429));

INSERT INTO bench.plain SELECT i, 'user' || i, 1000 FROM generate_series(1, :rows) AS i;
INSERT INTO bench.floor SELECT * FROM bench.plain;
INSERT INTO bench.protected SELECT * FROM bench.plain;
INSERT INTO bench.audited SELECT * FROM bench.plain;
INSERT INTO bench.reference SELECT * FROM bench.plain;
INSERT INTO bench.floor_wide SELECT * FROM bench.plain;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA bench TO bench_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA bench TO bench_app;

-- 2: UPDATE gated at aal2 (and audited); 3: UPDATE audited, only DELETE gated.
SELECT stepup.protect('bench.protected', 'aal2', '5 minutes', '{UPDATE,DELETE}');
SELECT stepup.protect('bench.audited', 'aal2', '5 minutes', '{DELETE}');
SELECT stepup.add_key('hs', decode(:'secret', 'hex'));
