-- Fewer index entries per outbox row and per consent event.
--
-- The due index covers pending rows only: a row that is sent, dead or
-- cancelled leaves it, so it stays the size of the backlog however many
-- rows were ever sent, and marking a row sent adds no entry to it. Dead
-- letters, listed by the admin API, get a small index of their own.
DROP INDEX outbox_due;
CREATE INDEX outbox_pending ON outbox (next_attempt_at) WHERE state = 'pending';
CREATE INDEX outbox_dead ON outbox (created_at) WHERE state = 'dead';

-- Room on every page for the new versions of updated rows, so that an
-- update which changes no indexed column is a heap-only (HOT) update that
-- adds no index entries: the worker's lease on an outbox row, the move of
-- a subscriber's chain head on every event. Affects pages written from
-- now on; see docs/performance.md.
ALTER TABLE outbox SET (fillfactor = 70);
ALTER TABLE subscribers SET (fillfactor = 80);
