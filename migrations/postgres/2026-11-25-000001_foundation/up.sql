-- Foundation: lists, consent texts, subscribers, subscriptions, the consent
-- ledger with its evidence, confirmation tokens, the outbox and server secrets.
-- Portable shapes (see docs/architecture.md): TEXT ids (UUIDv7), TIMESTAMP in
-- UTC, statuses as TEXT with CHECK, JSON as TEXT, flags as INTEGER.

CREATE TABLE server_secrets (
    name TEXT PRIMARY KEY,
    secret TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE lists (
    id TEXT PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    settings TEXT NOT NULL,
    current_consent_version_id TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE TABLE consent_texts (
    sha256 TEXT PRIMARY KEY CHECK (length(sha256) = 64),
    body TEXT NOT NULL,
    language TEXT NOT NULL,
    first_seen_at TIMESTAMP NOT NULL
);

CREATE TABLE consent_versions (
    id TEXT PRIMARY KEY,
    list_id TEXT NOT NULL REFERENCES lists (id),
    text_sha256 TEXT NOT NULL REFERENCES consent_texts (sha256),
    created_at TIMESTAMP NOT NULL,
    UNIQUE (list_id, text_sha256)
);

CREATE TABLE subscribers (
    id TEXT PRIMARY KEY,
    email TEXT,
    email_key TEXT UNIQUE,
    email_hmac TEXT NOT NULL,
    name TEXT,
    created_at TIMESTAMP NOT NULL,
    erased_at TIMESTAMP,
    chain_seq BIGINT NOT NULL DEFAULT 0,
    chain_head TEXT NOT NULL
);
CREATE INDEX subscribers_email_hmac ON subscribers (email_hmac);

CREATE TABLE subscriptions (
    id TEXT PRIMARY KEY,
    subscriber_id TEXT NOT NULL REFERENCES subscribers (id),
    list_id TEXT NOT NULL REFERENCES lists (id),
    state TEXT NOT NULL CHECK (state IN ('pending', 'confirmed', 'unsubscribed', 'withdrawn')),
    consent_version_id TEXT NOT NULL REFERENCES consent_versions (id),
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    confirmed_at TIMESTAMP,
    ended_at TIMESTAMP,
    UNIQUE (subscriber_id, list_id)
);
CREATE INDEX subscriptions_list_state ON subscriptions (list_id, state);

CREATE TABLE evidence (
    sha256 TEXT PRIMARY KEY CHECK (length(sha256) = 64),
    nonce TEXT NOT NULL,
    ip TEXT,
    ip_source TEXT,
    user_agent TEXT,
    source_url TEXT,
    recorded_at TIMESTAMP NOT NULL
);

CREATE TABLE consent_events (
    id TEXT PRIMARY KEY,
    subscriber_id TEXT NOT NULL REFERENCES subscribers (id),
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    occurred_at TIMESTAMP NOT NULL,
    subscription_id TEXT REFERENCES subscriptions (id),
    list_id TEXT REFERENCES lists (id),
    consent_version_id TEXT REFERENCES consent_versions (id),
    consent_sha256 TEXT,
    method TEXT,
    evidence_sha256 TEXT,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    UNIQUE (subscriber_id, seq)
);
CREATE INDEX consent_events_occurred_at ON consent_events (occurred_at);
CREATE INDEX consent_events_subscription ON consent_events (subscription_id);

CREATE TABLE confirmation_tokens (
    token_sha256 TEXT PRIMARY KEY CHECK (length(token_sha256) = 64),
    subscription_id TEXT NOT NULL REFERENCES subscriptions (id),
    request_event_id TEXT NOT NULL REFERENCES consent_events (id),
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    used_at TIMESTAMP
);
CREATE INDEX confirmation_tokens_subscription ON confirmation_tokens (subscription_id);

CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    subscription_id TEXT REFERENCES subscriptions (id),
    payload TEXT NOT NULL,
    message_id TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'dead', 'cancelled')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMP NOT NULL,
    lease_owner TEXT,
    lease_until TIMESTAMP,
    last_error TEXT,
    created_at TIMESTAMP NOT NULL,
    sent_at TIMESTAMP
);
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
