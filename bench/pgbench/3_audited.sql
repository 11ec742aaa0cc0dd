\set id random(1, :rows)
UPDATE bench.audited SET balance = balance + 1 WHERE id = :id;
