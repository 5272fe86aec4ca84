-- Admin API keys: only the SHA-256 of each key is stored.
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    key_sha256 TEXT NOT NULL UNIQUE CHECK (length(key_sha256) = 64),
    created_at TIMESTAMP NOT NULL,
    revoked_at TIMESTAMP,
    last_used_at TIMESTAMP
);

-- Exports page through subscriptions by id and look events up by
-- subscription; the ledger export pages by time.
CREATE INDEX subscriptions_updated_at ON subscriptions (updated_at);
