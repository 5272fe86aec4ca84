-- The due index covers pending rows only (see the PostgreSQL tree, which
-- also sets a fill factor that SQLite has no equivalent of).
DROP INDEX outbox_due;
CREATE INDEX outbox_pending ON outbox (next_attempt_at) WHERE state = 'pending';
CREATE INDEX outbox_dead ON outbox (created_at) WHERE state = 'dead';
