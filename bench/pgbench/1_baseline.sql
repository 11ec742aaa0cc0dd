\set id random(1, :rows)
UPDATE bench.plain SET balance = balance + 1 WHERE id = :id;
