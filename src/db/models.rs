//! Rows as diesel reads and writes them.
//!
//! Rows that are inserted many at a time write `None` as NULL rather than
//! as `DEFAULT` (no such column has another default), which SQLite needs
//! for multi-row inserts.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::*;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = lists)]
pub struct ListRow {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub settings: String,
    pub current_consent_version_id: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = consent_texts)]
pub struct ConsentTextRow {
    pub sha256: String,
    pub body: String,
    pub language: String,
    pub first_seen_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = consent_versions)]
pub struct ConsentVersionRow {
    pub id: String,
    pub list_id: String,
    pub text_sha256: String,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = subscribers, treat_none_as_default_value = false)]
pub struct SubscriberRow {
    pub id: String,
    pub email: Option<String>,
    pub email_key: Option<String>,
    pub email_hmac: String,
    pub name: Option<String>,
    pub created_at: NaiveDateTime,
    pub erased_at: Option<NaiveDateTime>,
    pub chain_seq: i64,
    pub chain_head: String,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = subscriptions, treat_none_as_default_value = false)]
pub struct SubscriptionRow {
    pub id: String,
    pub subscriber_id: String,
    pub list_id: String,
    pub state: String,
    pub consent_version_id: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub confirmed_at: Option<NaiveDateTime>,
    pub ended_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = evidence, treat_none_as_default_value = false)]
pub struct EvidenceRow {
    pub sha256: String,
    pub nonce: String,
    pub ip: Option<String>,
    pub ip_source: Option<String>,
    pub user_agent: Option<String>,
    pub source_url: Option<String>,
    pub recorded_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = consent_events, treat_none_as_default_value = false)]
pub struct ConsentEventRow {
    pub id: String,
    pub subscriber_id: String,
    pub seq: i64,
    pub kind: String,
    pub occurred_at: NaiveDateTime,
    pub subscription_id: Option<String>,
    pub list_id: Option<String>,
    pub consent_version_id: Option<String>,
    pub consent_sha256: Option<String>,
    pub method: Option<String>,
    pub evidence_sha256: Option<String>,
    pub details: String,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = confirmation_tokens, treat_none_as_default_value = false)]
pub struct ConfirmationTokenRow {
    pub token_sha256: String,
    pub subscription_id: String,
    pub request_event_id: String,
    pub created_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub used_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable, Insertable)]
#[diesel(table_name = outbox, treat_none_as_default_value = false)]
pub struct OutboxRow {
    pub id: String,
    pub kind: String,
    pub subscription_id: Option<String>,
    pub payload: String,
    pub message_id: String,
    pub state: String,
    pub attempts: i32,
    pub next_attempt_at: NaiveDateTime,
    pub lease_owner: Option<String>,
    pub lease_until: Option<NaiveDateTime>,
    pub last_error: Option<String>,
    pub created_at: NaiveDateTime,
    pub sent_at: Option<NaiveDateTime>,
}
