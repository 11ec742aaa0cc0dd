\set id random(1, :rows)
BEGIN;
UPDATE bench.floor_wide SET balance = balance + 1 WHERE id = :id;
INSERT INTO bench.floor_wide_log (table_name, op, key) VALUES ('bench.floor_wide', 'UPDATE', :id);
END;
