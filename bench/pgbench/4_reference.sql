\set id random(1, :rows)
BEGIN;
SELECT ref.present(:tok) IS NOT NULL;
UPDATE bench.reference SET balance = balance + 1 WHERE id = :id;
END;
