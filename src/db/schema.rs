// The schema of both migration trees (migrations/postgres, migrations/sqlite),
// which create the same tables and columns; CI migrates both up, down and up.

diesel::table! {
    server_secrets (name) {
        name -> Text,
        secret -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    lists (id) {
        id -> Text,
        slug -> Text,
        name -> Text,
        settings -> Text,
        current_consent_version_id -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    consent_texts (sha256) {
        sha256 -> Text,
        body -> Text,
        language -> Text,
        first_seen_at -> Timestamp,
    }
}

diesel::table! {
    consent_versions (id) {
        id -> Text,
        list_id -> Text,
        text_sha256 -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    subscribers (id) {
        id -> Text,
        email -> Nullable<Text>,
        email_key -> Nullable<Text>,
        email_hmac -> Text,
        name -> Nullable<Text>,
        created_at -> Timestamp,
        erased_at -> Nullable<Timestamp>,
        chain_seq -> BigInt,
        chain_head -> Text,
    }
}

diesel::table! {
    subscriptions (id) {
        id -> Text,
        subscriber_id -> Text,
        list_id -> Text,
        state -> Text,
        consent_version_id -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        confirmed_at -> Nullable<Timestamp>,
        ended_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    evidence (sha256) {
        sha256 -> Text,
        nonce -> Text,
        ip -> Nullable<Text>,
        ip_source -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        source_url -> Nullable<Text>,
        recorded_at -> Timestamp,
    }
}

diesel::table! {
    consent_events (id) {
        id -> Text,
        subscriber_id -> Text,
        seq -> BigInt,
        kind -> Text,
        occurred_at -> Timestamp,
        subscription_id -> Nullable<Text>,
        list_id -> Nullable<Text>,
        consent_version_id -> Nullable<Text>,
        consent_sha256 -> Nullable<Text>,
        method -> Nullable<Text>,
        evidence_sha256 -> Nullable<Text>,
        details -> Text,
        prev_hash -> Text,
        hash -> Text,
    }
}

diesel::table! {
    confirmation_tokens (token_sha256) {
        token_sha256 -> Text,
        subscription_id -> Text,
        request_event_id -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    outbox (id) {
        id -> Text,
        kind -> Text,
        subscription_id -> Nullable<Text>,
        payload -> Text,
        message_id -> Text,
        state -> Text,
        attempts -> Integer,
        next_attempt_at -> Timestamp,
        lease_owner -> Nullable<Text>,
        lease_until -> Nullable<Timestamp>,
        last_error -> Nullable<Text>,
        created_at -> Timestamp,
        sent_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Text,
        name -> Text,
        key_sha256 -> Text,
        created_at -> Timestamp,
        revoked_at -> Nullable<Timestamp>,
        last_used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    refusals (email_hmac) {
        email_hmac -> Text,
        refused_at -> Timestamp,
        until -> Timestamp,
    }
}

diesel::joinable!(consent_versions -> lists (list_id));
diesel::joinable!(consent_versions -> consent_texts (text_sha256));
diesel::joinable!(subscriptions -> subscribers (subscriber_id));
diesel::joinable!(subscriptions -> lists (list_id));
diesel::joinable!(subscriptions -> consent_versions (consent_version_id));
diesel::joinable!(consent_events -> subscribers (subscriber_id));
diesel::joinable!(confirmation_tokens -> subscriptions (subscription_id));
diesel::joinable!(outbox -> subscriptions (subscription_id));

diesel::allow_tables_to_appear_in_same_query!(
    api_keys,
    refusals,
    server_secrets,
    lists,
    consent_texts,
    consent_versions,
    subscribers,
    subscriptions,
    evidence,
    consent_events,
    confirmation_tokens,
    outbox,
);
