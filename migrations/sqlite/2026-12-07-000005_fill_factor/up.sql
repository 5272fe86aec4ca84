-- PostgreSQL's tree sets a fill factor on the outbox and subscribers;
-- SQLite has no equivalent. Kept so that both trees have the same versions.
SELECT 1;
