ALTER TABLE subscribers RESET (fillfactor);
ALTER TABLE outbox RESET (fillfactor);
DROP INDEX outbox_dead;
DROP INDEX outbox_pending;
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
