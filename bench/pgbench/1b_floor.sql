\set id random(1, :rows)
BEGIN;
UPDATE bench.floor SET balance = balance + 1 WHERE id = :id;
INSERT INTO bench.floor_log (table_name, op, key) VALUES ('bench.floor', 'UPDATE', :id);
END;
