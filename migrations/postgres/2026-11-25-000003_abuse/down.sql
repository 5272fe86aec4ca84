DROP INDEX outbox_subscription;
DROP TABLE refusals;
