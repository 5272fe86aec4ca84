DROP INDEX outbox_dead;
DROP INDEX outbox_pending;
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
