DROP INDEX subscriptions_updated_at;
DROP TABLE api_keys;
