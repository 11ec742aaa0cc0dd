\set id random(1, :rows)
BEGIN;
SELECT 1 FROM stepup.present(:tok);
UPDATE bench.protected SET balance = balance + 1 WHERE id = :id;
END;
