ALTER TABLE subscribers SET (fillfactor = 80);
ALTER TABLE outbox SET (fillfactor = 70);
