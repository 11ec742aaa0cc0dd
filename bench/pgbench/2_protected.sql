\set id random(1, :rows)
BEGIN;
SELECT stepup.present(:tok) IS NOT NULL;
UPDATE bench.protected SET balance = balance + 1 WHERE id = :id;
END;
