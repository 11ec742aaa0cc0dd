\set id random(1, :rows)
BEGIN;
SELECT 1 FROM ref.present(:tok);
UPDATE bench.reference SET balance = balance + 1 WHERE id = :id;
END;
