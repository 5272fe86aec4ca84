-- "I did not ask for this": no confirmation email goes to an address
-- (by keyed hash) until `until`.
CREATE TABLE refusals (
    email_hmac TEXT PRIMARY KEY CHECK (length(email_hmac) = 64),
    refused_at TIMESTAMP NOT NULL,
    until TIMESTAMP NOT NULL
);

-- The per-address confirmation budget counts recent confirmation emails.
CREATE INDEX outbox_subscription ON outbox (subscription_id, kind, created_at);
